"""The image stage: candidate frames, lifting boxes to 3D, agreement, box mapping, fallbacks, tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import camera_pose, distance_to_room, make_frames, render, write_scannet

from scener1.data import open_scene
from scener1.data.camera import project
from scener1.errors import ConfigError
from scener1.grounding import (
    ImageGrounder,
    ImageSettings,
    agreement_matrix,
    box_centre_point,
    choose_by_agreement,
    depth_valid_fraction,
    shrink_to_pixels,
    spread,
)
from scener1.models import GenerationSettings, RecordedVLM, load_vlm
from scener1.models.tiny import build_tiny_vlm
from scener1.temporal import TemporalGrounder, TemporalSettings
from scener1.types import Frame, Intrinsics

N_FRAMES = 24  # 15 degrees of turn per frame; the toy camera sees about 58 degrees across


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = write_scannet(tmp_path_factory.mktemp("scenes") / "scene0001_00",
                         make_frames(N_FRAMES, step=15, color_scale=4))  # fmt: skip
    with open_scene(root) as s:
        yield s


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {f: load_vlm(build_tiny_vlm(root / f, f)) for f in ("qwen2_5_vl", "qwen3_vl")}


def wall_point(yaw: float) -> np.ndarray:
    """Where the toy camera's central ray at ``yaw`` meets the room."""
    pose = camera_pose([2.0, 1.5, 1.3], yaw=yaw, pitch=0.2)
    K = Intrinsics(10.0, 10.0, 2.0, 2.0, 5, 5)
    depth, _, _ = render(K, pose)
    return pose[:3, 3] + pose[:3, 2] * float(depth[2, 2])


def box_around(point: np.ndarray, frame: Frame, half: float) -> tuple[float, float, float, float]:
    (u, v), = project(point[None], frame.color_intrinsics, frame.pose)[0]  # fmt: skip
    return (u - half, v - half, u + half, v + half)


def to_model(box, original_size, model_size) -> list[int]:
    (W, H), (mw, mh) = original_size, model_size
    return [round(box[0] * mw / W), round(box[1] * mh / H), round(box[2] * mw / W), round(box[3] * mh / H)]


# --------------------------------------------------------------------------------------- pure core


def test_spread_prefers_and_keeps_the_ends():
    positions = np.arange(10, 30)
    assert spread(positions, 4).tolist() == [10, 16, 23, 29]
    preferred = positions % 2 == 0
    assert spread(positions, 3, preferred).tolist() == [10, 18, 28]
    assert spread(positions, 50).tolist() == positions.tolist()
    assert spread(positions, 2, np.zeros(20, bool)).tolist() == [10, 29]  # nothing preferred: all count


def test_depth_fraction_and_shrinking():
    depth = np.zeros((4, 4), np.float32)
    depth[:2] = 1.5
    depth[0, 0] = np.nan
    assert depth_valid_fraction(depth) == pytest.approx(7 / 16)
    assert depth_valid_fraction(depth, max_depth=1.0) == 0.0
    image = np.zeros((968, 1296, 3), np.uint8)
    small = shrink_to_pixels(image, 1280 * 28 * 28)
    assert small.shape[0] * small.shape[1] <= 1280 * 28 * 28 and small.shape[1] / small.shape[0] == pytest.approx(1296 / 968, rel=0.01)
    assert shrink_to_pixels(image, 2_000_000) is image


def test_box_centre_lifts_to_the_wall_point(scene):
    frame = scene.frame(6)
    target = wall_point(2 * np.pi * 6 / N_FRAMES)
    point = box_centre_point(box_around(target, frame, 20.0), frame, centre_fraction=0.5)
    assert np.linalg.norm(point - target) < 0.05  # colour box -> depth pixels -> world, on a 4x finer colour image
    assert distance_to_room(point[None])[0] < 0.01

    no_pose = Frame(frame.index, frame.timestamp, frame.color, frame.depth, frame.color_intrinsics,
                    frame.depth_intrinsics, np.full((4, 4), np.nan))  # fmt: skip
    assert box_centre_point(box_around(target, frame, 20.0), no_pose) is None
    no_depth = Frame(frame.index, frame.timestamp, frame.color, np.zeros_like(frame.depth), frame.color_intrinsics,
                     frame.depth_intrinsics, frame.pose)  # fmt: skip
    assert box_centre_point(box_around(target, frame, 20.0), no_depth) is None


def test_agreement_beats_a_single_confident_box():
    agree = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1]], bool)
    conf = np.array([0.5, 0.6, 0.4, 0.95])
    chosen, support, members = choose_by_agreement(agree, conf, np.ones(4, bool))
    assert chosen == 1 and members.tolist() == [True, True, True, False]
    assert support[:3] == pytest.approx([1.5, 1.5, 1.5]) and support[3] == pytest.approx(0.95)
    # once the lone box is sure enough it outweighs a weak group
    chosen, _, _ = choose_by_agreement(agree, np.array([0.2, 0.2, 0.2, 0.95]), np.ones(4, bool))
    assert chosen == 3


def test_unusable_candidates_neither_win_nor_support():
    agree = np.ones((3, 3), bool)
    chosen, support, members = choose_by_agreement(agree, np.array([0.3, 0.9, 0.3]), np.array([True, False, True]))
    assert chosen in (0, 2) and support.tolist() == pytest.approx([0.6, 0.0, 0.6]) and not members[1]
    assert choose_by_agreement(agree, np.ones(3), np.zeros(3, bool))[0] is None


def test_agreement_matrix_on_views_of_one_wall_point(scene):
    positions = [5, 6, 7, 8]
    frames = [scene.frame(p) for p in positions]
    target = wall_point(2 * np.pi * 6.5 / N_FRAMES)
    boxes = [box_around(target, f, 16.0) for f in frames]
    points = np.array([box_centre_point(b, f) for b, f in zip(boxes, frames, strict=True)])
    intrinsics = [f.color_intrinsics for f in frames]
    poses = np.stack([f.pose for f in frames])
    assert agreement_matrix(points, boxes, intrinsics, poses).all()

    # a box on another part of the room, lifted there: it agrees with nobody else
    boxes[2] = (2.0, 2.0, 40.0, 40.0)
    points[2] = box_centre_point(boxes[2], frames[2])
    agree = agreement_matrix(points, boxes, intrinsics, poses)
    assert agree[2].tolist() == [False, False, True, False] and agree[[0, 1, 3]][:, [0, 1, 3]].all()
    # a point in front of the wall on the same rays (the toy camera turns on the spot): only the
    # distance cap tells a near object from the far one
    centre = frames[0].pose[:3, 3]
    in_front = points.copy()
    in_front[1] = centre + 0.3 * (target - centre)
    gap = np.linalg.norm(in_front[1] - points[0])
    assert agreement_matrix(in_front, boxes, intrinsics, poses, max_object_size=gap + 0.1)[0, 1]
    assert not agreement_matrix(in_front, boxes, intrinsics, poses, max_object_size=gap - 0.1)[0, 1]
    # no 3D point, no box or no pose: only itself
    points[0] = np.nan
    boxes[1] = None
    poses[3] = np.nan
    agree = agreement_matrix(points, boxes, intrinsics, poses)
    assert (agree == np.eye(4, dtype=bool)).all()


def test_settings_are_checked():
    with pytest.raises(ConfigError):
        ImageSettings(num_candidates=0)
    with pytest.raises(ConfigError):
        ImageSettings(agreement_margin=-1)
    with pytest.raises(ConfigError):
        ImageSettings(max_object_size=0)
    with pytest.raises(ConfigError):
        ImageSettings(centre_fraction=0)
    with pytest.raises(ConfigError):
        ImageSettings(video_candidates=-1)
    with pytest.raises(ConfigError):
        ImageSettings(video_weight=1.5)


# --------------------------------------------------------------------------------------- recorded answers


def test_recorded_boxes_map_from_resized_pixels_and_agree_in_3d(scene, tiny):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    base = tiny["qwen2_5_vl"]
    positions = np.arange(5, 9)
    frames = [scene.frame(int(p)) for p in positions]
    W, H = frames[0].color.shape[1], frames[0].color.shape[0]
    size = base.processor.image_processor.size
    rh, rw = smart_resize(H, W, 28, size["shortest_edge"], size["longest_edge"])  # the processor's own rule
    target = wall_point(2 * np.pi * 6.5 / N_FRAMES)  # seen by all four frames
    boxes = [box_around(target, f, 24.0) for f in frames]
    elsewhere = (2.0, 2.0, 40.0, 40.0)  # a corner of the image: the floor or another wall, metres away
    recorded = [
        (f'<think>by the wall</think><answer>{{"bbox_2d": {to_model(boxes[0], (W, H), (rw, rh))}, "label": "a"}}</answer>', -0.5),
        (f'<think>here</think><answer>{{"bbox_2d": {to_model(boxes[1], (W, H), (rw, rh))}, "label": "b"}}</answer>', -0.2),
        (f'<answer>{{"bbox_2d": {to_model(elsewhere, (W, H), (rw, rh))}, "label": "c"}}</answer>', -0.01),
        (f'<answer>{{"bbox_2d": {to_model(boxes[3], (W, H), (rw, rh))}, "label": "d"}}</answer>', -0.4),
    ]
    vlm = RecordedVLM(base, recorded)
    result = ImageGrounder(vlm, ImageSettings(num_candidates=4)).ground(scene, "the wall", positions)

    tolerance = 0.5 * W / rw + 1e-6  # integers in the model's frame are good to half a model pixel
    for candidate, box in zip(result.candidates, [boxes[0], boxes[1], elsewhere, boxes[3]], strict=True):
        assert candidate.model_image_size == (rw, rh)
        assert np.allclose(candidate.box, np.clip(box, 0, [W, H, W, H]), atol=tolerance)
    assert [c.frame_index for c in result.candidates] == scene.frame_ids[positions].tolist()
    assert [c.agrees for c in result.candidates] == [True, True, False, True]
    assert result.agreement == 3 and result.label == "b" and result.think == "here"
    assert result.frame_index == scene.frame_ids[6] and result.position == 6
    assert np.linalg.norm(np.array(result.point) - target) < 0.1
    assert result.fallback_reason is None
    trace = json.loads(result.trace.to_json())
    assert trace["stage"] == "image" and len(trace["raw_output"]) == 4
    assert [c["chosen"] for c in trace["parsed"]["candidates"]] == [False, True, False, False]


def test_frames_outside_the_span_outvote_a_span_that_misses(scene, tiny):
    """A weak temporal stage: the span's one frame answers elsewhere, confidently; four frames from outside
    the span agree on the object and win, discounted by video_weight; with video_weight 0 they cannot."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    base = tiny["qwen2_5_vl"]
    span = np.r_[0:5, 9:N_FRAMES]  # everything but 5..8, the frames that see the target
    W, H = scene.color_intrinsics.size
    size = base.processor.image_processor.size
    rh, rw = smart_resize(H, W, 28, size["shortest_edge"], size["longest_edge"])
    target = wall_point(2 * np.pi * 6.5 / N_FRAMES)
    answer = '<think>t</think><answer>{{"bbox_2d": {}, "label": "{}"}}</answer>'
    recorded = [(answer.format(to_model((2.0, 2.0, 40.0, 40.0), (W, H), (rw, rh)), "span"), -0.01)]
    recorded += [(answer.format(to_model(box_around(target, scene.frame(p), 24.0), (W, H), (rw, rh)), "video"), -0.3)
                 for p in range(5, 9)]

    settings = ImageSettings(num_candidates=1, video_candidates=4, video_weight=0.5)
    result = ImageGrounder(RecordedVLM(base, recorded), settings).ground(scene, "the wall", span)
    assert [c.in_span for c in result.candidates] == [True, False, False, False, False]
    assert [c.position for c in result.candidates[1:]] == [5, 6, 7, 8]
    assert result.label == "video" and 5 <= result.position <= 8 and result.agreement == 4
    assert np.linalg.norm(np.array(result.point) - target) < 0.1
    trace = json.loads(result.trace.to_json())
    assert trace["inputs"]["video_candidates"] == 4
    assert [c["in_span"] for c in trace["parsed"]["candidates"]] == [True, False, False, False, False]

    muted = ImageSettings(num_candidates=1, video_candidates=4, video_weight=0.0)
    result = ImageGrounder(RecordedVLM(base, recorded), muted).ground(scene, "the wall", span)
    assert result.label == "span" and result.position in span

    # a span over the whole video leaves no frame outside it
    whole = ImageGrounder(RecordedVLM(base, recorded[:1]), settings).ground(scene, "the wall", np.arange(N_FRAMES))
    assert len(whole.candidates) == 1 and whole.candidates[0].in_span


def test_recorded_normalised_boxes_and_shrunk_frames_map_to_original(scene, tiny):
    positions = np.array([3])
    W, H = scene.color_intrinsics.size
    # Qwen3-VL answers on 0-1000; shrinking the frame before the processor must not change the mapping
    vlm = RecordedVLM(tiny["qwen3_vl"], ['<answer>{"bbox_2d": [250, 500, 750, 1000], "label": "x"}</answer>'])
    result = ImageGrounder(vlm, ImageSettings(num_candidates=1, image_max_pixels=96 * 72)).ground(scene, "x", positions)
    assert result.box == pytest.approx((0.25 * W, 0.5 * H, 0.75 * W, float(H)))

    vlm = RecordedVLM(tiny["qwen2_5_vl"], [""])
    mw, mh = vlm.model_image_size(*shrink_to_pixels(scene.frame(3).color, 96 * 72).shape[1::-1])
    vlm.answers = [(f'<answer>{{"bbox_2d": [0, 0, {mw // 2}, {mh}]}}</answer>', -0.1)]
    result = ImageGrounder(vlm, ImageSettings(num_candidates=1, image_max_pixels=96 * 72)).ground(scene, "x", positions)
    assert result.candidates[0].model_image_size == (mw, mh)
    assert result.box == pytest.approx((0.0, 0.0, (mw // 2) * W / mw, float(H)))


def test_recorded_garbage_falls_back_to_a_whole_frame(scene, tiny):
    vlm = RecordedVLM(tiny["qwen2_5_vl"], ["no idea", '<answer>{"bbox_2d": [5, 5, 5, 9]}</answer>', "<answer></answer>"])
    result = ImageGrounder(vlm, ImageSettings(num_candidates=3)).ground(scene, "a sofa", np.arange(0, 12))
    W, H = scene.color_intrinsics.size
    assert result.box == (0.0, 0.0, float(W), float(H)) and result.label is None and result.agreement == 0
    assert result.used_fallback and result.trace.fallback == result.fallback_reason
    for reason in ("no box in the answer", "degenerate box", "empty <answer>"):
        assert reason in result.fallback_reason
    assert result.position in [c.position for c in result.candidates]
    assert not any(c.chosen for c in result.candidates)


def test_frames_answered_not_in_the_image_abstain(scene, tiny):
    from scener1.parsing import ABSENT_REASON

    none = "<think>I see no sofa in the image.</think><answer>[]</answer>"
    vlm = RecordedVLM(tiny["qwen3_vl"], [none, '<answer>{"bbox_2d": [100, 100, 400, 400], "label": "sofa"}</answer>', none])
    result = ImageGrounder(vlm, ImageSettings(num_candidates=3)).ground(scene, "a sofa", np.arange(0, 12))
    assert result.label == "sofa" and result.fallback_reason is None and result.agreement == 1
    assert [c.parsed.absent for c in result.candidates] == [True, False, True]
    assert [c.chosen for c in result.candidates] == [False, True, False]
    trace = json.loads(result.trace.to_json())
    assert [c["reason"] for c in trace["parsed"]["candidates"]].count(ABSENT_REASON) == 2

    vlm = RecordedVLM(tiny["qwen3_vl"], [none] * 3)
    result = ImageGrounder(vlm, ImageSettings(num_candidates=3)).ground(scene, "a sofa", np.arange(0, 12))
    assert result.used_fallback and ABSENT_REASON in result.fallback_reason


def test_positions_are_checked(scene, tiny):
    grounder = ImageGrounder(RecordedVLM(tiny["qwen2_5_vl"], []))
    with pytest.raises(ConfigError):
        grounder.ground(scene, "x", [])
    with pytest.raises(ConfigError):
        grounder.ground(scene, "x", [0, N_FRAMES])


# --------------------------------------------------------------------------------------- tiny models


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_tiny_model_runs_temporal_then_image(scene, tiny, family):
    generation = GenerationSettings(max_new_tokens=24)
    vlm = tiny[family]
    span = TemporalGrounder(vlm, TemporalSettings(fps=1.0, generation=generation)).ground(scene, "the green wall")
    result = ImageGrounder(vlm, ImageSettings(num_candidates=3, generation=generation)).ground(
        scene, "the green wall", span.positions
    )
    W, H = scene.color_intrinsics.size
    x1, y1, x2, y2 = result.box
    assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
    assert result.position in span.positions and result.frame_index == scene.frame_ids[result.position]
    assert len(result.candidates) == 3
    usable = [c for c in result.candidates if c.box is not None]
    # random weights: a whole-frame fallback exactly when no candidate gave a usable box
    assert result.used_fallback == (not usable)
    assert sum(c.chosen for c in result.candidates) == (1 if usable else 0)
    for c in result.candidates:
        assert c.mean_logprob is not None and 0.0 < c.confidence <= 1.0
    trace = json.loads(result.trace.to_json())
    assert trace["stage"] == "image" and trace["fallback"] == result.fallback_reason
    assert trace["inputs"]["box_coordinates"] == vlm.box_coordinates
    json.dumps(result.to_dict(), allow_nan=False)
