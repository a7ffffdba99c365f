"""Pinhole camera geometry, vectorised over pixels and points.

Pixel (u, v) has its centre at integer coordinates, as in ScanNet's intrinsics (cx = 319.5 for 640 px).
Poses are 4x4 camera-to-world.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..types import Intrinsics


def transform_points(points: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid (or affine) transform to (N, 3) points."""
    T = np.asarray(T)
    return points @ T[:3, :3].T.astype(points.dtype) + T[:3, 3].astype(points.dtype)


def back_project(
    depth: np.ndarray,
    intrinsics: Intrinsics,
    pose: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    min_depth: float = 0.0,
    max_depth: float = np.inf,
    return_pixels: bool = False,
):
    """Lift the valid depth pixels (optionally only those under ``mask``) to 3D points.

    Returns (N, 3) float32 points, in the camera frame or, with ``pose``, in the world frame; with
    ``return_pixels`` also the (N,) row and column indices they came from. ``mask`` must have the depth
    image's shape (see :func:`color_mask_to_depth`).
    """
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth is {depth.shape[::-1]}, intrinsics are for {intrinsics.size}")
    valid = np.isfinite(depth) & (depth > max(min_depth, 0.0)) & (depth < max_depth)
    if mask is not None:
        if mask.shape != depth.shape:
            raise ValueError(f"mask shape {mask.shape} differs from depth shape {depth.shape}")
        valid &= mask.astype(bool)
    v, u = np.nonzero(valid)
    z = depth[v, u].astype(np.float32)
    x = (u.astype(np.float32) - np.float32(intrinsics.cx)) * z / np.float32(intrinsics.fx)
    y = (v.astype(np.float32) - np.float32(intrinsics.cy)) * z / np.float32(intrinsics.fy)
    points = np.stack([x, y, z], axis=1)
    if pose is not None:
        points = transform_points(points, pose)
    return (points, v, u) if return_pixels else points


def project(points: np.ndarray, intrinsics: Intrinsics, pose: np.ndarray | None = None):
    """Project (N, 3) points (world frame with ``pose``, else camera frame) to pixels.

    Returns ``uv`` (N, 2) continuous pixel coordinates and ``z`` (N,) depth along the optical axis;
    points behind the camera get ``z <= 0`` and meaningless ``uv``.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pose is not None:
        pts = transform_points(pts, np.linalg.inv(pose))
    z = pts[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics.fx * pts[:, 0] / z + intrinsics.cx
        v = intrinsics.fy * pts[:, 1] / z + intrinsics.cy
    return np.stack([u, v], axis=1), z


def in_image(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Whether continuous pixel coordinates fall on a pixel of a ``width x height`` image."""
    return (uv[:, 0] >= -0.5) & (uv[:, 0] < width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < height - 0.5)


def visible(
    points: np.ndarray,
    depth: np.ndarray,
    intrinsics: Intrinsics,
    pose: np.ndarray,
    abs_tol: float = 0.05,
    rel_tol: float = 0.03,
) -> np.ndarray:
    """Depth-consistency visibility: which world points this depth frame actually sees.

    A point is visible when it projects inside the image in front of the camera and the measured depth
    at its pixel agrees with its own depth within ``max(abs_tol, rel_tol * z)`` metres; occluded points
    (measured depth smaller) and pixels without depth are not visible.
    """
    uv, z = project(points, intrinsics, pose)
    ok = (z > 0) & in_image(uv, intrinsics.width, intrinsics.height)
    out = np.zeros(len(points), dtype=bool)
    idx = np.nonzero(ok)[0]
    cols = np.rint(uv[idx, 0]).astype(np.int64)
    rows = np.rint(uv[idx, 1]).astype(np.int64)
    measured = depth[rows, cols]
    zi = z[idx]
    out[idx] = (measured > 0) & (np.abs(measured - zi) <= np.maximum(abs_tol, rel_tol * zi))
    return out


@lru_cache(maxsize=16)
def ray_lookup(source: Intrinsics, target: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """For each row and each column of the ``source`` image, the ``target`` image's row and column on the same
    viewing ray (int64, not clipped) of two registered cameras (colour and depth of one RGB-D sensor); the
    lookups separate because neither camera is skewed."""
    u = np.arange(source.width, dtype=np.float64)
    v = np.arange(source.height, dtype=np.float64)
    cols = np.rint((u - source.cx) / source.fx * target.fx + target.cx).astype(np.int64)
    rows = np.rint((v - source.cy) / source.fy * target.fy + target.cy).astype(np.int64)
    return rows, cols


def _resample_along_rays(image: np.ndarray, source: Intrinsics, target: Intrinsics) -> np.ndarray:
    """``image`` (on ``source``) seen from ``target``: each target pixel takes the source pixel on its ray, 0 (or
    False) where the ray leaves the source image."""
    rows, cols = ray_lookup(target, source)
    row_ok = (rows >= 0) & (rows < source.height)
    col_ok = (cols >= 0) & (cols < source.width)
    out = image[np.clip(rows, 0, source.height - 1)][:, np.clip(cols, 0, source.width - 1)]
    return np.where(row_ok[:, None] & col_ok[None, :], out, np.zeros((), image.dtype))


def color_mask_to_depth(mask: np.ndarray, color: Intrinsics, depth: Intrinsics) -> np.ndarray:
    """Resample a mask drawn on the colour image onto the depth image of a registered RGB-D camera.

    Each depth pixel takes the mask value of the colour pixel on the same viewing ray, which stays exact
    when the two images differ in resolution *and* aspect ratio (ScanNet: 1296x968 vs 640x480);
    depth pixels whose ray leaves the colour image are outside the mask.
    """
    if mask.shape != (color.height, color.width):
        raise ValueError(f"mask shape {mask.shape} differs from the colour image {color.height}x{color.width}")
    if color == depth:
        return mask.astype(bool)
    return _resample_along_rays(mask.astype(bool), color, depth)


def color_labels_from_depth(labels: np.ndarray, color: Intrinsics, depth: Intrinsics) -> np.ndarray:
    """Resample a label map drawn on the depth image onto the colour image of a registered RGB-D camera
    (the inverse of :func:`color_mask_to_depth`): each colour pixel takes the label of the depth pixel on the
    same viewing ray, 0 where that ray leaves the depth image."""
    if labels.shape != (depth.height, depth.width):
        raise ValueError(f"label map shape {labels.shape} differs from the depth image {depth.height}x{depth.width}")
    if color == depth:
        return labels.copy()
    return _resample_along_rays(labels, depth, color)


def sample_colors(color: np.ndarray, intrinsics: Intrinsics, points_cam: np.ndarray) -> np.ndarray:
    """The colour (N, 3) uint8 seen at camera-frame points, by projecting them into the colour image."""
    uv, z = project(points_cam, intrinsics)
    cols = np.clip(np.rint(uv[:, 0]), 0, intrinsics.width - 1).astype(np.int64)
    rows = np.clip(np.rint(uv[:, 1]), 0, intrinsics.height - 1).astype(np.int64)
    return color[rows, cols]


def up_direction(poses: np.ndarray) -> np.ndarray:
    """The world's up direction from camera poses: hand-held and robot cameras keep their x axis (image
    rows) about horizontal, so up is the direction most nearly perpendicular to all of them; the image's
    own up (-y) settles the sign. With too little variety in heading, the mean image up is used."""
    poses = np.asarray(poses, np.float64).reshape(-1, 4, 4)
    if len(poses) == 0:
        return np.array([0.0, 0.0, 1.0])
    img_up = -poses[:, :3, 1].mean(axis=0)
    if len(poses) >= 3:
        _, sv, vt = np.linalg.svd(poses[:, :3, 0], full_matrices=False)
        if sv[1] > 0.2 * sv[0] and sv[2] < 0.5 * sv[1]:  # the x axes span a plane: its normal is up
            up = vt[-1]
            return up if up @ img_up >= 0 else -up
    norm = np.linalg.norm(img_up)
    return img_up / norm if norm > 0 else np.array([0.0, 0.0, 1.0])
