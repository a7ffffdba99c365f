#!/usr/bin/env python
"""Lifting benchmark: prompt with ground-truth 2D boxes, lift, score the 3D box by IoU (Acc@0.25 / Acc@0.5).

Two sources of scenes:

* ``--real DIR``: real ScanNet scans in the shared real-data layout (``scannet_posed_images/<scene>``,
  ``scannet_scene_meta_txt``, ``scanrefer_aligned_bbox_npy``, ``scannet_points_mmdet3d``). The prompt of
  each ground-truth box is derived from the scan's points inside it: they are projected into every frame,
  kept where the frame's depth sees them (z-buffer), the frame that sees most of them is the key frame and
  the box around their projections is the prompt.
* ``--synth-seeds A-B``: synthetic scenes from :func:`scener1.synth.generate_scene`, prompted with the
  ground-truth 2D box of each object on the frame where it covers most pixels (``gt/frames.json``) and
  scored against ``gt/objects.json``. ``--noise`` adds depth noise (sigma = share of depth) and
  ``--jitter`` moves each box side by up to that share of the box size.

Results are appended to ``OUT/results.jsonl`` one object at a time, and a rerun skips what is there, so a
killed run resumes; ``OUT/summary.json`` holds the accuracies.

    .venv/bin/python tools/bench_lifting.py --real ../shared/realdata --scenes scene0113_00 --out outputs/bench_real
    .venv/bin/python tools/bench_lifting.py --synth-seeds 100-119 --out outputs/bench_synth
    .venv/bin/python tools/bench_lifting.py --synth-seeds 100-119 --noise 0.01 --jitter 0.1 --out outputs/bench_noisy
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from scener1.data import open_scene
from scener1.lifting import Box3D, LiftConfig, aabb_iou, lift
from scener1.tracking import build_tracker


# ---------------------------------------------------------------------------------------------- prompts
def real_prompts(root: Path, scene_id: str, scene) -> list[dict]:
    """One prompt per ground-truth box of a real ScanNet scan (see the module docstring), from the VQA oracle's
    ground-truth points (:class:`scener1.vqa.oracle.ScanNetOracleDetector`, no margin around the boxes)."""
    from scener1.vqa.oracle import ScanNetOracleDetector

    oracle = ScanNetOracleDetector.from_files(
        root / "scannet_points_mmdet3d" / f"{scene_id}.bin",
        root / "scanrefer_aligned_bbox_npy" / f"{scene_id}_aligned_bbox.npy", scene.axis_alignment, margin=0.0)
    frames = [scene.frame(p) for p in range(len(scene)) if scene.valid_poses[p]]
    prompts = []
    for k, row in enumerate(oracle.boxes):
        found = oracle.best_view(frames, k)
        if found is None:
            continue
        frame, box, share = found
        gt = Box3D.from_array(row[:6])
        prompts.append({
            "key": f"{scene_id}/{int(row[7])}",
            "object_id": int(row[7]),
            "label": int(row[6]),
            "frame": frame.index,
            "box": [float(c) for c in box],
            "gt": {"center": list(gt.center), "size": list(gt.size)},
            "visible_share": round(share, 3),
        })
    return prompts


def _first(d: dict, *keys):
    for k in keys:
        if k in d:
            return d[k]
    raise KeyError(f"none of {keys} in {sorted(d)}")


def synth_prompts(scene_dir: Path, tag: str) -> list[dict]:
    """One prompt per ground-truth object of a synthetic scene: its box on its best-visible frame."""
    objects = json.loads((scene_dir / "gt" / "objects.json").read_text())
    objects = objects.get("objects", objects) if isinstance(objects, dict) else objects
    frames = json.loads((scene_dir / "gt" / "frames.json").read_text())
    frames = frames.get("frames", frames) if isinstance(frames, dict) else frames
    best: dict[int, tuple[int, int, list]] = {}
    for fr in frames:
        index = int(_first(fr, "frame", "index", "frame_index", "id"))
        for ob in _first(fr, "objects", "visible"):
            oid = int(_first(ob, "id", "object_id"))
            px = int(_first(ob, "pixels", "pixel_count", "area", "visible_pixels"))
            if oid not in best or px > best[oid][0]:
                best[oid] = (px, index, list(_first(ob, "box", "bbox", "box_2d")))
    prompts = []
    for ob in objects:
        oid = int(_first(ob, "id", "object_id"))
        if oid not in best:
            continue
        px, index, box = best[oid]
        aabb = _first(ob, "aabb", "box_3d")
        prompts.append({
            "key": f"{tag}/{oid}", "object_id": oid, "label": ob.get("category", ""), "frame": index,
            "box": [float(v) for v in box], "gt": {"center": list(aabb["center"]), "size": list(aabb["size"])},
            "visible_pixels": px,
        })
    return prompts


def noisy_copy(scene_dir: Path, sigma: float, seed: int) -> Path:
    """A copy of a scene whose depth has Gaussian noise of ``sigma`` times the depth (0 stays invalid)."""
    import shutil

    import cv2

    dst = scene_dir.with_name(f"{scene_dir.name}_noise{sigma:g}")
    if (dst / "gt" / "objects.json").exists():
        return dst
    shutil.copytree(scene_dir, dst, dirs_exist_ok=True)
    rng = np.random.default_rng(seed)
    for png in sorted((dst / "depth").glob("*.png")):
        raw = cv2.imread(str(png), cv2.IMREAD_UNCHANGED).astype(np.float64)
        noisy = np.where(raw > 0, raw * (1 + sigma * rng.standard_normal(raw.shape)), 0)
        cv2.imwrite(str(png), np.clip(np.rint(noisy), 0, 65535).astype(np.uint16))
    (dst / "gt" / "objects.json").touch()  # written last by copytree already; marks the copy complete
    return dst


def jitter_box(box: list[float], share: float, rng: np.random.Generator) -> list[float]:
    """Move each side by up to ``share`` of the box's width / height."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    d = rng.uniform(-share, share, 4) * [w, h, w, h]
    return [x1 + d[0], y1 + d[1], x2 + d[2], y2 + d[3]]


# ---------------------------------------------------------------------------------------------- running
def evaluate(scene, prompts: list[dict], done: set, out_file: Path, args, rng) -> None:
    tracker = build_tracker(args.tracker)
    config = LiftConfig(max_frames=args.max_frames, max_depth=args.max_depth)
    for pr in tqdm(prompts, desc=str(scene.path.name), unit="object", leave=False):
        if pr["key"] in done:
            continue
        box = jitter_box(pr["box"], args.jitter, rng) if args.jitter else pr["box"]
        t = time.perf_counter()
        res = lift(scene, pr["frame"], box, tracker=tracker, config=config)
        gt = Box3D(tuple(pr["gt"]["center"]), tuple(pr["gt"]["size"]))
        iou = aabb_iou(res.box_3d, gt) if res.box_3d is not None else 0.0
        row = {**pr, "prompt": box, "status": res.status, "iou": round(iou, 4),
               "pred": None if res.box_3d is None else res.box_3d.to_dict(),
               "frames_used": len(res.frames_used), "seconds": round(time.perf_counter() - t, 2)}
        with out_file.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


def summarise(out_file: Path) -> dict:
    rows = [json.loads(line) for line in out_file.read_text().splitlines() if line.strip()]
    ious = np.array([r["iou"] for r in rows])
    return {
        "objects": len(rows),
        "acc@0.25": round(float((ious >= 0.25).mean()), 4) if len(rows) else None,
        "acc@0.5": round(float((ious >= 0.5).mean()), 4) if len(rows) else None,
        "mean_iou": round(float(ious.mean()), 4) if len(rows) else None,
        "median_seconds": float(np.median([r["seconds"] for r in rows])) if rows else None,
    }


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, metavar="DIR", help="the shared real-data folder")
    ap.add_argument("--scenes", default="scene0113_00", help="comma-separated real scene ids")
    ap.add_argument("--synth-seeds", metavar="A-B", help="synthetic scene seeds, e.g. 100-119 or 3,5,8")
    ap.add_argument("--synth-frames", type=int, default=120)
    ap.add_argument("--noise", type=float, default=0.0, help="synthetic depth noise, sigma as a share of depth")
    ap.add_argument("--jitter", type=float, default=0.0, help="move box sides by up to this share of the box")
    ap.add_argument("--tracker", default="geometric", choices=("geometric",))
    ap.add_argument("--max-frames", type=int, default=60)
    ap.add_argument("--max-depth", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0, help="seed of the box jitter")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / "results.jsonl"
    done = set()
    if out_file.exists():
        done = {json.loads(line)["key"] for line in out_file.read_text().splitlines() if line.strip()}
    rng = np.random.default_rng(args.seed)
    if args.real:
        for sid in args.scenes.split(","):
            meta = args.real / "scannet_scene_meta_txt" / f"{sid}.txt"
            with open_scene(args.real / "scannet_posed_images" / sid, meta=meta) as scene:
                evaluate(scene, real_prompts(args.real, sid, scene), done, out_file, args, rng)
    if args.synth_seeds:
        from scener1.synth import generate_scene  # the synthetic scene generator

        for seed in tqdm(parse_seeds(args.synth_seeds), desc="scenes", unit="scene"):
            found = sorted((args.out / "scenes" / f"seed{seed}").glob("synth_*/gt/objects.json"))
            found = [p for p in found if "_noise" not in p.parts[-3]]
            if found:
                scene_dir = found[0].parent.parent
            else:
                scene_dir = Path(generate_scene(args.out / "scenes" / f"seed{seed}", seed, frames=args.synth_frames))
            if args.noise:
                scene_dir = noisy_copy(scene_dir, args.noise, seed)
            with open_scene(scene_dir) as scene:
                evaluate(scene, synth_prompts(scene_dir, f"seed{seed}"), done, out_file, args, rng)
    summary = summarise(out_file) if out_file.exists() else {"objects": 0}
    summary.update(noise=args.noise, jitter=args.jitter, tracker=args.tracker)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
