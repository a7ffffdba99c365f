"""ScanNet ``.sens`` files: a streaming reader and a writer.

The reader makes one pass over the file that reads each frame's 48-byte header (pose, timestamps, sizes)
and seeks past its image data, keeping offsets; colour and depth are decoded only for requested frames.
Byte layout: ``../shared/docs/reference.md`` (version 4, little-endian).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SceneError
from ..types import Frame, Intrinsics
from . import io
from .scene import Scene, SceneOptions, check_fps, find_scannet_meta, load_scannet_meta

COLOR_COMPRESSION = {-1: "unknown", 0: "raw", 1: "png", 2: "jpeg"}
DEPTH_COMPRESSION = {-1: "unknown", 0: "raw_ushort", 1: "zlib_ushort", 2: "occi_ushort"}
_FRAME_HEADER = struct.Struct("<16f4Q")  # pose, timestamp_color, timestamp_depth, color size, depth size


@dataclass(frozen=True)
class SensHeader:
    sensor_name: str
    color_intrinsics: np.ndarray  # 4x4
    color_extrinsics: np.ndarray
    depth_intrinsics: np.ndarray
    depth_extrinsics: np.ndarray
    color_compression: str
    depth_compression: str
    color_width: int
    color_height: int
    depth_width: int
    depth_height: int
    depth_shift: float
    num_frames: int


class _Reader:
    """Little-endian reads that turn a short file into a clear error."""

    def __init__(self, f, path: Path):
        self.f, self.path = f, path

    def read(self, n: int, what: str) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise SceneError(f"truncated .sens file {self.path}: ended while reading {what}")
        return data

    def unpack(self, fmt: str, what: str):
        s = struct.Struct("<" + fmt)
        return s.unpack(self.read(s.size, what))


def read_sens_header(f, path: Path) -> SensHeader:
    r = _Reader(f, path)
    (version,) = r.unpack("I", "the version")
    if version != 4:
        raise SceneError(f"{path}: unsupported .sens version {version} (expected 4)")
    (name_len,) = r.unpack("Q", "the sensor name length")
    if name_len > 4096:
        raise SceneError(f"{path}: not a .sens file (sensor name length {name_len})")
    name = r.read(name_len, "the sensor name").decode("utf-8", errors="replace")
    mats = [np.array(r.unpack("16f", "the calibration"), np.float64).reshape(4, 4) for _ in range(4)]
    color_c, depth_c = r.unpack("ii", "the compression types")
    cw, ch, dw, dh = r.unpack("4I", "the image sizes")
    (shift,) = r.unpack("f", "the depth shift")
    (n,) = r.unpack("Q", "the frame count")
    if color_c not in COLOR_COMPRESSION or depth_c not in DEPTH_COMPRESSION:
        raise SceneError(f"{path}: unknown compression types colour={color_c} depth={depth_c}")
    return SensHeader(
        name, *mats, COLOR_COMPRESSION[color_c], DEPTH_COMPRESSION[depth_c], cw, ch, dw, dh, float(shift), int(n)
    )


class SensScene(Scene):
    format_name = "sens"
    description = "ScanNet .sens binary file"

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".sens"

    @classmethod
    def open(cls, path: Path, options: SceneOptions) -> "SensScene":
        return cls(path, options)

    def __init__(self, path: Path, options: SceneOptions):
        self._file = open(path, "rb")
        try:
            header = read_sens_header(self._file, path)
            if header.depth_compression not in ("raw_ushort", "zlib_ushort"):
                raise SceneError(f"{path}: depth compression '{header.depth_compression}' is not supported")
            if header.color_compression not in ("jpeg", "png", "raw"):
                raise SceneError(f"{path}: colour compression '{header.color_compression}' is not supported")
            poses, stamps, offsets = self._index_frames(header, path)
        except BaseException:
            self._file.close()
            raise
        self.header = header
        self._offsets = offsets  # (N, 4): color offset, color size, depth offset, depth size
        fps = check_fps(options.fps)
        stamps = stamps.astype(np.float64)
        if options.fps is None and len(stamps) > 1 and (np.diff(stamps) > 0).all():
            times = (stamps - stamps[0]) / 1e6  # microseconds in ScanNet's recorder
            fps = float(1.0 / np.median(np.diff(times)))
        else:
            times = np.arange(len(stamps)) / fps
        meta_path = options.meta or find_scannet_meta(path.parent)
        meta = load_scannet_meta(meta_path) if meta_path else None
        self._depth_scale = options.depth_scale or header.depth_shift or 1000.0
        super().__init__(
            path,
            frame_ids=range(len(poses)),
            timestamps=times,
            poses=poses,
            color_intrinsics=Intrinsics.from_matrix(header.color_intrinsics, header.color_width, header.color_height),
            depth_intrinsics=Intrinsics.from_matrix(header.depth_intrinsics, header.depth_width, header.depth_height),
            fps=fps,
            axis_alignment=None if meta is None else meta.axis_alignment,
        )

    def _index_frames(self, header: SensHeader, path: Path):
        r = _Reader(self._file, path)
        n = header.num_frames
        size = path.stat().st_size
        # every frame needs at least its header: a larger count cannot be right
        if n * _FRAME_HEADER.size > size:
            raise SceneError(f"truncated .sens file {path}: header declares {n} frames, file is {size} bytes")
        poses = np.empty((n, 4, 4), np.float64)
        stamps = np.empty(n, np.uint64)
        offsets = np.empty((n, 4), np.int64)
        for i in range(n):
            vals = _FRAME_HEADER.unpack(r.read(_FRAME_HEADER.size, f"frame {i} of {n}"))
            poses[i] = np.array(vals[:16], np.float64).reshape(4, 4)
            stamps[i] = vals[16]
            color_size, depth_size = vals[18], vals[19]
            pos = self._file.tell()
            if pos + color_size + depth_size > size:
                raise SceneError(f"truncated .sens file {path}: frame {i} of {n} ends past the end of the file")
            offsets[i] = (pos, color_size, pos + color_size, depth_size)
            self._file.seek(color_size + depth_size, 1)
        return poses, stamps, offsets

    def close(self) -> None:
        self._file.close()

    def _read_bytes(self, offset: int, size: int) -> bytes:
        self._file.seek(int(offset))
        return self._file.read(int(size))

    def _read_color(self, position: int) -> np.ndarray:
        off, size = self._offsets[position, :2]
        data = self._read_bytes(off, size)
        h = self.header
        if h.color_compression == "raw":
            if len(data) != h.color_width * h.color_height * 3:
                raise SceneError(f"{self.path}: frame {position} raw colour has the wrong size")
            return np.frombuffer(data, np.uint8).reshape(h.color_height, h.color_width, 3).copy()
        return io.decode_color(data, f"{self.path} frame {position}")

    def _read_depth(self, position: int) -> np.ndarray:
        off, size = self._offsets[position, 2:]
        data = self._read_bytes(off, size)
        h = self.header
        if h.depth_compression == "zlib_ushort":
            try:
                data = zlib.decompress(data)
            except zlib.error:
                raise SceneError(f"{self.path}: frame {position} depth is not valid zlib data") from None
        if len(data) != h.depth_width * h.depth_height * 2:
            raise SceneError(f"{self.path}: frame {position} depth has {len(data)} bytes, expected "
                             f"{h.depth_width * h.depth_height * 2}")
        raw = np.frombuffer(data, "<u2").reshape(h.depth_height, h.depth_width)
        return io.depth_to_metres(raw, self._depth_scale)


def write_sens(
    path: Path,
    frames: Iterable[Frame],
    depth_shift: float = 1000.0,
    color_format: str = "jpeg",
    jpeg_quality: int = 95,
    sensor_name: str = "scener1",
    frame_period_us: int = 33333,
) -> int:
    """Write frames to a ``.sens`` file (colour as JPEG or PNG, depth as zlib uint16); returns the count.

    Intrinsics are taken from the first frame. Timestamps are written from ``Frame.timestamp`` in
    microseconds (``frame_period_us`` spaced when all timestamps are equal).
    """
    import cv2

    if color_format not in ("jpeg", "png"):
        raise ValueError("color_format must be 'jpeg' or 'png'")
    frames = list(frames)
    if not frames:
        raise ValueError("write_sens needs at least one frame")
    f0 = frames[0]
    ci, di = f0.color_intrinsics, f0.depth_intrinsics

    def mat4(I: Intrinsics) -> np.ndarray:
        m = np.eye(4, dtype=np.float32)
        m[:3, :3] = I.matrix
        return m

    eye = np.eye(4, dtype=np.float32)
    ts = np.array([fr.timestamp for fr in frames])
    same = np.allclose(ts, ts[0])
    with open(path, "wb") as f:
        name = sensor_name.encode()
        f.write(struct.pack("<IQ", 4, len(name)) + name)
        for m in (mat4(ci), eye, mat4(di), eye):
            f.write(m.astype("<f4").tobytes())
        f.write(struct.pack("<ii", 2 if color_format == "jpeg" else 1, 1))
        f.write(struct.pack("<4If", ci.width, ci.height, di.width, di.height, depth_shift))
        f.write(struct.pack("<Q", len(frames)))
        for i, fr in enumerate(frames):
            bgr = cv2.cvtColor(fr.color, cv2.COLOR_RGB2BGR)
            if color_format == "jpeg":
                ok, enc = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            else:
                ok, enc = cv2.imencode(".png", bgr)
            if not ok:
                raise ValueError(f"cannot encode colour of frame {fr.index}")
            raw = np.round(fr.depth * depth_shift).clip(0, 65535).astype("<u2")
            depth_bytes = zlib.compress(raw.tobytes())
            color_bytes = enc.tobytes()
            t = int(round((i * frame_period_us) if same else (fr.timestamp - ts[0]) * 1e6))
            f.write(fr.pose.astype("<f4").tobytes())
            f.write(struct.pack("<4Q", t, t, len(color_bytes), len(depth_bytes)))
            f.write(color_bytes)
            f.write(depth_bytes)
    return len(frames)
