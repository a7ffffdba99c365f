"""Held-out VQA evaluation on synthetic scenes: per-type VSI-Bench scores of the 3D heads and of the video-only VLM.

    nice -n 19 .venv/bin/python tools/eval_vqa.py --data outputs/vqa_heldout --out outputs/vqa_eval \\
        --seeds 1000-1009 --grounder oracle [--model DIR] [--modes geometry vlm]

1. Generates the held-out scenes (one scene per seed, index 0; seeds 1000-1009 by default, never used in
   development) unless they exist, and writes the dataset's ``vsibench_synth.parquet``.
2. Runs each answer mode over every VSI-Bench-style item with ``scener1 eval``'s resumable runner:
   ``predictions_<mode>_<grounder>.jsonl`` (``predictions_vlm_video_only.jsonl``) keeps every finished item, so a killed run resumes where it stopped.
   ``geometry`` needs only a grounder (``oracle``: ground-truth 2D boxes lifted by the lifting stage; ``pipeline``:
   the grounding model); ``vlm`` (the video-only comparison), ``vlm_facts`` and ``auto`` need a VLM: ``--model`` or
   the embedded Scene-R1-tiny. Its training scenes include seed 1000's first room (synth_s1000_000), so score a
   trained model on other seeds, e.g. ``--seeds 1001-1010``.
3. Scores each mode with the VSI-Bench metrics and checks the acceptance targets: numeric types MRA >= 0.7 (mean of
   the four numeric types), multiple-choice types accuracy >= 0.7 (mean of the types, relative-direction sub-types
   averaged first as VSI-Bench does). Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NUMERIC = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation")
CHOICE = ("object_rel_distance", "object_rel_direction", "route_planning", "obj_appearance_order")
TARGET = 70.0


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    return seeds


def ensure_scenes(data: Path, seeds: list[int], frames: int, size: tuple[int, int]) -> list[Path]:
    """The held-out scenes, generated when missing (a scene counts as done once its generation.json says so)."""
    from tqdm import tqdm

    from scener1.synth import generate_scene, scene_name
    from scener1.synth.writer import write_annotations

    data.mkdir(parents=True, exist_ok=True)
    dirs = []
    for seed in tqdm(seeds, desc="scenes", unit="scene"):
        d = data / scene_name(seed, 0)
        info = d / "gt" / "generation.json"
        done = info.is_file() and json.loads(info.read_text()).get("frames") == frames \
            and json.loads(info.read_text()).get("size") == list(size) and (d / "gt" / "vsibench.json").is_file()
        if not done:
            generate_scene(data, seed, frames, size, index=0)
        dirs.append(d)
    write_annotations(data, dirs)
    return dirs


def run_mode(bench, data: Path, out: Path, mode: str, grounder: str, model: str | None, config: str | None,
             overrides: list[str], progress: bool) -> Path:
    from scener1.eval.runner import attach_scenes, run_benchmark
    from scener1.vqa.predictor import vqa_predictor

    path = out / f"predictions_{mode}_{grounder if mode != 'vlm' else 'video_only'}.jsonl"
    options = dict(o.split("=", 1) for o in overrides)
    predict = vqa_predictor(bench, grounder=grounder if mode != "vlm" else "none", mode=mode, config=config,
                            model=model, **options)
    items = attach_scenes(bench.items, data)
    summary = run_benchmark(items, predict, path, validate=bench.parse_prediction, progress=progress)
    print(f"{mode}: {summary.resumed} resumed, {summary.written} predicted, {summary.failed} failed -> {path}",
          file=sys.stderr)
    return path


def default_model_available() -> bool:
    from scener1.pipeline import ModelSettings, resolve_model_path

    return Path(resolve_model_path(ModelSettings().path)).is_dir()


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def summarise(result) -> dict:
    m = result.metrics
    numeric = [m[t]["MRA"] for t in NUMERIC if m.get(t, {}).get("MRA") is not None]
    choice = [m[t]["acc"] for t in CHOICE if m.get(t, {}).get("acc") is not None]
    out = {
        "overall": m["overall"]["score"],
        "numeric_mra": sum(numeric) / len(numeric) if numeric else None,
        "choice_acc": sum(choice) / len(choice) if choice else None,
        "per_type": {t: next(iter(v.values())) for t, v in m.items() if t != "overall"},
        "counts": result.counts,
    }
    out["numeric_ok"] = out["numeric_mra"] is not None and out["numeric_mra"] >= TARGET
    out["choice_ok"] = out["choice_acc"] is not None and out["choice_acc"] >= TARGET
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="folder of the held-out scenes (generated when missing)")
    p.add_argument("--out", required=True, help="folder for predictions and results")
    p.add_argument("--seeds", default="1000-1009", help="held-out seeds, e.g. 1000-1009 or 1000,1003 (default 1000-1009)")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    p.add_argument("--grounder", choices=("oracle", "pipeline"), default="oracle")
    p.add_argument("--modes", nargs="+", default=["geometry", "vlm"], choices=("geometry", "auto", "vlm", "vlm_facts"))
    p.add_argument("--model", help="VLM checkpoint for the vlm / vlm_facts / auto modes (and the pipeline grounder)")
    p.add_argument("--config", help="pipeline config")
    p.add_argument("--limit", type=int, help="only the first N items (smoke runs)")
    p.add_argument("--types", nargs="+", metavar="TYPE",
                   help="only these question types, e.g. object_counting obj_appearance_order (a prefix names several: "
                        "object_rel_direction)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="pipeline options and vqa.KEY=VALUE options")
    args = p.parse_args(argv)

    from scener1.errors import ScenerError
    from scener1.eval.benchmark import evaluate
    from scener1.eval.predictions import load_predictions
    from scener1.eval.synth import PART_FILES
    from scener1.eval.vsibench import VSIBenchmark, load_vsibench

    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        ensure_scenes(data, parse_seeds(args.seeds), args.frames, tuple(args.size))
        bench = VSIBenchmark(load_vsibench(data / PART_FILES["vsibench"]), source=str(data), label="scener1")
        if args.types:
            bench = bench.subset([it.id for it in bench.items if it.question_type.startswith(tuple(args.types))])
            if not len(bench):
                raise ScenerError(f"no question of type {', '.join(args.types)} in {data}")
        if args.limit:
            bench = bench.subset(bench.ids[: args.limit])
        report: dict = {"data": str(data), "seeds": args.seeds, "grounder": args.grounder, "items": len(bench),
                        "modes": {}}
        tables = []
        for mode in args.modes:
            needs_model = mode != "geometry" or args.grounder == "pipeline"
            if needs_model and args.model is None and not default_model_available():
                print(f"skipping mode {mode}: it needs a VLM (--model DIR; the embedded default is not there)",
                      file=sys.stderr)
                report["modes"][mode] = {"skipped": "no VLM: pass --model DIR (the embedded default is missing)"}
                continue
            path = run_mode(bench, data, out, mode, args.grounder, args.model, args.config, args.overrides,
                            not args.quiet)
            result = evaluate(bench, load_predictions([path], bench), allow_missing=True)
            report["modes"][mode] = summarise(result) | {"predictions": str(path)}
            tables.append(f"### mode {mode} (grounder {args.grounder if mode != 'vlm' else 'none'})\n\n"
                          + result.markdown(title=False))
    except ScenerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# VQA on held-out synthetic scenes (seeds {args.seeds}, {report['items']} items)", ""]
    for mode, r in report["modes"].items():
        if "skipped" in r:
            lines.append(f"- {mode}: skipped ({r['skipped']})")
            continue
        lines.append(f"- {mode}: numeric MRA {fmt(r['numeric_mra'])} (target {TARGET:.0f}: "
                     f"{'met' if r['numeric_ok'] else 'NOT met'}), multiple-choice accuracy {fmt(r['choice_acc'])} "
                     f"(target {TARGET:.0f}: {'met' if r['choice_ok'] else 'NOT met'}), overall {fmt(r['overall'])}")
    text = "\n".join(lines + [""] + tables) + "\n"
    (out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
