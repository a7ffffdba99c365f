"""The synthetic benchmark written by ``scener1.synth``: ScanRefer-, ScanQA- and VSI-Bench-style parts over
synthetic scenes, scored with the same metrics as the real benchmarks.

Layout of the data root ``DIR`` (every part optional, at least one present)::

    DIR/ScanRefer_synth.json              ScanRefer format (+ eval_type unique/multiple)
    DIR/ScanQA_synth.json                 ScanQA format
    DIR/vsibench_synth.parquet            VSI-Bench columns
    DIR/<scene>/gt/<scene>_aligned_bbox.npy   ground-truth boxes, float64 (K, 8), as ScanRefer's

Item ids carry the part as a prefix: ``scanrefer:<scene>/<object>/<ann>``, ``scanqa:<question_id>``,
``vsibench:<id>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ScenerError
from .benchmark import Benchmark
from .gt import GTBoxStore, LabelMap
from .items import EvalResult, Item
from .qa import ScanQABenchmark, load_scanqa
from .report import markdown_table, fmt
from .scanrefer import ScanReferBenchmark, load_scanrefer
from .vsibench import VSIBenchmark, load_vsibench

PART_FILES = {"scanrefer": "ScanRefer_synth.json", "scanqa": "ScanQA_synth.json", "vsibench": "vsibench_synth.parquet"}


class CompositeBenchmark(Benchmark):
    """Several benchmarks scored together; item ids are ``<part>:<id>``."""

    name = "synth"

    def __init__(self, parts: Sequence[Benchmark], *, name: str = "synth", **kwargs):
        super().__init__([it for part in parts for it in part.items], **kwargs)
        self.name = name
        self.parts = tuple(parts)
        self._part_of = {it.id: part for part in self.parts for it in part.items}

    def key_of(self, record: Mapping) -> str | None:
        found = []
        for part in self.parts:
            key = part.key_of(record)
            prefix = part.name.split("/")[-1] + ":"
            if key is not None and prefix + key in self:
                found.append(prefix + key)
        return found[0] if len(found) == 1 else None

    def parse_prediction(self, record: Mapping, item: Item) -> Any:
        return self._part_of[item.id].parse_prediction(record, item)

    def oracle(self, item: Item) -> dict:
        return self._part_of[item.id].oracle(item)

    def subset(self, ids) -> "CompositeBenchmark":
        keep = set(ids)
        parts = [part.subset(keep) for part in self.parts if keep.intersection(part.ids)]
        if not parts:
            raise ScenerError(f"{self.name}: the subset is empty")
        return CompositeBenchmark(parts, name=self.name, source=self.source, label=self.label)

    def score(self, values: Mapping[str, Any]) -> EvalResult:
        results = tuple(part.score({it.id: values.get(it.id) for it in part.items}) for part in self.parts)
        headline = {"scanrefer": ("overall", "acc@0.25"), "scanqa": ("overall", "EM@1"), "vsibench": ("overall", "score")}
        rows = []
        for part, result in zip(self.parts, results):
            split, metric = headline.get(part.name.split("/")[-1], ("overall", ""))
            rows.append([part.name, metric, fmt(result.metrics.get(split, {}).get(metric)), str(len(part))])
        metrics = {r.benchmark: r.metrics.get("overall", {}) for r in results}
        counts = {"overall": len(self.items), **{r.benchmark: len(p) for r, p in zip(results, self.parts)}}
        table = markdown_table(["Part", "Headline metric", self.label, "Items"], rows)
        return EvalResult(self.name, metrics, counts, table, parts=results)


def load_synth(
    root: str | Path,
    *,
    label_map: LabelMap | None = None,
    population: str = "auto",
    caption_metrics: bool = True,
    label: str = "scener1",
) -> CompositeBenchmark:
    root = Path(root)
    if not root.is_dir():
        raise ScenerError(f"synthetic data root not found: {root}")
    parts: list[Benchmark] = []
    if (root / PART_FILES["scanrefer"]).is_file():
        path = root / PART_FILES["scanrefer"]
        part = ScanReferBenchmark(load_scanrefer(path, id_prefix="scanrefer:"), gt=GTBoxStore(root),
                                  label_map=label_map, population=population, source=str(path), label=label)
        part.name = "synth/scanrefer"
        parts.append(part)
    if (root / PART_FILES["scanqa"]).is_file():
        path = root / PART_FILES["scanqa"]
        part = ScanQABenchmark(load_scanqa(path, id_prefix="scanqa:"), caption_metrics=caption_metrics,
                               source=str(path), label=label)
        part.name = "synth/scanqa"
        parts.append(part)
    if (root / PART_FILES["vsibench"]).is_file():
        path = root / PART_FILES["vsibench"]
        part = VSIBenchmark(load_vsibench(path, id_prefix="vsibench:"), source=str(path), label=label)
        part.name = "synth/vsibench"
        parts.append(part)
    if not parts:
        raise ScenerError(f"{root}: no synthetic benchmark files (expected {', '.join(PART_FILES.values())})")
    return CompositeBenchmark(parts, source=str(root), label=label)
