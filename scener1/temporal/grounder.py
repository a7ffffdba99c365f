"""The temporal stage with a model: show the sampled video, ask when the object is seen."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.scene import Scene
from ..errors import SceneError
from ..models.cell_verifier import CellVerifier
from ..models.vlm import VLM, ChatRequest
from ..prompts import clean_query, prompt_text, temporal_messages
from .core import (
    TemporalResult,
    TemporalSettings,
    build_video_clip,
    finish,
    presence_span,
    sample_video_positions,
)


class TemporalGrounder:
    """Finds the time span in which a described object is seen, holding a :class:`VLM`."""

    def __init__(self, vlm: VLM, settings: TemporalSettings | None = None, verifier: CellVerifier | None = None):
        """``verifier`` defaults to the model's own cell heads when it ships them and ``span_source`` is auto."""
        self.vlm = vlm
        self.settings = settings or TemporalSettings()
        if self.settings.span_source != "auto":
            verifier = None
        elif verifier is None:
            verifier = CellVerifier.for_model(vlm)
        self.verifier = verifier

    def ground(self, scene: Scene, query: str) -> TemporalResult:
        return self.ground_many(scene, [query])[0]

    def ground_many(self, scene: Scene, queries: Sequence[str]) -> list[TemporalResult]:
        """Answer several queries on one scene, decoding its frames once and batching the model calls."""
        start = time.perf_counter()
        if self.verifier is not None:
            self.verifier.forget()  # one scene at a time
        queries = [clean_query(q) for q in queries]
        times = scene.timestamps - scene.timestamps[0]
        sampled = sample_video_positions(times, self.settings)
        # an unreadable frame is left out of the clip; the others keep their own timestamps
        shown = list(scene.colors(sampled, skip_unreadable=True))
        if not shown:
            raise SceneError(f"none of the {len(sampled)} frames of the temporal stage's clip can be read "
                             f"({scene.first_unreadable()})")
        positions = np.array([p for p, _ in shown], dtype=np.int64)
        clip = build_video_clip([color for _, color in shown], times[positions], self.settings)
        messages = [temporal_messages(q, clip.timestamps, self.vlm.prompt_version) for q in queries]
        answers = self.vlm.generate([ChatRequest(m, videos=(clip,)) for m in messages], self.settings.generation)
        seconds = (time.perf_counter() - start) / max(len(queries), 1)  # the batch's time, shared out
        inputs = {
            "scene": str(scene.path),
            "num_scene_frames": len(scene),
            "frames_shown": len(positions),
            "frames_unreadable": len(sampled) - len(positions),
            "frame_size": [int(clip.frames.shape[2]), int(clip.frames.shape[1])],
            "times_shown": np.round(clip.timestamps, 3),
            "prompt_version": self.vlm.prompt_version,
            "batched_queries": len(queries),
        }
        return [
            finish(q, prompt_text(m), a, times, positions, seconds, {"query": q, **inputs},
                   heads_span(self.verifier, q, [(("temporal", p), color) for p, color in shown], times[positions],
                              float(times[-1]), self.settings.presence_ratio))
            for q, m, a in zip(queries, messages, answers, strict=True)
        ]


def heads_span(verifier: CellVerifier | None, query: str, frames: Sequence[tuple[Any, np.ndarray]],
               times: np.ndarray, duration: float, ratio: float) -> dict | None:
    """The cell heads' span for ``query`` over the shown ``frames`` ((cache key, image) pairs at ``times``):
    {"span", "target", "presence"}, or None without heads or a category they know."""
    if verifier is None:
        return None
    target = verifier.target(query)
    if target.category is None:
        return None
    presence = np.array(verifier.presence(target, frames))
    span = presence_span(presence, times, duration, ratio)
    return {"span": [round(v, 3) for v in span], "target": target.to_dict(),
            "presence": [round(float(v), 4) for v in presence]}
