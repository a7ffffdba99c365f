"""Choosing which frames of a scene to use: by rate, stride and a maximum count."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def sample_frames(
    timestamps: np.ndarray,
    valid: np.ndarray | None = None,
    fps: float | None = None,
    stride: int | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Positions of the frames to use, in recording order.

    Steps, each optional and applied in this order: keep ``valid`` frames; keep every ``stride``-th;
    keep at most one frame per ``1 / fps`` seconds (the first frame at or after each tick); thin evenly
    to ``max_frames`` (first and last kept).
    """
    t = np.asarray(timestamps, dtype=np.float64)
    positions = np.arange(len(t)) if valid is None else np.flatnonzero(np.asarray(valid, bool))
    if stride is not None:
        if stride < 1:
            raise ConfigError(f"stride must be >= 1, got {stride}")
        positions = positions[::stride]
    if fps is not None and len(positions):
        if not fps > 0:
            raise ConfigError(f"fps must be positive, got {fps}")
        ticks = np.floor((t[positions] - t[positions[0]]) * fps + 1e-9).astype(np.int64)
        _, first = np.unique(ticks, return_index=True)
        positions = positions[np.sort(first)]
    if max_frames is not None:
        if max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1, got {max_frames}")
        if len(positions) > max_frames:
            pick = np.unique(np.rint(np.linspace(0, len(positions) - 1, max_frames)).astype(np.int64))
            positions = positions[pick]
    return positions
