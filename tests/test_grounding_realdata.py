"""The image stage on real ScanNet frames with recorded answers: real resolutions (1296x968 colour,
640x480 depth, different intrinsics), the real Qwen2.5-VL resize limits, and ground-truth objects."""

from __future__ import annotations

import numpy as np
import pytest

from scener1.data import open_scene
from scener1.data.camera import back_project, transform_points
from scener1.grounding import ImageGrounder, ImageSettings
from scener1.models import RecordedVLM, load_vlm
from scener1.models.tiny import build_tiny_vlm

pytestmark = pytest.mark.realdata

BED, DOOR = 27, 52  # rows of scene0000_00_aligned_bbox.npy: a bed and a door 2.7 m apart


@pytest.fixture(scope="module")
def scannet(realdata):
    scene = open_scene(
        realdata / "scannet_posed_images" / "scene0000_00",
        meta=realdata / "scannet_scene_meta_txt" / "scene0000_00.txt",
    )
    boxes = np.load(realdata / "scanrefer_aligned_bbox_npy" / "scene0000_00_aligned_bbox.npy")
    with scene:
        yield scene, boxes


def visible_box(scene, position: int, box: np.ndarray) -> tuple[float, float, float, float]:
    """Colour-pixel box around the depth pixels that land inside a ground-truth (axis-aligned) 3D box."""
    frame = scene.frame(position)
    points, rows, cols = back_project(frame.depth, frame.depth_intrinsics, frame.pose, min_depth=0.1, return_pixels=True)
    aligned = transform_points(points, scene.axis_alignment)
    inside = ((aligned >= box[:3] - box[3:6] / 2) & (aligned <= box[:3] + box[3:6] / 2)).all(axis=1)
    ci, di = frame.color_intrinsics, frame.depth_intrinsics
    u = (cols[inside] - di.cx) / di.fx * ci.fx + ci.cx
    v = (rows[inside] - di.cy) / di.fy * ci.fy + ci.cy
    return float(u.min()), float(v.min()), float(u.max() + 1), float(v.max() + 1)


def test_real_frames_boxes_agree_on_the_ground_truth_object(scannet, tmp_path):
    scene, boxes = scannet
    # the real Qwen2.5-VL image limit (12845056 pixels); the weights stay tiny since no token is generated
    base = load_vlm(build_tiny_vlm(tmp_path / "qwen25", "qwen2_5_vl", max_tokens_per_image=16384))
    assert base.model_image_size(1296, 968) == (1288, 980)  # what the released processor makes of ScanNet colour

    positions = [5, 7, 9, 12]
    targets = [boxes[BED], boxes[BED], boxes[BED], boxes[DOOR]]
    settings = ImageSettings(num_candidates=4)  # frames are shrunk to 1280*28*28 pixels before the processor
    answers, expected = [], []
    for p, target, logprob in zip(positions, targets, [-0.6, -0.3, -0.5, -0.05], strict=True):
        box = visible_box(scene, p, target)
        expected.append(np.clip(box, 0, [1296, 968, 1296, 968]))
        shrunk_w, shrunk_h = 1159, 866  # 1296x968 scaled to 1280*28*28 pixels
        mw, mh = base.model_image_size(shrunk_w, shrunk_h)
        model_box = [box[0] * mw / 1296, box[1] * mh / 968, box[2] * mw / 1296, box[3] * mh / 968]
        answers.append((f'<think>t</think><answer>{{"bbox_2d": {[round(x) for x in model_box]}, "label": "x"}}</answer>',
                        logprob))  # fmt: skip
    result = ImageGrounder(RecordedVLM(base, answers), settings).ground(scene, "the bed", positions)

    assert [c.position for c in result.candidates] == positions and all(c.depth_ok for c in result.candidates)
    for c, box in zip(result.candidates, expected, strict=True):
        assert np.allclose(c.box, box, atol=0.5 * 1296 / c.model_image_size[0] + 1e-6)
    # the confident door box is outvoted by three bed boxes that lift to the same place
    assert [c.agrees for c in result.candidates] == [True, True, True, False]
    assert result.position == 7 and result.agreement == 3
    bed = boxes[BED]
    point = transform_points(np.array([result.point]), scene.axis_alignment)[0]
    assert np.all(np.abs(point - bed[:3]) <= bed[3:6] / 2 + 0.1)
