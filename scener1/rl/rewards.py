"""Reward functions for GRPO, as plain callables in TRL's convention.

Each is ``f(completions, **columns) -> list[float | None]``: ``completions`` are the model's answers (plain
strings, or conversational lists of messages whose last assistant turn is the answer) and ``columns`` the
dataset's other columns, one value per completion. A reward that does not apply to a row (a temporal
reward on an image-grounding row) is ``None``, which TRL leaves out of that row's sum.

Columns the rewards read (written by :mod:`scener1.rl.datasets`):

- ``task``: ``"image"`` or ``"temporal"``;
- image rows: ``box`` (the target's box in original pixels, x2/y2 exclusive), ``image_size`` (W, H of the
  original frame), ``model_image_size`` (W, H after the processor's resize), ``box_coordinates``
  (``resized_pixels`` or ``normalized_1000``); ``absent`` (optional): the frame does not show the target
  and the right answer is ``<answer>[]</answer>`` (``box`` is then ``None``);
- temporal rows: ``spans`` (the intervals, seconds from the first frame shown, in which the target is
  clearly seen) and ``duration`` (seconds from the first to the last frame shown).

Answers are read with :mod:`scener1.parsing`, exactly as the pipeline reads them, so a reward never
credits an answer the pipeline could not use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..parsing import BoxGeometry, parse_box, parse_span

TASKS = ("image", "temporal")


def completion_text(completion: Any) -> str:
    """The answer text of one completion: a string, or the last assistant message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, Sequence):
        for message in reversed(list(completion)):
            if isinstance(message, Mapping) and message.get("role", "assistant") == "assistant":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, Sequence):
                    return "".join(
                        str(part.get("text") or "") for part in content
                        if isinstance(part, Mapping) and part.get("type") == "text"
                    )
    return ""


def _column(columns: Mapping[str, Any], name: str, n: int) -> list[Any]:
    values = columns.get(name)
    if values is None:
        return [None] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"column '{name}' has {len(values)} values for {n} completions")
    return values


def _tasks(columns: Mapping[str, Any], n: int, default: str) -> list[str]:
    return [t if t is not None else default for t in _column(columns, "task", n)]


def box_geometry(image_size: Sequence[float], model_image_size: Sequence[float] | None,
                 box_coordinates: str | None) -> BoxGeometry:
    """How a model's box maps to the original frame (see :class:`scener1.parsing.BoxGeometry`)."""
    convention = box_coordinates or "resized_pixels"
    original = (int(image_size[0]), int(image_size[1]))
    model = original if model_image_size is None else (int(model_image_size[0]), int(model_image_size[1]))
    return BoxGeometry(convention, model, original)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two boxes ``[x1, y1, x2, y2]`` (x2/y2 exclusive, so a box covers (x2 - x1) x (y2 - y1))."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def centre_inside(box: Sequence[float], target: Sequence[float]) -> bool:
    """Whether ``box``'s centre lies in ``target`` (x2/y2 exclusive): the pointing criterion."""
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    return bool(target[0] <= cx < target[2] and target[1] <= cy < target[3])


def span_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two time spans ``[start, end]`` in seconds (0 when either has no length)."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return float(inter / union) if union > 0 else 0.0


def best_span_iou(span: Sequence[float], spans: Sequence[Sequence[float]]) -> float:
    """IoU with the best-matching interval: the object may be seen clearly in several, each a right answer."""
    return max((span_iou(span, s) for s in spans), default=0.0)


def predicted_span(text: str, duration: float | None) -> tuple[float, float] | None:
    return parse_span(text, duration=None if duration is None else float(duration)).value


def format_reward(completions: Sequence[Any], **columns: Any) -> list[float]:
    """1.0 when the answer is exactly ``<think>...</think><answer>...</answer>`` and its answer parses for the
    row's task (a span for temporal rows, a usable box or ``[]`` for image rows), else 0.0."""
    n = len(completions)
    tasks = _tasks(columns, n, "image")
    sizes = _column(columns, "image_size", n)
    model_sizes = _column(columns, "model_image_size", n)
    conventions = _column(columns, "box_coordinates", n)
    durations = _column(columns, "duration", n)
    out = []
    for i, completion in enumerate(completions):
        text = completion_text(completion)
        if tasks[i] == "temporal":
            parsed = parse_span(text, duration=None if durations[i] is None else float(durations[i]))
            usable = parsed.value is not None
        elif sizes[i] is not None:
            parsed = parse_box(text, box_geometry(sizes[i], model_sizes[i], conventions[i]))
            usable = parsed.value is not None or parsed.absent  # "[]" (not in the image) is a well-formed answer
        else:
            raise ValueError("image rows need an 'image_size' column for the format reward")
        out.append(1.0 if parsed.format_ok and usable else 0.0)
    return out


def box_iou_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """IoU of the answer's box (mapped to original pixels as the pipeline maps it) with the target box;
    0.0 for an unusable answer, ``None`` on rows that are not image grounding. On ``absent`` rows (the
    frame does not show the target) 1.0 for the answer "not in the image" (``[]``), 0.0 for any box."""
    n = len(completions)
    tasks = _tasks(columns, n, "image")
    boxes = _column(columns, "box", n)
    absent = _column(columns, "absent", n)
    sizes = _column(columns, "image_size", n)
    model_sizes = _column(columns, "model_image_size", n)
    conventions = _column(columns, "box_coordinates", n)
    out: list[float | None] = []
    for i, completion in enumerate(completions):
        if tasks[i] != "image" or (boxes[i] is None and not absent[i]):
            out.append(None)
            continue
        parsed = parse_box(completion_text(completion), box_geometry(sizes[i], model_sizes[i], conventions[i]))
        if absent[i]:
            out.append(1.0 if parsed.absent else 0.0)
        else:
            out.append(0.0 if parsed.value is None else box_iou(parsed.value, boxes[i]))
    return out


def temporal_iou_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """IoU of the answer's span with the best of the target's clearly-seen intervals; 0.0 for an
    unusable answer, ``None`` on rows that are not temporal grounding."""
    n = len(completions)
    tasks = _tasks(columns, n, "temporal")
    spans = _column(columns, "spans", n)
    durations = _column(columns, "duration", n)
    out: list[float | None] = []
    for i, completion in enumerate(completions):
        if tasks[i] != "temporal" or spans[i] is None:
            out.append(None)
            continue
        span = predicted_span(completion_text(completion), durations[i])
        out.append(0.0 if span is None else best_span_iou(span, spans[i]))
    return out


#: The rewards of the Scene-R1 recipe, in the order training logs them.
REWARD_FUNCTIONS = (format_reward, box_iou_reward, temporal_iou_reward)
#: Row tasks the rewards above score (GRPO trains on these).
REWARDED_TASKS = ("image", "temporal")
