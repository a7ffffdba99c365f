"""A colour video plus per-frame depth maps, poses and intrinsics (phones, RealSense recordings ...).

Layout::

    scan/<name>.mp4 (or .avi/.mov/.mkv; exactly one video file)
    scan/depth/<i>.png              uint16 depth, one per video frame, in frame order
    scan/pose/<i>.txt               4x4 camera-to-world, one per video frame
         or scan/poses.txt          all poses, 4 rows of 4 numbers per frame
    scan/intrinsic/intrinsic_color.txt [+ intrinsic_depth.txt]   or   scan/intrinsic.txt (colour)

Video frame ``k`` pairs with the ``k``-th depth map and pose in integer-name order. Timestamps come from
the video container (decord), so variable frame rates are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SceneError
from ..types import Intrinsics
from . import io
from .scene import (
    Scene,
    SceneOptions,
    _progress,
    check_depth_scale,
    find_scannet_meta,
    first_image_size,
    load_scannet_meta,
    resolve_depth_intrinsics,
)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _video_file(path: Path) -> Path | None:
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return path
    if path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if len(videos) > 1:
            raise SceneError(f"{path}: several video files ({', '.join(v.name for v in videos)}); pass one of them")
        return videos[0] if videos else None
    return None


def _read_poses(root: Path, n: int) -> np.ndarray:
    single = root / "poses.txt"
    if single.is_file():
        values = io.read_numbers(single)
        if values.size != n * 16:
            raise SceneError(f"{single} holds {values.size // 16} poses for {n} video frames")
        return values.reshape(n, 4, 4)
    files = io.numbered_files(root / "pose", (".txt",))
    if not files:
        raise SceneError(f"{root}: no poses (expected pose/<i>.txt or poses.txt)")
    if len(files) != n:
        raise SceneError(f"{root}: {n} video frames but {len(files)} pose files")
    return np.stack([io.read_pose(files[i]) for i in sorted(files)])


class VideoScene(Scene):
    format_name = "video"
    description = "video file + depth/ PNGs + pose/ (or poses.txt) + intrinsics"

    @classmethod
    def detect(cls, path: Path) -> bool:
        try:
            return _video_file(path) is not None
        except SceneError:
            return True  # several videos: let open() say so

    @classmethod
    def open(cls, path: Path, options: SceneOptions) -> "VideoScene":
        return cls(path, options)

    def __init__(self, path: Path, options: SceneOptions):
        video = _video_file(path)
        if video is None:
            raise SceneError(f"{path}: no video file ({', '.join(VIDEO_SUFFIXES)})")
        root = video.parent
        try:
            import decord
        except ImportError:
            raise SceneError("reading videos needs decord: pip install decord") from None
        try:
            self._vr = decord.VideoReader(str(video), ctx=decord.cpu(0))
        except Exception as exc:  # decord raises its own DECORDError with multi-line text
            raise SceneError(f"cannot open video {video}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        n = len(self._vr)
        if n == 0:
            raise SceneError(f"{video}: the video has no frames")
        depth_files = io.numbered_files(root / "depth", (".png",))
        if not depth_files:
            raise SceneError(f"{root}: no depth maps (expected depth/<i>.png)")
        if len(depth_files) != n:
            raise SceneError(f"{root}: {n} video frames but {len(depth_files)} depth maps")
        self._depth_paths = [depth_files[i] for i in sorted(depth_files)]
        self._depth_scale = check_depth_scale(options.depth_scale)
        poses = _read_poses(root, n)

        first = self._vr[0].asnumpy()
        color_size = (first.shape[1], first.shape[0])
        intr = root / "intrinsic"
        if (intr / "intrinsic_color.txt").is_file():
            color_K = io.read_camera_matrix(intr / "intrinsic_color.txt")
            depth_file = intr / "intrinsic_depth.txt"
        elif (root / "intrinsic.txt").is_file():
            color_K = io.read_camera_matrix(root / "intrinsic.txt")
            depth_file = root / "depth_intrinsic.txt"
        else:
            raise SceneError(f"{root}: missing intrinsics (expected intrinsic/intrinsic_color.txt or intrinsic.txt)")
        color_I = Intrinsics.from_matrix(color_K, *color_size)
        notes: list[str] = []
        depth_size = first_image_size(self._depth_paths, "depth", notes)
        meta_path = options.meta or find_scannet_meta(root)
        meta = load_scannet_meta(meta_path) if meta_path else None
        if depth_file.is_file():
            depth_I = Intrinsics.from_matrix(io.read_camera_matrix(depth_file), *depth_size)
        else:
            depth_I = resolve_depth_intrinsics(color_I, depth_size, meta, notes)

        stamps = self._vr.get_frame_timestamp(range(n))[:, 0].astype(np.float64)
        fps = float(options.fps or self._vr.get_avg_fps() or 30.0)
        if options.fps is not None:
            stamps = np.arange(n) / fps
        super().__init__(
            video,
            frame_ids=range(n),
            timestamps=stamps,
            poses=poses,
            color_intrinsics=color_I,
            depth_intrinsics=depth_I,
            fps=fps,
            axis_alignment=None if meta is None else meta.axis_alignment,
            notes=notes,
        )

    def frames(self, positions=None, progress: bool | str = False):
        """Stream frames, decoding the video in batches (decord seeks once per batch, not per frame)."""
        positions = list(range(len(self))) if positions is None else [int(p) for p in positions]
        batch = 16
        todo = iter(_progress(positions, progress))
        while True:
            chunk = [p for _, p in zip(range(batch), todo)]
            if not chunk:
                return
            for p in chunk:
                if not 0 <= p < len(self):
                    raise SceneError(f"{self.path}: frame position {p} out of range 0..{len(self) - 1}")
            try:
                colors = self._vr.get_batch(chunk).asnumpy()
            except Exception as exc:
                raise SceneError(f"{self.path}: cannot decode video frames {chunk[0]}..{chunk[-1]}: "
                                 f"{type(exc).__name__}") from None
            for p, color in zip(chunk, colors):
                yield self._make_frame(p, color, self._read_depth(p))

    def _read_color(self, position: int) -> np.ndarray:
        try:
            return self._vr[position].asnumpy()
        except Exception as exc:
            raise SceneError(f"{self.path}: cannot decode video frame {position}: {type(exc).__name__}") from None

    def _read_depth(self, position: int) -> np.ndarray:
        return io.read_depth(self._depth_paths[position], self._depth_scale)

    def close(self) -> None:
        self._vr = None
