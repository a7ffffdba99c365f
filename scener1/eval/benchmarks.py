"""Opening a benchmark by name from its official annotation files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .benchmark import Benchmark

if TYPE_CHECKING:
    from .gt import LabelMap

#: benchmark names accepted by ``scener1 eval``, with the annotation files each expects
BENCHMARKS = {
    "scanrefer": "ScanRefer JSON (e.g. ScanRefer_filtered_val.json)",
    "nr3d": "Nr3D CSV (nr3d_test.csv)",
    "sr3d": "Sr3D CSV (sr3d_test.csv)",
    "multi3drefer": "Multi3DRefer JSON or parquet (multi3drefer_val.json)",
    "scanqa": "ScanQA JSON (ScanQA_v1.0_val.json)",
    "sqa3d": "SQA3D questions + sqa_annotations JSON (v1_balanced_*_test_scannetv2.json)",
    "vsibench": "VSI-Bench parquet (test-00000-of-00001.parquet)",
    "synth": "the folder written by scener1.synth",
}


def open_benchmark(
    name: str,
    annotations: Sequence[str | Path],
    *,
    gt_boxes: str | Path | None = None,
    label_map: str | Path | LabelMap | None = None,
    unique_multiple: str = "auto",
    caption_metrics: bool = True,
    label: str = "scener1",
) -> Benchmark:
    """Load benchmark ``name`` from its annotation file(s).

    ``gt_boxes`` is the folder of ``<scene>_aligned_bbox.npy`` files (ScanRefer, Nr3D/Sr3D box predictions,
    Multi3DRefer); ``label_map`` the ``scannetv2-labels.combined.tsv`` (ScanRefer unique/multiple);
    ``unique_multiple`` the population of :mod:`scener1.eval.scanrefer`; ``caption_metrics`` turns ScanQA's
    Java-based metrics on or off; ``label`` names the method in the markdown tables.
    """
    from .gt import GTBoxStore, LabelMap

    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    paths = [Path(p) for p in annotations]
    if not paths:
        raise ConfigError(f"{name}: pass its annotation file with --annotations ({BENCHMARKS[name]})")
    if name not in ("sqa3d",) and len(paths) != 1:
        raise ConfigError(f"{name}: expected one annotation file, got {len(paths)}")
    gt = GTBoxStore(gt_boxes) if gt_boxes is not None else None
    labels = LabelMap.read(label_map) if isinstance(label_map, (str, Path)) else label_map
    common = {"source": str(paths[0]), "label": label}
    if name == "scanrefer":
        from .scanrefer import ScanReferBenchmark, load_scanrefer

        return ScanReferBenchmark(load_scanrefer(paths[0]), gt=gt, label_map=labels, population=unique_multiple, **common)
    if name in ("nr3d", "sr3d"):
        from .referit3d import ReferIt3DBenchmark, load_referit3d

        return ReferIt3DBenchmark(load_referit3d(paths[0]), name=name, gt=gt, **common)
    if name == "multi3drefer":
        from .multi3drefer import Multi3DReferBenchmark, load_multi3drefer

        return Multi3DReferBenchmark(load_multi3drefer(paths[0]), gt=gt, **common)
    if name == "scanqa":
        from .qa import ScanQABenchmark, load_scanqa

        return ScanQABenchmark(load_scanqa(paths[0]), caption_metrics=caption_metrics, **common)
    if name == "sqa3d":
        from .qa import SQA3DBenchmark, load_sqa3d

        return SQA3DBenchmark(load_sqa3d(paths), **common)
    if name == "vsibench":
        from .vsibench import VSIBenchmark, load_vsibench

        return VSIBenchmark(load_vsibench(paths[0]), **common)
    from .synth import load_synth

    return load_synth(paths[0], label_map=labels, population=unique_multiple, caption_metrics=caption_metrics,
                      label=label)
