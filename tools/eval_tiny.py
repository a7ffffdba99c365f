#!/usr/bin/env python
"""Score trained grounding models on held-out synthetic scenes (seeds never trained or tuned on).

    .venv/bin/python tools/eval_tiny.py                                  # SFT vs SFT+GRPO of tools/train_tiny.py
    .venv/bin/python tools/eval_tiny.py --model shipped=assets/models/scene-r1-tiny --out outputs/eval_shipped
    .venv/bin/python tools/eval_tiny.py --scenes outputs/train_tiny/data/heldout --image-rows 100

Every model is scored on the same rows and queries with the same greedy decoding: 2D Acc@0.5, pointing
accuracy and mean IoU (image stage alone, also after box snapping), temporal mean IoU (temporal stage alone)
and 3D Acc@0.25 / Acc@0.5 of the full pipeline with the geometric tracker. Writes report.md, report.json and
per-model predictions to --out; a model already scored there is not run again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "train_tiny",
                        help="tools/train_tiny.py's working folder (models and held-out scenes are taken from it)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                        help="a model to score (repeatable); default: WORK/sft/final and WORK/grpo/final")
    parser.add_argument("--scenes", type=Path, default=None, help="held-out scenes (default: WORK/data/heldout)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: WORK/eval)")
    parser.add_argument("--image-rows", type=int, default=400)
    parser.add_argument("--temporal-rows", type=int, default=120)
    parser.add_argument("--pipeline-queries", type=int, default=60)
    parser.add_argument("--reliance-rows", type=int, default=0,
                        help="also answer this many image rows on mirrored and on grey frames: do boxes follow the "
                             "picture? (reliance/* figures)")
    parser.add_argument("--detect-rows", type=int, default=100,
                        help="frames whose every object the model is asked to list (detect/precision, detect/recall)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline setting for the 3D evaluation, e.g. --set image.snap=true")
    args = parser.parse_args(argv)

    from scener1.errors import ConfigError, ScenerError
    from scener1.rl.benchmark import HeldoutSettings, compare_models
    from scener1.rl.datasets import scene_dirs

    try:
        import torch

        torch.set_num_threads(args.threads)
        if args.model:
            models = {}
            for spec in args.model:
                name, sep, path = spec.partition("=")
                if not sep or not name:
                    raise ConfigError(f"--model takes NAME=DIR, got {spec!r}")
                models[name] = Path(path)
        else:
            models = {k: v for k, v in (("sft", args.work / "sft" / "final"), ("sft+grpo", args.work / "grpo" / "final"))
                      if (v / "config.json").is_file()}
        listing = (args.scenes or args.work / "data" / "heldout") / "scenes.txt"
        root = args.scenes or args.work / "data" / "heldout"
        scenes = ([str(root / n) for n in listing.read_text().split()] if listing.is_file() else
                  [str(p) for p in scene_dirs(root)])
        settings = HeldoutSettings(image_rows=args.image_rows, temporal_rows=args.temporal_rows,
                                   pipeline_queries=args.pipeline_queries, batch_size=args.batch_size, seed=args.seed,
                                   reliance_rows=args.reliance_rows, detect_rows=args.detect_rows,
                                   pipeline_overrides=tuple(args.overrides))
        out = args.out or args.work / "eval"
        compare_models(models, scenes, settings, out)
    except ScenerError as exc:
        print(f"eval_tiny: error: {exc}", file=sys.stderr)
        return 2
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
