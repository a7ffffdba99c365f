"""ScanRefer: Acc@0.25 / Acc@0.5 of one predicted box per description, overall and split unique / multiple.

Annotation file: ScanRefer's JSON list of ``{scene_id, object_id, object_name, ann_id, description, token}``
(``object_id``/``ann_id`` may be strings), optionally with ``eval_type`` ("unique" / "multiple"), as written by
Multi3DRefer's tools and by ``scener1.synth``. Item id: ``"<scene_id>/<object_id>/<ann_id>"``.

Unique / multiple (ScanRefer's definition): the target's class is one of ScanRefer's 18 classes, read from its
``object_name`` through the ``raw_category -> nyu40class`` columns of ``scannetv2-labels.combined.tsv`` (17 named
classes, everything else "others"); a description is "unique" when that class occurs exactly once among the
scene's objects. Which objects make up the scene is the ``population`` choice:

* ``annotations``: the objects described in the annotation file itself (ScanRefer's own code, which it runs on
  the complete split file);
* ``boxes``: every object of the scene's ground-truth box file, classed by its nyu40 label (the right choice for
  a sampled subset such as a 1000-query file, where most objects have lost their descriptions);
* ``file``: the ``eval_type`` of each entry;
* ``auto``: ``file`` when every entry has an ``eval_type``; else ``annotations`` when the file looks complete
  (on average at least 2 descriptions per described object, as in the released splits, 4.7), else ``boxes``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScenerError
from .benchmark import Benchmark, as_int, read_json, require
from .boxes import aabb_iou, box_to_json, parse_box
from .gt import GTBoxStore, LabelMap, check_scene_id
from .items import EvalResult, GroundingItem, Item
from .report import percent, split_table

THRESHOLDS = (0.25, 0.5)
POPULATIONS = ("auto", "file", "annotations", "boxes")
#: record keys holding one predicted box, in the order they are looked for
BOX_KEYS = ("box_3d", "bbox", "aabb_bound", "aabb", "box")


def scanrefer_id(scene_id: str, object_id: Any, ann_id: Any) -> str:
    return f"{scene_id}/{int(object_id)}/{int(ann_id)}"


def load_scanrefer(path: str | Path, id_prefix: str = "") -> list[GroundingItem]:
    """Every entry of a ScanRefer-format JSON file as :class:`GroundingItem` (one bad entry fails the load)."""
    data = read_json(path, "ScanRefer annotation file")
    if not isinstance(data, list):
        raise ScenerError(f"{path}: expected a JSON list of ScanRefer entries")
    items = []
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        require(entry, ("scene_id", "object_id", "ann_id", "description"), where)
        scene_id = check_scene_id(entry["scene_id"])
        object_id, ann_id = as_int(entry["object_id"], where), as_int(entry["ann_id"], where)
        eval_type = entry.get("eval_type")
        if eval_type is not None and eval_type not in ("unique", "multiple"):
            raise ScenerError(f"{where}: eval_type must be 'unique' or 'multiple', got {eval_type!r}")
        items.append(GroundingItem(
            id=id_prefix + scanrefer_id(scene_id, object_id, ann_id),
            scene_id=scene_id,
            text=str(entry["description"]),
            object_id=object_id,
            ann_id=ann_id,
            object_name=str(entry.get("object_name", "")),
            eval_type=eval_type,
        ))
    return items


def box_of_record(record: Mapping) -> np.ndarray:
    for key in BOX_KEYS:
        if key in record and record[key] is not None:
            return parse_box(record[key])
    raise ScenerError(
        f"no box: expected one of {', '.join(BOX_KEYS)} (e.g. \"box_3d\": {{\"center\": [..], \"size\": [..]}})"
    )


class ScanReferBenchmark(Benchmark):
    name = "scanrefer"

    def __init__(
        self,
        items: Sequence[GroundingItem],
        *,
        gt: GTBoxStore | None = None,
        label_map: LabelMap | None = None,
        population: str = "auto",
        **kwargs,
    ):
        super().__init__(items, **kwargs)
        if population not in POPULATIONS:
            raise ScenerError(f"unknown unique/multiple population {population!r}; choose from {', '.join(POPULATIONS)}")
        self.gt = gt
        self.label_map = label_map
        self.population = population
        self._population_items = self.items  # kept by subset(): unique/multiple is a property of the whole file
        self._splits: dict[str, str] | None = None
        self._split_note: str | None = None

    def key_of(self, record: Mapping) -> str | None:
        if all(k in record for k in ("scene_id", "object_id", "ann_id")):
            try:
                return scanrefer_id(record["scene_id"], record["object_id"], record["ann_id"])
            except (TypeError, ValueError):
                return None
        return None

    def parse_prediction(self, record: Mapping, item: Item) -> np.ndarray:
        return box_of_record(record)

    def _gt_store(self) -> GTBoxStore:
        if self.gt is None:
            raise ScenerError(f"{self.name}: scoring needs the ground-truth boxes (--gt-boxes DIR)")
        return self.gt

    def gt_box(self, item: GroundingItem) -> np.ndarray:
        return self._gt_store().scene(item.scene_id).boxes_of([item.object_id])[0]

    def oracle(self, item: Item) -> dict:
        return {"box_3d": box_to_json(self.gt_box(item))}

    # ------------------------------------------------------------------ unique / multiple
    def resolved_population(self) -> str:
        if self.population != "auto":
            return self.population
        everything = self._population_items
        if all(it.eval_type is not None for it in everything):
            return "file"
        objects = {(it.scene_id, it.object_id) for it in everything}
        return "annotations" if len(everything) >= 2 * len(objects) else "boxes"

    def splits(self) -> dict[str, str] | None:
        """"unique" / "multiple" per item id, or None when it cannot be computed (no label map)."""
        if self._splits is not None:
            return self._splits
        population = self.resolved_population()
        if population == "file":
            unlabelled = [it.id for it in self.items if it.eval_type is None]
            if unlabelled:
                raise ScenerError(f"{len(unlabelled)} entries have no eval_type (first: {unlabelled[0]}); "
                                  "choose another --unique-multiple population")
            self._splits = {it.id: it.eval_type for it in self.items}
            self._split_note = "unique/multiple: eval_type of the annotation file"
            return self._splits
        if self.label_map is None:
            self._split_note = "unique/multiple not computed: pass --label-map scannetv2-labels.combined.tsv"
            return None
        target_class = {it.id: self.label_map.class_of_name(it.object_name) for it in self._population_items}
        splits = {}
        if population == "annotations":
            per_scene: dict[str, Counter] = defaultdict(Counter)
            seen = set()
            for it in self._population_items:
                if (it.scene_id, it.object_id) not in seen:
                    seen.add((it.scene_id, it.object_id))
                    per_scene[it.scene_id][target_class[it.id]] += 1
            for it in self.items:
                splits[it.id] = "unique" if per_scene[it.scene_id][target_class[it.id]] == 1 else "multiple"
            self._split_note = "unique/multiple: classes of the objects described in the annotation file (ScanRefer's rule)"
        else:
            store = self._gt_store()
            class_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for it in self.items:
                if it.scene_id not in class_cache:
                    scene = store.scene(it.scene_id)
                    classes = np.array([self.label_map.class_of_nyu40(v) for v in scene.labels], dtype=object)
                    class_cache[it.scene_id] = (scene.object_ids, classes)
                object_ids, classes = class_cache[it.scene_id]
                cls = target_class[it.id]
                # the target counts itself by its described class; the others by their box labels
                others = int(np.count_nonzero((classes == cls) & (object_ids != it.object_id)))
                splits[it.id] = "unique" if others == 0 else "multiple"
            self._split_note = "unique/multiple: classes of every object in the scenes' ground-truth box files"
        self._splits = splits
        return splits

    # ------------------------------------------------------------------ scoring
    def score(self, values: Mapping[str, Any]) -> EvalResult:
        gt = np.stack([self.gt_box(it) for it in self.items])
        pred = np.full_like(gt, np.nan)
        for row, it in enumerate(self.items):
            value = values.get(it.id)
            if value is not None:
                pred[row] = value
        iou = aabb_iou(pred, gt)
        masks = {"overall": np.ones(len(self.items), bool)}
        splits = self.splits()
        if splits is not None:
            labels = np.array([splits[it.id] for it in self.items])
            masks["unique"], masks["multiple"] = labels == "unique", labels == "multiple"
        metrics = {
            split: {**{f"acc@{k}": percent(iou[mask] >= k) for k in THRESHOLDS}, "mean_iou": percent(iou[mask])}
            for split, mask in masks.items()
        }
        counts = {split: int(mask.sum()) for split, mask in masks.items()}
        columns = [(f"{s.capitalize()} Acc@{k}", s, f"acc@{k}") for s in ("unique", "multiple", "overall")
                   for k in THRESHOLDS]
        notes = [n for n in (self._split_note,) if n]
        return EvalResult(self.name, metrics, counts, split_table(metrics, columns, self.label, counts), tuple(notes))
