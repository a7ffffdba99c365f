"""What the benchmarks are made of: one frozen item per query, and the result of scoring a prediction set.

Every item has an ``id`` (unique within its benchmark, the key of the prediction files), the ``scene_id`` it
asks about, the query ``text`` and, when a run resolved it, the ``scene_path`` of the recording. The
subclasses add what their metric needs. ``to_dict()`` gives a JSON-ready view for predictors and logs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class Item:
    id: str
    scene_id: str
    text: str
    scene_path: str | None = None  # the recording, set by a run from --scans

    task: ClassVar[str] = "generic"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["task"] = self.task
        return out


@dataclass(frozen=True, kw_only=True)
class GroundingItem(Item):
    """A ScanRefer query: one target object, scored by box IoU."""

    object_id: int
    ann_id: int
    object_name: str
    eval_type: str | None = None  # "unique" / "multiple" when the annotation file carries it

    task: ClassVar[str] = "grounding"


@dataclass(frozen=True, kw_only=True)
class ReferItem(Item):
    """A ReferIt3D (Nr3D / Sr3D) utterance: pick the target among the scene's objects."""

    target_id: int
    stimulus_id: str
    instance_type: str
    n_objects: int  # objects of the target's class in the scene, the target included (from stimulus_id)
    distractor_ids: tuple[int, ...]
    hard: bool  # more than 2 objects of the target's class
    view_dependent: bool
    tokens: tuple[str, ...]

    task: ClassVar[str] = "referit3d"


@dataclass(frozen=True, kw_only=True)
class MultiGroundingItem(Item):
    """A Multi3DRefer description: zero, one or several targets, scored by F1 after Hungarian matching."""

    ann_id: int
    object_ids: tuple[int, ...]
    object_name: str
    eval_type: str
    gt_aabbs: tuple[tuple[float, ...], ...] | None = None  # given by the parquet release; else from GT files

    task: ClassVar[str] = "multi_grounding"


@dataclass(frozen=True, kw_only=True)
class QAItem(Item):
    """A ScanQA or SQA3D question with its reference answers."""

    question_id: str
    answers: tuple[str, ...]
    object_ids: tuple[int, ...] = ()
    situation: str | None = None  # SQA3D: the agent's situation, read before the question
    question_type: str | None = None  # SQA3D: what / is / how / can / which / others

    task: ClassVar[str] = "qa"


@dataclass(frozen=True, kw_only=True)
class VSIItem(Item):
    """A VSI-Bench question about a video (``scene_id`` is the benchmark's ``scene_name``)."""

    dataset: str
    question_type: str
    ground_truth: str
    options: tuple[str, ...] = ()

    task: ClassVar[str] = "vsibench"


@dataclass(frozen=True)
class EvalResult:
    """Scores of one benchmark.

    ``metrics[split][metric]`` holds percentages (``None`` for a split without items); ``counts[split]`` the
    number of items behind each split, plus ``predicted``, ``missing``, ``failed`` (items whose prediction
    recorded an error) and ``extra`` (predictions for ids outside the benchmark, ignored). ``table`` is a
    markdown table shaped like the papers' tables; ``parts`` holds the sub-results of a composite benchmark.
    """

    benchmark: str
    metrics: dict[str, dict[str, float | None]]
    counts: dict[str, int]
    table: str
    notes: tuple[str, ...] = ()
    parts: tuple["EvalResult", ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "benchmark": self.benchmark,
            "metrics": self.metrics,
            "counts": self.counts,
            "notes": list(self.notes),
        }
        if self.parts:
            out["parts"] = {p.benchmark: p.to_dict() for p in self.parts}
        return out

    def markdown(self, title: bool = True) -> str:
        blocks = []
        if title:
            blocks.append(f"### {self.benchmark}\n")
        if self.table:
            blocks.append(self.table)
        for part in self.parts:
            blocks.append(part.markdown(title=True))
        if self.notes:
            blocks.append("\n".join(f"- {n}" for n in self.notes))
        return "\n\n".join(b.rstrip() for b in blocks) + "\n"
