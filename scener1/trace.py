"""What each stage of a grounding run saw, said and decided, kept for the user and for debugging.

Every VLM stage returns a :class:`StageTrace` next to its result: the prompt it sent, the model's raw
answer, what the parser made of it and whether a fallback replaced it. Traces are plain data and
serialise to strict JSON (non-finite floats become ``null``) so a run's ``result.json`` can hold them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` as nested dicts, lists, strings, finite floats, ints, bools and ``None``.

    Dataclasses become dicts of their fields, numpy arrays and tuples become lists, paths strings;
    NaN and infinities become ``None`` because strict JSON has no spelling for them.
    """
    if _depth > 64:  # traces are shallow; anything deeper is a cycle or a bug, not data
        raise ValueError("value nested too deeply to serialise")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), _depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name), _depth + 1) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, _depth + 1) for v in value]
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


@dataclass(frozen=True)
class StageTrace:
    """One stage of a run: its inputs (summarised), prompt, raw model output, parsed value and fallback.

    ``raw_output`` holds one string per model answer the stage asked for (several for the image stage's
    candidate frames); ``fallback`` says in words what replaced an unusable answer, ``None`` when none did.
    """

    stage: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    prompt: str = ""
    raw_output: tuple[str, ...] = ()
    parsed: Any = None
    fallback: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StageTrace":
        """Rebuild a trace read back from JSON (``parsed`` stays plain data)."""
        return cls(
            stage=str(data["stage"]),
            inputs=dict(data.get("inputs") or {}),
            prompt=str(data.get("prompt") or ""),
            raw_output=tuple(str(s) for s in data.get("raw_output") or ()),
            parsed=data.get("parsed"),
            fallback=data.get("fallback"),
            seconds=float(data.get("seconds") or 0.0),
        )
