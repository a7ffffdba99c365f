"""The measurements behind the geometric heads (scener1.vqa.geometry), on point sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from scener1.vqa import geometry as geo


def box_points(center, size, yaw_deg=0.0, n=4000, seed=0):
    """Points on the surface of a box turned by ``yaw_deg`` about z."""
    rng = np.random.default_rng(seed)
    size = np.asarray(size, float)
    pts = rng.uniform(-0.5, 0.5, (n, 3)) * size
    axis = rng.integers(0, 3, n)
    pts[np.arange(n), axis] = np.sign(rng.uniform(-1, 1, n)) * size[axis] / 2  # onto a face
    a = np.radians(yaw_deg)
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return pts @ R.T + np.asarray(center, float)


def test_closest_distance_matches_brute_force():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (300, 3)), rng.normal(3, 1, (200, 3))
    d = geo.closest_distance(a, b)
    brute = np.linalg.norm(a[:, None] - b[None], axis=2)
    assert d.distance == pytest.approx(brute.min())
    i, j = np.unravel_index(brute.argmin(), brute.shape)
    assert np.allclose(d.point_a, a[i]) and np.allclose(d.point_b, b[j])
    assert geo.closest_distance(b, a).distance == pytest.approx(brute.min())  # argument order does not matter
    with pytest.raises(ValueError):
        geo.closest_distance(a[:0], b)


def test_upright_box_recovers_a_turned_box_and_its_longest_side():
    pts = box_points((1, 2, 0.4), (1.2, 0.5, 0.8), yaw_deg=33)
    box = geo.upright_box(pts)
    assert box.size == pytest.approx((1.2, 0.5, 0.8), abs=0.02)
    assert box.longest == pytest.approx(1.2, abs=0.02)
    assert box.center == pytest.approx((1, 2, 0.4), abs=0.02)
    # the axis-aligned box of the same points is larger: the upright box is what "longest side" means
    extent = pts.max(0) - pts.min(0)
    assert extent[0] > 1.2


def test_upright_box_with_another_up_axis():
    pts = box_points((0, 0, 0), (0.3, 0.4, 1.5))  # tall along z
    turned = pts[:, [0, 2, 1]] * np.array([1, -1, 1])  # y is now up-down (-y up, like a camera)
    box = geo.upright_box(turned, up=(0, -1, 0))
    assert box.size[2] == pytest.approx(1.5, abs=0.02)  # height along the given up vector
    assert box.longest == pytest.approx(1.5, abs=0.02)


def room_points(rects, height=2.5, step=0.04, seed=0):
    """Floor, walls and ceiling samples of a room made of axis-aligned floor rectangles (an L when two)."""
    rng = np.random.default_rng(seed)
    pts = []
    for x0, y0, x1, y1 in rects:
        xs, ys = np.meshgrid(np.arange(x0, x1, step), np.arange(y0, y1, step))
        floor = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], 1)
        pts += [floor, floor + [0, 0, height]]
    inside = lambda p: any(x0 - 1e-6 <= p[0] <= x1 + 1e-6 and y0 - 1e-6 <= p[1] <= y1 + 1e-6 for x0, y0, x1, y1 in rects)
    walls = []
    for x0, y0, x1, y1 in rects:  # rectangle outlines, keeping only the parts on the union's boundary
        for t in np.arange(0, 1, step / max(x1 - x0, y1 - y0)):
            for p in ((x0 + t * (x1 - x0), y0), (x0 + t * (x1 - x0), y1), (x0, y0 + t * (y1 - y0)), (x1, y0 + t * (y1 - y0))):
                probe = [np.array(p) + d for d in ((0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05))]
                if not all(inside(q) for q in probe):
                    for z in np.arange(0, height, 0.1):
                        walls.append((p[0], p[1], z))
    pts.append(np.array(walls))
    cloud = np.concatenate(pts)
    holes = rng.random(len(cloud)) < 0.3  # a real scan misses parts of every surface
    return cloud[~holes]


def test_floor_footprint_of_rectangular_and_l_shaped_rooms():
    rect = geo.floor_footprint(room_points([(0, 0, 5, 4)]))
    assert rect.area == pytest.approx(20.0, rel=0.05)
    assert rect.floor_height == pytest.approx(0.0, abs=0.02)
    ell = geo.floor_footprint(room_points([(0, 0, 6, 3), (0, 3, 3, 6)]))
    assert ell.area == pytest.approx(18 + 9, rel=0.05)  # not the 36 of its bounding rectangle or hull
    # furniture on the floor hides it; the footprint closes over it
    cloud = room_points([(0, 0, 5, 4)])
    under_table = (cloud[:, 2] < 0.01) & (np.abs(cloud[:, 0] - 2.5) < 0.4) & (np.abs(cloud[:, 1] - 2) < 0.3)
    assert geo.floor_footprint(cloud[~under_table]).area == pytest.approx(20.0, rel=0.05)


def test_floor_footprint_in_a_frame_with_another_up_axis():
    cloud = room_points([(0, 0, 4, 3)])
    turned = cloud[:, [0, 2, 1]] * np.array([1, -1, 1])
    assert geo.floor_footprint(turned, up=(0, -1, 0)).area == pytest.approx(12.0, rel=0.05)


@pytest.mark.parametrize("target, angle, easy, medium, hard", [
    ((0, 5, 0), 0.0, "right", "right", "front-right"),  # dead ahead: x >= 0 counts as right, as in the benchmark
    ((-3, 3, 0), 45.0, "left", "left", "front-left"),
    ((3, 3, 0), -45.0, "right", "right", "front-right"),
    ((-3, -1, 0), 108.43, "left", "left", "back-left"),
    ((-1, -3, 0), 161.57, "left", "back", "back-left"),
    ((3, -3, 0), -135.0, "right", "back", "back-right"),
])
def test_direction_angles_and_labels(target, angle, easy, medium, hard):
    a = geo.direction_angle((0, 0, 0), (0, 4, 0), target)  # standing at the origin facing +y, z up
    assert a == pytest.approx(angle, abs=0.01)
    assert geo.direction_label(a, "easy") == easy
    assert geo.direction_label(a, "medium") == medium
    assert geo.direction_label(a, "hard") == hard


def test_direction_ignores_heights_and_rejects_coincident_objects():
    assert geo.direction_angle((0, 0, 0), (0, 4, 2), (-3, 3, -1)) == pytest.approx(45.0)
    with pytest.raises(ValueError):
        geo.direction_angle((0, 0, 0), (0, 0, 2), (1, 1, 0))
    with pytest.raises(ValueError):
        geo.direction_label(10.0, "extreme")


def test_turn_labels():
    assert geo.turn_label(90) == "turn left" and geo.turn_label(-60) == "turn right"
    assert geo.turn_label(150) == "turn back" and geo.turn_label(-170) == "turn back"


def test_rotation_to_z_maps_up_to_z():
    for up in ((0, 0, 1), (0, -1, 0), (1, 1, 1), (0, 0, -1)):
        R = geo.rotation_to_z(up)
        assert np.allclose(R @ geo.unit(up), (0, 0, 1))
        assert np.allclose(R @ R.T, np.eye(3)) and np.linalg.det(R) == pytest.approx(1.0)
