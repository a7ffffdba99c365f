"""Trackers: the interface helpers, the geometric tracker on a room with objects, SAM2 with random weights."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    NEIGHBOUR,
    TARGET,
    ToyScene,
    camera_pose,
    gt_box_2d,
    object_frames,
    object_scan,
    render,
    write_scannet,
)

from scener1.data import open_scene
from scener1.data.camera import color_mask_to_depth, up_direction
from scener1.errors import ConfigError, ScenerError
from scener1.tracking import FrameMask, build_tracker, check_box, depth_mask_to_color
from scener1.tracking.geometric import (
    GeometricConfig,
    _floor_plane,
    _floor_residue,
    _Grid,
    _walls,
)
from scener1.types import Frame, Intrinsics


# ---------------------------------------------------------------------------------------------- interface
def test_check_box_clips_overflow_and_rejects_bad_boxes():
    assert check_box([10, 20, 30, 40], 100, 80) == (10, 20, 30, 40)
    assert check_box([-5, -5, 120, 90], 100, 80) == (0, 0, 100, 80)  # overflow is clipped
    assert check_box([10.2, 0.5, 29.6, 40], 100, 80) == (11, 1, 30, 40)  # pixels whose centres lie inside
    with pytest.raises(ConfigError, match="degenerate"):
        check_box([30, 20, 30, 40], 100, 80)
    with pytest.raises(ConfigError, match="degenerate"):
        check_box([30, 50, 40, 40], 100, 80)
    with pytest.raises(ConfigError, match="covers no pixel"):
        check_box([120, 10, 150, 40], 100, 80)
    with pytest.raises(ConfigError, match="finite"):
        check_box([0, 0, np.nan, 10], 100, 80)
    with pytest.raises(ConfigError, match="four"):
        check_box([0, 0, 10], 100, 80)


def test_frame_mask_crop_round_trip():
    m = np.zeros((48, 64), bool)
    m[10:20, 30:35] = True
    m[12, 40] = True
    fm = FrameMask.from_dense(3, 30, m, 0.9)
    assert fm.box == (30, 10, 41, 20) and fm.area == m.sum() and not fm.empty
    np.testing.assert_array_equal(fm.dense(), m)
    empty = FrameMask.from_dense(0, 0, np.zeros((48, 64), bool), 0.7)
    assert empty.empty and empty.score == 0.0 and empty.dense().shape == (48, 64)


def test_depth_mask_to_color_inverts_color_mask_to_depth():
    di = Intrinsics(577.87, 577.87, 319.5, 239.5, 640, 480)
    ci = Intrinsics(1169.6, 1167.1, 646.3, 489.9, 1296, 968)  # ScanNet-like: other resolution and aspect
    rng = np.random.default_rng(0)
    dmask = np.zeros((480, 640), bool)
    dmask[100:300, 200:450] = True
    dmask[rng.random((480, 640)) < 0.01] = True
    back = color_mask_to_depth(depth_mask_to_color(dmask, ci, di), ci, di)
    # exact wherever the depth ray lands inside the colour image
    inside = color_mask_to_depth(np.ones((968, 1296), bool), ci, di)
    np.testing.assert_array_equal(back[inside], dmask[inside])


def test_build_tracker_rejects_unknown_names():
    with pytest.raises(ConfigError, match="unknown tracker"):
        build_tracker("magic")


# ---------------------------------------------------------------------------------------------- geometric
def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_geometric_key_frame_segments_the_boxed_object_not_floor_or_neighbour(tmp_path):
    frames, ids = object_frames(4)
    tracker = build_tracker("geometric")
    for frame, inst in zip(frames, ids):
        box = gt_box_2d(inst)
        mask, _, note = tracker.segment_key_frame(frame, box)
        assert note == ""
        truth = color_mask_to_depth(inst == 1, frame.color_intrinsics, frame.depth_intrinsics)
        assert _mask_iou(mask, truth) > 0.85
        neighbour = color_mask_to_depth(inst == 2, frame.color_intrinsics, frame.depth_intrinsics)
        assert (mask & neighbour).sum() < 0.02 * mask.sum()


def test_geometric_tracker_follows_the_object_over_all_frames(tmp_path):
    scan, ids = object_scan(tmp_path, n=8)
    with open_scene(scan) as scene:
        result = build_tracker("geometric").track(scene, range(len(scene)), 3, gt_box_2d(ids[3]))
        assert result.positions == list(range(8)) and result.key_position == 3
        for m, inst in zip(result.masks, ids):
            assert m.shape == inst.shape and m.frame_index == scene.frame_ids[m.position]
            assert _mask_iou(m.dense(), inst == 1) > 0.8, m.position
            assert 0 < m.score <= 1


def test_geometric_tracker_reports_empty_key_mask_without_depth(tmp_path):
    frames, ids = object_frames(3)
    f = frames[1]
    box = gt_box_2d(ids[1])
    dead = Frame(f.index, f.timestamp, f.color, np.zeros_like(f.depth), f.color_intrinsics, f.depth_intrinsics, f.pose)
    mask, _, note = build_tracker("geometric").segment_key_frame(dead, box)
    assert not mask.any() and "no valid depth" in note


def test_up_direction_from_camera_poses():
    # hand-held cameras turning around, looking down by different amounts: up is +z
    poses = [camera_pose([2, 1.5, 1.4], yaw, pitch) for yaw, pitch in zip(np.linspace(0, 5, 12), np.linspace(0.1, 0.6, 12))]
    np.testing.assert_allclose(up_direction(np.array(poses)), [0, 0, 1], atol=1e-6)
    # the same in a world turned upside down and sideways (7-Scenes-like frames): found all the same
    R = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    turned = []
    for P in poses:
        Q = P.copy()
        Q[:3, :3], Q[:3, 3] = R @ P[:3, :3], R @ P[:3, 3]
        turned.append(Q)
    np.testing.assert_allclose(up_direction(np.array(turned)), R @ [0, 0, 1], atol=1e-6)
    # one heading only: the image's own up is the best guess
    still = np.array([camera_pose([0, 0, 1], 0.3, 0.0)] * 4)
    np.testing.assert_allclose(up_direction(still), [0, 0, 1], atol=1e-6)


def _room_samples(rng, cabinet: bool = True):
    """Points and normals of a 4 x 3 x 2.5 m room's floor and walls, a table top and a wardrobe front."""
    def patch(n, centre, a, b, count):
        u, v = rng.uniform(-0.5, 0.5, (2, count, 1))
        return np.asarray(centre) + u * np.asarray(a) + v * np.asarray(b), np.tile(n, (count, 1))

    parts = [patch([0, 0, 1], [2, 1.5, 0.0], [4, 0, 0], [0, 3, 0], 3000),  # floor
             patch([0, 0, 1], [2, 1.5, 0.75], [1, 0, 0], [0, 0.8, 0], 800),  # a table top
             patch([1, 0, 0], [0.0, 1.5, 1.25], [0, 3, 0], [0, 0, 2.5], 2000),  # walls
             patch([-1, 0, 0], [4.0, 1.5, 1.25], [0, 3, 0], [0, 0, 2.5], 2000),
             patch([0, 1, 0], [2, 0.0, 1.25], [4, 0, 0], [0, 0, 2.5], 2000),
             patch([0, -1, 0], [2, 3.0, 1.25], [4, 0, 0], [0, 0, 2.5], 2000)]
    if cabinet:  # a 1.2 x 1.9 m wardrobe front 0.6 m out from the wall x = 4
        parts.append(patch([-1, 0, 0], [3.4, 1.5, 0.95], [0, 1.2, 0], [0, 0, 1.9], 1500))
    pts = np.concatenate([p for p, _ in parts]).astype(np.float32)
    nrm = np.concatenate([n for _, n in parts]).astype(np.float32)
    return pts + rng.normal(0, 0.003, pts.shape).astype(np.float32), nrm


def test_room_floor_and_walls_found_from_samples():
    rng = np.random.default_rng(0)
    pts, nrm = _room_samples(rng)
    cfg = GeometricConfig()
    floor = _floor_plane(pts, nrm, np.array([0, 0, 1.0]), 1.4, cfg)
    assert floor is not None and floor[1] == pytest.approx(0.0, abs=0.005)  # the floor, not the table top
    np.testing.assert_allclose(floor[0], [0, 0, 1], atol=0.01)
    cams = np.array([[2.0, 1.5, 1.4], [1.0, 1.0, 1.4], [3.0, 2.0, 1.4]])
    walls = _walls(pts, nrm, np.array([0, 0, 1.0]), cams, cfg)
    offsets = sorted(round(float(w.normal @ [2.0, 1.5, 1.25] + w.offset), 1) for w in walls)
    assert offsets == [1.5, 1.5, 2.0, 2.0]  # the four walls seen from the room's centre
    # the wardrobe front has the wall just behind it: it is no wall
    assert all(abs(w.normal @ [3.4, 1.5, 1.0] + w.offset) > 0.1 for w in walls)
    # a table top is no floor: nothing upward-facing low enough under the cameras
    assert _floor_plane(pts[pts[:, 2] > 0.5], nrm[pts[:, 2] > 0.5], np.array([0, 0, 1.0]), 1.4, cfg) is None


DESK = (np.array([1.6, 1.6, 0.0]), np.array([2.6, 2.2, 0.72]))  # a block as wide as a desk
SCREEN = (np.array([1.95, 1.85, 0.72]), np.array([2.3, 1.95, 1.1]))  # standing on it


def _desk_scan(tmp_path, n: int = 8):
    w, h = 160, 120
    Kd = Intrinsics(0.8 * w, 0.8 * w, (w - 1) / 2, (h - 1) / 2, w, h)
    centre = (DESK[0] + DESK[1]) / 2
    frames, ids = [], []
    for k in range(n):
        a = np.deg2rad(220 + 100 * k / (n - 1))
        pos = centre + np.array([1.7 * np.cos(a), 1.7 * np.sin(a), 1.2])
        look = centre + [0, 0, 0.3] - pos
        pose = camera_pose(pos, np.arctan2(look[1], look[0]), np.arctan2(-look[2], np.linalg.norm(look[:2])))
        depth, color, inst = render(Kd, pose, [DESK, SCREEN])
        frames.append(Frame(k, k / 30.0, color, np.round(depth * 1000) / 1000, Kd, Kd, pose))
        ids.append(inst)
    return write_scannet(tmp_path / "desk", ToyScene(frames)), ids


def test_geometric_tracker_separates_an_object_from_what_stands_on_it(tmp_path):
    scan, ids = _desk_scan(tmp_path)
    tracker = build_tracker("geometric")
    with open_scene(scan) as scene:
        # the desk: the screen standing on it is cut off at the desk's top
        desk = tracker.track(scene, range(len(scene)), 4, gt_box_2d(ids[4], 1))
        assert desk.info["dropped_on_top"] >= 1
        for m, inst in zip(desk.masks, ids):
            # at most the screen's foot stays (the slab cut around the desk's top is a few cm thick)
            assert (m.dense() & (inst == 2)).sum() < 0.15 * (inst == 2).sum()
            assert _mask_iou(m.dense(), inst == 1) > 0.8
        # the screen: the desk's top is the background it stands on
        screen = tracker.track(scene, range(len(scene)), 4, gt_box_2d(ids[4], 2))
        for m, inst in zip(screen.masks, ids):
            assert (m.dense() & (inst == 1)).sum() < 0.02 * m.area
            assert _mask_iou(m.dense(), inst == 2) > 0.7
        contacts = screen.info["contact_planes"]
        assert any(abs(c["normal"][2]) > 0.99 and c["offset"] == pytest.approx(-0.72, abs=0.02) for c in contacts)


def test_geometric_tracker_finds_the_part_beyond_the_image_border(tmp_path):
    # frames around the target as in object_scan, but the key frame looks past it: the target is cut by
    # the left image border there, and only the other frames show its left part
    w, h = 160, 120
    Kd = Intrinsics(0.8 * w, 0.8 * w, (w - 1) / 2, (h - 1) / 2, w, h)
    centre = (TARGET[0] + TARGET[1]) / 2
    frames, ids = [], []
    for k in range(8):
        a = np.deg2rad(200 + 100 * k / 7)
        pos = centre + np.array([1.5 * np.cos(a), 1.5 * np.sin(a), 1.1])
        look = centre - pos
        yaw = np.arctan2(look[1], look[0]) - (0.6 if k == 3 else 0.0)  # key frame turned to the right
        pose = camera_pose(pos, yaw, np.arctan2(-look[2], np.linalg.norm(look[:2])))
        depth, color, inst = render(Kd, pose, [TARGET, NEIGHBOUR])
        frames.append(Frame(k, k / 30.0, color, np.round(depth * 1000) / 1000, Kd, Kd, pose))
        ids.append(inst)
    assert (ids[3] == 1)[:, 0].any()  # the target runs out of the key frame on the left
    scan = write_scannet(tmp_path / "cut", ToyScene(frames))
    with open_scene(scan) as scene:
        result = build_tracker("geometric").track(scene, range(8), 3, gt_box_2d(ids[3]))
        for k in (0, 1, 2, 4, 5, 6, 7):  # views that show all of it (a frustum closed at the border: 0.3-0.8)
            assert _mask_iou(result.mask_at(k).dense(), ids[k] == 1) > 0.9, k
        assert _mask_iou(result.mask_at(3).dense(), ids[3] == 1) > 0.8


# ---------------------------------------------------------------------------------------------- SAM2
sam2 = pytest.importorskip("sam2")


@pytest.fixture(scope="module")
def sam2_tracker():
    from scener1.tracking.sam2_tracker import SAM2Tracker

    # random weights (no checkpoint), tiny config, small input: a CPU run takes seconds
    return SAM2Tracker("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu", image_size=256,
                       min_area_px=0, max_area_share=1.01, min_box_iou=0.0, min_geometry_agreement=0.0)


@pytest.mark.slow
def test_lift_with_sam2_masks_removes_outliers(sam2_tracker, tmp_path):
    """SAM2 masks are not 3D-consistent like the geometric tracker's: lifting through SAM2 runs the statistical +
    DBSCAN cleaning ("auto") and still returns a result (random weights: the masks are arbitrary)."""
    from scener1.lifting import LiftConfig, lift

    scan, ids = object_scan(tmp_path, n=6)
    with open_scene(scan) as scene:
        result = lift(scene, int(scene.frame_ids[2]), gt_box_2d(ids[2]), tracker=sam2_tracker,
                      config=LiftConfig(max_frames=6))
    assert result.trace["tracker"]["tracker"] == "sam2"
    assert not result.trace["tracker"].get("masks_3d_consistent", False)
    if result.status == "ok":
        assert "after_dbscan" in result.trace["fusion"] and result.n_points >= LiftConfig().min_points
    else:
        assert result.status == "no_points" and result.reason


@pytest.mark.slow
def test_sam2_propagates_both_ways_and_answers_every_requested_frame(sam2_tracker, tmp_path):
    scan, ids = object_scan(tmp_path, n=6)
    with open_scene(scan) as scene:
        positions = [0, 1, 2, 4, 5]  # a window with a gap: 3 is not requested
        result = sam2_tracker.track(scene, positions, 2, gt_box_2d(ids[2]))
        assert result.positions == positions and result.tracker == "sam2"
        prop = result.info["propagated"]
        assert prop["forward"] == [2, 4, 5] and prop["backward"] == [2, 1, 0]
        ci = scene.color_intrinsics
        for m in result.masks:
            assert m.shape == (ci.height, ci.width) and m.frame_index == scene.frame_ids[m.position]
        # a second query on the same predictor starts from a clean state (reset_state between queries)
        again = sam2_tracker.track(scene, positions, 2, gt_box_2d(ids[2]))
        for a, b in zip(result.masks, again.masks):
            np.testing.assert_array_equal(a.dense(), b.dense())
        budget = type(sam2_tracker)(device="cpu", image_size=256, max_frames=3).track(scene, positions, 2, gt_box_2d(ids[2]))
        assert budget.positions == positions and budget.info["window_frames"] == 3
        assert sum(m.note == "over the frame budget" for m in budget.masks) == 2


def test_sam2_filter_drops_lost_object_masks(tmp_path):
    from scener1.tracking.sam2_tracker import SAM2Tracker

    scan, ids = object_scan(tmp_path, n=4)
    tracker = SAM2Tracker(device="cpu")  # the filter needs no model
    with open_scene(scan) as scene:
        ci = scene.color_intrinsics
        box = check_box(gt_box_2d(ids[1]), ci.width, ci.height)

        def logits(mask):
            return np.where(mask, 5.0, -5.0).astype(np.float32)

        whole = np.ones((ci.height, ci.width), bool)
        wrong_place = np.zeros_like(whole)
        wrong_place[:20, :20] = True  # the object projects elsewhere in frame 3
        good = {0: logits(ids[0] == 1), 1: logits(ids[1] == 1), 2: logits(whole), 3: logits(wrong_place)}
        masks, info = tracker._filter(scene, [0, 1, 2, 3], [0, 1, 2, 3], 1, box, good)
        assert not masks[0].empty and not masks[1].empty
        assert masks[2].empty and "covers the image" in masks[2].note
        assert masks[3].empty and "geometry" in masks[3].note
        # a key-frame mask far from the prompt box rejects the whole track
        bad_key = dict(good)
        bad_key[1] = logits(wrong_place)
        masks, _ = tracker._filter(scene, [0, 1, 2, 3], [0, 1, 2, 3], 1, box, bad_key)
        assert all(m.empty for m in masks) and "prompt box" in masks[1].note


def test_sam2_bad_configuration_gets_clear_errors(tmp_path):
    from scener1.tracking.sam2_tracker import SAM2Tracker

    with pytest.raises(ConfigError, match="unknown SAM2 config"):
        SAM2Tracker("configs/sam2.1/nope.yaml", device="cpu")
    with pytest.raises(ConfigError, match="inside the sam2 package"):
        SAM2Tracker("../../etc/passwd", device="cpu")
    with pytest.raises(ConfigError, match="checkpoint not found"):
        SAM2Tracker(checkpoint=tmp_path / "missing.pt", device="cpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ScenerError, match="cannot load SAM2 checkpoint"):
        SAM2Tracker(checkpoint=bad, device="cpu", image_size=256).predictor


def test_floor_residue_goes_but_the_feet_of_what_stands_on_the_floor_stay():
    """A real scan leaves a few centimetres of floor after plane removal (registration error between frames);
    that layer would join every object standing on it. Voxels low over the floor with nothing above them go;
    a leg's foot, with the leg above it, stays; so does anything higher up."""
    grid = _Grid(np.zeros(3, np.float32), 0.02, (50, 50, 60))
    occ = np.zeros(grid.dims, bool)
    occ[:, :, 1:3] = True  # a layer 2-6 cm above the floor (z = 0)
    occ[10, 10, 1:40] = True  # a leg: from the floor up to 0.8 m
    occ[30:35, 30:35, 20:22] = True  # a seat at 0.4 m, floating in the grid
    floor = (np.array([0.0, 0.0, 1.0]), 0.0)
    gone = _floor_residue(occ.reshape(-1), grid, floor, GeometricConfig())
    left = occ.reshape(-1).copy()
    left[gone] = False
    left = left.reshape(grid.dims)
    assert left[10, 10, 1:40].all()  # the whole leg, foot included
    assert left[30:35, 30:35, 20:22].all()  # the seat
    assert left[:, :, 1:3].sum() == 2  # of the layer only the leg's foot is left
    # a low block (a step, a pile of books) taller than the slab is not floor either
    occ[40:45, 40:45, 1:8] = True
    kept = np.ones(occ.size, bool)
    kept[_floor_residue(occ.reshape(-1), grid, floor, GeometricConfig())] = False
    assert kept.reshape(grid.dims)[40:45, 40:45, 1:8].all()
