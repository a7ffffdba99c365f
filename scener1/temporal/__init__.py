"""Temporal grounding: when, in the video, is the described object seen (Scene-R1 stage 1)."""

from .core import (
    TemporalResult,
    TemporalSettings,
    build_video_clip,
    frame_size_for_budget,
    presence_span,
    resolve_answer,
    sample_video_positions,
    sampling_interval,
    span_positions,
)
from .grounder import TemporalGrounder

__all__ = [
    "TemporalGrounder",
    "TemporalResult",
    "TemporalSettings",
    "build_video_clip",
    "frame_size_for_budget",
    "presence_span",
    "resolve_answer",
    "sample_video_positions",
    "sampling_interval",
    "span_positions",
]
