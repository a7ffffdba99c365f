"""From per-frame object masks to one cleaned 3D point set and its boxes.

Masks (colour resolution) are carried to the depth image along viewing rays, eroded to drop the mixed
depth pixels along object borders, back-projected within a depth validity range and moved to the world
frame. Work per frame is vectorised over pixels and only the masked points are kept, so memory is the
fused points plus one frame, however many frames are fused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..data.camera import color_mask_to_depth, ray_lookup
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
    """(x/z, y/z) of every pixel's viewing ray as flat (h * w,) float32 arrays, so that a pixel's
    camera-frame point is ``(rx[i] * d, ry[i] * d, d)`` for flat index ``i`` and depth ``d`` (cached per
    camera, read-only; separate contiguous arrays because gathers from strided columns are slow)."""
    K = intrinsics
    rx = ((np.arange(K.width, dtype=np.float64) - K.cx) / K.fx).astype(np.float32)
    ry = ((np.arange(K.height, dtype=np.float64) - K.cy) / K.fy).astype(np.float32)
    rx_flat = np.tile(rx, K.height)
    ry_flat = np.repeat(ry, K.width)
    rx_flat.setflags(write=False)
    ry_flat.setflags(write=False)
    return rx_flat, ry_flat


#: Relative depth noise (sigma / depth) above which depth is median-filtered before use.
NOISY_DEPTH = 0.003


def depth_noise(depth: np.ndarray) -> float:
    """Relative per-pixel depth noise (sigma / depth) from the residual to a 3x3 median; 0 for clean depth
    (rendered, or mm-quantised and smoothed like ScanNet's)."""
    import cv2  # lazy

    d = np.nan_to_num(np.asarray(depth, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    med = cv2.medianBlur(d, 3)
    ok = (d > 0) & (med > 0)
    if np.count_nonzero(ok) < 100:
        return 0.0
    rel = np.abs(d[ok] - med[ok]) / med[ok]
    # for Gaussian noise the median |residual to the 3x3 median| is about 0.58 sigma (measured)
    return float(np.median(rel) / 0.58)


def denoise_depth(depth: np.ndarray, noise: float | None = None) -> tuple[np.ndarray, float]:
    """Depth with per-pixel sensor noise cut: a 5x5 median where the measured noise exceeds
    :data:`NOISY_DEPTH` (it keeps edges and cuts Gaussian noise about 3x; holes stay holes). Returns the
    depth and the relative noise left."""
    import cv2  # lazy

    d = np.nan_to_num(np.asarray(depth, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    noise = depth_noise(d) if noise is None else noise
    if noise <= NOISY_DEPTH:
        return d, noise
    med = cv2.medianBlur(d, 5)
    return np.where((d > 0) & (med > 0), med, np.float32(0.0)), noise * 0.3


def erode_mask(mask: np.ndarray, radius: int, min_keep: float = 0.3) -> tuple[np.ndarray, int]:
    """Erode with a ``(2r+1)`` square to drop the mixed depth along object borders, but keep the parts
    thinner than the square (a lamp's pole, a table's legs), which erosion would erase outright, as they
    are; ``r`` shrinks while less than ``min_keep`` of the mask would be left. Returns the mask and the
    radius applied."""
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0 or not mask.any():
        return mask, 0
    import cv2  # lazy

    area = int(mask.sum())
    src = mask.view(np.uint8)
    for r in range(int(radius), 0, -1):
        kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
        core = cv2.erode(src, kernel, borderType=cv2.BORDER_REPLICATE)
        # what the opening (erode, then dilate) cannot rebuild is thinner than the kernel: keep it
        thin = mask & ~cv2.dilate(core, kernel).astype(bool)
        eroded = core.astype(bool) | thin
        if eroded.sum() >= min_keep * area:
            return eroded, r
    return mask, 0


def to_depth_mask(mask: np.ndarray, frame: Frame) -> np.ndarray:
    """A mask on the frame's colour image (or already on its depth image) as a depth-image mask (read-only use:
    a bool mask already on the depth image is returned as it is, not copied)."""
    ci, di = frame.color_intrinsics, frame.depth_intrinsics
    if mask.shape == (di.height, di.width) and (ci == di or mask.shape != (ci.height, ci.width)):
        return np.asarray(mask, dtype=bool)
    if mask.shape == (ci.height, ci.width):
        return color_mask_to_depth(mask, ci, di)
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
    idx = np.flatnonzero(mask)
    z = np.asarray(depth).ravel().take(idx)
    ok = (z > min_depth) & (z < max_depth)  # NaN compares False: dropped
    idx, z = idx[ok], z[ok].astype(np.float32, copy=False)
    rx, ry = pixel_rays(intrinsics)
    pts = np.stack([rx.take(idx) * z, ry.take(idx) * z, z], axis=1)
    if pose is not None:
        pts = pts @ np.asarray(pose[:3, :3], np.float32).T + np.asarray(pose[:3, 3], np.float32)
    return pts


class _Growable:
    """An (N, k) array grown in place frame after frame (``ndarray.resize`` reallocates, which large
    allocations do by remapping pages, not copying), so fusing never holds two copies of the points.
    Room is added in chunks of at least ``chunk`` rows (fewer reallocations) and trimmed at the end, so
    the slack is bounded by one chunk whatever the number of frames."""

    def __init__(self, k: int, dtype, chunk: int = 1 << 20):
        self.data = np.empty((0, k), dtype)
        self.n = 0
        self.chunk = chunk

    def reserve(self, rows: int) -> None:
        """Start with room for ``rows`` rows (a fresh allocation, which NumPy backs with huge pages: far
        fewer page faults than growing, which touches every new page to zero it)."""
        if self.n == 0 and rows > len(self.data):
            self.data = np.empty((rows, self.data.shape[1]), self.data.dtype)

    def extend(self, count: int) -> np.ndarray:
        """Room for ``count`` more rows; returns the view to fill."""
        if self.n + count > len(self.data):
            self.data.resize((self.n + max(count, self.chunk), self.data.shape[1]), refcheck=False)
        view = self.data[self.n : self.n + count]
        self.n += count
        return view

    def result(self) -> np.ndarray:
        """The filled rows (the buffer shrunk in place to them)."""
        self.data.resize((self.n, self.data.shape[1]), refcheck=False)
        return self.data


def fuse_masked_frames(
    items: Iterable[tuple[Frame, np.ndarray]],
    min_depth: float = 0.1,
    max_depth: float = 3.0,
    erosion_px: int = 2,
    colors: bool = True,
    denoise: bool = False,
) -> FusedPoints:
    """Back-project the masked depth of each (frame, mask) pair into the world frame and concatenate.

    ``mask`` is a bool image on the frame's colour image (or its depth image). Frames with an invalid
    pose or an empty mask contribute nothing but still get a stats row. Per frame only the masked pixels
    are touched: their flat indices pick the depth and a cached per-pixel ray (point = ray * depth), and the
    rotated points are written straight into a buffer that grows in place. ``denoise`` median-filters
    noisy depth first (see :func:`denoise_depth`).
    """
    pts_out = _Growable(3, np.float32)
    col_out = _Growable(3, np.uint8)
    if isinstance(items, Sequence):
        # frames already in memory: the masks bound the output, so it can be allocated once
        bound = sum(int(np.count_nonzero(to_depth_mask(m, f))) for f, m in items if f.pose_valid)
        pts_out.reserve(bound)
        if colors:
            col_out.reserve(bound)
    counts: list[tuple[int, int]] = []  # (frame, points): the per-point source is built once at the end
    scratch = np.empty(0, np.float32)
    stats: list[FrameFusionStats] = []
    for frame, mask in items:
        dmask = to_depth_mask(mask, frame)
        if not frame.pose_valid:
            stats.append(FrameFusionStats(frame.index, int(np.count_nonzero(dmask)), 0, 0, None, 0))
            continue
        if erosion_px > 0:
            n_mask = int(np.count_nonzero(dmask))
            eroded, r = erode_mask(dmask, erosion_px) if n_mask else (dmask, 0)
            idx = np.flatnonzero(eroded)
        else:
            idx, r = np.flatnonzero(dmask), 0
            n_mask = len(idx)
        n_eroded = len(idx)
        if n_eroded:
            depth = denoise_depth(frame.depth)[0] if denoise else frame.depth
            z = depth.ravel().take(idx)
            ok = (z > min_depth) & (z < max_depth)  # NaN compares False: dropped
            if not ok.all():
                idx, z = idx[ok], z[ok]
            z = z.astype(np.float32, copy=False)
        n = len(idx)
        med = None
        if n:  # a trace statistic: the median of a sample will do
            sample = z[:: max(n // 1000, 1)]
            med = float(np.partition(sample, len(sample) // 2)[len(sample) // 2])
        stats.append(FrameFusionStats(frame.index, n_mask, n_eroded, n, med, r))
        if n == 0:
            continue
        di = frame.depth_intrinsics
        rx, ry = pixel_rays(di)
        x, y = rx.take(idx), ry.take(idx)
        out = pts_out.extend(n)
        # world = z * (R @ ray) + t per output axis with elementwise ops into scratch buffers: a BLAS
        # product is slow for three-wide matrices and worse when its threads compete on a busy machine
        R = np.asarray(frame.pose[:3, :3], np.float64)
        t = np.asarray(frame.pose[:3, 3], np.float64)
        if len(scratch) < 2 * n:
            scratch = np.empty(2 * n, np.float32)
        acc, tmp = scratch[:n], scratch[n : 2 * n]
        for a in range(3):
            np.multiply(x, np.float32(R[a, 0]), out=acc)
            np.multiply(y, np.float32(R[a, 1]), out=tmp)
            acc += tmp
            acc += np.float32(R[a, 2])
            acc *= z
            acc += np.float32(t[a])
            out[:, a] = acc
        if colors:
            ci = frame.color_intrinsics
            if ci != di:
                crow, ccol = ray_lookup(di, ci)  # the colour pixel on each depth pixel's ray, clipped
                crow, ccol = np.clip(crow, 0, ci.height - 1), np.clip(ccol, 0, ci.width - 1)
                v, u = np.divmod(idx, di.width)
                idx = crow.take(v) * ci.width + ccol.take(u)
            # gather whole pixels: the RGB triple viewed as one 3-byte item
            rgb = np.ascontiguousarray(frame.color).reshape(-1).view(np.dtype((np.void, 3)))
            col_out.extend(n).reshape(-1).view(np.dtype((np.void, 3)))[:] = rgb.take(idx)
        counts.append((frame.index, n))
    pts = pts_out.result()
    cols_arr = col_out.result() if colors else np.zeros((len(pts), 3), np.uint8)
    frame_ids = np.array([f for f, _ in counts], np.int32)
    source = np.repeat(frame_ids, [c for _, c in counts]) if counts else np.empty(0, np.int32)
    return FusedPoints(PointCloud(pts, cols_arr), source, tuple(stats))


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
