"""ScanNet scans exported to folders by the official ``SensReader`` (``--export_*`` flags).

Layout::

    scan/color/<i>.jpg   scan/depth/<i>.png   scan/pose/<i>.txt
    scan/intrinsic/intrinsic_color.txt  intrinsic_depth.txt  (4x4 each)
    scan/scene<id>.txt   (optional meta file: axisAlignment)

Frame names are unpadded capture indices, so timestamps are ``i / fps`` (30 Hz unless told otherwise).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SceneError
from . import io
from .scene import ImageFilesScene, SceneOptions, find_scannet_meta, load_scannet_meta, match_numbered


class ScanNetExportedScene(ImageFilesScene):
    format_name = "scannet"
    description = "ScanNet export: color/ depth/ pose/ intrinsic/ folders"

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and (path / "color").is_dir() and (path / "depth").is_dir()

    @classmethod
    def open(cls, path: Path, options: SceneOptions) -> "ScanNetExportedScene":
        kinds = {
            "colour": io.numbered_files(path / "color", (".jpg", ".jpeg", ".png")),
            "depth": io.numbered_files(path / "depth", (".png",)),
            "pose": io.numbered_files(path / "pose", (".txt",)),
        }
        ids = match_numbered(kinds, path)
        intr = path / "intrinsic"
        if not (intr / "intrinsic_color.txt").is_file():
            raise SceneError(f"{path}: missing intrinsics (expected {intr / 'intrinsic_color.txt'})")
        color_K = io.read_camera_matrix(intr / "intrinsic_color.txt")
        depth_K = io.read_camera_matrix(intr / "intrinsic_depth.txt") if (intr / "intrinsic_depth.txt").is_file() else None
        meta_path = options.meta or find_scannet_meta(path)
        meta = load_scannet_meta(meta_path) if meta_path else None
        return cls.from_numbered_files(
            path, ids, kinds["colour"], kinds["depth"], kinds["pose"], color_K, options, depth_K=depth_K, meta=meta
        )
