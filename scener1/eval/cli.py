"""``scener1 eval BENCH``: score a prediction file, or run a predictor over a benchmark and score the result.

Wiring (in scener1/cli.py)::

    p = sub.add_parser("eval", help="...")
    eval_cli.add_arguments(p)
    p.set_defaults(func=eval_cli.run)

Only the standard library is imported here; the work is imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from .benchmarks import BENCHMARKS

POPULATIONS = ("auto", "file", "annotations", "boxes")  # keep in step with scener1.eval.scanrefer.POPULATIONS
SHARD_BY = ("id", "scene")  # keep in step with scener1.eval.runner.SHARD_BY


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Score predictions on a 3D grounding / QA benchmark with its official metric definitions, or run a "
        "predictor over the benchmark (resumable, shardable) and score what it wrote."
    )
    parser.add_argument("benchmark", choices=list(BENCHMARKS), metavar="BENCH",
                        help="one of: " + ", ".join(BENCHMARKS))
    parser.add_argument("--annotations", nargs="+", required=True, metavar="PATH",
                        help="the benchmark's annotation file(s); for synth the folder written by scener1.synth")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--predictions", nargs="+", metavar="FILE",
                      help="prediction file(s) to score (.jsonl/.json/.parquet/.csv or a folder of <scene>.json); "
                           "several files are merged (the shards of one run), checking duplicates and gaps")
    mode.add_argument("--run", action="store_true", help="run --predictor over the benchmark, then score it")

    data = parser.add_argument_group("ground truth")
    data.add_argument("--gt-boxes", metavar="DIR",
                      help="folder of <scene>_aligned_bbox.npy boxes (scanrefer, multi3drefer, "
                           "box predictions on nr3d/sr3d)")
    data.add_argument("--label-map", metavar="FILE", help="scannetv2-labels.combined.tsv (ScanRefer unique/multiple)")
    data.add_argument("--unique-multiple", choices=POPULATIONS, default="auto",
                      help="ScanRefer unique/multiple population: objects described in the file (annotations, "
                           "ScanRefer's rule for a complete split), every object of the GT box files (boxes, for a "
                           "sampled subset), the file's eval_type (file), or chosen from the file (auto, default)")
    data.add_argument("--no-caption-metrics", action="store_true",
                      help="ScanQA: skip BLEU/METEOR/ROUGE-L/CIDEr (they need Java)")

    run = parser.add_argument_group("--run")
    run.add_argument("--predictor", default=None, metavar="NAME|MODULE:FACTORY",
                     help="oracle (the ground truth, a check of the set-up), pipeline (grounding), vqa (questions), "
                          "or MODULE:FACTORY returning predict_fn")
    run.add_argument("--predictor-arg", action="append", metavar="KEY=VALUE", help="option for the predictor factory")
    run.add_argument("--scans", metavar="DIR", help="scenes to run on (ScanNet scans in any supported layout, "
                                                      "VSI-Bench videos, or synthetic scenes)")
    run.add_argument("--shard", metavar="I/N", help="run shard I of N (0-based), or 'auto' under accelerate launch")
    run.add_argument("--shard-by", choices=SHARD_BY, default="id",
                     help="split items by id (default) or keep each scene's items in one shard")
    run.add_argument("--retry-errors", action="store_true", help="run again the items whose earlier run recorded an error")

    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="DIR",
                     help="write results.json and results.md here (and, with --run, the predictions)")
    out.add_argument("--merged", metavar="FILE", help="with several --predictions files: also write them merged as JSONL")
    out.add_argument("--name", default="scener1", help="method name in the results table (default scener1)")
    out.add_argument("--allow-missing", action="store_true",
                     help="score items without a prediction as wrong instead of failing")
    out.add_argument("--limit", type=int, metavar="N", help="only the first N items of the benchmark (smoke tests)")
    out.add_argument("--quiet", action="store_true", help="no progress bar")


def _check_mode(args: argparse.Namespace) -> None:
    if args.run:
        if args.merged:
            raise ConfigError("--merged goes with --predictions (a run writes its own predictions file)")
        return
    used = [flag for flag, value in (("--predictor", args.predictor), ("--predictor-arg", args.predictor_arg),
                                     ("--scans", args.scans), ("--shard", args.shard),
                                     ("--retry-errors", args.retry_errors)) if value]
    if used:
        raise ConfigError(f"{', '.join(used)} only apply with --run")


def _open(args: argparse.Namespace):
    from .benchmarks import open_benchmark

    bench = open_benchmark(
        args.benchmark,
        args.annotations,
        gt_boxes=args.gt_boxes,
        label_map=args.label_map,
        unique_multiple=args.unique_multiple,
        caption_metrics=not args.no_caption_metrics,
        label=args.name,
    )
    if args.limit is not None:
        if args.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {args.limit}")
        bench = bench.subset(bench.ids[: args.limit])
    return bench


def _run(args: argparse.Namespace, bench) -> tuple[dict, dict] | None:
    from .predictions import load_predictions
    from .predictors import make_predictor, parse_options
    from .runner import attach_scenes, parse_shard, run_benchmark, select_shard, shard_path

    if not args.out:
        raise ConfigError("--run needs --out DIR for its predictions")
    if not args.predictor:
        raise ConfigError("--run needs --predictor (oracle, pipeline, vqa, or MODULE:FACTORY)")
    index, count = parse_shard(args.shard)
    items = select_shard(bench.items, index, count, by=args.shard_by)
    scans = args.scans or (args.annotations[0] if args.benchmark == "synth" else None)  # synth scenes sit beside
    if scans:
        items = attach_scenes(items, scans)
    predict_fn = make_predictor(args.predictor, bench, parse_options(args.predictor_arg))
    path = shard_path(args.out, index, count)
    summary = run_benchmark(items, predict_fn, path, (index, count), shard_by=args.shard_by,
                            validate=bench.parse_prediction, retry_errors=args.retry_errors, progress=not args.quiet)
    notes = []
    if summary.torn_line_dropped:
        notes.append("dropped a partial last line left by an interrupted run")
    print(f"{path}: {summary.total} items in shard {index}/{count}: {summary.resumed} already done, "
          f"{summary.written} predicted now, {summary.failed} with errors", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    run_info = {"shard": [index, count], "items": summary.total, "resumed": summary.resumed,
                "written": summary.written, "failed": summary.failed, "predictions": str(path)}
    if count > 1:
        pattern = Path(args.out) / f"predictions.shard-*-of-{count}.jsonl"
        print(f"shard {index}/{count} done; when every shard is done, score them together with:\n"
              f"  scener1 eval {args.benchmark} --annotations {' '.join(args.annotations)} --predictions {pattern} ...",
              file=sys.stderr)
        return None
    return load_predictions([path], bench), run_info


def run(args: argparse.Namespace) -> int:
    from .benchmark import evaluate
    from .predictions import load_predictions, torn_files, write_jsonl
    from .report import write_results

    _check_mode(args)
    bench = _open(args)
    extra: dict = {"annotations": [str(p) for p in args.annotations], "name": args.name}
    if args.run:
        outcome = _run(args, bench)
        if outcome is None:
            return 0
        records, extra["run"] = outcome
    else:
        records = load_predictions(args.predictions, bench)
        extra["predictions"] = [str(p) for p in args.predictions]
        for path in torn_files(args.predictions):
            print(f"note: {path} ends in a partial line (an interrupted run); it was ignored", file=sys.stderr)
        if args.merged:
            ordered = {it.id: records[it.id] for it in bench.items if it.id in records}
            ordered.update({k: v for k, v in records.items() if k not in ordered})
            write_jsonl(ordered, args.merged)
    result = evaluate(bench, records, allow_missing=args.allow_missing)
    sys.stdout.write(result.markdown())
    if args.out:
        json_path, md_path = write_results(result, args.out, extra=extra)
        print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m scener1.eval.cli`` (the same as ``scener1 eval``)."""
    from ..cli_args import run_command

    parser = argparse.ArgumentParser(prog="scener1 eval")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command(lambda: run(args), "finished predictions are saved; run again to resume")


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["add_arguments", "run", "main"]
