"""Temporal grounding without the model: which frames to show, how big, and what an answer selects.

Times here are seconds from the scene's first frame (``scene.timestamps - scene.timestamps[0]``), the
clock the model is shown and answers in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.sampling import sample_frames
from ..errors import ConfigError
from ..models.vlm import GenerationSettings, VideoClip
from ..parsing import SpanParse, parse_span
from ..trace import StageTrace, to_jsonable


@dataclass(frozen=True)
class TemporalSettings:
    """How the temporal stage samples the video and decodes the answer.

    At most one frame per ``1 / fps`` seconds and ``max_frames`` in all; each frame is shrunk (never
    enlarged) to at most ``frame_max_pixels`` and to an even share of ``video_max_pixels``.
    """

    fps: float = 2.0
    max_frames: int = 32
    frame_max_pixels: int = 448 * 448
    video_max_pixels: int = 32 * 448 * 448
    # "auto": when the model ships cell heads (scener1.models.cell_verifier) and the query names a category they know,
    # the span is where they see the target (:func:`presence_span`); the model's answer stays in the trace.
    # "model": always the model's answer.
    span_source: str = "auto"
    presence_ratio: float = 0.5  # the heads' span: the best frame and its neighbours at least this share of it
    generation: GenerationSettings = field(default_factory=lambda: GenerationSettings(max_new_tokens=512))

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"temporal fps must be positive, got {self.fps}")
        if self.max_frames < 1:
            raise ConfigError(f"temporal max_frames must be >= 1, got {self.max_frames}")
        if self.frame_max_pixels < 64 or self.video_max_pixels < 64:
            raise ConfigError("temporal pixel budgets must be at least 64 pixels")
        if self.generation.num_return_sequences != 1:
            raise ConfigError("the temporal stage reads one answer per query (num_return_sequences = 1)")
        if self.span_source not in ("auto", "model"):
            raise ConfigError(f"temporal span_source must be auto or model, got {self.span_source!r}")
        if not 0 < self.presence_ratio <= 1:
            raise ConfigError(f"temporal presence_ratio must be in (0, 1], got {self.presence_ratio}")


def sample_video_positions(times: np.ndarray, settings: TemporalSettings) -> np.ndarray:
    """Scene positions of the frames shown to the model (first frame always included)."""
    return sample_frames(times, fps=settings.fps, max_frames=settings.max_frames)


def frame_size_for_budget(width: int, height: int, num_frames: int, settings: TemporalSettings) -> tuple[int, int]:
    """(width, height) to shrink each frame to so the video keeps within both pixel budgets."""
    cap = min(settings.frame_max_pixels, settings.video_max_pixels // max(num_frames, 1))
    if width * height <= cap:
        return width, height
    scale = math.sqrt(cap / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def build_video_clip(frames: list[np.ndarray], times: np.ndarray, settings: TemporalSettings) -> VideoClip:
    """The sampled colour frames, shrunk to the budget, as a clip starting at 0 s."""
    import cv2

    if not frames:
        raise ConfigError("no frames to build a video from")
    h, w = frames[0].shape[:2]
    size = frame_size_for_budget(w, h, len(frames), settings)
    if size != (w, h):
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]  # area averaging: no aliasing
    return VideoClip(np.stack(frames), np.asarray(times, dtype=np.float64))


def sampling_interval(sampled_times: np.ndarray) -> float:
    """Typical seconds between the frames shown (0 for a single frame)."""
    return float(np.median(np.diff(sampled_times))) if len(sampled_times) > 1 else 0.0


def span_positions(span: tuple[float, float], times: np.ndarray, sampled_times: np.ndarray) -> np.ndarray:
    """Scene positions whose time lies in ``span``, widened by half the sampling interval on each side.

    The model only saw the sampled frames, so an answer "4s to 4s" stands for everything between its
    neighbours' midpoints. A span falling between frames selects the frame nearest its middle.
    """
    pad = 0.5 * sampling_interval(sampled_times)
    start, end = span
    inside = np.flatnonzero((times >= start - pad - 1e-9) & (times <= end + pad + 1e-9))
    if len(inside):
        return inside
    return np.array([int(np.argmin(np.abs(times - 0.5 * (start + end))))])


def presence_span(presence: np.ndarray, sampled_times: np.ndarray, duration: float, ratio: float = 0.5
                  ) -> tuple[float, float]:
    """Where a per-frame presence curve (how surely each shown frame shows the target) says it is seen: the
    frame where it is highest and its run of neighbours at ``ratio`` of that or more, widened by half the
    sampling interval on each side (the frames between were not looked at), within [0, ``duration``]."""
    presence = np.nan_to_num(np.asarray(presence, dtype=np.float64), nan=0.0)
    if len(presence) == 0 or len(presence) != len(sampled_times):
        raise ValueError("one presence value per shown frame is needed")
    best = int(np.argmax(presence))
    floor = ratio * presence[best]
    lo = hi = best
    while lo > 0 and presence[lo - 1] >= floor:
        lo -= 1
    while hi + 1 < len(presence) and presence[hi + 1] >= floor:
        hi += 1
    pad = 0.5 * sampling_interval(np.asarray(sampled_times, dtype=np.float64))
    return max(float(sampled_times[lo]) - pad, 0.0), min(float(sampled_times[hi]) + pad, float(duration))


@dataclass(frozen=True, eq=False)
class TemporalResult:
    """What the temporal stage decided for one query.

    ``span`` is in seconds from the scene's first frame; ``positions`` are the scene positions inside it
    (all frames, not only those shown); ``fallback_reason`` is set when the answer was unusable and the
    whole video was taken instead.
    """

    query: str
    span: tuple[float, float]
    positions: np.ndarray
    sampled_positions: np.ndarray
    sampled_times: np.ndarray
    parsed: SpanParse
    raw_output: str
    fallback_reason: str | None
    seconds: float
    trace: StageTrace
    span_source: str = "model"  # "heads" when the cell heads placed the span (the model's answer is in the trace)

    @property
    def think(self) -> str | None:
        return self.parsed.think

    @property
    def used_fallback(self) -> bool:
        return self.fallback_reason is not None

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "query": self.query,
                "span": self.span,
                "positions": self.positions,
                "think": self.think,
                "raw_output": self.raw_output,
                "parsed": self.parsed,
                "fallback_reason": self.fallback_reason,
                "span_source": self.span_source,
                "seconds": self.seconds,
            }
        )


def resolve_answer(
    raw_output: str, times: np.ndarray, sampled_positions: np.ndarray
) -> tuple[SpanParse, tuple[float, float], np.ndarray, str | None]:
    """Parse an answer and turn it into a span and scene positions, or fall back to the whole video.

    Returns (parsed, span, positions, fallback_reason).
    """
    sampled_times = times[sampled_positions]
    parsed = parse_span(raw_output, duration=float(times[-1]))
    if parsed.value is None:
        reason = f"unusable answer ({parsed.reason}); the whole video is used"
        return parsed, (0.0, float(times[-1])), np.arange(len(times)), reason
    return parsed, parsed.value, span_positions(parsed.value, times, sampled_times), None


def finish(
    query: str,
    prompt: str,
    raw_output: str,
    times: np.ndarray,
    sampled_positions: np.ndarray,
    seconds: float,
    inputs: dict[str, Any],
    heads: dict[str, Any] | None = None,
) -> TemporalResult:
    """Assemble the result and its trace from the model's answer, or from the cell heads' ``heads``
    ({"span", "presence", "target"}) when they placed the span."""
    parsed, span, positions, fallback = resolve_answer(raw_output, times, sampled_positions)
    source = "model"
    if heads is not None:
        span, source, fallback = tuple(heads["span"]), "heads", None
        positions = span_positions(span, times, times[sampled_positions])
    trace = StageTrace(
        stage="temporal",
        inputs=to_jsonable(inputs),
        prompt=prompt,
        raw_output=(raw_output,),
        parsed=to_jsonable(
            {
                "span": span,
                "first_position": int(positions[0]),
                "last_position": int(positions[-1]),
                "num_positions": len(positions),
                "answer": parsed,
                "span_source": source,
                "heads": heads,
            }
        ),
        fallback=fallback,
        seconds=seconds,
    )
    return TemporalResult(
        query, span, positions, sampled_positions, times[sampled_positions], parsed, raw_output, fallback, seconds, trace,
        source,
    )
