"""Box snapping onto depth segments, and its opt-in wiring in the image stage."""

from __future__ import annotations

import numpy as np
import pytest

from scener1.errors import ConfigError
from scener1.grounding.snapping import SnapSettings, depth_segments, segment_boxes, snap_box, snap_to_segments
from scener1.types import Frame, Intrinsics

K = Intrinsics(100.0, 100.0, 39.5, 29.5, 80, 60)


def box_scene() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A wall at 3 m with a box-shaped object at 1.5 m covering columns 20..44 and rows 15..39."""
    depth = np.full((60, 80), 3.0, np.float32)
    depth[15:40, 20:45] = 1.5
    return depth, (20, 15, 45, 40)


def frame_of(depth: np.ndarray) -> Frame:
    return Frame(index=0, timestamp=0.0, color=np.zeros((60, 80, 3), np.uint8), depth=depth, pose=np.eye(4),
                 color_intrinsics=K, depth_intrinsics=K)


def test_depth_segments_split_at_discontinuities_and_keep_outlines():
    depth, truth = box_scene()
    labels = depth_segments(depth, K)
    boxes = segment_boxes(labels)
    assert any(b[:4] == truth for b in boxes.values())  # the object's piece has exactly its outline
    assert labels[27, 30] != labels[5, 5] and labels[5, 5] == labels[55, 75]  # wall all around is one piece
    depth[0:5, 0:5] = 0.0  # holes are no segment
    assert (depth_segments(depth, K)[0:5, 0:5] == 0).all()


def test_depth_segments_split_at_creases():
    # a wall facing the camera at 2 m (upper half) bending into a surface tilted by about 45 degrees (lower
    # half): depth is continuous across the bend and changes by 1 % per row below it
    v = np.arange(60, dtype=np.float64)[:, None].repeat(80, axis=1)
    depth = np.where(v < 30, 2.0, 2.0 - 0.02 * (v - 30)).astype(np.float32)
    labels = depth_segments(depth, K)
    assert labels[10, 40] != labels[55, 40] and labels[10, 40] > 0 and labels[55, 40] > 0


def test_snap_moves_a_loose_box_onto_the_object_and_leaves_others():
    depth, truth = box_scene()
    frame = frame_of(depth)
    loose = (17.0, 13.0, 49.0, 41.0)
    result = snap_box(loose, frame)
    assert result.changed and result.box == tuple(float(v) for v in truth)
    assert result.to_dict(loose)["from"] == list(loose)
    exact = snap_box(tuple(float(v) for v in truth), frame)
    assert not exact.changed and exact.box == tuple(float(v) for v in truth)
    # a box on bare wall overlaps no proposal enough: kept as the model gave it
    far = (55.0, 45.0, 75.0, 58.0)
    kept = snap_box(far, frame)
    assert not kept.changed and kept.box == far and "no proposal" in kept.reason


def test_snap_scales_between_depth_and_colour_pixels():
    depth, _ = box_scene()
    labels = depth_segments(depth, K)
    result = snap_to_segments((38.0, 28.0, 92.0, 82.0), labels, scale=(2.0, 2.0))  # colour is twice the size
    assert result.box == (40.0, 30.0, 90.0, 80.0)


def test_snap_settings_are_checked():
    with pytest.raises(ConfigError):
        SnapSettings(min_iou=0.0)
    with pytest.raises(ConfigError):
        SnapSettings(inside_share=1.5)


def test_image_stage_snaps_only_when_asked_and_records_it(tmp_path):
    import json

    from scener1.data import open_scene
    from scener1.grounding import ImageGrounder, ImageSettings
    from scener1.models import RecordedVLM, load_vlm
    from scener1.models.tiny import build_tiny_vlm
    from scener1.synth import generate_scene

    scene_dir = generate_scene(tmp_path, seed=3, frames=12, size=(160, 120), fps=6.0)
    frames = json.loads((scene_dir / "gt" / "frames.json").read_text())["frames"]
    # a mid-sized object (5-30 % of the image), where a loose box has room to be wrong
    _, position, obj = max((o["pixels"], f["frame"], o) for f in frames for o in f["objects"]
                           if 0.05 <= (o["bbox"][2] - o["bbox"][0]) * (o["bbox"][3] - o["bbox"][1]) / 19200 <= 0.3)
    x1, y1, x2, y2 = obj["bbox"]
    loose = [max(0, x1 - 4), max(0, y1 - 3), min(160, x2 + 4), min(120, y2 + 3)]
    base = load_vlm(build_tiny_vlm(tmp_path / "m", "qwen2_vl"))  # 0-1000 boxes: write the loose box in them
    coords = [round(loose[0] * 1000 / 160), round(loose[1] * 1000 / 120), round(loose[2] * 1000 / 160),
              round(loose[3] * 1000 / 120)]
    answer = f'<think>t</think><answer>{{"bbox_2d": {coords}, "label": "x"}}</answer>'

    with open_scene(scene_dir) as scene:
        plain = ImageGrounder(RecordedVLM(base, [answer]), ImageSettings(num_candidates=1)).ground(scene, "x",
                                                                                                  [position])
        snapped = ImageGrounder(RecordedVLM(base, [answer]), ImageSettings(num_candidates=1, snap=True)).ground(
            scene, "x", [position])
    assert plain.candidates[0].snap is None
    record = snapped.candidates[0].snap
    assert record is not None and record["from"] == [round(float(v), 1) for v in plain.box]
    assert record["changed"] == (snapped.box != plain.box)
    assert snapped.trace.to_dict()["parsed"]["candidates"][0]["snap"] == record
    if record["changed"]:  # snapping onto the object's depth piece brings the box closer to its true box
        from scener1.rl.rewards import box_iou

        assert box_iou(snapped.box, obj["bbox"]) >= box_iou(plain.box, obj["bbox"])
