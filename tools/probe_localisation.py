#!/usr/bin/env python
"""Can a grounding VLM learn *where* things are? Train it briefly to box a coloured square and measure.

    .venv/bin/python tools/probe_localisation.py --model outputs/train_tiny/init --steps 600
    .venv/bin/python tools/probe_localisation.py --model outputs/train_tiny/init --steps 1500 --lr 2e-3 --out p.json

Each training image is grey with two squares of different colours (the second may cover the first); the
query names the colour of the one drawn last, and the answer is its box in the model's resized pixels, with
the same chat prompt, collator and loss as the supervised stage. A model that reads positions from its vision
tokens should reach a high IoU within a few thousand steps; the held-out images also say how strongly the
predicted centre follows the true one (``corr_x``, ``corr_y``). A fast loop for trying architecture and
optimisation changes before spending hours on the full recipe (docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 60, 220)}


def square_image(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, str, list[int]]:
    """A grey image with two squares; the colour and box of the one drawn last (fully visible)."""
    image = np.full((height, width, 3), 128, np.uint8)
    low, high = max(4, min(width, height) // 8), max(8, min(width, height) // 3)
    for name in rng.permutation(list(COLOURS))[:2]:
        side = int(rng.integers(low, high))
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        image[y : y + side, x : x + side] = COLOURS[name]
    return image, str(name), [x, y, x + side, y + side]


class SquareFrames:
    """The ``frames`` object the collator and ``row_request`` read: images kept by row id."""

    def __init__(self) -> None:
        self.images: dict[int, np.ndarray] = {}

    def image(self, row: dict[str, Any]) -> np.ndarray:
        return self.images[row["id"]]


def square_row(frames: SquareFrames, row_id: int, rng: np.random.Generator, size: tuple[int, int]) -> dict[str, Any]:
    from scener1.prompts import image_messages

    image, colour, box = square_image(rng, *size)
    frames.images[row_id] = image
    answer = (f'<think>The {colour} square.</think><answer>{{"bbox_2d": [{box[0]}, {box[1]}, {box[2]}, {box[3]}], '
              f'"label": "square"}}</answer>')
    return {"id": row_id, "task": "image", "prompt": image_messages(f"the {colour} square", "resized_pixels"),
            "completion": [{"role": "assistant", "content": answer}], "box": box}


def probe(model_dir: Path, steps: int, batch_size: int = 8, lr: float = 1e-3, test_images: int = 64,
          seed: int = 0, precision: str = "bf16", log_every: int = 100) -> dict[str, Any]:
    import torch

    from scener1.models import load_vlm
    from scener1.models.training import GroundingCollator, processor_image_size, row_request
    from scener1.models.vlm import GenerationSettings
    from scener1.rl.rewards import box_iou

    torch.manual_seed(seed)
    vlm = load_vlm(model_dir, device="cpu", dtype="float32")
    size = processor_image_size(vlm.processor)(320, 240)  # squares drawn at the model's own resolution
    frames, rng = SquareFrames(), np.random.default_rng(seed)
    collator = GroundingCollator(vlm.processor, frames)
    model = vlm.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses: list[float] = []
    start = time.monotonic()
    for step in range(steps):
        rows = [square_row(frames, step * batch_size + k, rng, size) for k in range(batch_size)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**collator(rows)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        frames.images.clear()
        losses.append(float(loss.detach()))
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"[probe] step {step} loss {np.mean(losses[-log_every:]):.3f} ({time.monotonic() - start:.0f} s)",
                  flush=True)
    model.eval()
    test_rng = np.random.default_rng(seed + 10**6)
    test = [square_row(frames, -1 - k, test_rng, size) for k in range(test_images)]
    answers: list[str] = []
    for i in range(0, len(test), 16):
        answers += [a if isinstance(a, str) else a.text for a in
                    vlm.generate([row_request(r, frames) for r in test[i : i + 16]], GenerationSettings(max_new_tokens=48))]
    ious, centres = [], []
    for row, answer in zip(test, answers, strict=True):
        m = re.search(r"\[\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+)\s*\]", answer)
        if m is None:
            ious.append(0.0)
            continue
        box = [float(v) for v in m.groups()]
        ious.append(box_iou(box, row["box"]))
        centres.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2,
                        (row["box"][0] + row["box"][2]) / 2, (row["box"][1] + row["box"][3]) / 2))

    def corr(a: np.ndarray, b: np.ndarray) -> float | None:
        return None if len(a) < 3 or a.std() == 0 or b.std() == 0 else round(float(np.corrcoef(a, b)[0, 1]), 3)

    c = np.array(centres, float).reshape(-1, 4)
    return {"model": str(model_dir), "steps": steps, "batch_size": batch_size, "lr": lr,
            "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None,
            "mean_iou": round(float(np.mean(ious)), 4), "acc@0.5": round(float(np.mean(np.array(ious) >= 0.5)), 4),
            "parsed": len(c), "corr_x": corr(c[:, 0], c[:, 2]), "corr_y": corr(c[:, 1], c[:, 3]),
            "seconds": round(time.monotonic() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an (untrained) model directory")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--test-images", type=int, default=64)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)

    import torch

    from scener1.errors import ScenerError

    torch.set_num_threads(args.threads)
    try:
        result = probe(args.model, args.steps, args.batch_size, args.lr, args.test_images, args.seed, args.precision)
    except ScenerError as exc:
        print(f"probe_localisation: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
