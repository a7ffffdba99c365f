"""From per-frame object masks to one cleaned 3D point set and its boxes.

Masks (colour resolution) are carried to the depth image along viewing rays, eroded to drop the mixed
depth pixels along object borders, back-projected within a depth validity range and moved to the world
frame. Work per frame is vectorised over pixels and only the masked points are kept, so memory is the
fused points plus one frame, however many frames are fused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..data.camera import color_mask_to_depth
from ..types import Frame, Intrinsics, PointCloud
from .boxes import Box3D, aabb_of_points, obb_of_points


@dataclass(frozen=True)
class FrameFusionStats:
    """What one frame contributed (for the trace)."""

    frame_index: int
    mask_pixels: int  # mask area on the depth image, before erosion
    eroded_pixels: int  # after erosion
    points: int  # mask pixels with depth inside the validity range
    median_depth: float | None  # metres, over those points
    erosion_px: int  # erosion radius actually applied (smaller masks are eroded less)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if d["median_depth"] is not None:
            d["median_depth"] = round(d["median_depth"], 4)
        return d


@dataclass(frozen=True, eq=False)
class FusedPoints:
    """Fused object points (world frame) with, per point, the frame it came from."""

    cloud: PointCloud
    source: np.ndarray  # (N,) int32 frame index (source name) of each point
    frames: tuple[FrameFusionStats, ...]


@lru_cache(maxsize=8)
def pixel_rays(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ``x/z`` and ``y/z`` of the viewing rays, (h, w) float32 each (cached per camera)."""
    K = intrinsics
    rx = ((np.arange(K.width, dtype=np.float64) - K.cx) / K.fx).astype(np.float32)
    ry = ((np.arange(K.height, dtype=np.float64) - K.cy) / K.fy).astype(np.float32)
    # materialised (not broadcast views) so that ravel().take() reads them without a copy
    rx_img = np.ascontiguousarray(np.broadcast_to(rx[None, :], (K.height, K.width)))
    ry_img = np.ascontiguousarray(np.broadcast_to(ry[:, None], (K.height, K.width)))
    rx_img.setflags(write=False)
    ry_img.setflags(write=False)
    return rx_img, ry_img


def erode_mask(mask: np.ndarray, radius: int, min_keep: float = 0.3) -> tuple[np.ndarray, int]:
    """Erode with a ``(2r+1)`` square, shrinking ``r`` while erosion would keep less than ``min_keep`` of
    the mask (thin or small objects would vanish). Returns the mask and the radius applied."""
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0 or not mask.any():
        return mask, 0
    import cv2  # lazy

    area = int(mask.sum())
    src = mask.view(np.uint8)
    for r in range(int(radius), 0, -1):
        eroded = cv2.erode(src, np.ones((2 * r + 1, 2 * r + 1), np.uint8), borderType=cv2.BORDER_REPLICATE).astype(bool)
        if eroded.sum() >= min_keep * area:
            return eroded, r
    return mask, 0


def to_depth_mask(mask: np.ndarray, frame: Frame) -> np.ndarray:
    """A mask on the frame's colour image (or already on its depth image) as a depth-image mask."""
    ci, di = frame.color_intrinsics, frame.depth_intrinsics
    if mask.shape == (ci.height, ci.width):
        return color_mask_to_depth(mask, ci, di)
    if mask.shape == (di.height, di.width):
        return np.asarray(mask, dtype=bool)
    raise ValueError(
        f"frame {frame.index}: mask is {mask.shape[1]}x{mask.shape[0]}, expected the colour image "
        f"{ci.width}x{ci.height} or the depth image {di.width}x{di.height}"
    )


def masked_points(
    depth: np.ndarray,
    mask: np.ndarray,
    intrinsics: Intrinsics,
    pose: np.ndarray | None = None,
    min_depth: float = 0.1,
    max_depth: float = 3.0,
) -> np.ndarray:
    """(N, 3) float32 points of the depth pixels under ``mask`` (depth resolution) within the range;
    world frame with ``pose``, else camera frame."""
    # restrict the per-pixel work to the rows/columns the mask touches
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return np.empty((0, 3), np.float32)
    cols = np.flatnonzero(mask.any(axis=0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    d = depth[sl]
    sel = mask[sl] & (d > min_depth) & (d < max_depth)  # NaN compares False: dropped
    z = d[sel].astype(np.float32, copy=False)
    rx, ry = pixel_rays(intrinsics)
    pts = np.empty((len(z), 3), np.float32)
    pts[:, 0] = rx[sl][sel] * z
    pts[:, 1] = ry[sl][sel] * z
    pts[:, 2] = z
    if pose is not None:
        R = np.asarray(pose[:3, :3], np.float32)
        t = np.asarray(pose[:3, 3], np.float32)
        pts = pts @ R.T + t
    return pts


@lru_cache(maxsize=8)
def _depth_to_color_lookup(color: Intrinsics, depth: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Colour-image row of each depth row and column of each depth column along the same viewing ray
    (what projecting a back-projected point into the registered colour camera gives), clipped."""
    u = np.arange(depth.width, dtype=np.float64)
    v = np.arange(depth.height, dtype=np.float64)
    cu = np.clip(np.rint((u - depth.cx) / depth.fx * color.fx + color.cx), 0, color.width - 1).astype(np.intp)
    cv = np.clip(np.rint((v - depth.cy) / depth.fy * color.fy + color.cy), 0, color.height - 1).astype(np.intp)
    return cv, cu


class _Growable:
    """An (N, k) array grown in place frame after frame (``ndarray.resize`` reallocates, which large
    allocations do by remapping pages, not copying), so fusing never holds two copies of the points."""

    def __init__(self, k: int, dtype):
        self.data = np.empty((0, k), dtype)
        self.n = 0

    def extend(self, count: int) -> np.ndarray:
        """Room for ``count`` more rows; returns the view to fill."""
        self.data.resize((self.n + count, self.data.shape[1]), refcheck=False)
        view = self.data[self.n : self.n + count]
        self.n += count
        return view


def fuse_masked_frames(
    items: Iterable[tuple[Frame, np.ndarray]],
    min_depth: float = 0.1,
    max_depth: float = 3.0,
    erosion_px: int = 2,
    colors: bool = True,
) -> FusedPoints:
    """Back-project the masked depth of each (frame, mask) pair into the world frame and concatenate.

    ``mask`` is a bool image on the frame's colour image (or its depth image). Frames with an invalid
    pose or an empty mask contribute nothing but still get a stats row. Per frame the work is a few
    vectorised passes over the mask's bounding box; points are written straight into the output.
    """
    pts_out = _Growable(3, np.float32)
    col_out = _Growable(3, np.uint8)
    src_out = _Growable(1, np.int32)
    stats: list[FrameFusionStats] = []
    for frame, mask in items:
        dmask = to_depth_mask(mask, frame)
        if not frame.pose_valid or not dmask.any():
            stats.append(FrameFusionStats(frame.index, int(dmask.sum()), 0, 0, None, 0))
            continue
        n_mask = int(np.count_nonzero(dmask))
        eroded, r = erode_mask(dmask, erosion_px)
        depth = frame.depth
        di = frame.depth_intrinsics
        # flat indices over the rows the mask spans (a contiguous slice of the flattened image):
        # 1-D takes are much cheaper than 2-D fancy indexing
        rows = np.flatnonzero(eroded.any(axis=1))
        if len(rows):
            lo, hi = rows[0] * di.width, (rows[-1] + 1) * di.width
            d_flat = depth.ravel()[lo:hi]
            idx = np.flatnonzero(eroded.ravel()[lo:hi] & (d_flat > min_depth) & (d_flat < max_depth))
            z = d_flat.take(idx).astype(np.float32, copy=False)
            idx += lo
        else:
            idx, z = np.empty(0, np.intp), np.empty(0, np.float32)
        n = len(idx)
        med = float(np.median(z[:: max(n // 2000, 1)])) if n else None  # a trace statistic: a sample will do
        stats.append(FrameFusionStats(frame.index, n_mask, int(np.count_nonzero(eroded)), n, med, r))
        if n == 0:
            continue
        rx, ry = pixel_rays(di)
        cam = np.empty((3, n), np.float32)
        np.multiply(rx.ravel().take(idx), z, out=cam[0])
        np.multiply(ry.ravel().take(idx), z, out=cam[1])
        cam[2] = z
        out = pts_out.extend(n)
        # (n, 3) = cam.T @ R.T straight into the output rows (BLAS reads the transposes without copies)
        np.matmul(cam.T, np.asarray(frame.pose[:3, :3], np.float32).T, out=out)
        out += np.asarray(frame.pose[:3, 3], np.float32)
        if colors:
            ci = frame.color_intrinsics
            flat_color = frame.color.reshape(-1, 3)
            if ci == di:
                col_out.extend(n)[:] = flat_color.take(idx, axis=0)
            else:
                crow, ccol = _depth_to_color_lookup(ci, di)
                v, u = np.divmod(idx, di.width)
                col_out.extend(n)[:] = flat_color.take(crow.take(v) * ci.width + ccol.take(u), axis=0)
        src_out.extend(n)[:, 0] = frame.index
    pts = pts_out.data
    cols_arr = col_out.data if colors else np.zeros((len(pts), 3), np.uint8)
    return FusedPoints(PointCloud(pts, cols_arr), src_out.data[:, 0], tuple(stats))


def clean_points(
    cloud: PointCloud,
    voxel_size: float = 0.01,
    statistical: tuple[int, float] | None = (20, 2.0),
    dbscan_eps: float | None = 0.05,
    dbscan_min_points: int = 10,
    keep_cluster_ratio: float = 0.0,
) -> tuple[PointCloud, dict[str, Any]]:
    """Down-sample and remove outliers with Open3D.

    Steps (each optional): voxel averaging (``voxel_size``), statistical outlier removal
    (``(neighbours, std_ratio)``), then DBSCAN keeping the largest cluster plus any cluster at least
    ``keep_cluster_ratio`` times its size (0 = largest only). Returns the cloud and counts for a trace.
    """
    info: dict[str, Any] = {"input": len(cloud)}
    if len(cloud) == 0:
        return cloud, info
    import open3d as o3d  # lazy

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.points.astype(np.float64)))
    pc.colors = o3d.utility.Vector3dVector(cloud.colors.astype(np.float64) / 255.0)
    if voxel_size > 0:
        pc = pc.voxel_down_sample(voxel_size)
        info["after_voxel"] = len(pc.points)
    if statistical is not None and len(pc.points) > statistical[0]:
        pc, _ = pc.remove_statistical_outlier(nb_neighbors=int(statistical[0]), std_ratio=float(statistical[1]))
        info["after_statistical"] = len(pc.points)
    if dbscan_eps is not None and len(pc.points) > dbscan_min_points:
        labels = np.asarray(pc.cluster_dbscan(eps=float(dbscan_eps), min_points=int(dbscan_min_points)))
        counts = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, np.int64)
        if len(counts):
            floor = keep_cluster_ratio * counts.max() if keep_cluster_ratio > 0 else counts.max()
            keep_ids = np.flatnonzero(counts >= floor)
            pc = pc.select_by_index(np.flatnonzero(np.isin(labels, keep_ids)).tolist())
            info["clusters"] = int(len(counts))
        info["after_dbscan"] = len(pc.points)
    out = PointCloud(
        np.asarray(pc.points, dtype=np.float32),
        np.clip(np.rint(np.asarray(pc.colors) * 255.0), 0, 255).astype(np.uint8),
    )
    return out, info


def object_boxes(points: np.ndarray, alignment: np.ndarray | None = None, trim: float = 0.0) -> tuple[Box3D, Box3D]:
    """(axis-aligned box, oriented box) of world points, in the frame ``alignment @ world`` when given."""
    pts = np.asarray(points, np.float64)
    if alignment is not None:
        A = np.asarray(alignment, np.float64)
        pts = pts @ A[:3, :3].T + A[:3, 3]
    return aabb_of_points(pts, trim=trim), obb_of_points(pts)
