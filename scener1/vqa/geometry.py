"""The measurements behind the geometric heads, as pure functions of points (metres) and an up vector.

Definitions follow VSI-Bench's question wording:

- distances are between the *closest points* of the two objects (``closest_distance``), or between centres
  when asked (``centre_distance``); with several instances of a category the closest pair counts;
- an object's size is the longest side of its upright box (gravity-aligned, turned about the vertical to the
  smallest footprint), in centimetres;
- the room's size is the area of its floor footprint: every point of the fused scene between the floor and the
  ceiling, projected on the floor plane, gaps closed and holes filled;
- relative direction puts the viewer at the standing object's centre, facing the facing object's centre, in the
  floor plane: easy = left/right, medium = left/right/back (back when turning at least 135 degrees), hard =
  the quadrant front-left/front-right/back-left/back-right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: turning at least this many degrees to face something puts it "behind" (VSI-Bench's medium direction questions)
BACK_DEGREES = 135.0


def unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, np.float64).reshape(3)
    n = float(np.linalg.norm(v))
    if not math.isfinite(n) or n == 0:
        raise ValueError("zero or non-finite vector")
    return v / n


def rotation_to_z(up: Sequence[float]) -> np.ndarray:
    """A rotation (3x3) taking ``up`` to +z (Rodrigues); identity when ``up`` already is +z."""
    u = unit(up)
    z = np.array([0.0, 0.0, 1.0])
    c = float(u @ z)
    if c > 1 - 1e-12:
        return np.eye(3)
    if c < -1 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])
    axis = np.cross(u, z)
    s = float(np.linalg.norm(axis))
    k = axis / s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def to_upright(points: np.ndarray, up: Sequence[float]) -> np.ndarray:
    """(N, 3) points in a frame whose z is ``up`` (x, y span the floor plane)."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    return pts @ rotation_to_z(up).T


# ---------------------------------------------------------------------------------------------- distances
@dataclass(frozen=True)
class PairDistance:
    distance: float  # metres
    point_a: tuple[float, float, float]
    point_b: tuple[float, float, float]


def closest_distance(a: np.ndarray, b: np.ndarray) -> PairDistance:
    """Distance between the closest points of two point sets (k-d tree, scipy)."""
    from scipy.spatial import cKDTree

    a = np.asarray(a, np.float64).reshape(-1, 3)
    b = np.asarray(b, np.float64).reshape(-1, 3)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("closest_distance needs two non-empty point sets")
    small, big, swapped = (a, b, False) if len(a) <= len(b) else (b, a, True)
    d, idx = cKDTree(big).query(small, k=1)
    i = int(np.argmin(d))
    p, q = small[i], big[int(idx[i])]
    if swapped:
        p, q = q, p
    return PairDistance(float(d[i]), tuple(map(float, p)), tuple(map(float, q)))


def centre_distance(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


# ---------------------------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class UprightBox:
    """A gravity-aligned box: ``size`` = (length, width, height) with length >= width, ``yaw`` in degrees."""

    center: tuple[float, float, float]  # in the upright frame (z = up)
    size: tuple[float, float, float]
    yaw: float

    @property
    def longest(self) -> float:
        return float(max(self.size))


def upright_box(points: np.ndarray, up: Sequence[float] = (0.0, 0.0, 1.0), trim: float = 0.0) -> UprightBox:
    """The smallest-footprint box about the vertical (OpenCV's minimum-area rectangle on the floor plane) and the
    vertical extent. ``trim`` drops that share of points at each end of the height and of the footprint
    (against stray points)."""
    import cv2  # lazy

    pts = to_upright(points, up)
    if len(pts) == 0:
        raise ValueError("no points")
    z = pts[:, 2]
    lo, hi = (np.quantile(z, [trim, 1 - trim]) if trim > 0 else (z.min(), z.max()))
    xy = pts[:, :2]
    if trim > 0 and len(xy) > 20:
        centre = np.median(xy, axis=0)
        r = np.linalg.norm(xy - centre, axis=1)
        xy = xy[r <= np.quantile(r, 1 - trim)]
    if len(xy) < 3:
        (cx, cy), (w, h), ang = (tuple(xy.mean(axis=0)), (0.0, 0.0), 0.0)
    else:
        (cx, cy), (w, h), ang = cv2.minAreaRect(np.ascontiguousarray(xy, dtype=np.float32).reshape(-1, 1, 2))
    length, width = max(w, h), min(w, h)
    if h > w:
        ang += 90.0
    return UprightBox((float(cx), float(cy), float((lo + hi) / 2)), (float(length), float(width), float(hi - lo)),
                      float(ang))


# ---------------------------------------------------------------------------------------------- room size
@dataclass(frozen=True)
class FloorFootprint:
    area: float  # square metres
    floor_height: float  # along up, metres
    cells: int
    cell: float
    points_used: int
    extent: tuple[float, float]  # footprint's bounding rectangle in the floor plane, metres


def floor_footprint(
    points: np.ndarray,
    up: Sequence[float] = (0.0, 0.0, 1.0),
    cell: float = 0.05,
    close_radius: float = 0.3,
    max_height: float = 3.2,
) -> FloorFootprint:
    """Floor area of the room the points were scanned in.

    The floor is the lowest well-populated height (1st percentile of the heights, which a scan that sees the
    floor puts on it). Points from just below the floor to ``max_height`` above it are rasterised on the floor
    plane in ``cell`` squares; gaps up to about ``2 * close_radius`` are closed (morphological closing: floor hidden
    under furniture, sparse wall points), holes are filled, and the largest connected region is the room.
    """
    import cv2  # lazy
    from scipy import ndimage

    pts = to_upright(points, up)
    if len(pts) < 10:
        raise ValueError("too few points for a floor footprint")
    floor = float(np.quantile(pts[:, 2], 0.01))
    keep = (pts[:, 2] >= floor - 0.1) & (pts[:, 2] <= floor + max_height)
    xy = pts[keep, :2]
    r = max(round(close_radius / cell), 1)
    pad = 2 * r + 2  # room for the dilation and the erosion after it (OpenCV does not erode from the border)
    lo = xy.min(axis=0) - pad * cell
    ij = np.floor((xy - lo) / cell).astype(np.int64)
    dims = ij.max(axis=0) + pad + 1
    if dims[0] * dims[1] > 40_000_000:
        raise ValueError("the scene is too large for a floor grid (over 100 m across)")
    grid = np.zeros((int(dims[0]), int(dims[1])), np.uint8)
    grid[ij[:, 0], ij[:, 1]] = 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    closed = cv2.morphologyEx(grid, cv2.MORPH_CLOSE, kernel)
    filled = ndimage.binary_fill_holes(closed.astype(bool))
    labels, n = ndimage.label(filled)
    if n == 0:
        raise ValueError("empty floor grid")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    room = labels == int(np.argmax(sizes))
    rows, cols = np.nonzero(room)
    extent = ((rows.max() - rows.min() + 1) * cell, (cols.max() - cols.min() + 1) * cell)
    count = int(room.sum())
    # a wall point's cell reaches up to one cell beyond the wall: count the region's boundary cells half
    boundary = int((room & ~ndimage.binary_erosion(room)).sum())
    area = (count - 0.5 * boundary) * cell * cell
    return FloorFootprint(area, floor, count, cell, int(keep.sum()), (float(extent[0]), float(extent[1])))


# ---------------------------------------------------------------------------------------------- directions
def direction_angle(standing: Sequence[float], facing: Sequence[float], target: Sequence[float],
                    up: Sequence[float] = (0.0, 0.0, 1.0)) -> float:
    """Degrees from the facing direction (standing -> facing) to the target, in the floor plane; positive = to
    the left (counter-clockwise seen from above), in (-180, 180]."""
    u = unit(up)
    s, f, t = (np.asarray(p, np.float64).reshape(3) for p in (standing, facing, target))
    fwd = (f - s) - ((f - s) @ u) * u
    vec = (t - s) - ((t - s) @ u) * u
    if np.linalg.norm(fwd) < 1e-9 or np.linalg.norm(vec) < 1e-9:
        raise ValueError("the objects coincide in the floor plane; no direction is defined")
    return float(np.degrees(np.arctan2(np.cross(fwd, vec) @ u, fwd @ vec)))


def direction_label(angle: float, level: str) -> str:
    """The answer word for a direction ``angle`` (degrees, left positive) at ``level`` easy/medium/hard."""
    side = "left" if angle > 0 else "right"
    if level == "easy":
        return side
    if level == "medium":
        return "back" if abs(angle) >= BACK_DEGREES else side
    if level == "hard":
        return ("front-" if abs(angle) < 90 else "back-") + side
    raise ValueError(f"unknown direction level {level!r}")


def turn_label(angle: float) -> str:
    """Route planning: the turn that faces a direction ``angle`` degrees away (left positive)."""
    if abs(angle) >= BACK_DEGREES:
        return "turn back"
    return "turn left" if angle > 0 else "turn right"
