#!/usr/bin/env python
"""Render the README pictures of the synthetic scene generator into ``assets/readme/``.

- ``synth_contact_sheet.png``: frames along the camera path of three seeds (one row per seed);
- ``synth_rgb_depth_instance.png``: one frame beside its depth map and instance map.

The frames are exactly those ``scener1 synth`` writes for the same seeds (same RNG streams), rendered
directly without writing whole scenes. Run ``.venv/bin/python tools/make_contact_sheet.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from scener1.synth import preview_frames


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (8 + 7 * len(text), 18), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def depth_to_rgb(depth: np.ndarray, max_m: float = 6.0) -> np.ndarray:
    """Turbo colour map of metric depth; holes (0) black."""
    d8 = np.clip(depth / max_m * 255.0, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(d8, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[depth <= 0] = 0
    return rgb


def instance_to_rgb(inst: np.ndarray) -> np.ndarray:
    """A distinct colour per instance id; 0 (room structure) dark grey."""
    rng = np.random.default_rng(7)
    palette = rng.integers(60, 256, size=(int(inst.max()) + 1, 3)).astype(np.uint8)
    palette[0] = (40, 40, 40)
    return palette[inst]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="assets/readme", help="output folder")
    ap.add_argument("--seeds", default="1,11,13", help="three comma-separated seeds")
    ap.add_argument("--frames", type=int, default=300, help="frames per scene (as generated)")
    ap.add_argument("--per-row", type=int, default=4, help="frames shown per seed")
    ap.add_argument("--tile", default="256x192", help="tile size in the contact sheet")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tw, th = (int(v) for v in args.tile.split("x"))
    seeds = [int(s) for s in args.seeds.split(",")]

    rows = []
    detail = None
    for seed in seeds:
        positions = np.linspace(0, args.frames - 1, args.per_row + 2)[1:-1].round().astype(int)
        scene, _, results = preview_frames(seed, positions, frames=args.frames, size=(320, 240))
        tiles = []
        for pos, res in zip(positions, results):
            tile = cv2.resize(res.color, (tw, th), interpolation=cv2.INTER_AREA)
            tiles.append(_label(tile, f"seed {seed}  frame {pos}"))
        rows.append(np.concatenate(tiles, axis=1))
        print(f"seed {seed}: {scene.room.scene_type}, {scene.room.shape}, {len(scene.objects)} objects")
        if detail is None:
            # the frame with the most objects in view makes the clearest depth/instance example
            cands = np.linspace(0, args.frames - 1, 16).round().astype(int)
            _, _, cres = preview_frames(seed, cands, frames=args.frames, size=(320, 240))
            best = int(np.argmax([len(np.unique(r.instance)) for r in cres]))
            detail = (seed, cands[best], cres[best])
    sheet = np.concatenate(rows, axis=0)
    cv2.imwrite(str(out / "synth_contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])

    seed, pos, res = detail
    panel = np.concatenate([
        _label(res.color, f"colour (seed {seed}, frame {pos})"),
        _label(depth_to_rgb(res.depth), "depth (0-6 m)"),
        _label(instance_to_rgb(res.instance), "instance ids"),
    ], axis=1)
    cv2.imwrite(str(out / "synth_rgb_depth_instance.png"), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    for name in ("synth_contact_sheet.png", "synth_rgb_depth_instance.png"):
        print(f"wrote {out / name} ({(out / name).stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
