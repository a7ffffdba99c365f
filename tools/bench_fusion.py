#!/usr/bin/env python
"""Benchmark: fusing masked depth of many frames, scener1 vs a per-frame Open3D baseline.

Both fuse the same 640x480 frames (depth + colour + object mask + pose) into one world-frame cloud:
- baseline: per frame, zero the depth outside the mask, ``RGBDImage.create_from_color_and_depth``,
  ``PointCloud.create_from_rgbd_image``, ``transform(pose)``, then concatenate with ``+=``;
- scener1: :func:`scener1.lifting.projector.fuse_masked_frames` (erosion off so outputs match).

scener1 runs twice: on a list of frames already in memory (their masks bound the output, which is then
allocated once) and on a stream of frames read one at a time (as ``lift`` reads them; the output grows
in place). Reports the median time of several alternating runs of each, the median of the per-turn
ratios against the baseline, that the outputs agree (points and colours), and the peak memory
(tracemalloc) of scener1's fusion beyond the fused points themselves for two frame counts.

    .venv/bin/python tools/bench_fusion.py --frames 300 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc

import numpy as np

from scener1.lifting.projector import fuse_masked_frames
from scener1.types import Frame, Intrinsics

W, H = 640, 480
K = Intrinsics(577.87, 577.87, 319.5, 239.5, W, H)


def _pose(k: int) -> np.ndarray:
    """Cameras on a circle around the origin, looking at it."""
    a = 2 * np.pi * k / 37.0
    pos = np.array([2.5 * np.cos(a), 2.5 * np.sin(a), 1.4])
    fwd = -pos / np.linalg.norm(pos)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, fwd], axis=1)
    T[:3, 3] = pos
    return T


def make_pool(n: int = 8, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A few distinct (depth, colour, mask) images, cycled over the frames so the inputs stay small."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    pool = []
    for i in range(n):
        depth = (1.5 + 0.8 * v / H + 0.2 * np.sin(u / 40.0 + i)).astype(np.float32)
        depth[rng.random((H, W)) < 0.05] = 0.0  # sensor holes
        cx, cy = W / 2 + 60 * np.cos(i), H / 2 + 40 * np.sin(i)
        mask = ((u - cx) / 150) ** 2 + ((v - cy) / 110) ** 2 < 1.0  # about 17% of the image
        color = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        pool.append((depth, color, mask))
    return pool


POSES = [_pose(k) for k in range(37)]


def frames(count: int, pool):
    for k in range(count):
        depth, color, mask = pool[k % len(pool)]
        yield Frame(k, k / 30.0, color, depth, K, K, POSES[k % len(POSES)]), mask


def run_scener1(count: int, pool, max_depth: float, stream: bool = False):
    """``stream``: frames one at a time (as the lifting stage reads them); else a list of the in-memory
    frames, whose masks let the output be allocated once."""
    items = frames(count, pool) if stream else list(frames(count, pool))
    return fuse_masked_frames(items, min_depth=0.0, max_depth=max_depth, erosion_px=0)


def run_open3d(count: int, pool, max_depth: float):
    import open3d as o3d

    intr = o3d.camera.PinholeCameraIntrinsic(W, H, K.fx, K.fy, K.cx, K.cy)
    out = o3d.geometry.PointCloud()
    for frame, mask in frames(count, pool):
        masked = np.where(mask, frame.depth, 0.0).astype(np.float32)
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(frame.color)), o3d.geometry.Image(masked),
            depth_scale=1.0, depth_trunc=max_depth, convert_rgb_to_intensity=False,
        )
        cloud = o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, intr)
        cloud.transform(frame.pose)
        out += cloud
    return out


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def peak_memory(count: int, pool, max_depth: float, stream: bool) -> tuple[int, int]:
    """(peak bytes allocated during fusion, bytes of the fused result)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    fused = run_scener1(count, pool, max_depth, stream)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = fused.cloud.points.nbytes + fused.cloud.colors.nbytes + fused.source.nbytes
    return peak, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-depth", type=float, default=3.0)
    ap.add_argument("--json", metavar="FILE", help="also write the numbers here")
    args = ap.parse_args()
    pool = make_pool()
    for stream in (False, True):  # warm-up: imports, ray caches
        run_scener1(3, pool, args.max_depth, stream)
    run_open3d(3, pool, args.max_depth)
    # the three run in turns so that all see the same load on a shared machine; a ratio is the median of
    # the per-turn ratios
    times: dict[str, list[float]] = {"frames_in_memory": [], "streamed": [], "open3d": []}
    fused = streamed = cloud = None
    for _ in range(args.repeats):
        fused = streamed = cloud = None  # free the previous turn's clouds first (hundreds of MB)
        t, fused = timed(lambda: run_scener1(args.frames, pool, args.max_depth, stream=False))
        times["frames_in_memory"].append(t)
        t, cloud = timed(lambda: run_open3d(args.frames, pool, args.max_depth))
        times["open3d"].append(t)
        t, streamed = timed(lambda: run_scener1(args.frames, pool, args.max_depth, stream=True))
        times["streamed"].append(t)
    ref = np.asarray(cloud.points)
    ref_colors = np.rint(np.asarray(cloud.colors) * 255.0).astype(np.uint8)
    same = {}
    for name, out in (("frames_in_memory", fused), ("streamed", streamed)):
        n_ok = len(ref) == len(out.cloud)
        same[name] = {
            "same_point_count": n_ok,
            "max_abs_diff_m": float(np.abs(ref - out.cloud.points).max()) if n_ok else float("nan"),
            "same_colors": bool(n_ok and np.array_equal(ref_colors, out.cloud.colors)),
        }
    small, big = max(args.frames // 3, 1), args.frames
    memory = {}
    for name, stream in (("frames_in_memory", False), ("streamed", True)):
        peak_small, kept_small = peak_memory(small, pool, args.max_depth, stream)
        peak_big, kept_big = peak_memory(big, pool, args.max_depth, stream)
        memory[name] = {
            "peak_minus_points_mb": {str(small): round((peak_small - kept_small) / 2**20, 1),
                                     str(big): round((peak_big - kept_big) / 2**20, 1)},
            "fused_points_mb": {str(small): round(kept_small / 2**20, 1), str(big): round(kept_big / 2**20, 1)},
        }
    base = times["open3d"]
    report = {
        "frames": args.frames,
        "points": len(fused.cloud),
        "open3d_baseline_s": round(statistics.median(base), 3),
        **{
            name: {
                "seconds": round(statistics.median(times[name]), 3),
                "speedup_median_of_turns": round(statistics.median(b / t for b, t in zip(base, times[name])), 2),
                "speedup_per_turn": [round(b / t, 2) for b, t in zip(base, times[name])],
                **same[name],
                **memory[name],
            }
            for name in ("frames_in_memory", "streamed")
        },
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
