#!/usr/bin/env python
"""Reproduce Scene-R1-tiny end to end: synthetic scenes -> untrained model -> vision pretraining -> SFT ->
GRPO -> cell heads -> held-out evaluation -> the checkpoint in assets/models/scene-r1-tiny.

    .venv/bin/python tools/train_tiny.py                       # everything, from configs/train/tiny_cpu.yaml
    .venv/bin/python tools/train_tiny.py --stages sft          # one stage (the ones before must be done)
    .venv/bin/python tools/train_tiny.py --set sft.total_rows=800 --work outputs/tiny_smoke

Every stage is resumable: scenes already rendered are kept, trainers restart from their newest checkpoint
and finished stages are skipped, so after a kill the same command carries on. Long stages show progress
bars; training curves are written as PNG beside the checkpoints (WORK/sft/curves.png, WORK/grpo/curves.png).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("data", "init", "vision", "sft", "grpo", "heads", "eval", "export")
#: What a shipped model directory holds (no optimizer state, no pickles).
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json", "processor_config.json", "chat_template.jinja", "scener1_prompts.json",
               "cell_heads.safetensors", "cell_heads.json")
MAX_SHIPPED_MB = 25.0


def say(text: str) -> None:
    print(f"[train_tiny] {text}", flush=True)


def load_config(path: Path, overrides: list[str]) -> dict[str, Any]:
    import yaml

    from scener1.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"config not found: {path}")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    for text in overrides:
        key, sep, value = text.partition("=")
        if not sep:
            raise ConfigError(f"--set takes KEY=VALUE, got {text!r}")
        node = config
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return config


# --------------------------------------------------------------------------------------------- stages
def split_dir(work: Path, split: str) -> Path:
    return work / "data" / split


def stage_data(config: dict[str, Any], work: Path) -> None:
    """Render the scenes of each split (skipping those already there) and write the split's annotations."""
    from tqdm import tqdm

    from scener1.synth import generate_scene, scene_name
    from scener1.synth.writer import write_annotations

    for split, spec in config["scenes"].items():
        root = split_dir(work, split)
        root.mkdir(parents=True, exist_ok=True)
        dirs = []
        for k in tqdm(range(int(spec["count"])), desc=f"scenes ({split})", unit="scene"):
            d = root / scene_name(int(spec["seed"]), k)
            done = d / "gt" / "generation.json"
            if done.is_file():
                info = json.loads(done.read_text())
                if (info.get("seed"), info.get("index"), info.get("frames"), info.get("fps")) == (
                        int(spec["seed"]), k, int(spec["frames"]), float(spec["fps"])):
                    dirs.append(d)
                    continue
            if d.is_dir() and (d / "gt" / "instance").is_dir():
                shutil.rmtree(d)  # a scene whose rendering was interrupted: start it again
            dirs.append(generate_scene(root, int(spec["seed"]), int(spec["frames"]), (320, 240), float(spec["fps"]),
                                       index=k))
        write_annotations(root, dirs)
        (root / "scenes.txt").write_text("".join(f"{d.name}\n" for d in dirs))


def split_scenes(work: Path, split: str) -> list[str]:
    """The scene folders of a split, as the data stage listed them (extra folders are ignored)."""
    listing = split_dir(work, split) / "scenes.txt"
    if not listing.is_file():
        from scener1.errors import ConfigError

        raise ConfigError(f"the {split} scenes are not ready ({listing} is missing): run the data stage")
    return [str(split_dir(work, split) / name) for name in listing.read_text().split()]


def stage_init(config: dict[str, Any], work: Path) -> Path:
    from scener1.models.scene_r1_tiny import TinyVLMSpec, build_scene_r1_tiny
    from scener1.rl.datasets import training_phrases

    out = work / "init"
    if not (out / "model.safetensors").is_file():
        build_scene_r1_tiny(out, TinyVLMSpec(**config["model"], seed=int(config["seed"])), phrases=training_phrases(),
                            prompt_version=prompt_version(config))
    return out


def prompt_version(config: dict[str, Any]) -> str:
    from scener1.prompts import DEFAULT_PROMPT_VERSION, get_prompts

    return get_prompts(config.get("prompt_version") or DEFAULT_PROMPT_VERSION).version


def check_prompt_version(config: dict[str, Any], model_dir: Path) -> None:
    """Refuse to train a model whose recorded prompt version is not the recipe's (rows would be worded
    for one and the model run with the other)."""
    from scener1.errors import ConfigError
    from scener1.prompts import read_model_prompt_info

    info = read_model_prompt_info(model_dir)
    if info is not None and info.prompt_version != prompt_version(config):
        raise ConfigError(f"{model_dir} was built for prompt version {info.prompt_version}, the recipe asks for "
                          f"{prompt_version(config)}: rebuild it (delete {model_dir.parent / 'init'} and later stages)")


def stage_vision(config: dict[str, Any], work: Path) -> Path | None:
    """Pretrain the vision tower on dense per-token targets (scener1.models.vision_pretrain); None when
    the config's ``vision.steps`` is 0 (SFT then starts from the untrained model)."""
    from scener1.models.vision_pretrain import VisionPretrainConfig, pretrain_vision

    settings = VisionPretrainConfig(**{**config.get("vision", {}), "seed": int(config["seed"])})
    if settings.steps == 0:
        return None
    return pretrain_vision(work / "init", split_scenes(work, "train"), settings, work / "vision",
                           eval_scenes=split_scenes(work, "val"))


def sft_start(config: dict[str, Any], work: Path) -> Path:
    """The model SFT starts from: the vision-pretrained one unless the config turns that stage off."""
    from scener1.models.vision_pretrain import SUMMARY_FILE

    if int(config.get("vision", {}).get("steps", 0)) == 0:
        return work / "init"
    if not (work / "vision" / SUMMARY_FILE).is_file():
        from scener1.errors import ConfigError

        raise ConfigError(f"{work / 'vision'} is not finished: run the vision stage first (or set vision.steps=0)")
    return work / "vision"


def recipe(config: dict[str, Any], work: Path, stage: str):
    from scener1.rl.train import recipe_from_dict

    data = dict(config["data"])
    data["train"] = split_scenes(work, "train")
    data["eval"] = split_scenes(work, "val")
    data["seed"] = int(config["seed"])
    section = {**config[stage], "seed": int(config["seed"]), "output_dir": str(work / stage)}
    return recipe_from_dict({"model": str(work / "init"), "output_dir": str(work), "data": data, stage: section})


def stage_train(config: dict[str, Any], work: Path, stage: str) -> Path:
    from scener1.rl.train import recipe_rows, run_grpo, run_sft

    r = recipe(config, work, stage)
    start = sft_start(config, work) if stage == "sft" else work / "sft" / "final"
    if not (start / "config.json").is_file():
        from scener1.errors import ConfigError

        raise ConfigError(f"{start} is missing: run the {'init' if stage == 'sft' else 'sft'} stage first")
    check_prompt_version(config, start)
    train, evaluation = recipe_rows(r, start)
    say(f"{stage}: {len(train)} training rows, {len(evaluation)} evaluation rows")
    if stage == "sft":
        return run_sft(start, train, r.sft, evaluation)
    return run_grpo(start, train, r.grpo, evaluation)


def stage_heads(config: dict[str, Any], work: Path) -> list[Path]:
    """Fit the cell heads (scener1.models.cell_heads) of each trained model on its frozen tower: the image
    stage checks its boxes with them. A model with heads fitted under the same settings is skipped."""
    from scener1.errors import ConfigError
    from scener1.models.cell_heads import CellHeadsConfig, fit_cell_heads

    settings = CellHeadsConfig(**{**config.get("heads", {}), "seed": int(config["seed"])})
    models = [p for p in (work / "sft" / "final", work / "grpo" / "final") if (p / "config.json").is_file()]
    if not models:
        raise ConfigError("no trained model to fit cell heads on: run the sft (and grpo) stages first")
    for model in models:
        record = fit_cell_heads(model, split_scenes(work, "train"), settings, eval_scenes=split_scenes(work, "val"))
        say(f"cell heads of {model.relative_to(work)}: validation cells {record.get('eval', {})}")
    return models


def stage_eval(config: dict[str, Any], work: Path) -> dict[str, Any]:
    from scener1.rl.benchmark import HeldoutSettings, compare_models

    models = {"sft": work / "sft" / "final", "sft+grpo": work / "grpo" / "final"}
    models = {k: v for k, v in models.items() if (v / "config.json").is_file()}
    settings = HeldoutSettings(**config["evaluation"], seed=int(config["seed"]))
    report = compare_models(models, split_scenes(work, "heldout"), settings, work / "eval")
    say(f"held-out results: {work / 'eval' / 'report.md'}")
    return report


def stage_export(config: dict[str, Any], work: Path, out: Path) -> Path:
    """Copy the final model (GRPO if it ran, else SFT) into ``out`` with its training summary."""
    from scener1.errors import ConfigError

    source = next((p for p in (work / "grpo" / "final", work / "sft" / "final") if (p / "config.json").is_file()), None)
    if source is None:
        raise ConfigError("no trained model to export: run the sft (and grpo) stages first")
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    size = sum((out / n).stat().st_size for n in MODEL_FILES if (out / n).is_file()) / 1e6
    if size > MAX_SHIPPED_MB:
        raise ConfigError(f"the exported model is {size:.1f} MB, over the {MAX_SHIPPED_MB:g} MB budget")
    summary = {"trained_by": "tools/train_tiny.py", "source": str(source.relative_to(work)), "size_mb": round(size, 2),
               "config": config}
    report = work / "eval" / "report.json"
    if report.is_file():
        summary["heldout"] = json.loads(report.read_text())
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for curves in ("sft", "grpo"):
        png = work / curves / "curves.png"
        if png.is_file():
            shutil.copy2(png, out / f"curves_{curves}.png")
    say(f"exported {source} -> {out} ({size:.1f} MB)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train" / "tiny_cpu.yaml")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: the config's work_dir)")
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "models" / "scene-r1-tiny",
                        help="where the export stage puts the model")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, from {', '.join(STAGES)}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (dotted key), e.g. --set sft.total_rows=800")
    args = parser.parse_args(argv)

    from scener1.errors import ScenerError

    try:
        config = load_config(args.config, args.overrides)
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        unknown = sorted(set(stages) - set(STAGES))
        if unknown:
            raise ScenerError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
        work = args.work or (REPO / config.get("work_dir", "outputs/train_tiny"))
        work.mkdir(parents=True, exist_ok=True)
        import torch

        torch.set_num_threads(int(config.get("torch_threads", 1)))
        (work / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for stage in STAGES:
            if stage not in stages:
                continue
            start = time.perf_counter()
            say(f"stage {stage}")
            if stage == "data":
                stage_data(config, work)
            elif stage == "init":
                stage_init(config, work)
            elif stage == "vision":
                stage_vision(config, work)
            elif stage in ("sft", "grpo"):
                stage_train(config, work, stage)
            elif stage == "heads":
                stage_heads(config, work)
            elif stage == "eval":
                stage_eval(config, work)
            else:
                stage_export(config, work, args.out)
            say(f"stage {stage} done in {time.perf_counter() - start:.0f} s")
    except ScenerError as exc:
        print(f"train_tiny: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
