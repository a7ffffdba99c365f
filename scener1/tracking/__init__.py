"""Trackers: a 2D box on a key frame -> masks of that object over other frames.

``build_tracker("geometric")`` (the default; needs no weights) or ``build_tracker("sam2", config=...,
checkpoint=...)``. Every tracker returns a :class:`TrackResult` of per-frame :class:`FrameMask` objects.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import FrameMask, Tracker, TrackResult, check_box, depth_mask_to_color

TRACKERS = ("geometric", "sam2")


def build_tracker(name: str = "geometric", **cfg: Any) -> Tracker:
    """A tracker by name; ``cfg`` goes to its constructor (see GeometricConfig / SAM2Tracker)."""
    if name == "geometric":
        from .geometric import GeometricTracker

        return GeometricTracker(**cfg)
    if name == "sam2":
        from .sam2_tracker import SAM2Tracker

        return SAM2Tracker(**cfg)
    raise ConfigError(f"unknown tracker '{name}'; choose from {', '.join(TRACKERS)}")


__all__ = ["TRACKERS", "FrameMask", "TrackResult", "Tracker", "build_tracker", "check_box", "depth_mask_to_color"]
