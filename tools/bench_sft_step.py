#!/usr/bin/env python
"""What a supervised step of the tiny recipe costs, with and without activation checkpointing, and what reading
a training frame costs as a whole frame (colour + depth) and as colour alone.

    .venv/bin/python tools/bench_sft_step.py --work outputs/train_tiny --scenes 6 --steps 40 --repeats 3

Uses the recipe's rows (``configs/train/tiny_cpu.yaml``) of the first ``--scenes`` training scenes of a
``tools/train_tiny.py`` working folder and its vision-stage model (``WORK/vision``, else ``WORK/init``). The two
SFT arms alternate, ``--repeats`` runs each of ``--steps`` steps; the figure is the median seconds per step of
each arm (the trainer's own runtime, model loading left out) and their ratio. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO))

import train_tiny  # tools/train_tiny.py: the recipe's config and folders


def sft_seconds_per_step(start: Path, rows: list[dict], section: dict, steps: int, checkpointing: bool,
                         out: Path) -> float:
    """The trainer's own runtime per step (model loading and saving left out)."""
    from transformers import TrainerCallback

    from scener1.rl.train import SFTStageConfig, run_sft, stage_config

    class Runtime(TrainerCallback):
        seconds: float | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "train_runtime" in logs:
                Runtime.seconds = float(logs["train_runtime"])

    config = stage_config(SFTStageConfig, {**section, "output_dir": str(out), "total_rows": steps * section["batch_size"],
                                           "easy_rows": 0, "eval_every": 0, "save_steps": 10 * steps,
                                           "logging_steps": steps, "gradient_checkpointing": checkpointing})
    run_sft(start, rows, config, callbacks=[Runtime()])
    if Runtime.seconds is None:
        raise SystemExit("bench_sft_step: the trainer reported no runtime")
    return Runtime.seconds / steps


def frame_read_seconds(rows: list[dict], count: int) -> dict[str, float]:
    """Median seconds to read ``count`` image rows' frames whole and as colour alone (same frames, alternating)."""
    from scener1.data import open_scene

    picked = [r for r in rows if r["task"] in ("image", "detect")][:count]
    scenes = {r["scene"]: open_scene(r["scene"]) for r in picked}
    whole, colour = [], []
    for r in picked:
        scene, position = scenes[r["scene"]], int(r["positions"][0])
        t = time.perf_counter()
        scene.frame(position).color
        whole.append(time.perf_counter() - t)
        t = time.perf_counter()
        scene.color(position)
        colour.append(time.perf_counter() - t)
    for scene in scenes.values():
        scene.close()
    return {"frame_ms": 1000 * statistics.median(whole), "colour_ms": 1000 * statistics.median(colour)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "train_tiny")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train" / "tiny_cpu.yaml")
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200, help="frames read for the decoding figures")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from scener1.errors import ScenerError

    try:
        import torch

        torch.set_num_threads(args.threads)
        config = train_tiny.load_config(args.config, [])
        scenes = train_tiny.split_scenes(args.work, "train")[: args.scenes]
        if not scenes:
            raise ScenerError(f"{args.work} has no training scenes: run tools/train_tiny.py --stages data first")
        start = args.work / "vision" if (args.work / "vision" / "config.json").is_file() else args.work / "init"
        if not (start / "config.json").is_file():
            raise ScenerError(f"{args.work} has no model: run tools/train_tiny.py --stages init first")
        from dataclasses import replace

        from scener1.rl.train import recipe_rows

        recipe = train_tiny.recipe(config, args.work, "sft")
        recipe = replace(recipe, data=replace(recipe.data, train=scenes, eval=[]))

        rows, _ = recipe_rows(recipe, start)
        section = dict(config["sft"])
        times: dict[bool, list[float]] = {True: [], False: []}
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(args.repeats):
                for checkpointing in (True, False):
                    out = Path(tmp) / f"run{k}_{int(checkpointing)}"
                    times[checkpointing].append(sft_seconds_per_step(start, rows, section, args.steps,
                                                                     checkpointing, out))
        on, off = statistics.median(times[True]), statistics.median(times[False])
        result = {"rows": len(rows), "steps": args.steps, "repeats": args.repeats, "threads": args.threads,
                  "checkpointing_s_per_step": round(on, 4), "no_checkpointing_s_per_step": round(off, 4),
                  "speedup": round(on / off, 3), "runs": {str(k): [round(v, 4) for v in t] for k, t in times.items()},
                  **{k: round(v, 3) for k, v in frame_read_seconds(rows, args.frames).items()}}
    except ScenerError as exc:
        print(f"bench_sft_step: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
