#!/usr/bin/env python
"""Benchmark: scoring 10,000 ScanRefer predictions (target: under 2 s).

Builds a ScanRefer-format annotation file of N descriptions (default 10,000; five per object, like the released
split) over the real ScanNet val boxes in ../shared/realdata when present, or over synthetic boxes otherwise, and N
perturbed box predictions as JSONL. Then it times, median of several runs:

* baseline: reading both files with ``json`` alone (the floor any scorer pays);
* score: ``open_benchmark`` + ``load_predictions`` + ``evaluate`` in-process, unique/multiple included;
* cli: ``python -m scener1.eval.cli scanrefer --predictions ...`` end to end (interpreter start and imports too).

    .venv/bin/python tools/bench_eval.py [--n 10000] [--runs 5] [--max-seconds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
sys.path.insert(0, str(REPO))

from scener1.eval import evaluate, load_predictions, open_benchmark  # noqa: E402

TSV_HEADER = "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class"
SYNTH_CLASSES = [(3, "cabinet"), (5, "chair"), (7, "table"), (8, "door"), (35, "lamp"), (40, "otherprop")]


def build(tmp: Path, n: int, rng: np.random.Generator) -> tuple[Path, Path, Path, Path, str]:
    """Annotation file, box folder, label map, predictions; and where the boxes came from."""
    if (REALDATA / "scanrefer_aligned_bbox_npy").is_dir():
        boxes_dir = REALDATA / "scanrefer_aligned_bbox_npy"
        label_map = REALDATA / "scannet_meta" / "scannetv2-labels.combined.tsv"
        scenes = (REALDATA / "scanrefer" / "ScanRefer_filtered_val.txt").read_text().split()
        source = f"real ScanNet val boxes ({len(scenes)} scenes)"
        raw_name = {}
        for line in label_map.read_text().splitlines()[1:]:
            cols = line.split("\t")
            raw_name.setdefault(int(cols[4]), cols[1])
    else:
        boxes_dir = tmp / "boxes"
        boxes_dir.mkdir()
        label_map = tmp / "labels.tsv"
        label_map.write_text("\n".join([TSV_HEADER] + [f"{i}\t{c}\t{c}\t1\t{i}\t0\t{c}\t{c}" for i, c in SYNTH_CLASSES]))
        raw_name = dict(SYNTH_CLASSES)
        scenes = [f"scene{i:04d}_00" for i in range(140)]
        for scene in scenes:
            k = 40
            rows = np.concatenate([rng.uniform(-4, 4, (k, 3)), rng.uniform(0.2, 2, (k, 3)),
                                   rng.choice([c for c, _ in SYNTH_CLASSES], (k, 1)), np.arange(k)[:, None]], 1)
            np.save(boxes_dir / f"{scene}_aligned_bbox.npy", rows)
        source = "synthetic boxes (realdata absent)"
    entries, predictions = [], []
    objects = []
    for scene in scenes:
        arr = np.load(boxes_dir / f"{scene}_aligned_bbox.npy")
        objects += [(scene, row) for row in arr]
    picks = rng.permutation(len(objects))
    per_object = 5
    for idx in picks[: (n + per_object - 1) // per_object]:
        scene, row = objects[idx]
        for ann in range(per_object):
            if len(entries) == n:
                break
            name = raw_name.get(int(row[6]), "object").replace(" ", "_")
            entries.append({"scene_id": scene, "object_id": str(int(row[7])), "object_name": name, "ann_id": str(ann),
                            "description": f"the {name} next to something", "token": ["the", name]})
            center = row[:3] + rng.normal(0, 0.15, 3) * row[3:6]
            size = row[3:6] * rng.uniform(0.7, 1.3, 3)
            predictions.append({"id": f"{scene}/{int(row[7])}/{ann}",
                                "box_3d": {"center": center.tolist(), "size": size.tolist()}})
    if len(entries) < n:
        raise SystemExit(f"only {len(entries)} descriptions could be made from {source}")
    ann_path, pred_path = tmp / "ScanRefer_bench.json", tmp / "predictions.jsonl"
    ann_path.write_text(json.dumps(entries, indent=4))  # the released files are indented like this
    pred_path.write_text("".join(json.dumps(p) + "\n" for p in predictions))
    return ann_path, boxes_dir, label_map, pred_path, source


def time_runs(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="number of descriptions and predictions")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median reported)")
    ap.add_argument("--max-seconds", type=float, default=2.0, help="fail (exit 1) when the median score time exceeds this")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        ann, boxes, labels, preds, source = build(Path(tmp), args.n, rng)

        def baseline():
            json.loads(ann.read_text())
            [json.loads(line) for line in preds.read_text().splitlines()]

        result = {}

        def score():
            bench = open_benchmark("scanrefer", [ann], gt_boxes=boxes, label_map=labels)
            result["r"] = evaluate(bench, load_predictions([preds], bench))

        cli = [sys.executable, "-m", "scener1.eval.cli", "scanrefer", "--annotations", str(ann), "--gt-boxes", str(boxes),
               "--label-map", str(labels), "--predictions", str(preds)]

        def run_cli():
            subprocess.run(cli, check=True, capture_output=True, cwd=REPO)

        score()  # warm the file cache and imports once
        base_t = time_runs(baseline, args.runs)
        score_t = time_runs(score, args.runs)
        cli_t = time_runs(run_cli, max(3, args.runs // 2))
    r = result["r"]
    med = {k: statistics.median(v) for k, v in (("baseline", base_t), ("score", score_t), ("cli", cli_t))}
    print(f"ScanRefer scoring benchmark: {args.n} predictions over {source}")
    print(f"  result: Acc@0.25 {r.metrics['overall']['acc@0.25']:.1f}, Acc@0.5 {r.metrics['overall']['acc@0.5']:.1f}, "
          f"unique {r.counts.get('unique', 0)} / multiple {r.counts.get('multiple', 0)} ({r.notes[0] if r.notes else ''})")
    print(f"  {'measurement':<34}{'median s':>10}{'min s':>9}{'x baseline':>12}")
    for key, label, times in (("baseline", "json parse of both files", base_t),
                              ("score", "open + load + evaluate (in-process)", score_t),
                              ("cli", "scener1 eval CLI (new process)", cli_t)):
        print(f"  {label:<34}{med[key]:>10.3f}{min(times):>9.3f}{med[key] / med['baseline']:>12.1f}")
    ok = med["score"] <= args.max_seconds
    print(f"  target: score under {args.max_seconds:g} s -> {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
