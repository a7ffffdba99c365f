"""Projector (masked fusion, erosion, cleaning, boxes), the lift stage and the ``scener1 lift`` command."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from helpers import NEIGHBOUR, TARGET, gt_box_2d, make_frames, object_scan

from scener1.data import open_scene
from scener1.data.camera import back_project, color_mask_to_depth, sample_colors
from scener1.errors import ScenerError
from scener1.lifting import (
    Box3D,
    LiftConfig,
    aabb_iou,
    aabb_of_points,
    clean_points,
    fuse_masked_frames,
    lift,
    obb_of_points,
    read_ply,
)
from scener1.lifting.object_lift import contact_points
from scener1.lifting.projector import denoise_depth, depth_noise, erode_mask
from scener1.types import Frame, PointCloud

TARGET_BOX = Box3D.from_min_max(*TARGET)


# ---------------------------------------------------------------------------------------------- boxes
def test_aabb_iou_values():
    a = Box3D.from_min_max([0, 0, 0], [1, 1, 1])
    assert aabb_iou(a, a) == pytest.approx(1.0)
    assert aabb_iou(a, Box3D.from_min_max([0.5, 0, 0], [1.5, 1, 1])) == pytest.approx(1 / 3)
    assert aabb_iou(a, Box3D.from_min_max([2, 2, 2], [3, 3, 3])) == 0.0
    assert aabb_iou(a, Box3D.from_array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.125)


def test_boxes_of_points():
    rng = np.random.default_rng(0)
    pts = rng.uniform([-1, -0.5, 0], [1, 0.5, 0.3], (5000, 3))
    box = aabb_of_points(pts)
    np.testing.assert_allclose(box.size, [2, 1, 0.3], atol=0.01)
    trimmed = aabb_of_points(np.vstack([pts, [[50, 0, 0]]]), trim=0.01)
    assert trimmed.size[0] < 2.1  # one far outlier does not stretch a trimmed box
    # a rotated slab: the oriented box finds its true extents, the axis-aligned one cannot
    c, s = np.cos(0.5), np.sin(0.5)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    obb = obb_of_points(pts @ R.T)
    assert sorted(obb.size) == pytest.approx([0.3, 1, 2], abs=0.03)
    assert np.prod(aabb_of_points(pts @ R.T).size) > 1.3 * np.prod(obb.size)
    # a shifted box keeps its size; corners span it
    moved = box.transformed(np.array([[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1.0]]))
    assert moved.axis_aligned and moved.size == box.size
    np.testing.assert_allclose(moved.corners().min(0), box.min + [1, 2, 3])


# ---------------------------------------------------------------------------------------------- projector
def test_fuse_masked_frames_matches_per_frame_back_projection():
    toy = make_frames(4, depth_size=(64, 48), color_scale=2)
    rng = np.random.default_rng(1)
    items, want_pts, want_cols = [], [], []
    for f in toy.frames:
        # shift the colour camera off the exact 2:1 grid so that no ray lands on a colour pixel border
        # (where two equally right roundings differ)
        ci = f.color_intrinsics
        f = Frame(f.index, f.timestamp, f.color, f.depth,
                  type(ci)(ci.fx, ci.fy, ci.cx + 0.3, ci.cy + 0.2, ci.width, ci.height), f.depth_intrinsics, f.pose)
        cmask = rng.random((96, 128)) < 0.4
        items.append((f, cmask))
        dmask = color_mask_to_depth(cmask, f.color_intrinsics, f.depth_intrinsics)
        cam = back_project(f.depth, f.depth_intrinsics, mask=dmask, min_depth=0.1, max_depth=3.0)
        want_cols.append(sample_colors(f.color, f.color_intrinsics, cam))
        want_pts.append(back_project(f.depth, f.depth_intrinsics, f.pose, mask=dmask, min_depth=0.1, max_depth=3.0))
    fused = fuse_masked_frames(iter(items), min_depth=0.1, max_depth=3.0, erosion_px=0)
    np.testing.assert_allclose(fused.cloud.points, np.concatenate(want_pts), atol=1e-5)
    np.testing.assert_array_equal(fused.cloud.colors, np.concatenate(want_cols))
    assert [s.points for s in fused.frames] == [len(p) for p in want_pts]
    assert list(np.unique(fused.source)) == [f.index for f in toy.frames]
    # the depth range is applied: nothing beyond max_depth
    near = fuse_masked_frames(iter(items), min_depth=0.1, max_depth=2.0, erosion_px=0)
    assert 0 < len(near.cloud) < len(fused.cloud)


def test_fuse_masked_frames_same_output_for_frames_in_memory_and_streamed():
    toy = make_frames(5, depth_size=(64, 48), color_scale=2)
    rng = np.random.default_rng(3)
    items = [(f, rng.random((96, 128)) < 0.5) for f in toy.frames]
    listed = fuse_masked_frames(items, erosion_px=1)  # a list: its masks bound the output, allocated once
    streamed = fuse_masked_frames(iter(items), erosion_px=1)  # a stream: the output grows frame by frame
    np.testing.assert_array_equal(listed.cloud.points, streamed.cloud.points)
    np.testing.assert_array_equal(listed.cloud.colors, streamed.cloud.colors)
    np.testing.assert_array_equal(listed.source, streamed.source)
    assert listed.frames == streamed.frames and len(listed.cloud) == sum(s.points for s in listed.frames)
    # the buffers are trimmed to the points: nothing left over from the reservation
    assert listed.cloud.points.shape == (len(listed.source), 3) and listed.cloud.points.flags.c_contiguous


def test_depth_noise_estimate_and_denoising():
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(1.0, 3.0, 160, dtype=np.float32), (120, 1))
    assert depth_noise(clean) < 1e-3
    noisy = clean * (1 + 0.01 * rng.standard_normal(clean.shape)).astype(np.float32)
    assert 0.007 < depth_noise(noisy) < 0.013  # sigma = 1% of depth
    filtered, left = denoise_depth(noisy)
    assert np.std(filtered / clean - 1) < 0.5 * np.std(noisy / clean - 1) and left < depth_noise(noisy)
    same, _ = denoise_depth(clean)  # clean depth passes unchanged
    np.testing.assert_array_equal(same, clean)


def test_fuse_masked_frames_skips_invalid_poses_and_empty_masks():
    toy = make_frames(3)
    f0, f1, f2 = toy.frames
    bad = Frame(f1.index, f1.timestamp, f1.color, f1.depth, f1.color_intrinsics, f1.depth_intrinsics,
                np.full((4, 4), np.nan))
    full = np.ones(f0.depth.shape, bool)
    fused = fuse_masked_frames([(f0, full), (bad, full), (f2, np.zeros_like(full))], erosion_px=0)
    assert [s.points for s in fused.frames] == [int((f0.depth > 0.1).sum() - (f0.depth >= 3.0).sum()), 0, 0]
    assert np.isfinite(fused.cloud.points).all()
    with pytest.raises(ValueError, match="expected the colour image"):
        fuse_masked_frames([(f0, np.ones((5, 5), bool))])


def test_erosion_shrinks_masks_but_keeps_thin_parts_and_small_ones():
    m = np.zeros((60, 80), bool)
    m[10:40, 10:50] = True
    eroded, r = erode_mask(m, 2)
    assert r == 2 and eroded.sum() == 26 * 36
    # a three-pixel-wide pole on the block: erosion would erase it outright, so it stays as it is
    pole = m.copy()
    pole[20:23, 50:70] = True
    eroded, r = erode_mask(pole, 2)
    assert r == 2 and eroded.sum() == 26 * 36 + 3 * 20 and eroded[20:23, 50:70].all()
    assert not eroded[10:12].any()  # the block's border still goes
    dot = np.zeros((60, 80), bool)
    dot[5, 5] = True
    eroded, r = erode_mask(dot, 2)
    assert eroded.sum() == 1


def test_clean_points_removes_outliers_and_keeps_largest_cluster():
    rng = np.random.default_rng(0)
    obj = rng.uniform([0, 0, 0], [0.5, 0.4, 0.3], (20000, 3))
    blob = rng.uniform([2, 2, 0], [2.1, 2.1, 0.1], (800, 3))  # a separate, smaller cluster
    stray = rng.uniform(-3, 3, (30, 3))  # isolated points
    cloud = PointCloud(np.vstack([obj, blob, stray]).astype(np.float32), np.zeros((20830, 3), np.uint8))
    cleaned, info = clean_points(cloud, voxel_size=0.01, statistical=(20, 2.0), dbscan_eps=0.05)
    lo, hi = cleaned.points.min(0), cleaned.points.max(0)
    assert (lo > -0.02).all() and (hi < [0.52, 0.42, 0.32]).all()
    assert info["input"] == 20830 and info["clusters"] >= 2
    both, _ = clean_points(cloud, voxel_size=0.01, statistical=None, dbscan_eps=0.05, keep_cluster_ratio=0.02)
    assert both.points.max(0)[0] > 2.0  # a ratio keeps the second cluster too


# ---------------------------------------------------------------------------------------------- lift
def test_lift_recovers_the_object_box(tmp_path):
    scan, ids = object_scan(tmp_path, n=10)
    with open_scene(scan) as scene:
        assert scene.axis_alignment is not None
        key = 4
        result = lift(scene, int(scene.frame_ids[key]), gt_box_2d(ids[key]))
        assert result.status == "ok" and result.coordinate_frame == "axis_aligned"
        # the toy scan's alignment is a shift by (-2, -1.5, 0)
        truth = TARGET_BOX.transformed(scene.axis_alignment)
        assert aabb_iou(result.box_3d, truth) > 0.7
        neighbour = Box3D.from_min_max(*NEIGHBOUR).transformed(scene.axis_alignment)
        assert aabb_iou(result.box_3d, neighbour) == 0.0
        assert len(result.frames_used) >= 8 and result.n_points == len(result.cloud)
        doc = result.to_json()
        assert json.loads(json.dumps(doc)) == doc
        assert set(doc) >= {"status", "box_3d", "obb", "n_points", "frames_used", "trace"}
        assert len(doc["trace"]["fusion"]["per_frame"]) == 10
        # the box stands on the floor: its foot, inside the floor's tolerance band, comes back by contact
        assert result.box_3d.min[2] == pytest.approx(truth.min[2], abs=0.02)
        assert result.trace["tracker"]["masks_3d_consistent"] and "after_dbscan" not in doc["trace"]["fusion"]
        forced = lift(scene, int(scene.frame_ids[key]), gt_box_2d(ids[key]), config=LiftConfig(outlier_removal="always"))
        assert "after_dbscan" in forced.trace["fusion"] and aabb_iou(forced.box_3d, truth) > 0.7


def test_contact_points_drop_the_near_points_onto_the_plane():
    pts = np.array([[0.0, 0.0, 0.03], [1.0, 0.5, 0.05], [0.5, 0.5, 0.9]], np.float32)
    floor = {"normal": [0.0, 0.0, 1.0], "offset": 0.0}
    out = contact_points(pts, [floor], reach=0.06)
    np.testing.assert_allclose(out, [[0, 0, 0], [1, 0.5, 0]], atol=1e-6)  # the high point is not near
    wall = {"normal": [-1.0, 0.0, 0.0], "offset": 1.02}  # the plane x = 1.02, facing -x
    np.testing.assert_allclose(contact_points(pts, [wall], 0.06), [[1.02, 0.5, 0.05]], atol=1e-6)
    assert len(contact_points(pts, [], 0.06)) == 0


def test_lift_with_noisy_depth_and_jittered_box(tmp_path):
    scan, ids = object_scan(tmp_path, n=10, noise=0.01)
    x1, y1, x2, y2 = gt_box_2d(ids[5])
    w, h = x2 - x1, y2 - y1
    jittered = [x1 + 0.08 * w, y1 - 0.06 * h, x2 - 0.05 * w, y2 + 0.07 * h]
    with open_scene(scan) as scene:
        result = lift(scene, 5, jittered)
        assert result.status == "ok"
        assert aabb_iou(result.box_3d, TARGET_BOX.transformed(scene.axis_alignment)) > 0.5


def test_lift_without_depth_reports_no_points(tmp_path):
    scan, ids = object_scan(tmp_path, n=4)
    import cv2

    for k in range(4):  # no valid depth anywhere: every mask is empty of points
        cv2.imwrite(str(scan / "depth" / f"{k}.png"), np.zeros((120, 160), np.uint16))
    with open_scene(scan) as scene:
        result = lift(scene, 1, gt_box_2d(ids[1]))
    assert result.status == "no_points" and "depth" in result.reason
    assert result.box_3d is None and result.n_points == 0
    assert result.to_json()["reason"] == result.reason


def test_lift_rejects_bad_prompts(tmp_path):
    scan, ids = object_scan(tmp_path, n=3)
    with open_scene(scan) as scene:
        with pytest.raises(ScenerError, match="covers no pixel"):
            lift(scene, 0, [400, 10, 500, 50])
        with pytest.raises(ScenerError, match="degenerate"):
            lift(scene, 0, [50, 10, 40, 50])
        with pytest.raises(ScenerError, match="no frame named 7"):
            lift(scene, 7, [10, 10, 50, 50])
    with pytest.raises(ScenerError, match="max_frames"):
        LiftConfig(max_frames=0)
    with pytest.raises(ScenerError, match="outlier_removal"):
        LiftConfig(outlier_removal="sometimes")


# ---------------------------------------------------------------------------------------------- CLI
def _cli(*argv):
    from scener1.lifting import cli

    parser = argparse.ArgumentParser(prog="scener1 lift")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args([str(a) for a in argv]))


def test_cli_lift_writes_result_and_cloud(tmp_path, capsys):
    scan, ids = object_scan(tmp_path, n=8)
    out = tmp_path / "out"
    assert _cli("--scene", scan, "--frame", 3, "--box", *gt_box_2d(ids[3]), "--out", out) == 0
    doc = json.loads((out / "result.json").read_text())
    assert doc["status"] == "ok" and doc["frame"] == 3 and doc["coordinate_frame"] == "axis_aligned"
    box = Box3D(tuple(doc["box_3d"]["center"]), tuple(doc["box_3d"]["size"]))
    with open_scene(scan) as scene:
        assert aabb_iou(box, TARGET_BOX.transformed(scene.axis_alignment)) > 0.7
    cloud = read_ply(out / "object.ply")
    assert len(cloud) == doc["n_points"]
    assert "lifted" in capsys.readouterr().out


def test_cli_lift_bad_inputs(tmp_path):
    scan, ids = object_scan(tmp_path, n=3)
    with pytest.raises(ScenerError, match="covers no pixel"):
        _cli("--scene", scan, "--frame", 0, "--box", 900, 10, 950, 50, "--out", tmp_path / "o")
    with pytest.raises(ScenerError, match="needs --sam2-checkpoint"):
        _cli("--scene", scan, "--frame", 0, "--box", 10, 10, 50, 50, "--tracker", "sam2", "--out", tmp_path / "o")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ScenerError, match="must be a folder"):
        _cli("--scene", scan, "--frame", 0, "--box", 10, 10, 50, 50, "--out", tmp_path / "file")
