"""The VLM head: a free-form answer from the video, ``<think>...</think><answer>...</answer>``.

The model sees frames sampled from the whole video (as the temporal stage does) and the question; when the
geometric heads measured something, those facts are written into the prompt, so the lifted geometry reaches the
answer. The model's text is read by :func:`read_answer`, which never raises: an option letter for multiple
choice, a number for numeric questions, a short phrase otherwise, or ``None`` with the reason.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..models.vlm import GenerationSettings
from ..parsing import split_tags
from ..trace import StageTrace
from .router import RoutedQuestion

if TYPE_CHECKING:
    from ..data.scene import Scene
    from ..models.vlm import VLM

_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)")
_NUMBER_WORDS = {w: i for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}


@dataclass(frozen=True)
class VLMSettings:
    """How the VQA head samples the video and decodes (frames as in the temporal stage)."""

    fps: float = 2.0
    max_frames: int = 32
    frame_max_pixels: int = 448 * 448
    video_max_pixels: int = 32 * 448 * 448
    prompt_version: str | None = None  # VQA prompt version (scener1.prompts.VQA_PROMPT_SETS); None = default
    generation: GenerationSettings = field(default_factory=lambda: GenerationSettings(max_new_tokens=512))

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"vqa fps must be positive, got {self.fps}")
        if self.max_frames < 1:
            raise ConfigError(f"vqa max_frames must be >= 1, got {self.max_frames}")
        if self.generation.num_return_sequences != 1:
            raise ConfigError("the VQA head reads one answer per question (num_return_sequences = 1)")

    def clip_settings(self) -> Any:
        """The temporal stage's sampling settings that show the video as this head shows it."""
        from ..temporal.core import TemporalSettings

        return TemporalSettings(fps=self.fps, max_frames=self.max_frames, frame_max_pixels=self.frame_max_pixels,
                                video_max_pixels=self.video_max_pixels)


@dataclass(frozen=True)
class ReadAnswer:
    """A model answer read for a question: ``value`` is the benchmark-ready answer, or ``None`` with ``reason``."""

    value: str | None
    reason: str
    think: str | None = None
    answer: str | None = None
    format_ok: bool = False


@dataclass(frozen=True, eq=False)
class VLMAnswer:
    answer: str | None  # benchmark-ready (letter / number / phrase), None when unusable
    raw_output: str
    think: str | None
    format_ok: bool
    reason: str
    with_facts: bool
    trace: StageTrace
    seconds: float


def answer_kind(rq: RoutedQuestion) -> str:
    if rq.options:
        return "choice"
    return "number" if rq.numeric else "text"


def _number_in(text: str) -> float | None:
    m = _NUMBER.search(text.replace(",", ""))
    if m:
        try:
            value = float(m.group(0))
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in _NUMBER_WORDS:
            return float(_NUMBER_WORDS[word])
    return None


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def read_answer(text: str, rq: RoutedQuestion) -> ReadAnswer:
    """Read a model's output for ``rq``: the option letter (or an option's text), a number, or a phrase."""
    tagged = split_tags(text)
    body = tagged.answer if tagged.answer is not None else tagged.remainder
    base = {"think": tagged.think, "answer": tagged.answer, "format_ok": tagged.format_ok}
    body = " ".join((body or "").split())[:500]
    if not body:
        return ReadAnswer(None, "empty answer", **base)
    kind = answer_kind(rq)
    if kind == "choice":
        letters = {o.letter for o in rq.options}
        m = re.match(r"^\(?([A-Ha-h])(?:[.):]|\s|$)", body)
        if m and m.group(1).upper() in letters:
            return ReadAnswer(m.group(1).upper(), "ok", **base)
        from .heads import option_for

        option = option_for(body, rq.options)
        if option is not None:
            return ReadAnswer(option.letter, "ok (matched the option's text)", **base)
        return ReadAnswer(None, f"no option letter in the answer ({body[:60]!r})", **base)
    if kind == "number":
        value = _number_in(body)
        if value is None:
            return ReadAnswer(None, f"no number in the answer ({body[:60]!r})", **base)
        return ReadAnswer(_format_number(value), "ok", **base)
    return ReadAnswer(body.rstrip("."), "ok", **base)


class VLMAnswerer:
    """Answers questions from the video with a :class:`~scener1.models.VLM`, facts handed in as context."""

    def __init__(self, vlm: VLM, settings: VLMSettings | None = None):
        self.vlm = vlm
        self.settings = settings or VLMSettings()

    def answer_many(self, scene: Scene, items: Sequence[tuple[RoutedQuestion, Sequence[str], str | None]]
                    ) -> list[VLMAnswer]:
        """Answer (question, facts, situation) items on one scene: frames decoded once, model calls batched."""
        from ..models.vlm import ChatRequest
        from ..prompts import prompt_text, vqa_messages
        from ..temporal.core import build_video_clip, sample_video_positions

        if not items:
            return []
        s = self.settings
        t0 = time.perf_counter()
        clip_settings = s.clip_settings()
        times = scene.timestamps - scene.timestamps[0]
        positions = sample_video_positions(times, clip_settings)
        clip = build_video_clip([c for _, c in scene.colors(positions)], times[positions], clip_settings)
        messages = [vqa_messages(rq.question, clip.timestamps, answer_kind(rq),
                                 [f"{o.letter}. {o.text}" for o in rq.options], facts, situation, s.prompt_version)
                    for rq, facts, situation in items]
        outputs = self.vlm.generate([ChatRequest(m, videos=(clip,)) for m in messages], s.generation)
        seconds = (time.perf_counter() - t0) / len(items)
        out = []
        for (rq, facts, situation), m, text in zip(items, messages, outputs, strict=True):
            read = read_answer(text, rq)
            trace = StageTrace(
                stage="vqa_vlm",
                inputs={"question": rq.question, "type": rq.qtype, "frames_shown": len(positions),
                        "times_shown": np.round(clip.timestamps, 3), "facts": list(facts), "situation": situation,
                        "prompt_version": s.prompt_version or "default"},
                prompt=prompt_text(m), raw_output=(text,), parsed=read.value,
                fallback=None if read.value is not None else read.reason, seconds=seconds)
            out.append(VLMAnswer(read.value, text, read.think, read.format_ok, read.reason, bool(facts), trace, seconds))
        return out


def to_dict(answer: VLMAnswer) -> dict[str, Any]:
    return {"answer": answer.answer, "raw_output": answer.raw_output, "think": answer.think,
            "format_ok": answer.format_ok, "reason": answer.reason, "with_facts": answer.with_facts,
            "seconds": round(answer.seconds, 3), "trace": answer.trace.to_dict()}
