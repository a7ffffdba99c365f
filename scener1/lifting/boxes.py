"""3D boxes of point sets: axis-aligned (what ScanRefer scores), oriented, and their IoU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..eval.boxes import aabb_iou as _iou_of_arrays  # the metric the benchmarks score with


@dataclass(frozen=True)
class Box3D:
    """A 3D box in metres: ``center`` and edge lengths ``size`` along the box axes.

    ``rotation`` (3x3, columns = the box axes in the world frame) is ``None`` for an axis-aligned box.
    """

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...] | None = None

    @classmethod
    def from_min_max(cls, lo: np.ndarray, hi: np.ndarray) -> "Box3D":
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        return cls(tuple(map(float, (lo + hi) / 2)), tuple(map(float, hi - lo)))

    @classmethod
    def from_array(cls, values) -> "Box3D":
        """From ``[cx, cy, cz, dx, dy, dz]`` (ScanRefer / mmdet3d box rows)."""
        v = np.asarray(values, np.float64).reshape(-1)
        return cls(tuple(map(float, v[:3])), tuple(map(float, v[3:6])))

    @property
    def min(self) -> np.ndarray:
        return np.asarray(self.center) - np.asarray(self.size) / 2

    @property
    def max(self) -> np.ndarray:
        return np.asarray(self.center) + np.asarray(self.size) / 2

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    @property
    def axis_aligned(self) -> bool:
        return self.rotation is None

    def corners(self) -> np.ndarray:
        """(8, 3) corner points in the world frame."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
        local = signs * np.asarray(self.size) / 2
        R = np.eye(3) if self.rotation is None else np.asarray(self.rotation)
        return local @ R.T + np.asarray(self.center)

    def transformed(self, T: np.ndarray) -> "Box3D":
        """The box under a rigid 4x4 transform (an axis-aligned box becomes oriented unless T is a shift)."""
        T = np.asarray(T, np.float64)
        R = np.eye(3) if self.rotation is None else np.asarray(self.rotation)
        center = T[:3, :3] @ np.asarray(self.center) + T[:3, 3]
        newR = T[:3, :3] @ R
        rot = None if np.allclose(newR, np.eye(3), atol=1e-9) else tuple(map(tuple, newR.tolist()))
        return Box3D(tuple(map(float, center)), self.size, rot)

    def to_dict(self, digits: int = 4) -> dict:
        out = {"center": [round(c, digits) for c in self.center], "size": [round(s, digits) for s in self.size]}
        if self.rotation is not None:
            out["rotation"] = [[round(v, 6) for v in row] for row in self.rotation]
        return out


def aabb_of_points(points: np.ndarray, trim: float = 0.0) -> Box3D:
    """Axis-aligned box of (N, 3) points; ``trim`` drops that share of points at each end of each axis."""
    pts = np.asarray(points, np.float64)
    if len(pts) == 0:
        raise ValueError("no points")
    if trim > 0:
        lo, hi = np.quantile(pts, [trim, 1 - trim], axis=0)
    else:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
    return Box3D.from_min_max(lo, hi)


def obb_of_points(points: np.ndarray) -> Box3D:
    """Minimal-volume oriented box (Open3D, on the convex hull); the AABB when the points are degenerate."""
    pts = np.asarray(points, np.float64)
    if len(pts) < 4:
        return aabb_of_points(pts)
    import open3d as o3d  # lazy

    vec = o3d.utility.Vector3dVector(pts)
    try:
        # Open3D warns on stdout about nearly flat inputs; the AABB fallback below covers them
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            obb = o3d.geometry.OrientedBoundingBox.create_from_points_minimal(vec, robust=True)
    except RuntimeError:  # coplanar / collinear points: qhull gives up
        return aabb_of_points(pts)
    if not np.isfinite(np.asarray(obb.extent)).all():
        return aabb_of_points(pts)
    R = np.asarray(obb.R, np.float64)
    if np.linalg.det(R) < 0:  # keep a right-handed frame
        R[:, 2] *= -1
    return Box3D(tuple(map(float, obb.center)), tuple(map(float, obb.extent)), tuple(map(tuple, R.tolist())))


def aabb_iou(a: Box3D, b: Box3D) -> float:
    """3D IoU of two axis-aligned boxes (the ScanRefer Acc@k measure)."""
    if not (a.axis_aligned and b.axis_aligned):
        raise ValueError("aabb_iou needs axis-aligned boxes")
    return float(_iou_of_arrays(np.concatenate([a.min, a.max]), np.concatenate([b.min, b.max])))
