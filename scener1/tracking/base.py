"""The tracker interface: a 2D box on a key frame -> a binary mask of the same object on other frames.

A tracker answers ``track(scene, positions, key_position, box)``; ``positions`` are scene positions
(``0 .. len(scene) - 1``), the key frame among them, and ``box`` is ``[x1, y1, x2, y2]`` in the key frame's
colour pixels (x2/y2 exclusive). Masks come back in colour-image resolution, stored as a crop around the
mask so that hundreds of frames of a large colour stream fit in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import ConfigError, ScenerError
from ..types import Intrinsics

if TYPE_CHECKING:
    from ..data.scene import Scene


@dataclass(frozen=True, eq=False)
class FrameMask:
    """The mask of the tracked object on one frame, kept as a crop.

    ``crop`` covers rows ``y1:y2`` and columns ``x1:x2`` of the ``height x width`` colour image
    (``box = (x1, y1, x2, y2)``, exclusive ends); an empty mask has an empty box.
    """

    position: int  # position in the scene
    frame_index: int  # the frame's name in its source
    box: tuple[int, int, int, int]
    crop: np.ndarray  # (y2 - y1, x2 - x1) bool
    shape: tuple[int, int]  # (height, width) of the full colour image
    score: float  # tracker confidence in [0, 1]; 0 for an empty (lost / unseen) mask
    note: str = ""  # why the mask is empty, when it is

    @classmethod
    def from_dense(cls, position: int, frame_index: int, mask: np.ndarray, score: float, note: str = "") -> "FrameMask":
        mask = np.asarray(mask, dtype=bool)
        rows = np.flatnonzero(mask.any(axis=1))
        if len(rows) == 0:
            return cls(position, frame_index, (0, 0, 0, 0), np.zeros((0, 0), bool), mask.shape, 0.0, note)
        cols = np.flatnonzero(mask.any(axis=0))
        y1, y2, x1, x2 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(position, frame_index, (x1, y1, x2, y2), mask[y1:y2, x1:x2].copy(), mask.shape, float(score), note)

    @property
    def area(self) -> int:
        return int(self.crop.sum())

    @property
    def empty(self) -> bool:
        return self.area == 0

    def dense(self) -> np.ndarray:
        """The full-size (height, width) bool mask."""
        out = np.zeros(self.shape, dtype=bool)
        x1, y1, x2, y2 = self.box
        out[y1:y2, x1:x2] = self.crop
        return out


@dataclass(frozen=True, eq=False)
class TrackResult:
    """Masks of one object over the requested frames (every requested position has one, maybe empty)."""

    key_position: int
    box: tuple[int, int, int, int]  # the prompt, as used (clipped to the image)
    masks: tuple[FrameMask, ...]  # in the order of the requested positions
    tracker: str
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)  # tracker-specific facts for the trace

    @property
    def positions(self) -> list[int]:
        return [m.position for m in self.masks]

    def mask_at(self, position: int) -> FrameMask:
        for m in self.masks:
            if m.position == position:
                return m
        raise KeyError(position)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable description for a trace."""
        return {
            "tracker": self.tracker,
            "key_position": self.key_position,
            "box": list(self.box),
            "frames": len(self.masks),
            "frames_with_mask": sum(not m.empty for m in self.masks),
            "seconds": round(self.seconds, 3),
            "per_frame": [
                {"frame": m.frame_index, "area": m.area, "score": round(m.score, 3), **({"note": m.note} if m.note else {})}
                for m in self.masks
            ],
            **self.info,
        }


class Tracker(Protocol):
    """What every tracking backend provides."""

    name: str

    def track(self, scene: "Scene", positions: Sequence[int], key_position: int, box: Sequence[float]) -> TrackResult:
        """Masks of the object in ``box`` (key frame colour pixels) on every frame at ``positions``."""
        ...


def check_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Validate a pixel box ``[x1, y1, x2, y2]`` (x2/y2 exclusive) against a ``width x height`` image.

    A box that overflows the image is clipped (VLM boxes often do); one that is not four finite numbers,
    is degenerate (``x2 <= x1`` or ``y2 <= y1``) or lies outside the image raises a one-line error.
    Returns the integer box of the pixels whose centres lie inside it.
    """
    try:
        vals = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"box must be four numbers x1 y1 x2 y2, got {box!r}") from None
    if vals.size != 4 or not np.isfinite(vals).all():
        raise ConfigError(f"box must be four finite numbers x1 y1 x2 y2, got {list(np.atleast_1d(vals))}")
    x1, y1, x2, y2 = vals
    if x2 <= x1 or y2 <= y1:
        raise ConfigError(f"degenerate box [{x1:g}, {y1:g}, {x2:g}, {y2:g}]: need x1 < x2 and y1 < y2")
    # pixel (u, v) lies in the box when x1 <= u < x2: the first is ceil(x1), the exclusive end ceil(x2)
    ix1, iy1 = int(np.ceil(max(x1, 0.0))), int(np.ceil(max(y1, 0.0)))
    ix2, iy2 = int(np.ceil(min(x2, width))), int(np.ceil(min(y2, height)))
    if ix2 <= ix1 or iy2 <= iy1:
        raise ConfigError(
            f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] covers no pixel of the {width}x{height} image"
        )
    return ix1, iy1, ix2, iy2


def box_mask(box: Sequence[int], width: int, height: int) -> np.ndarray:
    """(height, width) bool image that is True inside an integer box."""
    x1, y1, x2, y2 = (int(v) for v in box)
    out = np.zeros((height, width), dtype=bool)
    out[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    return out


def depth_mask_to_color(mask: np.ndarray, color: Intrinsics, depth: Intrinsics) -> np.ndarray:
    """Carry a depth-resolution mask to the colour image along viewing rays (inverse of
    :func:`scener1.data.camera.color_mask_to_depth`; exact round trip when colour is at least as fine)."""
    if mask.shape != (depth.height, depth.width):
        raise ValueError(f"mask shape {mask.shape} differs from the depth image {depth.height}x{depth.width}")
    if color == depth:
        return mask.astype(bool)
    u = np.arange(color.width, dtype=np.float64)
    v = np.arange(color.height, dtype=np.float64)
    du = np.rint((u - color.cx) / color.fx * depth.fx + depth.cx).astype(np.int64)
    dv = np.rint((v - color.cy) / color.fy * depth.fy + depth.cy).astype(np.int64)
    col_ok = (du >= 0) & (du < depth.width)
    row_ok = (dv >= 0) & (dv < depth.height)
    out = mask.astype(bool)[np.clip(dv, 0, depth.height - 1)][:, np.clip(du, 0, depth.width - 1)]
    return out & row_ok[:, None] & col_ok[None, :]


def check_positions(scene: "Scene", positions: Sequence[int], key_position: int) -> list[int]:
    """Sorted unique positions that include the key frame; every one must exist in the scene."""
    pos = sorted({int(p) for p in positions} | {int(key_position)})
    if pos[0] < 0 or pos[-1] >= len(scene):
        raise ScenerError(f"frame positions must lie in 0..{len(scene) - 1}, got {pos[0]}..{pos[-1]}")
    return pos
