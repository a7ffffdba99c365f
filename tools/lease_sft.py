#!/usr/bin/env python
"""Run the supervised stage of the Scene-R1-tiny recipe on a machine that cannot render scenes.

Rendering needs Open3D; a borrowed GPU machine often lacks it (and cannot install it), and the rendered
scenes are too large to copy there whole. So the rows are built here and packed with exactly the colour
frames they read; the other machine unpacks them (the frames no row reads become links to one that is there,
depth becomes zeros: the supervised stage reads neither) and trains within a time budget:

    # here: rows of the recipe's training scenes (data and vision stages done), frames, camera files and
    # the pretrained vision tower -> PACK
    # (NAME.tgz: one archive; a lease counts the many small files of a folder by their disk blocks)
    .venv/bin/python tools/lease_sft.py pack --work outputs/train_tiny --pack .lease/pack.tgz --jpeg-quality 70 \\
        --set data.image.frame_stride=12 --set data.detect.frame_stride=12
    # there: build the untrained model, measure rows/s on a short run, train as many rows as fit, and write a
    # bf16 copy small enough to come back (run 10 on an H100: the recipe's batch of 8 at 10.4 steps/s, bound by
    # kernel launches; run 18 on an H200: four runs side by side; docs/training.md)
    python tools/lease_sft.py train --pack .lease/pack.tgz --work /tmp/tiny --minutes 8 --export $OUT/model \\
        --set sft.device=cuda --set torch_threads=4 --set sft.dataloader_num_workers=12

    # or: the untrained model with the shipped model's tower (pack with --set vision.steps=0: no vision stage
    # here, no tower in the pack),
    # or go on training the shipped model itself (does it still gain from more supervised steps?)
    python tools/lease_sft.py train ... --tower assets/models/scene-r1-tiny
    python tools/lease_sft.py train ... --start assets/models/scene-r1-tiny --set sft.learning_rate=0.0003

``train`` writes WORK/sft/final (the model) and WORK/lease.json (the row count it chose and the measured
throughput, so that the run can be repeated with a fixed ``sft.total_rows``). Both commands read the same
recipe (``--config``, default configs/train/tiny_cpu.yaml) and take ``--set`` overrides.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO))

import train_tiny  # tools/train_tiny.py: the recipe's stages

ROWS_FILE = "rows.jsonl.gz"
ARCHIVE_SUFFIX = ".tgz"  # --pack NAME.tgz: the pack as one archive (see archive_pack)
TOWER_FILE = "vision_tower.safetensors"  # the vision stage's tower (bf16, 3.7 MB), when the recipe has that stage
CAMERA_DIRS = ("pose", "intrinsic")


def say(text: str) -> None:
    print(f"[lease_sft] {text}", flush=True)


def pack(config: dict[str, Any], work: Path, out: Path, jpeg_quality: int | None = None) -> dict[str, Any]:
    """Training rows of the recipe plus the frames and camera files they need, under ``out``.

    ``jpeg_quality`` re-encodes the frames (the rendered ones are about quality 90, 4:2:0): 80 halves the
    pack for a mean change of about 2 of 255 grey levels, which is what lets 180 scenes fit a lease's 64 MiB.
    """
    from scener1.errors import ConfigError
    from scener1.rl.train import recipe_rows

    if out.name.endswith(ARCHIVE_SUFFIX):
        if out.exists():
            raise ConfigError(f"{out} exists; pack into a new archive")
        folder = out.with_name(out.name[: -len(ARCHIVE_SUFFIX)])  # built as a folder first, then archived
        info = pack(config, work, folder, jpeg_quality)
        return {**info, "archive": str(archive_pack(folder)), "archive_mib": round(out.stat().st_size / 2**20, 1)}
    if out.exists():
        raise ConfigError(f"{out} exists; pack into a new folder")
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise ConfigError(f"--jpeg-quality must be 1-100, got {jpeg_quality}")
    import cv2
    start = train_tiny.sft_start(config, work)  # the vision stage must be finished here when the recipe has it
    r = train_tiny.recipe(config, work, "sft")
    r.data.eval = []  # evaluation rows stay here: the held-out and validation scenes are not packed
    rows, _ = recipe_rows(r, work / "init")
    used: dict[str, set[int]] = {}
    for row in rows:
        used.setdefault(row["scene"], set()).update(int(p) for p in row["positions"])
    for scene, positions in used.items():
        src, dst = Path(scene), out / "scenes" / Path(scene).name
        frame_ids = sorted(int(p.stem) for p in (src / "color").glob("*.jpg"))
        (dst / "color").mkdir(parents=True)
        for position in sorted(positions):
            name = f"{frame_ids[position]}.jpg"
            if jpeg_quality is None:
                shutil.copy2(src / "color" / name, dst / "color" / name)
            else:
                cv2.imwrite(str(dst / "color" / name), cv2.imread(str(src / "color" / name)),
                            [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        for sub in CAMERA_DIRS:
            shutil.copytree(src / sub, dst / sub)
        shutil.copy2(src / f"{src.name}.txt", dst / f"{src.name}.txt")
        (dst / "frames.json").write_text(json.dumps(frame_ids))
    with gzip.open(out / ROWS_FILE, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({**row, "scene": Path(row["scene"]).name}) + "\n")
    if start != work / "init":
        from safetensors.torch import load_file, save_file

        # in bfloat16 (3.7 instead of 7.4 MB, so that pack and wheels stay within a lease's 64 MiB): the lent
        # machine trains under bf16 autocast, whose matmuls round these frozen weights the same way
        save_file(bf16_weights(tower_weights(load_file(start / "model.safetensors"))), out / TOWER_FILE)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    info = {"rows": len(rows), "scenes": len(used), "frames": sum(len(p) for p in used.values()), "mib": round(size, 1),
            "jpeg_quality": jpeg_quality}
    (out / "pack.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def tower_weights(weights: dict[str, Any]) -> dict[str, Any]:
    """The vision tower's tensors of a model's state dict."""
    return {k: v for k, v in weights.items() if ".visual." in k or k.startswith("visual.")}


def bf16_weights(weights: dict[str, Any]) -> dict[str, Any]:
    """Floating-point tensors in bfloat16, the rest as they are."""
    import torch

    return {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()}


def archive_pack(pack_dir: Path) -> Path:
    """Replace the pack folder by one gzipped tar beside it (NAME.tgz). A lease measures what it carries by disk
    usage, where each small file takes whole blocks: the 33,000 frames and camera files of 180 scenes use 173 MB of
    disk for 53 MB of bytes, and the archive (tar headers and JPEG markers compress) is 42 MB."""
    import tarfile

    out = pack_dir.with_name(pack_dir.name + ARCHIVE_SUFFIX)
    with tarfile.open(out, "w:gz") as tar:
        tar.add(pack_dir, arcname="pack")
    shutil.rmtree(pack_dir)
    return out


def open_pack(pack: Path, work: Path) -> Path:
    """The pack folder: ``pack`` itself, or an archive from :func:`archive_pack` extracted to WORK/pack
    (members that would land outside it are refused)."""
    from scener1.errors import ConfigError

    if not pack.name.endswith(ARCHIVE_SUFFIX):
        return pack
    import tarfile

    if not pack.is_file():
        raise ConfigError(f"{pack}: no such archive")
    shutil.rmtree(work / "pack", ignore_errors=True)
    try:
        with tarfile.open(pack) as tar:
            tar.extractall(work, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ConfigError(f"{pack}: not a readable pack archive ({exc})") from None
    return work / "pack"


def export_bf16(model_dir: Path, out: Path) -> Path:
    """A copy of a trained model folder with its weights in bfloat16: what assets/ ships, and under the 16 MiB
    per file a lease sends back (the float32 weights of the tiny model are 23 MB)."""
    from safetensors.torch import load_file, save_file

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("model.safetensors"))
    save_file(bf16_weights(load_file(model_dir / "model.safetensors")), out / "model.safetensors",
              metadata={"format": "pt"})
    return out


def unpack(pack_dir: Path, scenes_dir: Path) -> list[dict[str, Any]]:
    """Make each packed scene readable by :func:`scener1.data.open_scene` and return the rows, pointing at it."""
    import cv2
    import numpy as np

    from scener1.errors import ConfigError

    if not (pack_dir / ROWS_FILE).is_file() or not (pack_dir / "scenes").is_dir():
        raise ConfigError(f"{pack_dir} is not a pack (no {ROWS_FILE} and scenes/): make one with the pack command")
    for src in sorted((pack_dir / "scenes").iterdir()):
        dst = scenes_dir / src.name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        frame_ids = json.loads((dst / "frames.json").read_text())
        have = sorted((dst / "color").glob("*.jpg"))
        h, w = cv2.imread(str(have[0])).shape[:2]
        cv2.imwrite(str(dst / "zero_depth.png"), np.zeros((h, w), np.uint16))
        (dst / "depth").mkdir()
        for i in frame_ids:
            color = dst / "color" / f"{i}.jpg"
            if not color.exists():
                color.symlink_to(have[0].name)
            (dst / "depth" / f"{i}.png").symlink_to(Path("..") / "zero_depth.png")
    rows = []
    with gzip.open(pack_dir / ROWS_FILE, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            row["scene"] = str(scenes_dir / row["scene"])
            rows.append(row)
    return rows


def start_model(pack_dir: Path, init: Path, work: Path, tower_from: Path | None = None) -> Path:
    """The model SFT starts from there: the untrained ``init``, or a copy of it carrying a pretrained vision
    tower (the vision stage changes nothing else) in WORK/vision: the packed one, or ``tower_from``'s (a
    checkpoint that travelled anyway, e.g. the shipped model, whose tower the recipe's SFT kept frozen)."""
    from safetensors.torch import load_file, save_file

    from scener1.errors import ConfigError

    if tower_from is not None:
        if not (tower_from / "model.safetensors").is_file():
            raise ConfigError(f"--tower {tower_from}: no model.safetensors there")
        tower = tower_weights(load_file(tower_from / "model.safetensors"))
    elif (pack_dir / TOWER_FILE).is_file():
        tower = load_file(pack_dir / TOWER_FILE)
    else:
        return init
    weights = load_file(init / "model.safetensors")
    unfit = [k for k, v in tower.items() if k not in weights or weights[k].shape != v.shape]
    if unfit or not tower:
        raise ConfigError(f"the vision tower does not fit the recipe's model ({len(unfit)} tensors, e.g. "
                          f"{unfit[0] if unfit else 'none found'})")
    out = work / "vision"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(init, out)
    tower = {k: v.to(weights[k].dtype) for k, v in tower.items()}
    save_file({**weights, **tower}, out / "model.safetensors", metadata={"format": "pt"})
    return out


def sft_config(config: dict[str, Any], output_dir: Path, **changes: Any) -> Any:
    from scener1.rl.train import SFTStageConfig, stage_config

    values = {**config["sft"], "seed": int(config["seed"]), "output_dir": str(output_dir), **changes}
    return stage_config(SFTStageConfig, values)


def step_clock() -> Any:
    """A trainer callback noting when each step ends, for the steady rate after the first (slow) steps."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.monotonic())

        def steps_per_s(self, skip: int) -> float:
            times = self.times[skip:]
            if len(times) < 2:
                raise RuntimeError("too few calibration steps to measure a rate")
            return (len(times) - 1) / (times[-1] - times[0])

    return StepClock()


def runtime(output_dir: Path) -> float:
    """The trainer's own ``train_runtime`` (seconds in the training loop) from the stage's curves."""
    for line in reversed((output_dir / "curves.jsonl").read_text().splitlines()):
        entry = json.loads(line)
        if "train_runtime" in entry:
            return float(entry["train_runtime"])
    raise RuntimeError(f"{output_dir}/curves.jsonl has no train_runtime")


def train(config: dict[str, Any], pack_dir: Path, work: Path, minutes: float, calibration_steps: int,
          start_from: Path | None = None, tower_from: Path | None = None, export: Path | None = None) -> Path:
    """Unpack, calibrate, train. ``pack_dir``: a pack folder or archive; ``start_from``: a trained checkpoint to
    go on training (to see whether more supervised steps help) instead of the untrained model; ``tower_from``:
    see :func:`start_model`; ``export``: also write the final model there in bfloat16 (:func:`export_bf16`)."""
    from scener1.rl.train import run_sft

    from scener1.errors import ConfigError

    if not minutes > 0:
        raise ConfigError(f"--minutes must be positive, got {minutes}")
    if start_from is not None:
        if tower_from is not None:
            raise ConfigError("--start and --tower exclude each other: a trained checkpoint keeps its own tower")
        if not (start_from / "config.json").is_file():
            raise ConfigError(f"--start {start_from}: not a model folder (no config.json)")
        train_tiny.check_prompt_version(config, start_from)
    start = time.monotonic()
    deadline = start + 60.0 * minutes
    pack_dir = open_pack(pack_dir, work)
    rows = unpack(pack_dir, work / "data" / "train")
    say(f"{len(rows)} rows unpacked in {time.monotonic() - start:.0f} s")
    init = start_from or start_model(pack_dir, train_tiny.stage_init(config, work), work, tower_from)
    batch = int(config["sft"].get("batch_size", 8))

    probe = work / "calibration"
    shutil.rmtree(probe, ignore_errors=True)
    t0 = time.monotonic()
    calib_rows = calibration_steps * batch
    clock = step_clock()
    easy = min(int(config["sft"].get("easy_rows", 0)), calib_rows)
    run_sft(init, rows, sft_config(config, probe, total_rows=calib_rows, easy_rows=easy, save_steps=10**9,
                                   eval_every=0, logging_steps=10), callbacks=[clock])
    wall = time.monotonic() - t0
    loop = runtime(probe)
    rate = clock.steps_per_s(skip=min(10, calibration_steps // 3)) * batch  # steady state, after warm-up
    overhead = wall - calib_rows / rate  # loading, warm-up, saving
    margin = 30.0 + 0.05 * (deadline - time.monotonic())  # saving, and Dataset.from_list growing with the rows
    budget = deadline - time.monotonic() - overhead - margin
    total = int(rate * budget) // batch * batch
    say(f"calibration: {rate:.0f} rows/s ({loop:.0f} s loop, {overhead:.0f} s setup and warm-up); "
        f"training {total} rows")
    if total < 10 * batch:
        raise SystemExit("lease_sft: too little time left to train")
    info = {"rows_per_s": round(rate, 1), "setup_s": round(overhead, 1), "total_rows": total, "start": str(init),
            "batch_size": batch, "minutes": minutes, "pack": json.loads((pack_dir / "pack.json").read_text())}
    (work / "lease.json").write_text(json.dumps(info, indent=2) + "\n")
    easy = min(int(config["sft"].get("easy_rows", 0)), total)  # a short lease has room for fewer easy rows
    final = run_sft(init, rows, sft_config(config, work / "sft", total_rows=total, easy_rows=easy, eval_every=0,
                                           save_steps=10**9))
    info["wall_s"] = round(time.monotonic() - start, 1)
    info["train_runtime_s"] = round(runtime(work / "sft"), 1)
    (work / "lease.json").write_text(json.dumps(info, indent=2) + "\n")
    if export is not None:
        say(f"bf16 copy: {export_bf16(Path(final), export)}")
    say(f"done in {info['wall_s']:.0f} s: {final}")
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("pack", "train"))
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train" / "tiny_cpu.yaml")
    parser.add_argument("--work", type=Path, required=True, help="pack: the recipe's work folder; train: a new one")
    parser.add_argument("--pack", type=Path, required=True,
                        help="the packed rows and frames: a folder, or NAME.tgz for one archive (what a lease carries)")
    parser.add_argument("--minutes", type=float, default=8.0, help="train: wall-clock budget, all included")
    parser.add_argument("--calibration-steps", type=int, default=60)
    parser.add_argument("--jpeg-quality", type=int, default=None,
                        help="pack: re-encode the frames at this JPEG quality (80 halves the pack)")
    parser.add_argument("--start", type=Path, default=None,
                        help="train: go on training this checkpoint instead of the untrained model")
    parser.add_argument("--tower", type=Path, default=None,
                        help="train: the untrained model gets this checkpoint's vision tower (e.g. "
                             "assets/models/scene-r1-tiny) instead of the packed one")
    parser.add_argument("--export", type=Path, default=None,
                        help="train: also write the final model here with bf16 weights (small enough to send back)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from scener1.errors import ScenerError

    try:
        config = train_tiny.load_config(args.config, args.overrides)
        if args.command == "pack":
            say(f"packed: {pack(config, args.work, args.pack, args.jpeg_quality)}")
        else:
            import torch

            torch.set_num_threads(int(config.get("torch_threads", 1)))
            args.work.mkdir(parents=True, exist_ok=True)
            (args.work / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            train(config, args.pack, args.work, args.minutes, args.calibration_steps, args.start, args.tower,
                  args.export)
    except ScenerError as exc:
        print(f"lease_sft: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
