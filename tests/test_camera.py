import numpy as np
import pytest
from helpers import ROOM, camera_pose, distance_to_room, render

from scener1.data.camera import back_project, color_mask_to_depth, in_image, project, sample_colors, visible
from scener1.data.sampling import sample_frames
from scener1.errors import ConfigError
from scener1.types import Intrinsics

K = Intrinsics(50.0, 52.0, 31.5, 23.5, 64, 48)


def test_back_project_lands_on_the_room_walls():
    pose = camera_pose([1.0, 1.0, 1.2], yaw=0.7, pitch=0.3)
    depth, _, _ = render(K, pose)
    pts = back_project(depth, K, pose)
    assert pts.shape == (64 * 48, 3)
    assert distance_to_room(pts).max() < 1e-4
    assert (pts >= -1e-4).all() and (pts <= ROOM + 1e-4).all()


def test_project_inverts_back_project():
    pose = camera_pose([2.0, 1.0, 1.5], yaw=-1.0)
    depth, _, _ = render(K, pose)
    pts, rows, cols = back_project(depth, K, pose, return_pixels=True)
    uv, z = project(pts, K, pose)
    np.testing.assert_allclose(uv[:, 0], cols, atol=1e-3)
    np.testing.assert_allclose(uv[:, 1], rows, atol=1e-3)
    np.testing.assert_allclose(z, depth[rows, cols], rtol=1e-5)


def test_back_project_respects_mask_and_depth_range():
    depth = np.full((48, 64), 2.0, np.float32)
    depth[:, :10] = 0.0  # invalid
    depth[:, 10:20] = 5.0  # beyond max_depth
    mask = np.zeros((48, 64), bool)
    mask[:24] = True
    pts, rows, cols = back_project(depth, K, mask=mask, max_depth=4.0, return_pixels=True)
    assert len(pts) == 24 * 44
    assert rows.max() < 24 and cols.min() >= 20
    np.testing.assert_allclose(pts[:, 2], 2.0)
    with pytest.raises(ValueError):
        back_project(depth, K, mask=np.ones((10, 10), bool))


def test_visible_rejects_occluded_and_out_of_view_points():
    pose = camera_pose([2.0, 1.5, 1.2], yaw=0.0)  # looks along +x at the wall x = 4
    depth, _, _ = render(K, pose)
    on_wall = np.array([[4.0, 1.5, 1.2]])
    occluded = np.array([[4.5, 1.5, 1.2]])  # behind the wall
    floating = np.array([[3.0, 1.5, 1.2]])  # in front of the wall: measured depth is larger
    behind = np.array([[0.5, 1.5, 1.2]])  # behind the camera
    result = visible(np.concatenate([on_wall, occluded, floating, behind]), depth, K, pose)
    assert result.tolist() == [True, False, False, False]


def test_in_image_uses_pixel_centres():
    uv = np.array([[-0.5, 0.0], [-0.51, 0.0], [63.49, 47.49], [63.5, 0.0]])
    assert in_image(uv, 64, 48).tolist() == [True, False, True, False]


def test_color_mask_to_depth_follows_the_viewing_ray():
    # colour at twice the depth resolution *and* a different principal point, like ScanNet's cameras
    Kc = Intrinsics(100.0, 104.0, 70.0, 45.0, 130, 100)
    mask = np.zeros((100, 130), bool)
    mask[40:60, 60:90] = True
    out = color_mask_to_depth(mask, Kc, K)
    assert out.shape == (48, 64)
    rows, cols = np.nonzero(out)
    # each depth pixel inside maps to a colour pixel inside the original mask
    cu = np.rint((cols - K.cx) / K.fx * Kc.fx + Kc.cx).astype(int)
    cv = np.rint((rows - K.cy) / K.fy * Kc.fy + Kc.cy).astype(int)
    assert mask[cv, cu].all()
    assert 0.8 * (20 * 30 / 4) < out.sum() < 1.2 * (20 * 30 / 4)


def test_sample_colors_reads_the_colour_image_on_the_same_ray():
    Kc = K.scaled(128, 96)
    pose = camera_pose([2.0, 1.5, 1.2], yaw=0.4)
    depth, _, _ = render(K, pose)
    _, color, _ = render(Kc, pose)
    pts = back_project(depth, K)
    cols = sample_colors(color, Kc, pts)
    _, color_lo, _ = render(K, pose)
    agree = (cols == color_lo.reshape(-1, 3)).all(1).mean()
    assert agree > 0.9  # only checker edges may differ between the two resolutions


def test_intrinsics_scaled_keeps_pixel_centres():
    Kd = Intrinsics(577.87, 577.87, 319.5, 239.5, 640, 480)
    Kc = Kd.scaled(1280, 960)
    assert Kc.cx == pytest.approx(639.5) and Kc.fx == pytest.approx(2 * 577.87)
    back = Kc.scaled(640, 480)
    assert (back.fx, back.cx, back.cy) == pytest.approx((Kd.fx, Kd.cx, Kd.cy))


def test_sample_frames_by_validity_stride_rate_and_budget():
    t = np.arange(100) / 30.0
    valid = np.ones(100, bool)
    valid[[3, 4]] = False
    assert 3 not in sample_frames(t, valid)
    assert sample_frames(t, stride=10).tolist() == list(range(0, 100, 10))
    at_2fps = sample_frames(t, fps=2.0)
    assert np.all(np.diff(t[at_2fps]) >= 0.5 - 1e-9) and len(at_2fps) == 7
    capped = sample_frames(t, max_frames=5)
    assert capped.tolist() == [0, 25, 50, 74, 99]
    assert len(sample_frames(t, valid, stride=2, fps=5.0, max_frames=4)) == 4
    with pytest.raises(ConfigError):
        sample_frames(t, stride=0)
