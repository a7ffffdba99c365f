"""ReferIt3D (Nr3D, Sr3D): accuracy of identifying the target object, overall, easy / hard, view-dependent /
view-independent.

Annotation file: the released CSV (``nr3d_test.csv``, ``sr3d_test.csv`` or samples of them) with at least
``stimulus_id, utterance, scan_id, target_id, tokens``. The labels follow ReferIt3D's analysis code:

* ``stimulus_id`` is ``<scan>-<class>-<n>-<target>[-<distractor>...]`` where ``n`` counts the objects of the
  target's fine-grained class in the scene (the target included); "hard" means ``n > 2``;
* "view-dependent" means the token list contains one of front, behind, back, right, left, facing, leftmost,
  rightmost, looking, across.

Stimulus ids repeat (several utterances per stimulus, even identical ones), so the item id is
``"<stimulus_id>:<row>"`` with ``row`` the 0-based data row of the file.

A prediction names the chosen ground-truth object (``object_id``), or gives a box (``box_3d``); a box picks the
scene's ground-truth object it overlaps most (IoU > 0), as box-predicting methods are scored on these benchmarks.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScenerError
from .benchmark import Benchmark
from .boxes import aabb_iou, box_to_json
from .gt import GTBoxStore, check_scene_id
from .items import EvalResult, Item, ReferItem
from .report import percent, split_table
from .scanrefer import BOX_KEYS, box_of_record

VIEW_DEPENDENT_WORDS = frozenset(
    {"front", "behind", "back", "right", "left", "facing", "leftmost", "rightmost", "looking", "across"}
)
REQUIRED_COLUMNS = ("stimulus_id", "utterance", "scan_id", "target_id", "tokens")


def decode_stimulus_id(stimulus_id: str) -> tuple[str, str, int, int, tuple[int, ...]]:
    """``(scene, class, n_objects, target, distractors)`` from a ReferIt3D stimulus id."""
    parts = str(stimulus_id).split("-", 4)
    if len(parts) < 4:
        raise ScenerError(f"stimulus_id {stimulus_id!r} is not <scan>-<class>-<n>-<target>[-<distractors>]")
    try:
        n_objects, target = int(parts[2]), int(parts[3])
        distractors = tuple(int(x) for x in parts[4].split("-") if x != "") if len(parts) == 5 else ()
    except ValueError:
        raise ScenerError(f"stimulus_id {stimulus_id!r} has non-integer counts or ids") from None
    if len(distractors) != n_objects - 1:
        raise ScenerError(f"stimulus_id {stimulus_id!r}: {n_objects} objects but {len(distractors)} distractors")
    return parts[0], parts[1].replace("_", " "), n_objects, target, distractors


def parse_tokens(text: str, where: str) -> tuple[str, ...]:
    try:
        tokens = ast.literal_eval(text)  # a Python list literal in the release; literal_eval runs no code
    except (ValueError, SyntaxError):
        raise ScenerError(f"{where}: tokens {text[:60]!r} is not a list literal") from None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise ScenerError(f"{where}: tokens must be a list of strings")
    return tuple(tokens)


def load_referit3d(path: str | Path) -> list[ReferItem]:
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ScenerError(f"ReferIt3D annotation file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ScenerError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ScenerError(f"{path}: missing column(s) {', '.join(missing)} (is this a ReferIt3D CSV?)")
    items = []
    for row, rec in enumerate(df.to_dict("records")):
        where = f"{path}: row {row}"
        scene, label, n_objects, target, distractors = decode_stimulus_id(rec["stimulus_id"])
        scene_id = check_scene_id(rec["scan_id"])
        try:
            target_id = int(rec["target_id"])
        except ValueError:
            raise ScenerError(f"{where}: target_id {rec['target_id']!r} is not an integer") from None
        if scene != scene_id or target != target_id:
            raise ScenerError(f"{where}: stimulus_id {rec['stimulus_id']} disagrees with scan_id/target_id")
        tokens = parse_tokens(rec["tokens"], where)
        items.append(ReferItem(
            id=f"{rec['stimulus_id']}:{row}",
            scene_id=scene_id,
            text=rec["utterance"],
            target_id=target_id,
            stimulus_id=rec["stimulus_id"],
            instance_type=rec.get("instance_type") or label,
            n_objects=n_objects,
            distractor_ids=distractors,
            hard=n_objects > 2,
            view_dependent=not VIEW_DEPENDENT_WORDS.isdisjoint(tokens),
            tokens=tokens,
        ))
    return items


class ReferIt3DBenchmark(Benchmark):
    name = "nr3d"

    def __init__(self, items: Sequence[ReferItem], *, name: str = "nr3d", gt: GTBoxStore | None = None, **kwargs):
        super().__init__(items, **kwargs)
        self.name = name
        self.gt = gt
        pairs: dict[tuple[str, str], list[str]] = {}
        for it in self.items:
            pairs.setdefault((it.stimulus_id, it.text), []).append(it.id)
        self._by_pair = {k: v[0] for k, v in pairs.items() if len(v) == 1}

    def key_of(self, record: Mapping) -> str | None:
        if "stimulus_id" in record and "utterance" in record:
            return self._by_pair.get((str(record["stimulus_id"]), str(record["utterance"])))
        return None

    def parse_prediction(self, record: Mapping, item: Item) -> tuple[str, Any]:
        for key in ("object_id", "target_id"):
            if key in record and record[key] is not None:
                value = record[key]
                if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
                    raise ScenerError(f"{key} must be an integer, got {value!r}")
                return "object", int(value)
        if any(k in record for k in BOX_KEYS):
            return "box", box_of_record(record)
        raise ScenerError("expected object_id (the chosen ground-truth object) or box_3d")

    def oracle(self, item: Item) -> dict:
        return {"object_id": item.target_id}

    def box_oracle(self, item: ReferItem) -> dict:
        """The target's ground-truth box as a box prediction."""
        return {"box_3d": box_to_json(self._store().scene(item.scene_id).boxes_of([item.target_id])[0])}

    def _store(self) -> GTBoxStore:
        if self.gt is None:
            raise ScenerError(f"{self.name}: box predictions need the ground-truth boxes (--gt-boxes DIR)")
        return self.gt

    def chosen_object(self, item: ReferItem, value: tuple[str, Any] | None) -> int | None:
        if value is None:
            return None
        kind, payload = value
        if kind == "object":
            return payload
        scene = self._store().scene(item.scene_id)
        ious = aabb_iou(scene.aabbs, payload[None, :])
        best = int(np.argmax(ious)) if len(ious) else -1
        return int(scene.object_ids[best]) if best >= 0 and ious[best] > 0 else None

    def score(self, values: Mapping[str, Any]) -> EvalResult:
        correct = np.array([self.chosen_object(it, values.get(it.id)) == it.target_id for it in self.items])
        hard = np.array([it.hard for it in self.items])
        view = np.array([it.view_dependent for it in self.items])
        masks = {"overall": np.ones(len(self.items), bool), "easy": ~hard, "hard": hard,
                 "view_dep": view, "view_indep": ~view}
        metrics = {split: {"acc": percent(correct[mask])} for split, mask in masks.items()}
        counts = {split: int(mask.sum()) for split, mask in masks.items()}
        columns = [("Overall", "overall", "acc"), ("Easy", "easy", "acc"), ("Hard", "hard", "acc"),
                   ("View-dep", "view_dep", "acc"), ("View-indep", "view_indep", "acc")]
        return EvalResult(self.name, metrics, counts, split_table(metrics, columns, self.label, counts))
