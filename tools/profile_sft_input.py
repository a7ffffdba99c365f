#!/usr/bin/env python
"""Where a supervised step's time goes: the collator in one process, the DataLoader with N workers, and
(on a GPU) the forward/backward/optimizer step and the host-to-device copy of one batch.

    .venv/bin/python tools/profile_sft_input.py --pack lease_pack_dir --workers 2
    python tools/profile_sft_input.py --pack /tmp/pack --workers 4 14 --out profile.json   # on a GPU machine

Reads the rows and frames of a ``tools/lease_sft.py pack`` folder; the model is the recipe's untrained one
(built into a temporary folder, or ``--model DIR``). Prints one JSON object of rates and times.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO))

import lease_sft  # tools/lease_sft.py: pack / unpack
import train_tiny  # tools/train_tiny.py: the recipe's untrained model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None, help="default: build the recipe's untrained model")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train" / "tiny_cpu.yaml")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=24, help="batches per DataLoader measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    from scener1.models import load_vlm
    from scener1.models.training import GroundingCollator, load_processor
    from scener1.rl.datasets import FrameSource

    from scener1.errors import ScenerError

    tmp = Path(tempfile.mkdtemp(prefix="profile_sft_"))
    try:
        rows = lease_sft.unpack(args.pack, tmp / "scenes")
    except ScenerError as exc:
        print(f"profile_sft_input: error: {exc}", file=sys.stderr)
        return 2
    model_dir = args.model or train_tiny.stage_init(train_tiny.load_config(args.config, []), tmp)
    collator = GroundingCollator(load_processor(model_dir), FrameSource())
    b = args.batch_size
    sample = random.Random(0).sample(rows, min(len(rows), b * (args.batches + 1)))
    res: dict[str, float] = {}

    torch.set_num_threads(1)
    batch = collator(sample[:b])  # opens the scenes the first batch needs
    t = time.monotonic()
    for i in range(b, 5 * b, b):
        batch = collator(sample[i:i + b])
    res["collator_rows_per_s_1_process"] = round(4 * b / (time.monotonic() - t), 1)
    res["batch_mb"] = round(sum(v.numel() * v.element_size() for v in batch.values()) / 1e6, 1)
    for workers in args.workers:
        loader = DataLoader(sample, batch_size=b, collate_fn=collator, num_workers=workers, pin_memory=True)
        it = iter(loader)
        next(it)  # worker start-up is not part of the rate
        t, n = time.monotonic(), 0
        for _ in it:
            n += 1
        res[f"loader_rows_per_s_{workers}_workers"] = round(n * b / (time.monotonic() - t), 1)
        print(json.dumps(res), flush=True)

    if torch.cuda.is_available():
        model = load_vlm(model_dir, device="cpu", dtype="float32").model.cuda().train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        on_gpu = {k: v.cuda() for k, v in batch.items()}
        for step in range(25):
            if step == 5:  # after warm-up
                torch.cuda.synchronize()
                t = time.monotonic()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(**on_gpu).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        torch.cuda.synchronize()
        res["gpu_step_s"] = round((time.monotonic() - t) / 20, 4)
        t = time.monotonic()
        for _ in range(10):
            on_gpu = {k: v.pin_memory().cuda(non_blocking=True) for k, v in batch.items()}
        torch.cuda.synchronize()
        res["host_to_gpu_s_per_batch"] = round((time.monotonic() - t) / 10, 4)
    print(json.dumps(res), flush=True)
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
