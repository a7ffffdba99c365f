"""Low-level readers for the small files RGB-D datasets are made of.

Every function raises :class:`~scener1.errors.SceneError` with a one-line message on bad input.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import SceneError

#: Depth values a sensor writes for "no measurement" besides 0 (Kinect v1 uses 65535).
INVALID_DEPTH_RAW = (0, 65535)


def _cv2():
    import cv2  # lazy: keeps `scener1 --help` fast

    return cv2


def read_numbers(path: Path) -> np.ndarray:
    """All whitespace-separated numbers of a text file (``inf``/``nan`` accepted)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SceneError(f"missing file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneError(f"cannot read {path}: {exc}") from None
    try:
        return np.array([float(tok) for tok in text.split()], dtype=np.float64)
    except ValueError:
        raise SceneError(f"{path} is not a whitespace-separated list of numbers") from None


def read_matrix(path: Path, rows: int, cols: int) -> np.ndarray:
    """A ``rows x cols`` matrix stored as text (row-major, any whitespace)."""
    values = read_numbers(path)
    if values.size != rows * cols:
        raise SceneError(f"{path} holds {values.size} numbers, expected a {rows}x{cols} matrix")
    return values.reshape(rows, cols)


def read_pose(path: Path) -> np.ndarray:
    """A 4x4 camera-to-world pose; non-finite entries are kept (the frame is then marked invalid)."""
    return read_matrix(path, 4, 4)


def read_camera_matrix(path: Path) -> np.ndarray:
    """A 3x3 or 4x4 camera matrix file (ScanNet writes 4x4, 7-Scenes 3x3), returned as 3x3."""
    values = read_numbers(path)
    if values.size == 16:
        K = values.reshape(4, 4)[:3, :3]
    elif values.size == 9:
        K = values.reshape(3, 3)
    else:
        raise SceneError(f"{path} holds {values.size} numbers, expected a 3x3 or 4x4 camera matrix")
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise SceneError(f"{path} is not a valid camera matrix (focal lengths must be positive and finite)")
    return K


def read_color(path: Path) -> np.ndarray:
    """An 8-bit colour image as (H, W, 3) RGB."""
    cv2 = _cv2()
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"missing colour image: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SceneError(f"cannot decode colour image: {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_color(data: bytes, what: str) -> np.ndarray:
    """An encoded (JPEG/PNG) colour image held in memory, as RGB."""
    cv2 = _cv2()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise SceneError(f"cannot decode colour image: {what}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def depth_to_metres(raw: np.ndarray, scale: float) -> np.ndarray:
    """Raw integer depth to float32 metres, with sensor "no data" codes mapped to 0."""
    depth = raw.astype(np.float32) / np.float32(scale)
    depth[np.isin(raw, INVALID_DEPTH_RAW)] = 0.0
    return depth


def read_depth(path: Path, scale: float = 1000.0) -> np.ndarray:
    """A 16-bit depth PNG as float32 metres (0 = invalid)."""
    cv2 = _cv2()
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"missing depth image: {path}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise SceneError(f"cannot decode depth image: {path}")
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise SceneError(f"depth image must be single-channel 16-bit, got {raw.dtype} {raw.shape}: {path}")
    return depth_to_metres(raw, scale)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, decoding it if needed."""
    cv2 = _cv2()
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SceneError(f"cannot decode image: {path}")
    return int(img.shape[1]), int(img.shape[0])


_INT_STEM = re.compile(r"^\d+$")


def numbered_files(folder: Path, suffixes: tuple[str, ...]) -> dict[int, Path]:
    """Files named ``<integer><suffix>`` in ``folder``, keyed by that integer."""
    out: dict[int, Path] = {}
    if not folder.is_dir():
        return out
    for p in folder.iterdir():
        if p.suffix.lower() in suffixes and _INT_STEM.match(p.stem):
            out[int(p.stem)] = p
    return out


def read_scannet_meta(path: Path) -> dict[str, str]:
    """A ScanNet ``scene<id>.txt`` meta file as a dict of ``key = value`` strings."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise SceneError(f"missing meta file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneError(f"cannot read meta file {path}: {exc}") from None
    meta = {}
    for line in lines:
        if "=" in line:
            key, value = line.split("=", 1)
            meta[key.strip()] = value.strip()
    if not meta:
        raise SceneError(f"{path} is not a ScanNet meta file (no 'key = value' lines)")
    return meta


def meta_floats(meta: dict[str, str], key: str, count: int, path: Path) -> np.ndarray | None:
    """``count`` numbers stored under ``key`` in a ScanNet meta file, or None when the key is absent."""
    if key not in meta:
        return None
    try:
        values = np.array([float(v) for v in meta[key].split()], dtype=np.float64)
    except ValueError:
        raise SceneError(f"{path}: '{key}' is not numeric") from None
    if values.size != count:
        raise SceneError(f"{path}: '{key}' holds {values.size} numbers, expected {count}")
    return values
