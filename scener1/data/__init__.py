"""Reading RGB-D scenes: one :class:`Scene` interface over every supported layout.

>>> from scener1.data import open_scene
>>> with open_scene("scans/scene0000_00") as scene:
...     frame = scene.frame(0)
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SceneError
from .posed_images import PosedImagesScene
from .scannet import ScanNetExportedScene
from .scene import Scene, SceneOptions
from .sens import SensScene, write_sens
from .sevenscenes import SevenScenesScene
from .video import VideoScene

#: Readers by format name, in detection order (most specific layout first).
READERS: dict[str, type[Scene]] = {
    cls.format_name: cls
    for cls in (SensScene, VideoScene, ScanNetExportedScene, SevenScenesScene, PosedImagesScene)
}


def detect_format(path: str | Path) -> str:
    """The format name of the scene at ``path``, from file names alone."""
    path = Path(path)
    if not path.exists():
        raise SceneError(f"scene path does not exist: {path}")
    if path.is_dir() and not any(path.iterdir()):
        raise SceneError(f"scene folder is empty: {path}")
    for name, cls in READERS.items():
        if cls.detect(path):
            return name
    raise SceneError(
        f"cannot recognise the scene layout of {path}; expected one of: "
        + "; ".join(f"{n} ({c.description})" for n, c in READERS.items())
    )


def open_scene(
    path: str | Path,
    format: str | None = None,
    *,
    fps: float | None = None,
    depth_scale: float | None = None,
    meta: str | Path | None = None,
) -> Scene:
    """Open an RGB-D scene, detecting its layout unless ``format`` names one of :data:`READERS`.

    ``fps`` sets the capture rate for sources without timestamps (default 30), ``depth_scale`` the raw
    depth units per metre (default 1000, or the ``.sens`` header's), ``meta`` a ScanNet ``scene<id>.txt``
    giving depth intrinsics and the axis alignment.
    """
    path = Path(path).expanduser()
    if format is None:
        format = detect_format(path)
    elif not path.exists():
        raise SceneError(f"scene path does not exist: {path}")
    if format not in READERS:
        raise SceneError(f"unknown scene format '{format}'; choose from {', '.join(READERS)}")
    if meta is not None and not Path(meta).is_file():
        raise SceneError(f"meta file does not exist: {meta}")
    options = SceneOptions(fps=fps, depth_scale=depth_scale, meta=Path(meta) if meta else None)
    return READERS[format].open(path, options)


__all__ = ["READERS", "Scene", "SceneOptions", "detect_format", "open_scene", "write_sens"]
