"""Axis-aligned 3D boxes as the benchmarks score them.

Internally a box is a row ``[xmin, ymin, zmin, xmax, ymax, zmax]`` (float64) in the scene's axis-aligned frame;
an array of boxes is ``(N, 6)``. Prediction files may give a box as ``{"center": [..], "size": [..]}``,
``{"min": [..], "max": [..]}``, a ``[[min], [max]]`` pair (Multi3DRefer's ``aabb_bound``) or 8 corners
(ScanRefer's benchmark ``bbox``); :func:`parse_box` turns each into the internal row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ScenerError


def aabb_from_center_size(center: Any, size: Any) -> np.ndarray:
    """``(..., 6)`` min/max rows from centres and full edge lengths (``(..., 3)`` each)."""
    center = np.asarray(center, dtype=np.float64)
    half = np.asarray(size, dtype=np.float64) / 2.0
    return np.concatenate([center - half, center + half], axis=-1)


def aabb_from_corners(corners: Any) -> np.ndarray:
    """The box enclosing a set of corner points (``(K, 3)``, usually the 8 corners of a box)."""
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 3)
    return np.concatenate([corners.min(0), corners.max(0)])


def center_size(aabb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres and sizes of ``(..., 6)`` boxes."""
    aabb = np.asarray(aabb, dtype=np.float64)
    return (aabb[..., :3] + aabb[..., 3:]) / 2.0, aabb[..., 3:] - aabb[..., :3]


def corners(aabb: np.ndarray) -> np.ndarray:
    """The 8 corners ``(8, 3)`` of one box (the ScanRefer benchmark's ``bbox`` layout)."""
    lo, hi = np.asarray(aabb[:3], np.float64), np.asarray(aabb[3:], np.float64)
    pick = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=bool)
    return np.where(pick, hi, lo)


def _vector3(value: Any, what: str) -> list[float]:
    # plain floats: a prediction file holds thousands of boxes, and numpy's per-call cost would dominate
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != 3:
        raise ScenerError(f"{what} must hold 3 numbers, got {value!r}")
    if any(isinstance(v, (bool, str)) for v in value):
        raise ScenerError(f"{what} must hold 3 numbers, got {value!r}")
    return [float(v) for v in value]


def parse_box(value: Any) -> np.ndarray:
    """One predicted box in any accepted layout as a ``(6,)`` min/max row; raises on anything else."""
    try:
        if isinstance(value, Mapping):
            if "center" in value and "size" in value:
                center, size = _vector3(value["center"], "box center"), _vector3(value["size"], "box size")
                if min(size) < 0:
                    raise ScenerError(f"box size must not be negative, got {size}")
                box = np.array([c - s / 2.0 for c, s in zip(center, size)] + [c + s / 2.0 for c, s in zip(center, size)])
            elif "min" in value and "max" in value:
                box = np.array(_vector3(value["min"], "box min") + _vector3(value["max"], "box max"))
            else:
                raise ScenerError(f"a box needs center+size or min+max, got keys {sorted(value)}")
        else:
            arr = np.asarray(value, dtype=np.float64)
            if arr.ndim == 3 and arr.shape[0] == 1:  # a one-box list, as M3DRef-CLIP writes ScanRefer boxes
                arr = arr[0]
            if arr.shape == (2, 3):
                box = arr.reshape(6)
            elif arr.shape == (8, 3):
                box = aabb_from_corners(arr)
            elif arr.shape == (6,):
                box = arr  # already min/max
            else:
                raise ScenerError(
                    f"a box must be {{center, size}}, {{min, max}}, [[min], [max]] or 8 corners; got shape {arr.shape}"
                )
    except (TypeError, ValueError) as exc:
        raise ScenerError(f"cannot read a box from {value!r}: {exc}") from None
    values = box.tolist()
    if not all(math.isfinite(v) for v in values):
        raise ScenerError(f"box has non-finite coordinates: {values}")
    if any(hi < lo for lo, hi in zip(values[:3], values[3:])):
        raise ScenerError(f"box max is below its min: {values}")
    return box


def box_to_json(aabb: np.ndarray) -> dict:
    """The project's prediction layout ``{"center": [..], "size": [..]}`` for one box."""
    c, s = center_size(aabb)
    return {"center": [float(v) for v in c], "size": [float(v) for v in s]}


def _volume(aabb: np.ndarray) -> np.ndarray:
    return np.prod(np.clip(aabb[..., 3:] - aabb[..., :3], 0.0, None), axis=-1)


def aabb_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of two ``(..., 6)`` box arrays (broadcasting).

    Touching boxes share no volume (IoU 0); a box inside another scores the volume ratio; boxes of zero
    volume score 0 (never NaN). Rows with NaN coordinates (a missing prediction) score 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    lo = np.maximum(a[..., :3], b[..., :3])
    hi = np.minimum(a[..., 3:], b[..., 3:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    union = _volume(a) + _volume(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.nan_to_num(iou, nan=0.0)


def aabb_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU between every box of ``a`` ``(N, 6)`` and every box of ``b`` ``(M, 6)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 6)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 6)
    return aabb_iou(a[:, None, :], b[None, :, :])
