"""Multi3DRefer: F1@0.25 / F1@0.5 over descriptions with zero, one or several targets.

Annotation file: Multi3DRefer's JSON list of ``{scene_id, ann_id, description, object_ids, eval_type, ...}``
(``eval_type`` one of zt_wo_d, zt_w_d, st_wo_d, st_w_d, mt; the parquet release's plain "zt" is accepted too, and
its ``aabb_3d_min``/``aabb_3d_max`` columns serve as the ground truth when present). Item id:
``"<scene_id>/<ann_id>"`` (ann_id is unique within a scene in this dataset).

Per query the predicted boxes are Hungarian-matched to the targets' boxes on IoU (see
:func:`scener1.eval.metrics.multi_target_f1`); each split and the overall score are means over queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScenerError
from .benchmark import Benchmark, as_int, read_json, require
from .boxes import box_to_json, parse_box
from .gt import GTBoxStore, check_scene_id
from .items import EvalResult, Item, MultiGroundingItem
from .metrics import multi_target_f1
from .report import markdown_table, fmt, percent

THRESHOLDS = (0.25, 0.5)
EVAL_TYPES = ("zt_wo_d", "zt_w_d", "st_wo_d", "st_w_d", "mt")
TITLES = {"zt_wo_d": "ZT w/o D", "zt_w_d": "ZT w/ D", "st_wo_d": "ST w/o D", "st_w_d": "ST w/ D", "mt": "MT",
          "zt": "ZT", "overall": "All"}
BOXES_KEYS = ("boxes_3d", "aabb_bound", "aabb", "boxes")


def _expected_count_ok(eval_type: str, n: int) -> bool:
    return n == 0 if eval_type.startswith("zt") else n == 1 if eval_type.startswith("st") else n >= 2


def _records(path: Path) -> list[Mapping]:
    if path.suffix == ".parquet":
        import pandas as pd

        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise ScenerError(f"{path}: not a readable parquet file ({exc})") from None
        return df.to_dict("records")
    data = read_json(path, "Multi3DRefer annotation file")
    if not isinstance(data, list):
        raise ScenerError(f"{path}: expected a JSON list of Multi3DRefer entries")
    return data


def load_multi3drefer(path: str | Path) -> list[MultiGroundingItem]:
    path = Path(path)
    if not path.is_file():
        raise ScenerError(f"Multi3DRefer annotation file not found: {path}")
    items = []
    for i, entry in enumerate(_records(path)):
        where = f"{path}: entry {i}"
        require(entry, ("scene_id", "ann_id", "description", "object_ids", "eval_type"), where)
        scene_id = check_scene_id(entry["scene_id"])
        eval_type = str(entry["eval_type"])
        if eval_type not in (*EVAL_TYPES, "zt"):
            raise ScenerError(f"{where}: eval_type {eval_type!r} is not one of {', '.join(EVAL_TYPES)}")
        object_ids = tuple(as_int(v, where) for v in list(entry["object_ids"]))
        if not _expected_count_ok(eval_type, len(object_ids)):
            raise ScenerError(f"{where}: eval_type {eval_type} with {len(object_ids)} target(s)")
        gt_aabbs = None
        if entry.get("aabb_3d_min") is not None and entry.get("aabb_3d_max") is not None:
            lo = np.asarray([list(v) for v in entry["aabb_3d_min"]], np.float64).reshape(-1, 3)
            hi = np.asarray([list(v) for v in entry["aabb_3d_max"]], np.float64).reshape(-1, 3)
            if len(lo) != len(object_ids) or len(hi) != len(object_ids):
                raise ScenerError(f"{where}: {len(object_ids)} targets but {len(lo)} boxes")
            gt_aabbs = tuple(tuple(float(x) for x in row) for row in np.concatenate([lo, hi], axis=1))
        ann_id = as_int(entry["ann_id"], where)
        items.append(MultiGroundingItem(
            id=f"{scene_id}/{ann_id}",
            scene_id=scene_id,
            text=str(entry["description"]),
            ann_id=ann_id,
            object_ids=object_ids,
            object_name=str(entry.get("object_name", "")),
            eval_type=eval_type,
            gt_aabbs=gt_aabbs,
        ))
    return items


def boxes_of_record(record: Mapping) -> np.ndarray:
    for key in BOXES_KEYS:
        if key in record and record[key] is not None:
            boxes = record[key]
            if not isinstance(boxes, (list, tuple)):
                raise ScenerError(f"{key} must be a list of boxes")
            return np.stack([parse_box(b) for b in boxes]) if boxes else np.zeros((0, 6))
    raise ScenerError(f"no boxes: expected one of {', '.join(BOXES_KEYS)} (a list, empty for no target)")


class Multi3DReferBenchmark(Benchmark):
    name = "multi3drefer"

    def __init__(self, items: Sequence[MultiGroundingItem], *, gt: GTBoxStore | None = None, **kwargs):
        super().__init__(items, **kwargs)
        self.gt = gt

    def key_of(self, record: Mapping) -> str | None:
        if "scene_id" in record and "ann_id" in record:
            try:
                return f"{record['scene_id']}/{int(record['ann_id'])}"
            except (TypeError, ValueError):
                return None
        return None

    def parse_prediction(self, record: Mapping, item: Item) -> np.ndarray:
        return boxes_of_record(record)

    def gt_boxes(self, item: MultiGroundingItem) -> np.ndarray:
        if item.gt_aabbs is not None:
            return np.asarray(item.gt_aabbs, np.float64).reshape(-1, 6)
        if not item.object_ids:
            return np.zeros((0, 6))
        if self.gt is None:
            raise ScenerError(f"{self.name}: scoring needs the ground-truth boxes (--gt-boxes DIR)")
        return self.gt.scene(item.scene_id).boxes_of(item.object_ids)

    def oracle(self, item: Item) -> dict:
        return {"boxes_3d": [box_to_json(b) for b in self.gt_boxes(item)]}

    def score(self, values: Mapping[str, Any]) -> EvalResult:
        # a missing prediction is wrong even for a zero-target query (where "no boxes" would score 1)
        f1 = np.zeros((len(self.items), len(THRESHOLDS)))
        for row, it in enumerate(self.items):
            value = values.get(it.id)
            if value is not None:
                f1[row] = multi_target_f1(value, self.gt_boxes(it), THRESHOLDS)
        types = np.array([it.eval_type for it in self.items])
        splits = [*EVAL_TYPES, *(["zt"] if "zt" in set(types) else [])]
        masks = {t: types == t for t in splits}
        masks["overall"] = np.ones(len(self.items), bool)
        metrics = {s: {f"f1@{k}": percent(f1[m, j]) for j, k in enumerate(THRESHOLDS)} for s, m in masks.items()}
        counts = {s: int(m.sum()) for s, m in masks.items()}
        header = ["Method", "IoU", *(TITLES[s] for s in masks)]
        rows = [[self.label, str(k), *(fmt(metrics[s][f"f1@{k}"]) for s in masks)] for k in THRESHOLDS]
        rows.append(["(items)", "", *(str(counts[s]) for s in masks)])
        return EvalResult(self.name, metrics, counts, markdown_table(header, rows))
