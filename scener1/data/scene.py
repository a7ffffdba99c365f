"""The :class:`Scene` interface every RGB-D reader implements.

A reader indexes its source once (frame names, timestamps, poses, intrinsics) and decodes colour and depth
only when a frame is asked for, so long scans stream instead of filling memory.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import SceneError
from ..types import Frame, Intrinsics
from . import io

#: Capture rate assumed for sources that carry no timestamps (ScanNet and 7-Scenes record at 30 Hz).
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class SceneOptions:
    """Options every reader understands; ``None`` means "take it from the source"."""

    fps: float | None = None  # capture rate used to turn frame names into timestamps
    depth_scale: float | None = None  # raw depth units per metre (1000 for millimetres)
    meta: Path | None = None  # a ScanNet scene<id>.txt meta file (depth intrinsics, axisAlignment)


class Scene(abc.ABC):
    """An RGB-D recording: posed colour and depth frames with their intrinsics.

    Positions (``0 .. len(scene) - 1``) address frames in recording order; ``frame_ids`` holds the name
    each frame has in its source.
    """

    format_name: ClassVar[str]
    description: ClassVar[str]

    def __init__(
        self,
        path: Path,
        frame_ids: Iterable[int],
        timestamps: Iterable[float],
        poses: np.ndarray,
        color_intrinsics: Intrinsics,
        depth_intrinsics: Intrinsics,
        fps: float,
        axis_alignment: np.ndarray | None = None,
        notes: Iterable[str] = (),
    ):
        self.path = Path(path)
        self.frame_ids = np.asarray(list(frame_ids), dtype=np.int64)
        self.timestamps = np.asarray(list(timestamps), dtype=np.float64)
        self.poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
        if not (len(self.frame_ids) == len(self.timestamps) == len(self.poses)):
            raise SceneError(f"{path}: frame, timestamp and pose counts differ")
        if len(self.frame_ids) == 0:
            raise SceneError(f"{path}: the scene has no frames")
        self.color_intrinsics = color_intrinsics
        self.depth_intrinsics = depth_intrinsics
        self.fps = float(fps)
        self.axis_alignment = None if axis_alignment is None else np.asarray(axis_alignment, np.float64).reshape(4, 4)
        self.notes = list(notes)  # facts a user should know (fallbacks taken while reading)
        self.unreadable: dict[int, str] = {}  # position -> why its images could not be read (frame_or_none)
        self._position = {int(i): p for p, i in enumerate(self.frame_ids)}

    # ----------------------------------------------------------------- what a subclass provides
    @classmethod
    @abc.abstractmethod
    def open(cls, path: Path, options: SceneOptions) -> "Scene":
        """Index the scene at ``path`` (raises :class:`SceneError` with one line on bad input)."""

    @classmethod
    @abc.abstractmethod
    def detect(cls, path: Path) -> bool:
        """Whether ``path`` looks like this format (cheap: file names only)."""

    @abc.abstractmethod
    def _read_color(self, position: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of the frame at ``position``."""

    @abc.abstractmethod
    def _read_depth(self, position: int) -> np.ndarray:
        """(h, w) float32 metres of the frame at ``position``, 0 = invalid."""

    # ----------------------------------------------------------------- public API
    def __len__(self) -> int:
        return len(self.frame_ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, frames={len(self)})"

    def __enter__(self) -> "Scene":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release open files (readers holding none need not override)."""

    @property
    def valid_poses(self) -> np.ndarray:
        """(N,) bool: which frames have a finite camera-to-world pose."""
        return np.isfinite(self.poses).all(axis=(1, 2))

    @property
    def duration(self) -> float:
        """Seconds from the first to the end of the last frame."""
        return float(self.timestamps[-1] - self.timestamps[0] + 1.0 / self.fps)

    def position(self, frame_id: int) -> int:
        """Position of the frame named ``frame_id`` in the source."""
        try:
            return self._position[int(frame_id)]
        except KeyError:
            raise SceneError(f"{self.path}: no frame named {frame_id}") from None

    def frame(self, position: int) -> Frame:
        """Decode the frame at ``position`` (0-based, in recording order)."""
        self._check_position(position)
        return self._make_frame(position, self._read_color(position), self._read_depth(position))

    def frame_or_none(self, position: int) -> Frame | None:
        """The frame at ``position``, or ``None`` when its images cannot be read (a corrupt or missing file, a
        wrong size), the reason kept in ``unreadable``: for stages that read many frames and can do without one
        (tracking, candidate frames), so that one bad image among hundreds does not end a query."""
        return self._read_or_none(self.frame, position)

    def first_unreadable(self) -> str:
        """Why the earliest frame met so far could not be read ("" when every frame read so far could)."""
        return self.unreadable[min(self.unreadable)] if self.unreadable else ""

    def _read_or_none(self, read, position: int):
        """``read(position)``, or ``None`` with the reason kept in ``unreadable`` when it raises a SceneError."""
        self._check_position(position)
        try:
            return read(position)
        except SceneError as exc:
            self.unreadable[int(position)] = str(exc)
            return None

    def color(self, position: int) -> np.ndarray:
        """Decode only the colour image at ``position`` ((H, W, 3) uint8 RGB): for work that never reads depth
        (the VLM stages, training batches)."""
        self._check_position(position)
        color = self._read_color(position)
        self._check_size(position, "colour", color.shape[:2], self.color_intrinsics)
        return color

    def depth(self, position: int) -> np.ndarray:
        """Decode only the depth image at ``position`` (metres, float32): for work that never looks at colour,
        which is most of a frame's decoding time."""
        self._check_position(position)
        depth = self._read_depth(position)
        self._check_size(position, "depth", depth.shape, self.depth_intrinsics)
        return depth

    def frames(self, positions: Iterable[int] | None = None, progress: bool | str = False,
               skip_unreadable: bool = False) -> Iterator[Frame]:
        """Stream frames at ``positions`` (all by default), decoding one at a time; with ``skip_unreadable``
        frames that cannot be read are left out (:meth:`frame_or_none`) instead of raising."""
        for p in _progress(self._positions(positions), progress):
            frame = self.frame_or_none(p) if skip_unreadable else self.frame(p)
            if frame is not None:
                yield frame

    def colors(self, positions: Iterable[int] | None = None, progress: bool | str = False,
               skip_unreadable: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(position, colour)`` at ``positions`` (all by default), like :meth:`frames` without depth
        (``skip_unreadable`` as there)."""
        for p in _progress(self._positions(positions), progress):
            color = self._read_or_none(self.color, p) if skip_unreadable else self.color(p)
            if color is not None:
                yield p, color

    def depths(self, positions: Iterable[int] | None = None, progress: bool | str = False) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(position, depth)`` at ``positions`` (all by default), like :meth:`frames` without colour."""
        for p in _progress(self._positions(positions), progress):
            yield p, self.depth(p)

    def _positions(self, positions: Iterable[int] | None) -> list[int]:
        return list(range(len(self))) if positions is None else [int(p) for p in positions]

    def _check_position(self, position: int) -> None:
        if not 0 <= position < len(self):
            raise SceneError(f"{self.path}: frame position {position} out of range 0..{len(self) - 1}")

    def _check_size(self, position: int, kind: str, shape: tuple[int, ...], intrinsics: Intrinsics) -> None:
        if tuple(shape[:2]) != (intrinsics.height, intrinsics.width):
            raise SceneError(
                f"{self.path}: frame {self.frame_ids[position]} {kind} is {shape[1]}x{shape[0]}, "
                f"intrinsics say {intrinsics.width}x{intrinsics.height}"
            )

    def _make_frame(self, position: int, color: np.ndarray, depth: np.ndarray) -> Frame:
        """Check decoded images against the intrinsics and wrap them in a :class:`Frame`."""
        ci, di = self.color_intrinsics, self.depth_intrinsics
        self._check_size(position, "colour", color.shape[:2], ci)
        self._check_size(position, "depth", depth.shape, di)
        return Frame(
            index=int(self.frame_ids[position]),
            timestamp=float(self.timestamps[position]),
            color=color,
            depth=depth,
            color_intrinsics=ci,
            depth_intrinsics=di,
            pose=self.poses[position].copy(),
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable description (what ``scener1 info`` prints)."""
        valid = self.valid_poses
        return {
            "path": str(self.path),
            "format": self.format_name,
            "frames": len(self),
            "first_frame": int(self.frame_ids[0]),
            "last_frame": int(self.frame_ids[-1]),
            "valid_poses": int(valid.sum()),
            "invalid_poses": int((~valid).sum()),
            "fps": self.fps,
            "duration_s": round(self.duration, 3),
            "color_size": list(self.color_intrinsics.size),
            "depth_size": list(self.depth_intrinsics.size),
            "color_intrinsics": self.color_intrinsics.to_dict(),
            "depth_intrinsics": self.depth_intrinsics.to_dict(),
            "axis_alignment": None if self.axis_alignment is None else self.axis_alignment.tolist(),
            "notes": self.notes,
        }


# --------------------------------------------------------------------- helpers shared by readers
def _progress(positions: list[int], progress: bool | str) -> Iterable[int]:
    if not progress:
        return positions
    from tqdm import tqdm

    return tqdm(positions, desc=progress if isinstance(progress, str) else "frames", unit="frame")


@dataclass(frozen=True)
class ScanNetMeta:
    """What a ScanNet ``scene<id>.txt`` tells a reader."""

    path: Path
    depth_intrinsics: Intrinsics | None
    color_intrinsics: Intrinsics | None
    axis_alignment: np.ndarray | None
    fps: float | None = None  # not a ScanNet key; scener1's synthetic scenes write it


def load_scannet_meta(path: Path) -> ScanNetMeta:
    """Parse the intrinsics and axis alignment of a ScanNet meta file."""
    path = Path(path)
    meta = io.read_scannet_meta(path)

    def intrinsics(kind: str) -> Intrinsics | None:
        keys = [f"fx_{kind}", f"fy_{kind}", f"mx_{kind}", f"my_{kind}", f"{kind}Width", f"{kind}Height"]
        if not all(k in meta for k in keys):
            return None
        vals = [io.meta_floats(meta, k, 1, path)[0] for k in keys]
        return Intrinsics(vals[0], vals[1], vals[2], vals[3], int(vals[4]), int(vals[5]))

    align = io.meta_floats(meta, "axisAlignment", 16, path)
    if align is not None:
        align = align.reshape(4, 4)
        if not np.isfinite(align).all():
            raise SceneError(f"{path}: axisAlignment is not finite")
    fps = io.meta_floats(meta, "fps", 1, path)
    return ScanNetMeta(path, intrinsics("depth"), intrinsics("color"), align, None if fps is None else float(fps[0]))


def find_scannet_meta(folder: Path) -> Path | None:
    """The meta file lying in ``folder``: ``<folder name>.txt``, else a single ``scene<id>.txt``."""
    import re

    own = folder / f"{folder.name}.txt"
    if own.is_file() and not own.stem.isdigit():
        return own
    found = sorted(p for p in folder.glob("*.txt") if re.fullmatch(r"scene\d{4}_\d{2}\.txt", p.name))
    return found[0] if len(found) == 1 else None


#: How many frames are tried, in order, for one that decodes to size a scene's images.
SIZE_PROBES = 10


def first_image_size(paths: Sequence[Path], kind: str, notes: list[str]) -> tuple[int, int]:
    """(width, height) of the first of ``paths`` that decodes.

    A scene is sized from one frame; a corrupt first frame would otherwise make the whole scene unopenable,
    while later it is only one unreadable frame, passed over like any other (``Scene.frame_or_none``).
    Up to :data:`SIZE_PROBES` frames are tried; the ones skipped are said in ``notes``.
    """
    errors = []
    for path in paths[:SIZE_PROBES]:
        try:
            size = io.image_size(path)
        except SceneError as exc:
            errors.append(str(exc))
            continue
        if errors:
            notes.append(f"{kind} image size taken from {path.name}: {len(errors)} earlier frame(s) could not be "
                         f"decoded ({errors[0]})")
        return size
    if not errors:
        raise SceneError(f"no {kind} frames to size the scene from")
    more = f" (and the next {len(errors) - 1} frames)" if len(errors) > 1 else ""
    raise SceneError(f"{errors[0]}{more}")


def timestamps_from_ids(frame_ids: np.ndarray, fps: float) -> np.ndarray:
    """Seconds of frames named by their capture index (frame 0 at t = 0)."""
    ids = np.asarray(frame_ids, dtype=np.float64)
    return (ids - ids[0]) / fps


def check_fps(fps: float | None) -> float:
    if fps is None:
        return DEFAULT_FPS
    if not np.isfinite(fps) or fps <= 0:
        raise SceneError(f"fps must be a positive number, got {fps}")
    return float(fps)


def check_depth_scale(scale: float | None, default: float = 1000.0) -> float:
    if scale is None:
        return default
    if not np.isfinite(scale) or scale <= 0:
        raise SceneError(f"depth scale must be a positive number, got {scale}")
    return float(scale)


def match_numbered(kinds: dict[str, dict[int, Path]], folder: Path) -> list[int]:
    """Frame ids present for every kind (colour, depth, pose ...); a mismatch is an error naming one gap."""
    names = list(kinds)
    first = kinds[names[0]]
    if not first:
        raise SceneError(f"{folder}: no {names[0]} frames found")
    for name in names[1:]:
        other = kinds[name]
        if set(other) != set(first):
            only_a = sorted(set(first) - set(other))
            only_b = sorted(set(other) - set(first))
            detail = (
                f"frame {only_a[0]} has no {name}" if only_a else f"frame {only_b[0]} has {name} but no {names[0]}"
            )
            raise SceneError(
                f"{folder}: {len(first)} {names[0]} frames but {len(other)} {name} frames ({detail})"
            )
    return sorted(first)


def resolve_depth_intrinsics(
    color: Intrinsics, depth_size: tuple[int, int], meta: ScanNetMeta | None, notes: list[str]
) -> Intrinsics:
    """Depth intrinsics from a meta file, else the colour camera rescaled (a documented approximation)."""
    if meta is not None and meta.depth_intrinsics is not None:
        di = meta.depth_intrinsics
        if di.size != depth_size:
            raise SceneError(
                f"{meta.path}: depth intrinsics are for {di.width}x{di.height}, depth images are "
                f"{depth_size[0]}x{depth_size[1]}"
            )
        return di
    if color.size == depth_size:
        return color
    notes.append("depth intrinsics scaled from the colour camera (no meta file with fx_depth...); pass --meta for exact ones")
    return color.scaled(*depth_size)


class ImageFilesScene(Scene):
    """Base of the readers whose frames are one colour and one depth image file each."""

    def __init__(self, path: Path, color_paths: list[Path], depth_paths: list[Path], depth_scale: float, **kwargs):
        super().__init__(path, **kwargs)
        self._color_paths = color_paths
        self._depth_paths = depth_paths
        self._depth_scale = depth_scale

    def _read_color(self, position: int) -> np.ndarray:
        return io.read_color(self._color_paths[position])

    def _read_depth(self, position: int) -> np.ndarray:
        return io.read_depth(self._depth_paths[position], self._depth_scale)

    @classmethod
    def from_numbered_files(
        cls,
        path: Path,
        ids: list[int],
        color: dict[int, Path],
        depth: dict[int, Path],
        pose: dict[int, Path],
        color_K: np.ndarray,
        options: SceneOptions,
        depth_K: np.ndarray | None = None,
        meta: ScanNetMeta | None = None,
        notes: list[str] | None = None,
    ) -> "ImageFilesScene":
        """Build a scene from per-frame files keyed by frame id, reading poses and image sizes once."""
        notes = [] if notes is None else notes
        fps = check_fps(options.fps if options.fps is not None else (meta.fps if meta else None))
        color_paths = [color[i] for i in ids]
        depth_paths = [depth[i] for i in ids]
        color_I = Intrinsics.from_matrix(color_K, *first_image_size(color_paths, "colour", notes))
        depth_size = first_image_size(depth_paths, "depth", notes)
        if depth_K is not None:
            depth_I = Intrinsics.from_matrix(depth_K, *depth_size)
        else:
            depth_I = resolve_depth_intrinsics(color_I, depth_size, meta, notes)
        poses = np.stack([io.read_pose(pose[i]) for i in ids])
        return cls(
            path,
            color_paths,
            depth_paths,
            check_depth_scale(options.depth_scale),
            frame_ids=ids,
            timestamps=timestamps_from_ids(np.array(ids), fps),
            poses=poses,
            color_intrinsics=color_I,
            depth_intrinsics=depth_I,
            fps=fps,
            axis_alignment=None if meta is None else meta.axis_alignment,
            notes=notes,
        )
