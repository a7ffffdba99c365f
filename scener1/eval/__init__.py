"""Evaluation on the 3D grounding and QA benchmarks (``scener1 eval``).

>>> from scener1.eval import open_benchmark, load_predictions, evaluate
>>> bench = open_benchmark("scanrefer", ["ScanRefer_filtered_val.json"], gt_boxes="scannet_data",
...                        label_map="scannetv2-labels.combined.tsv")
>>> result = evaluate(bench, load_predictions(["predictions.jsonl"], bench))
>>> print(result.markdown())

Runs: ``run_benchmark(bench.items, predict_fn, "out/predictions.jsonl", shard=(i, n))`` calls
``predict_fn(item) -> dict`` for every item not yet in the file (see :mod:`scener1.eval.runner`).

Nothing heavy is imported until a name is used, so ``scener1 --help`` stays instant.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "BENCHMARKS": "benchmarks",
    "open_benchmark": "benchmarks",
    "Benchmark": "benchmark",
    "evaluate": "benchmark",
    "EvalResult": "items",
    "Item": "items",
    "GroundingItem": "items",
    "ReferItem": "items",
    "MultiGroundingItem": "items",
    "QAItem": "items",
    "VSIItem": "items",
    "load_predictions": "predictions",
    "run_benchmark": "runner",
    "merge_predictions": "runner",
    "PredictionWriter": "runner",
    "RunSummary": "runner",
    "parse_shard": "runner",
    "select_shard": "runner",
    "shard_of": "runner",
    "write_results": "report",
    "GTBoxStore": "gt",
    "LabelMap": "gt",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
