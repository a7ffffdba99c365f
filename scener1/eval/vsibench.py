"""VSI-Bench: spatial questions about indoor videos, scored per question type.

Annotation file: the released parquet (``test-00000-of-00001.parquet``; columns ``id, dataset, scene_name,
question_type, question, ground_truth, options``) or the same rows as JSON / JSONL. Item id = ``id``.

Scoring follows the official code: the prediction is cut to its first space-separated word with trailing full
stops removed; multiple-choice types score a case-insensitive exact match with the option letter; numeric types
score Mean Relative Accuracy (:func:`~scener1.eval.metrics.mean_relative_accuracy`), 0 for an unparsable number.
Each type's score is its mean; the three relative-direction sub-types are averaged into one, and "overall" is the
mean of the eight type scores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScenerError
from .benchmark import Benchmark, read_json, require
from .gt import check_scene_id
from .items import EvalResult, Item, VSIItem
from .metrics import mean_relative_accuracy, parse_number, vsi_first_word
from .report import markdown_table, fmt

NUMERIC_TYPES = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation")
CHOICE_TYPES = (
    "object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard",
    "route_planning", "obj_appearance_order",
)
REL_DIRECTION = ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard")
#: reported types in the paper's column order, with their titles
REPORTED = (
    ("object_counting", "Obj. Count"), ("object_abs_distance", "Abs. Dist."), ("object_size_estimation", "Obj. Size"),
    ("room_size_estimation", "Room Size"), ("object_rel_distance", "Rel. Dist."), ("object_rel_direction", "Rel. Dir."),
    ("route_planning", "Route Plan"), ("obj_appearance_order", "Appr. Order"),
)
REQUIRED = ("id", "scene_name", "question_type", "question", "ground_truth")


def _rows(path: Path) -> list[Mapping]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pandas as pd

        try:
            return pd.read_parquet(path).to_dict("records")
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise ScenerError(f"{path}: not a readable parquet file ({exc})") from None
    if suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        raise ScenerError(f"{path}:{n}: not valid JSON") from None
        return rows
    if suffix == ".json":
        data = read_json(path, "VSI-Bench file")
        if not isinstance(data, list):
            raise ScenerError(f"{path}: expected a JSON list of rows")
        return data
    raise ScenerError(f"{path}: VSI-Bench annotations must be .parquet, .json or .jsonl (the CSV dump mangles options)")


def load_vsibench(path: str | Path, id_prefix: str = "") -> list[VSIItem]:
    path = Path(path)
    if not path.is_file():
        raise ScenerError(f"VSI-Bench annotation file not found: {path}")
    items = []
    for i, row in enumerate(_rows(path)):
        where = f"{path}: row {i}"
        require(row, REQUIRED, where)
        qtype = str(row["question_type"])
        if qtype not in NUMERIC_TYPES and qtype not in CHOICE_TYPES:
            raise ScenerError(f"{where}: unknown question_type {qtype!r}")
        options = row.get("options")
        options = () if options is None else tuple(str(o) for o in list(options))
        items.append(VSIItem(
            id=id_prefix + str(row["id"]),
            scene_id=check_scene_id(str(row["scene_name"])),
            text=str(row["question"]),
            dataset=str(row.get("dataset") or ""),
            question_type=qtype,
            ground_truth=str(row["ground_truth"]),
            options=options,
        ))
    return items


def score_answer(item: VSIItem, prediction: str) -> float:
    answer = vsi_first_word(prediction)
    if item.question_type in NUMERIC_TYPES:
        gt = parse_number(item.ground_truth)
        if gt is None:
            raise ScenerError(f"VSI-Bench item {item.id}: ground truth {item.ground_truth!r} is not a number")
        return mean_relative_accuracy(parse_number(answer), gt)
    return 1.0 if answer.lower() == item.ground_truth.strip().lower() else 0.0


class VSIBenchmark(Benchmark):
    name = "vsibench"

    def key_of(self, record: Mapping) -> str | None:
        return None  # "id" is the benchmark's own key

    def parse_prediction(self, record: Mapping, item: Item) -> str:
        for key in ("prediction", "answer", "pred"):
            if key in record and record[key] is not None:
                value = record[key]
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise ScenerError(f"{key} must be a string or number, got {value!r}")
                return str(value)
        raise ScenerError("expected prediction (the model's answer text)")

    def oracle(self, item: Item) -> dict:
        return {"prediction": item.ground_truth}

    def score(self, values: Mapping[str, Any]) -> EvalResult:
        scores = np.array([score_answer(it, values[it.id]) if values.get(it.id) is not None else 0.0
                           for it in self.items])
        types = np.array([it.question_type for it in self.items])
        per_type: dict[str, float | None] = {}
        counts: dict[str, int] = {}
        for qtype in (*NUMERIC_TYPES, *CHOICE_TYPES):
            mask = types == qtype
            counts[qtype] = int(mask.sum())
            per_type[qtype] = float(scores[mask].mean() * 100.0) if mask.any() else None
        sub = [per_type[t] for t in REL_DIRECTION if per_type[t] is not None]
        per_type["object_rel_direction"] = float(np.mean(sub)) if sub else None
        counts["object_rel_direction"] = sum(counts[t] for t in REL_DIRECTION)
        reported = [per_type[t] for t, _ in REPORTED if per_type[t] is not None]
        overall = float(np.mean(reported)) if reported else None
        counts["overall"] = len(self.items)
        metrics = {"overall": {"score": overall}}
        metrics.update({t: {"MRA" if t in NUMERIC_TYPES else "acc": v} for t, v in per_type.items()})
        notes = []
        absent = [t for t, _ in REPORTED if per_type[t] is None]
        if absent:
            notes.append(f"overall averages the {len(reported)} question types present (absent: {', '.join(absent)})")
        header = ["Method", "Avg.", *(title for _, title in REPORTED)]
        rows = [[self.label, fmt(overall), *(fmt(per_type[t]) for t, _ in REPORTED)],
                ["(items)", str(len(self.items)), *(str(counts[t]) for t, _ in REPORTED)]]
        return EvalResult(self.name, metrics, counts, markdown_table(header, rows), tuple(notes))
