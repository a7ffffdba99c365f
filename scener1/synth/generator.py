"""End-to-end generation of one synthetic scene or a dataset of them (see :mod:`scener1.synth`)."""

from __future__ import annotations

import json
import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..types import Intrinsics
from . import writer
from .camera_path import perturb_poses, plan_path
from .language import SceneGraph, nodes_from_objects, referring_expressions
from .layout import Room, SceneObject, furnish, make_room
from .qa import scanqa_questions, vsi_questions

#: An object counts as visible in a frame when it covers at least this fraction of the image (and >= 20 px).
VISIBLE_FRACTION = 0.001
DEMO_SEED = 1


@dataclass(frozen=True, eq=False)
class SynthScene:
    """A generated room before rendering: everything the ground truth is computed from."""

    name: str
    seed: int
    index: int
    room: Room
    objects: list[SceneObject]


def scene_name(seed: int, index: int) -> str:
    return f"synth_s{seed}_{index:03d}"


def default_intrinsics(width: int, height: int) -> Intrinsics:
    """A ScanNet-like pinhole camera (about 58 degrees horizontal field of view), centred."""
    f = 0.9 * width
    return Intrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height)


def _rng(seed: int, index: int, stream: int, *more: int) -> np.random.Generator:
    # independent streams: changing the frame count or image size never changes the room
    return np.random.default_rng([seed, index, stream, *more])


def check_options(seed, frames, size, fps, index=0) -> tuple[int, int, tuple[int, int], float, int]:
    """Validated (seed, frames, (W, H), fps, index); bad values raise ConfigError with one line."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(frames, (int, np.integer)) or not 1 <= frames <= 100_000:
        raise ConfigError(f"frames must be an integer in 1..100000, got {frames!r}")
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be (width, height), got {size!r}") from None
    if not (32 <= w <= 4096 and 32 <= h <= 4096):
        raise ConfigError(f"image size must be 32..4096 pixels on each side, got {w}x{h}")
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise ConfigError(f"fps must be a number, got {fps!r}") from None
    if not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps must be a positive number, got {fps}")
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise ConfigError(f"scene index must be a non-negative integer, got {index!r}")
    return int(seed), int(frames), (w, h), fps, int(index)


def build_scene(seed: int, index: int = 0, name: str | None = None) -> SynthScene:
    """The room and its furniture for (seed, index), without rendering anything."""
    rng = _rng(seed, index, 0)
    room = make_room(rng)
    objects = furnish(room, rng)
    return SynthScene(name or scene_name(seed, index), seed, index, room, objects)


def preview_frames(seed: int, positions, index: int = 0, frames: int = 300, size: tuple[int, int] = (320, 240)):
    """Render only the frames at ``positions`` of the scene ``generate_scene`` would make (same pixels).

    Returns ``(scene, poses, results)`` with one :class:`~scener1.synth.render.RenderResult` per position;
    handy for previews and contact sheets without writing a whole scene.
    """
    seed, frames, (w, h), _, index = check_options(seed, frames, size, 30.0, index)
    from .render import Renderer, compile_scene

    scene = build_scene(seed, index)
    renderer = Renderer(compile_scene(scene.room, scene.objects, _rng(seed, index, 1)), default_intrinsics(w, h))
    poses = plan_path(scene.room, scene.objects, frames, _rng(seed, index, 2), sight=renderer.first_instance)
    results = [renderer.render(poses[i], _rng(seed, index, 4, int(i))) for i in positions]
    return scene, poses, results


def _prepare_dir(scene_dir: Path) -> None:
    if scene_dir.exists():
        if not scene_dir.is_dir():
            raise ConfigError(f"{scene_dir} exists and is not a folder")
        generated = (scene_dir / "gt" / "objects.json").is_file() or (scene_dir / "gt" / "frames.json").is_file()
        if any(scene_dir.iterdir()) and not generated:
            raise ConfigError(f"{scene_dir} exists and is not a generated scene; refusing to overwrite it")
        shutil.rmtree(scene_dir)  # a previous run may have had more frames
    writer.prepare_scene_dir(scene_dir)


def generate_scene(
    out_dir: str | Path,
    seed: int,
    frames: int = 300,
    size: tuple[int, int] = (320, 240),
    fps: float = 30.0,
    *,
    index: int = 0,
    name: str | None = None,
    depth_noise: bool = False,
    pose_noise: bool = False,
    progress: bool = False,
    workers: int = 2,
) -> Path:
    """Generate, render and annotate one scene in ``out_dir/<name>`` and return that folder.

    Deterministic for (seed, index): the room, furniture, camera path, images and annotations are the same
    on every run. ``name`` defaults to ``synth_s<seed>_<index:03d>``. ``depth_noise`` adds sensor noise and
    holes to the written depth; ``pose_noise`` writes slightly drifting poses (``gt/camera_poses.npy``
    always keeps the true ones). ``workers`` frames are rendered concurrently (the output does not depend
    on it).
    """
    seed, frames, (w, h), fps, index = check_options(seed, frames, size, fps, index)
    from .render import Renderer, compile_scene, noisy_depth  # lazy: imports Open3D

    scene = build_scene(seed, index, name)
    scene_dir = Path(out_dir).expanduser() / scene.name
    _prepare_dir(scene_dir)
    K = default_intrinsics(w, h)
    renderer = Renderer(compile_scene(scene.room, scene.objects, _rng(seed, index, 1)), K)
    poses = plan_path(scene.room, scene.objects, frames, _rng(seed, index, 2), sight=renderer.first_instance)
    written = perturb_poses(poses, _rng(seed, index, 3)) if pose_noise else poses
    min_pixels = max(20, int(round(VISIBLE_FRACTION * w * h)))

    def frame_job(i: int) -> list[dict]:
        # each frame has its own random stream, so frames can be made in any order, in parallel
        frng = _rng(seed, index, 4, i)
        res = renderer.render(poses[i], frng)
        depth = noisy_depth(res, frng) if depth_noise else res.depth
        writer.write_frame(scene_dir, i, res.color, depth, res.instance, written[i])
        return writer.frame_objects(res.instance)

    # plan_path's line-of-sight casts have built the ray-casting structure, so threads may share it;
    # two frames in flight: numpy, OpenCV and Open3D release the GIL for their heavy loops
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        results = pool.map(frame_job, range(frames))
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=frames, desc=f"rendering {scene.name}", unit="frame", leave=False)
        per_frame: list[list[dict]] = list(results)

    writer.write_camera(scene_dir, scene.name, K, frames, fps, scene.room.scene_type)
    gt = scene_dir / "gt"
    objects_gt = writer.objects_json(scene.objects, per_frame, fps, min_pixels, scene.name)
    writer.write_json(gt / "objects.json", objects_gt)
    writer.write_json(gt / "frames.json", {
        "scene_id": scene.name, "fps": fps, "size": [w, h], "visibility_min_pixels": min_pixels,
        "frames": [{"frame": i, "timestamp": round(i / fps, 6), "objects": objs} for i, objs in enumerate(per_frame)],
    })
    room = scene.room.to_dict()
    room["lights"] = scene.room.lights.tolist()
    writer.write_json(gt / "room.json", room)
    np.save(gt / f"{scene.name}_aligned_bbox.npy", writer.aligned_bbox_array(scene.objects))
    np.save(gt / "camera_poses.npy", poses)

    graph = SceneGraph.build(nodes_from_objects(scene.objects), scene.room.door.center, scene.room.window.center)
    writer.write_json(gt / "scene_graph.json", graph.to_dict())
    lrng = _rng(seed, index, 5)
    expressions = referring_expressions(graph, lrng)
    first = {o["object_id"]: o["first_visible_frame"] for o in objects_gt["objects"] if o["first_visible_frame"] is not None}
    writer.write_json(gt / "scanrefer.json", writer.scanrefer_records(scene.name, expressions, objects_gt))
    writer.write_json(gt / "scanqa.json", writer.scanqa_records(scene.name, scanqa_questions(graph, lrng), scene.objects))
    writer.write_json(gt / "vsibench.json", writer.vsi_records(scene.name, vsi_questions(graph, scene.room.area, first, lrng)))
    writer.write_json(gt / "generation.json", {
        "generator": "scener1.synth", "seed": seed, "index": index, "frames": frames, "size": [w, h], "fps": fps,
        "depth_noise": bool(depth_noise), "pose_noise": bool(pose_noise),
    })
    return scene_dir


def generate_dataset(
    out_dir: str | Path,
    scenes: int,
    seed: int,
    frames: int = 300,
    size: tuple[int, int] = (320, 240),
    fps: float = 30.0,
    *,
    depth_noise: bool = False,
    pose_noise: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Generate ``scenes`` scenes (indices 0..scenes-1 of ``seed``) plus the dataset annotation files."""
    check_options(seed, frames, size, fps)
    if not isinstance(scenes, (int, np.integer)) or not 1 <= scenes <= 100_000:
        raise ConfigError(f"scenes must be an integer in 1..100000, got {scenes!r}")
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    iterator = range(scenes)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="scenes", unit="scene")
    dirs = [generate_scene(out_dir, seed, frames, size, fps, index=k, depth_noise=depth_noise, pose_noise=pose_noise,
                           progress=progress) for k in iterator]
    writer.write_annotations(out_dir, dirs)
    return dirs


def ensure_demo_scene(path: str | Path, frames: int = 300, size: tuple[int, int] = (320, 240)) -> Path:
    """The demo scene at ``path`` (a scene folder), generated deterministically the first time it is asked for."""
    path = Path(path).expanduser()
    done = path / "gt" / "generation.json"
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("seed") == DEMO_SEED and info.get("frames") == frames and info.get("size") == list(size):
            return path
    return generate_scene(path.parent, DEMO_SEED, frames, size, name=path.name)
