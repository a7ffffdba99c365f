"""Tiny RGB-D scenes with exact geometry, written in every layout the readers support.

The room is the box [0, 4] x [0, 3] x [0, 2.5] metres (z up) seen from inside; the camera turns around
on the spot. Depth is exact (ray-box intersection), colour encodes the wall and a world-space checker
pattern so that wrong intrinsics or poses show up as wrong colours and wrong points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from scener1.types import Frame, Intrinsics

ROOM = np.array([4.0, 3.0, 2.5])


def camera_pose(position, yaw: float, pitch: float = 0.0) -> np.ndarray:
    """Camera-to-world (OpenCV camera) looking along ``yaw`` (radians from +x), tilted down by ``pitch``."""
    fwd = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), -np.sin(pitch)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.cross(fwd, right)
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, fwd], axis=1)
    T[:3, 3] = position
    return T


#: Colours of boxes placed in the room (box i gets BOX_COLORS[i]).
BOX_COLORS = np.array([[200, 60, 60], [60, 60, 200], [60, 170, 60], [210, 180, 40]], np.uint8)


def render(K: Intrinsics, pose: np.ndarray, boxes=()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact depth (metres), colour and instance ids (0 = room, i + 1 = ``boxes[i]``) seen from ``pose``.

    ``boxes`` are axis-aligned (min corner, max corner) pairs standing in the room.
    """
    u, v = np.meshgrid(np.arange(K.width), np.arange(K.height))
    rays_cam = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u, float)], -1)  # z = 1
    d = rays_cam @ pose[:3, :3].T
    o = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_axes = np.where(d > 0, (ROOM - o) / d, np.where(d < 0, (0 - o) / d, np.inf))
        depth = t_axes.min(-1)  # ray parameter with z_cam = 1 is the depth itself
        ids = np.zeros(depth.shape, np.int64)
        for i, (lo, hi) in enumerate(boxes):
            t1, t2 = (np.asarray(lo) - o) / d, (np.asarray(hi) - o) / d
            near = np.nanmax(np.minimum(t1, t2), -1)
            far = np.nanmin(np.maximum(t1, t2), -1)
            hit = (near <= far) & (near > 0) & (near < depth)
            depth = np.where(hit, near, depth)
            ids = np.where(hit, i + 1, ids)
    p = o + d * depth[..., None]
    checker = (np.floor(p * 4).astype(int).sum(-1) % 2).astype(np.uint8)
    walls = np.array([[200, 60, 60], [60, 180, 60], [70, 70, 210]], np.uint8)[t_axes.argmin(-1)]
    walls = (walls * 0.5 + 60).astype(np.uint8)  # muted, so that boxes stand out
    base = np.where(ids[..., None] > 0, BOX_COLORS[np.maximum(ids - 1, 0) % len(BOX_COLORS)], walls)
    color = (base * (0.6 + 0.4 * checker[..., None])).astype(np.uint8)
    return depth.astype(np.float32), color, ids


@dataclass
class ToyScene:
    frames: list[Frame]

    @property
    def K_color(self) -> Intrinsics:
        return self.frames[0].color_intrinsics

    @property
    def K_depth(self) -> Intrinsics:
        return self.frames[0].depth_intrinsics


def make_frames(n: int = 8, depth_size=(64, 48), color_scale: int = 1, first_index: int = 0, step: int = 1) -> ToyScene:
    """``n`` frames turning around the room centre; colour ``color_scale`` times the depth resolution."""
    w, h = depth_size
    Kd = Intrinsics(0.9 * w, 0.9 * w, (w - 1) / 2, (h - 1) / 2, w, h)
    Kc = Kd.scaled(w * color_scale, h * color_scale)
    frames = []
    for k in range(n):
        pose = camera_pose([2.0, 1.5, 1.3], yaw=2 * np.pi * k / n, pitch=0.2)
        depth, _, _ = render(Kd, pose)
        _, color, _ = render(Kc, pose)
        depth = np.round(depth * 1000) / 1000  # what a uint16-millimetre file holds
        index = first_index + k * step
        frames.append(Frame(index, index / 30.0, color, depth.astype(np.float32), Kc, Kd, pose))
    return ToyScene(frames)


def _mat4(K: Intrinsics) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = K.matrix
    return m


def _write_matrix(path: Path, M: np.ndarray) -> None:
    np.savetxt(path, M, fmt="%.9f")


def _write_color(path: Path, rgb: np.ndarray) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, 100] if path.suffix == ".jpg" else []
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)


def _write_depth(path: Path, depth: np.ndarray) -> None:
    cv2.imwrite(str(path), np.round(depth * 1000).astype(np.uint16))


def write_scannet(root: Path, scene: ToyScene, meta: bool = True) -> Path:
    for sub in ("color", "depth", "pose", "intrinsic"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for f in scene.frames:
        _write_color(root / "color" / f"{f.index}.png", f.color)
        _write_depth(root / "depth" / f"{f.index}.png", f.depth)
        _write_matrix(root / "pose" / f"{f.index}.txt", f.pose)
    _write_matrix(root / "intrinsic" / "intrinsic_color.txt", _mat4(scene.K_color))
    _write_matrix(root / "intrinsic" / "intrinsic_depth.txt", _mat4(scene.K_depth))
    if meta:
        align = np.eye(4)
        align[:3, 3] = [-2.0, -1.5, 0.0]  # centres the room, as ScanNet's axisAlignment does
        (root / f"{root.name}.txt").write_text(
            "axisAlignment = " + " ".join(f"{x:g}" for x in align.ravel()) + "\nsceneType = toy\n"
        )
    return root


def write_posed_images(root: Path, scene: ToyScene, meta_path: Path | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for f in scene.frames:
        _write_color(root / f"{f.index:05d}.jpg", f.color)
        _write_depth(root / f"{f.index:05d}.png", f.depth)
        _write_matrix(root / f"{f.index:05d}.txt", f.pose)
    _write_matrix(root / "intrinsic.txt", _mat4(scene.K_color))
    if meta_path is not None:
        Kd = scene.K_depth
        meta_path.write_text(
            f"fx_depth = {Kd.fx}\nfy_depth = {Kd.fy}\nmx_depth = {Kd.cx}\nmy_depth = {Kd.cy}\n"
            f"depthWidth = {Kd.width}\ndepthHeight = {Kd.height}\n"
            "axisAlignment = 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1\n"
        )
    return root


def write_7scenes(root: Path, scene: ToyScene, intrinsics_in_parent: bool = True) -> Path:
    frames_dir = root / "rgbd-frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for f in scene.frames:
        _write_color(frames_dir / f"frame-{f.index:06d}.color.png", f.color)
        depth = np.round(f.depth * 1000).astype(np.uint16)
        cv2.imwrite(str(frames_dir / f"frame-{f.index:06d}.depth.png"), depth)
        _write_matrix(frames_dir / f"frame-{f.index:06d}.pose.txt", f.pose)
    target = root if intrinsics_in_parent else frames_dir
    _write_matrix(target / "camera-intrinsics.txt", scene.K_depth.matrix)
    return frames_dir


def write_video(root: Path, scene: ToyScene, fps: float = 10.0, single_pose_file: bool = False) -> Path:
    """An MJPG .avi (decodable everywhere, nearly lossless at quality 100) + depth PNGs + poses."""
    (root / "depth").mkdir(parents=True, exist_ok=True)
    Kc = scene.K_color
    writer = cv2.VideoWriter(str(root / "color.avi"), cv2.VideoWriter_fourcc(*"MJPG"), fps, (Kc.width, Kc.height))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
    for k, f in enumerate(scene.frames):
        writer.write(cv2.cvtColor(f.color, cv2.COLOR_RGB2BGR))
        _write_depth(root / "depth" / f"{k}.png", f.depth)
    writer.release()
    if single_pose_file:
        np.savetxt(root / "poses.txt", np.concatenate([f.pose for f in scene.frames]), fmt="%.9f")
    else:
        (root / "pose").mkdir(exist_ok=True)
        for k, f in enumerate(scene.frames):
            _write_matrix(root / "pose" / f"{k}.txt", f.pose)
    _write_matrix(root / "intrinsic.txt", _mat4(Kc))
    _write_matrix(root / "depth_intrinsic.txt", _mat4(scene.K_depth))
    return root


def distance_to_room(points: np.ndarray) -> np.ndarray:
    """Distance of each point to the nearest wall, floor or ceiling of the toy room."""
    return np.minimum(np.abs(points), np.abs(points - ROOM)).min(axis=1)


# two boxes on the floor of the room: a target and a neighbour next to it
TARGET = (np.array([2.55, 1.2, 0.0]), np.array([3.15, 1.7, 0.55]))  # (min, max) corners, metres
NEIGHBOUR = (np.array([2.45, 1.95, 0.0]), np.array([2.95, 2.35, 0.8]))


def object_frames(n: int = 10, depth_size=(160, 120), color_scale: int = 2, noise: float = 0.0, seed: int = 0):
    """Frames on an arc around TARGET, looking at it, and their colour-resolution instance maps."""
    rng = np.random.default_rng(seed)
    w, h = depth_size
    Kd = Intrinsics(0.8 * w, 0.8 * w, (w - 1) / 2, (h - 1) / 2, w, h)
    Kc = Kd.scaled(w * color_scale, h * color_scale)
    centre = (TARGET[0] + TARGET[1]) / 2
    frames, ids_color = [], []
    for k in range(n):
        a = np.deg2rad(200 + 100 * k / max(n - 1, 1))  # from the room's middle, around the front of the target
        pos = centre + np.array([1.5 * np.cos(a), 1.5 * np.sin(a), 1.1])
        look = centre - pos
        pose = camera_pose(pos, np.arctan2(look[1], look[0]), np.arctan2(-look[2], np.linalg.norm(look[:2])))
        depth, _, _ = render(Kd, pose, [TARGET, NEIGHBOUR])
        _, color, ids = render(Kc, pose, [TARGET, NEIGHBOUR])
        if noise:
            depth = depth * (1 + noise * rng.standard_normal(depth.shape)).astype(np.float32)
        depth = np.round(depth * 1000) / 1000
        frames.append(Frame(k, k / 30.0, color, depth.astype(np.float32), Kc, Kd, pose))
        ids_color.append(ids)
    return frames, ids_color


def gt_box_2d(ids: np.ndarray, instance: int = 1) -> list[int]:
    """The exclusive-corner pixel box of an instance."""
    v, u = np.nonzero(ids == instance)
    return [int(u.min()), int(v.min()), int(u.max()) + 1, int(v.max()) + 1]


def object_scan(tmp_path, n: int = 10, noise: float = 0.0):
    """A ScanNet-layout scan of the room with TARGET and NEIGHBOUR, and the per-frame instance maps."""
    frames, ids = object_frames(n, noise=noise)
    return write_scannet(tmp_path / "objscan", ToyScene(frames)), ids
