"""Reading the VLM stages' answers: tags, time spans and boxes. Nothing here ever raises on model output.

Models trained with reinforcement learning (and random ones) write anything: missing, doubled or unclosed
tags, prose around the JSON, reversed spans, several boxes, coordinates off the image, NaN. Every parser
returns a frozen result whose ``value`` is ``None`` when the answer is unusable, with ``reason`` saying
why, ``repairs`` listing what was fixed on the way, and the model's ``think`` text kept for the trace.
Model text is only ever read with regular expressions and ``json`` (never evaluated), and is cut to
:data:`MAX_TEXT_CHARS` first so that adversarial output costs bounded time.

Box conventions (what the model's numbers mean):

- ``resized_pixels``: absolute pixels of the image *as the processor resized it* (Qwen2.5-VL);
- ``normalized_1000``: 0-1000 of the image width and height (Qwen2-VL, Qwen3-VL).

Mapped boxes are in original colour pixels with x2/y2 exclusive, clipped to the image.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

BOX_CONVENTIONS = ("resized_pixels", "normalized_1000")
MAX_TEXT_CHARS = 16_000
MAX_BOXES = 32
_MAX_JSON_ATTEMPTS = 64  # raw_decode calls per answer: bounds the cost of text full of '[' and '{'
_BOX_KEYS = ("bbox_2d", "bbox", "box_2d", "box", "bbox2d")


# --------------------------------------------------------------------- tags
@dataclass(frozen=True)
class TaggedAnswer:
    """The ``<think>`` and ``<answer>`` parts of a model's output.

    ``answer`` is the content of the last non-empty ``<answer>`` block (or of an unclosed one), ``None``
    when there is no ``<answer>`` tag at all. ``format_ok`` is the strict contract: exactly
    ``<think>...</think><answer>...</answer>`` with only whitespace around.
    """

    think: str | None
    answer: str | None
    format_ok: bool
    notes: tuple[str, ...] = ()
    remainder: str = ""  # the text outside the reasoning, searched when there is no <answer> tag


_TAG = re.compile(r"<\s*(/?)\s*(think|answer)\s*>", re.IGNORECASE)


def _strip_tags(text: str) -> str:
    return _TAG.sub(" ", text).strip()


def _cut(text: Any) -> tuple[str, list[str]]:
    if not isinstance(text, str):
        return "", [f"output is {type(text).__name__}, not text"]
    if len(text) > MAX_TEXT_CHARS:
        return text[:MAX_TEXT_CHARS], [f"output cut to its first {MAX_TEXT_CHARS} characters"]
    return text, []


def split_tags(text: str) -> TaggedAnswer:
    """Find the think and answer parts in one linear pass over the tags."""
    text, notes = _cut(text)
    tags = [(m.group(2).lower(), bool(m.group(1)), m.start(), m.end()) for m in _TAG.finditer(text)]

    think = None
    region = (0, 0)  # where the reasoning lies, tags included
    opens = [t for t in tags if t[0] == "think" and not t[1]]
    closes = [t for t in tags if t[0] == "think" and t[1]]
    answer_opens = [t for t in tags if t[0] == "answer" and not t[1]]
    if opens:
        start = opens[0][3]
        close = next((c for c in closes if c[2] >= start), None)
        if close is None:
            notes.append("unclosed <think>")
            end = next((a[2] for a in answer_opens if a[2] >= start), len(text))
            region = (opens[0][2], end)
        else:
            end = close[2]
            region = (opens[0][2], close[3])
        think = _strip_tags(text[start:end])
    elif closes:
        # chat templates that pre-fill "<think>" leave the model to write only the closing tag
        notes.append("no opening <think>")
        think = _strip_tags(text[: closes[0][2]])
        region = (0, closes[0][3])

    blocks: list[str] = []
    open_end: int | None = None
    for kind, closing, start, end in tags:
        if kind != "answer":
            continue
        if not closing:
            open_end = end  # a doubled opening tag re-anchors the block
        elif open_end is not None:
            blocks.append(_strip_tags(text[open_end:start]))
            open_end = None
    answer = None
    filled = [b for b in blocks if b]
    if len(blocks) > 1:
        notes.append(f"{len(blocks)} <answer> blocks; the last non-empty one was used")
    if filled:
        answer = filled[-1]
    elif open_end is not None:
        notes.append("unclosed <answer>")
        answer = _strip_tags(text[open_end:])
    elif blocks:
        answer = ""
    else:
        notes.append("no <answer> tag")

    remainder = _strip_tags(text[: region[0]] + " " + text[region[1] :])
    return TaggedAnswer(think or None, answer, _format_ok(text, tags), tuple(notes), remainder)


def _format_ok(text: str, tags: list[tuple[str, bool, int, int]]) -> bool:
    expected = [("think", False), ("think", True), ("answer", False), ("answer", True)]
    if [(k, c) for k, c, _, _ in tags] != expected:
        return False
    literal = ["<think>", "</think>", "<answer>", "</answer>"]
    if any(text[s:e] != lit for (_, _, s, e), lit in zip(tags, literal, strict=True)):
        return False
    gaps = [text[: tags[0][2]], text[tags[1][3] : tags[2][2]], text[tags[3][3] :]]
    return all(not g.strip() for g in gaps)


def _body(tagged: TaggedAnswer) -> str:
    """Where to look for the value: the answer block, else the text outside the reasoning."""
    return tagged.answer if tagged.answer is not None else tagged.remainder


# --------------------------------------------------------------------- time spans
@dataclass(frozen=True)
class SpanParse:
    """A temporal answer read as ``(start, end)`` seconds, or ``None`` with the ``reason``."""

    value: tuple[float, float] | None
    reason: str
    think: str | None = None
    answer: str | None = None
    format_ok: bool = False
    repairs: tuple[str, ...] = ()


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT = r"(?:seconds?|secs?|s|minutes?|mins?)"
_TIME = re.compile(
    rf"(?<![\w.])-?(?P<a>{_NUMBER})(?::(?P<b>\d{{1,2}}(?:\.\d*)?))?(?::(?P<c>\d{{1,2}}(?:\.\d*)?))?"
    rf"(?:\s*(?P<unit>{_UNIT})(?![a-z]))?",
    re.IGNORECASE,
)
_ENDS_WITH_TIME = re.compile(rf"(?:\d|\d\s*{_UNIT})$", re.IGNORECASE)


def _times(body: str, limit: int = 2) -> list[float]:
    """The first ``limit`` times in ``body``: "7", "7.5s", "7 seconds", "1:05", "0:01:05", "2 min"."""
    out: list[float] = []
    bare: list[bool] = []  # written without a unit or colon
    for m in _TIME.finditer(body):
        value = float(m.group("a"))
        unit = (m.group("unit") or "").lower()
        if m.group("c") is not None:
            value = value * 3600 + float(m.group("b")) * 60 + float(m.group("c"))
        elif m.group("b") is not None:
            value = value * 60 + float(m.group("b"))
        elif unit.startswith("min"):
            value *= 60
            if len(out) == 1 and bare[0]:  # "between 2 and 3 min": the unit covers both
                out[0] *= 60
        if body[m.start()] == "-":
            # "3.5-7s" and "3s -7s" are ranges; "-2s to 5s" and "from -2" are negative times
            before = body[: m.start()].rstrip()
            if not _ENDS_WITH_TIME.search(before):
                value = -value
        out.append(value)
        bare.append(not unit and m.group("b") is None)
        if len(out) == limit:
            break
    return out


def parse_span(text: str, duration: float | None = None) -> SpanParse:
    """Read ``<answer>Xs to Ys</answer>`` (or "from X to Y seconds", "X-Y s", "1:05 - 1:10", ...).

    Reversed spans are swapped; with ``duration`` the span is clipped to ``[0, duration]`` and refused
    when it lies wholly outside.
    """
    tagged = split_tags(text)
    repairs = list(tagged.notes)
    base = dict(think=tagged.think, answer=tagged.answer, format_ok=tagged.format_ok)

    def fail(reason: str) -> SpanParse:
        return SpanParse(None, reason, repairs=tuple(repairs), **base)

    if tagged.answer == "":
        return fail("empty <answer>")
    times = _times(_body(tagged))
    if len(times) < 2:
        return fail("no time span in the answer" if not times else "only one time in the answer")
    start, end = times
    if not (math.isfinite(start) and math.isfinite(end)):
        return fail("time too large")
    if start > end:
        start, end = end, start
        repairs.append("reversed span swapped")
    if duration is not None and math.isfinite(duration) and duration >= 0:
        if start > duration:
            return fail(f"span starts at {start:g}s, after the video ends ({duration:g}s)")
        if end > duration:
            end = duration
            repairs.append("end clipped to the video's end")
    if end < 0:
        return fail(f"span ends before the video starts ({end:g}s)")
    if start < 0:
        start = 0.0
        repairs.append("start clipped to 0")
    return SpanParse((start, end), "ok", repairs=tuple(repairs), **base)


# --------------------------------------------------------------------- boxes
@dataclass(frozen=True)
class RawBox:
    """A box as the model wrote it, in its own coordinates, with its label when it gave one."""

    coords: tuple[float, float, float, float]
    label: str | None = None


@dataclass(frozen=True)
class BoxGeometry:
    """How to turn a model's box into original pixels.

    ``model_size`` is (width, height) of the image as the model saw it, after the processor's resize;
    ``original_size`` that of the original colour frame.
    """

    convention: str
    model_size: tuple[int, int]
    original_size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.convention not in BOX_CONVENTIONS:
            raise ConfigError(f"unknown box convention '{self.convention}'; choose from {', '.join(BOX_CONVENTIONS)}")
        for name in ("model_size", "original_size"):
            w, h = getattr(self, name)
            if not (w > 0 and h > 0):
                raise ConfigError(f"{name} must be positive, got {w}x{h}")


@dataclass(frozen=True)
class MappedBox:
    """A usable box in original colour pixels ``(x1, y1, x2, y2)``, x2/y2 exclusive."""

    box: tuple[float, float, float, float]
    label: str | None
    raw: RawBox
    repairs: tuple[str, ...] = ()


@dataclass(frozen=True)
class BoxParse:
    """An image-stage answer: the primary box (the first usable one) and everything else found."""

    value: tuple[float, float, float, float] | None
    reason: str
    label: str | None = None
    boxes: tuple[MappedBox, ...] = ()
    raw_boxes: tuple[RawBox, ...] = ()
    rejected: tuple[str, ...] = ()
    think: str | None = None
    answer: str | None = None
    format_ok: bool = False
    repairs: tuple[str, ...] = ()
    absent: bool = False  # the answer says the object is not in the image (an empty list, ``[]``)


#: The reason of an answer that says the object is not in the image.
ABSENT_REASON = "the model says it is not in the image"
_EMPTY_LIST = re.compile(r"\s*\[\s*\]\s*")


def _json_values(text: str) -> list[Any]:
    """Every JSON object or array embedded in ``text``, left to right, non-overlapping."""
    decoder = json.JSONDecoder(parse_constant=lambda _: math.nan)  # NaN/Infinity decode, then fail the checks
    out: list[Any] = []
    pos, attempts = 0, 0
    while attempts < _MAX_JSON_ATTEMPTS:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            break
        start = min(starts)
        attempts += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            pos = start + 1
            continue
        out.append(value)
        pos = max(end, start + 1)
    return out


def _as_float(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        try:
            return float(x)
        except OverflowError:
            return math.inf
    if isinstance(x, float):
        return x
    if isinstance(x, str) and re.fullmatch(r"\s*-?" + _NUMBER + r"\s*", x):
        return float(x)
    return None


def _four_numbers(value: Any) -> tuple[float, float, float, float] | str:
    """Four coordinates from ``[x1, y1, x2, y2]`` or ``[[x1, y1], [x2, y2]]``, else why not."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in value
    ):
        value = [*value[0], *value[1]]
    if not isinstance(value, (list, tuple)):
        return f"box is a {type(value).__name__}, not a list"
    if len(value) != 4:
        return f"box has {len(value)} numbers, not 4"
    numbers = [_as_float(v) for v in value]
    if any(n is None for n in numbers):
        return "box holds something other than numbers"
    if not all(math.isfinite(n) for n in numbers):  # type: ignore[arg-type]
        return "box has a non-finite coordinate"
    return tuple(numbers)  # type: ignore[return-value]


def _label(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return " ".join(value.split())[:200]
    return None


def _collect(value: Any, boxes: list[RawBox], rejected: list[str], depth: int = 0) -> None:
    if depth > 16 or len(boxes) >= MAX_BOXES:
        return
    if isinstance(value, dict):
        key = next((k for k in value if isinstance(k, str) and k.lower() in _BOX_KEYS), None)
        if key is not None:
            coords = _four_numbers(value[key])
            if isinstance(coords, str):
                rejected.append(f"{key}: {coords}")
            else:
                boxes.append(RawBox(coords, _label(value.get("label"))))
            return
        for v in value.values():
            _collect(v, boxes, rejected, depth + 1)
    elif isinstance(value, list):
        coords = _four_numbers(value)
        if not isinstance(coords, str):
            boxes.append(RawBox(coords))
            return
        for v in value:
            if isinstance(v, (dict, list)):
                _collect(v, boxes, rejected, depth + 1)


_SIGNED = r"-?" + _NUMBER + r"(?:[eE][-+]?\d{1,4})?"
_BRACKET_BOX = re.compile(rf"\[\s*({_SIGNED})\s*,\s*({_SIGNED})\s*,\s*({_SIGNED})\s*,\s*({_SIGNED})\s*\]")
_POINT_PAIR_BOX = re.compile(
    rf"\(\s*({_SIGNED})\s*,\s*({_SIGNED})\s*\)\s*,?\s*(?:to\s*)?\(\s*({_SIGNED})\s*,\s*({_SIGNED})\s*\)"
)
_BARE_BOX = re.compile(rf"\s*({_SIGNED})\s*[,\s]\s*({_SIGNED})\s*[,\s]\s*({_SIGNED})\s*[,\s]\s*({_SIGNED})\s*")
_LABEL = re.compile(r"""["']label["']\s*:\s*["']([^"'\\\n]{1,200})["']""")


def _raw_boxes(body: str) -> tuple[list[RawBox], list[str], list[str]]:
    """Boxes in an answer body: from JSON first, else from bracketed or bare numbers."""
    boxes: list[RawBox] = []
    rejected: list[str] = []
    notes: list[str] = []
    label_match = _LABEL.search(body)
    label = _label(label_match.group(1)) if label_match else None
    for value in _json_values(body):
        _collect(value, boxes, rejected)
    if boxes or rejected:
        if label is not None and all(b.label is None for b in boxes):
            # a Python-style dict is not JSON, but its list is: keep the label written beside it
            boxes = [RawBox(b.coords, label) for b in boxes]
        return boxes, rejected, notes
    for pattern in (_BRACKET_BOX, _POINT_PAIR_BOX):
        for m in pattern.finditer(body):
            coords = _four_numbers([float(g) for g in m.groups()])
            if isinstance(coords, str):
                rejected.append(coords)
            else:
                boxes.append(RawBox(coords, label))
            if len(boxes) >= MAX_BOXES:
                break
        if boxes or rejected:
            notes.append("box read without valid JSON")
            return boxes, rejected, notes
    m = _BARE_BOX.fullmatch(body)
    if m:
        coords = _four_numbers([float(g) for g in m.groups()])
        if isinstance(coords, str):
            rejected.append(coords)
        else:
            boxes.append(RawBox(coords, label))
            notes.append("box read from bare numbers")
    return boxes, rejected, notes


def map_box(raw: RawBox, geometry: BoxGeometry, min_size: float = 1.0) -> MappedBox | str:
    """``raw`` in original pixels, corners ordered and clipped to the image; a reason string if unusable."""
    W, H = geometry.original_size
    if geometry.convention == "normalized_1000":
        sx, sy = W / 1000.0, H / 1000.0
    else:
        sx, sy = W / geometry.model_size[0], H / geometry.model_size[1]
    x1, y1, x2, y2 = raw.coords
    repairs = []
    if x1 > x2 or y1 > y2:
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
        repairs.append("corners swapped")
    box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
    if not all(math.isfinite(v) for v in box):
        return "coordinates too large"
    W, H = float(W), float(H)
    clipped = (min(max(box[0], 0.0), W), min(max(box[1], 0.0), H), min(max(box[2], 0.0), W), min(max(box[3], 0.0), H))
    if clipped != box:
        repairs.append("clipped to the image")
    w, h = clipped[2] - clipped[0], clipped[3] - clipped[1]
    if w < min_size or h < min_size:
        if box[2] - box[0] >= min_size and box[3] - box[1] >= min_size:
            if box[2] <= 0 or box[3] <= 0 or box[0] >= W or box[1] >= H:
                return "box lies outside the image"
            return f"degenerate box after clipping ({w:.1f} x {h:.1f} px)"
        return f"degenerate box ({box[2] - box[0]:.1f} x {box[3] - box[1]:.1f} px)"
    return MappedBox(clipped, raw.label, raw, tuple(repairs))


def parse_box(text: str, geometry: BoxGeometry, min_size: float = 1.0) -> BoxParse:
    """Read ``<answer>{"bbox_2d": [...], "label": ...}</answer>`` and map every box to original pixels.

    Several boxes are all kept (``boxes``); the first usable one is the primary ``value``. Boxes narrower
    or lower than ``min_size`` original pixels after clipping are rejected with the reason. An empty list,
    ``<answer>[]</answer>``, is the answer "it is not in the image": no box, ``absent`` set.
    """
    tagged = split_tags(text)
    repairs = list(tagged.notes)
    base = dict(think=tagged.think, answer=tagged.answer, format_ok=tagged.format_ok)
    if tagged.answer == "":
        return BoxParse(None, "empty <answer>", repairs=tuple(repairs), **base)
    body = _body(tagged).replace("```json", " ").replace("```", " ")
    if _EMPTY_LIST.fullmatch(body):  # "no such object here", as Qwen answers a grounding request with none
        return BoxParse(None, ABSENT_REASON, repairs=tuple(repairs), absent=True, **base)
    raw, rejected, notes = _raw_boxes(body)
    repairs.extend(notes)
    mapped: list[MappedBox] = []
    for r in raw:
        result = map_box(r, geometry, min_size)
        if isinstance(result, str):
            rejected.append(result)
        else:
            mapped.append(result)
    if len(raw) > 1:
        repairs.append(f"{len(raw)} boxes in the answer; the first usable one is primary")
    if not mapped:
        if rejected:
            reason = "no usable box: " + "; ".join(dict.fromkeys(rejected))
        else:
            reason = "no box in the answer"
        return BoxParse(None, reason, None, (), tuple(raw), tuple(rejected), repairs=tuple(repairs), **base)
    primary = mapped[0]
    repairs.extend(primary.repairs)
    return BoxParse(
        primary.box, "ok", primary.label, tuple(mapped), tuple(raw), tuple(rejected), repairs=tuple(repairs), **base
    )


#: category words that look plural but are not
_INVARIANT = frozenset(["glasses", "pants", "shorts", "scissors", "clothes", "curtains", "blinds", "stairs", "headphones", "speakers", "shoes", "towels", "boots"])
_KEEP_S = frozenset(["glass", "bus", "gas", "lens", "cactus", "canvas", "chassis", "series", "species", "mattress", "dress", "boss"])


def singular(word: str) -> str:
    """English singular of one (lower-case) noun by rule; unknown shapes are returned unchanged."""
    w = word
    if w in _INVARIANT or w in _KEEP_S or len(w) <= 3 or not w.endswith("s") or w.endswith("ss"):
        return w
    if w.endswith("ves") and len(w) > 4:
        return w[:-3] + ("fe" if w[:-3].endswith(("kni", "wi", "li")) else "f")  # shelves, knives
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("xes", "ches", "shes", "sses", "zes")):
        return w[:-2]
    if w.endswith("oes"):
        return w[:-2]
    return w[:-1]
