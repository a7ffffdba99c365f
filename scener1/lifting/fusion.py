"""Fusing posed RGB-D frames into one coloured point cloud, streaming over frames."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..data.camera import back_project, sample_colors, transform_points
from ..errors import ScenerError
from ..types import Frame, PointCloud

#: Voxel down-sampling runs whenever this many raw points have piled up, so memory stays bounded by the
#: fused cloud plus one batch however many frames are fused.
_COMPACT_EVERY = 2_000_000


def _o3d():
    import open3d as o3d  # lazy: about 0.7 s to import

    return o3d


def voxel_down_sample(cloud: PointCloud, voxel_size: float) -> PointCloud:
    """Average points and colours per voxel (Open3D); ``voxel_size <= 0`` returns the cloud unchanged."""
    if voxel_size <= 0 or len(cloud) == 0:
        return cloud
    o3d = _o3d()
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.points.astype(np.float64)))
    pc.colors = o3d.utility.Vector3dVector(cloud.colors.astype(np.float64) / 255.0)
    down = pc.voxel_down_sample(voxel_size)
    return PointCloud(
        np.asarray(down.points, dtype=np.float32),
        np.clip(np.rint(np.asarray(down.colors) * 255.0), 0, 255).astype(np.uint8),
    )


def fuse_frames(
    frames: Iterable[Frame],
    voxel_size: float = 0.02,
    min_depth: float = 0.1,
    max_depth: float = 3.0,
) -> PointCloud:
    """Back-project every frame with a valid pose into the world frame and fuse the points.

    Frames whose pose is NaN/inf are skipped. Colours are sampled from each frame's colour image along
    the same viewing ray (colour and depth are assumed registered, as in ScanNet and 7-Scenes).
    """
    batch_pts: list[np.ndarray] = []
    batch_cols: list[np.ndarray] = []
    fused = PointCloud(np.empty((0, 3), np.float32), np.empty((0, 3), np.uint8))
    pending = 0
    for frame in frames:
        if not frame.pose_valid:
            continue
        pts_cam = back_project(frame.depth, frame.depth_intrinsics, min_depth=min_depth, max_depth=max_depth)
        batch_cols.append(sample_colors(frame.color, frame.color_intrinsics, pts_cam))
        batch_pts.append(transform_points(pts_cam, frame.pose))
        pending += len(pts_cam)
        if pending >= _COMPACT_EVERY and voxel_size > 0:
            fused = _merge(fused, batch_pts, batch_cols, voxel_size)
            batch_pts, batch_cols, pending = [], [], 0
    return _merge(fused, batch_pts, batch_cols, voxel_size)


def _merge(fused: PointCloud, pts: list[np.ndarray], cols: list[np.ndarray], voxel_size: float) -> PointCloud:
    merged = PointCloud(
        np.concatenate([fused.points, *pts]).astype(np.float32, copy=False),
        np.concatenate([fused.colors, *cols]).astype(np.uint8, copy=False),
    )
    return voxel_down_sample(merged, voxel_size)


def write_ply(cloud: PointCloud, path: str | Path) -> Path:
    """Write a coloured cloud as binary PLY (creating parent folders)."""
    o3d = _o3d()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.points.astype(np.float64)))
    pc.colors = o3d.utility.Vector3dVector(cloud.colors.astype(np.float64) / 255.0)
    if not o3d.io.write_point_cloud(str(path), pc, write_ascii=False):
        raise ScenerError(f"cannot write point cloud to {path}")
    return path


def read_ply(path: str | Path) -> PointCloud:
    """Read a point cloud file (PLY/PCD/XYZ ...) written by :func:`write_ply` or any other tool."""
    o3d = _o3d()
    path = Path(path)
    if not path.is_file():
        raise ScenerError(f"point cloud file does not exist: {path}")
    pc = o3d.io.read_point_cloud(str(path))
    colors = np.asarray(pc.colors)
    colors = np.zeros((len(pc.points), 3)) if len(colors) == 0 else colors * 255.0
    return PointCloud(np.asarray(pc.points, dtype=np.float32), np.clip(np.rint(colors), 0, 255).astype(np.uint8))
