"""ScanNet frames as exported by mmdet3d / EmbodiedScan (``extract_posed_images``).

Layout (one folder per scan)::

    NNNNN.jpg  (colour)   NNNNN.png  (uint16 depth, mm)   NNNNN.txt  (4x4 camera-to-world)
    intrinsic.txt         (4x4 *colour* intrinsics)
    depth_intrinsic.txt   (optional, 4x4 depth intrinsics)
    scene<id>.txt      (optional ScanNet meta file: depth intrinsics and axisAlignment; --meta elsewhere)

Colour (1296x968) and depth (640x480) differ in resolution; without depth intrinsics from a meta file the
colour camera is rescaled to the depth size, which ScanNet's own numbers show to be off by about half a
pixel, so pass the meta file when you have it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SceneError
from . import io
from .scene import ImageFilesScene, SceneOptions, find_scannet_meta, load_scannet_meta, match_numbered


class PosedImagesScene(ImageFilesScene):
    format_name = "posed_images"
    description = "posed images: NNNNN.jpg/.png/.txt + intrinsic.txt in one folder"

    @classmethod
    def detect(cls, path: Path) -> bool:
        if not path.is_dir():
            return False
        return (path / "intrinsic.txt").is_file() or bool(io.numbered_files(path, (".jpg", ".jpeg")))

    @classmethod
    def open(cls, path: Path, options: SceneOptions) -> "PosedImagesScene":
        kinds = {
            "colour": io.numbered_files(path, (".jpg", ".jpeg")),
            "depth": io.numbered_files(path, (".png",)),
            "pose": io.numbered_files(path, (".txt",)),
        }
        ids = match_numbered(kinds, path)
        if not (path / "intrinsic.txt").is_file():
            raise SceneError(f"{path}: missing intrinsics (expected {path / 'intrinsic.txt'})")
        color_K = io.read_camera_matrix(path / "intrinsic.txt")
        depth_file = path / "depth_intrinsic.txt"
        depth_K = io.read_camera_matrix(depth_file) if depth_file.is_file() else None
        meta_path = options.meta or find_scannet_meta(path)
        meta = load_scannet_meta(meta_path) if meta_path else None
        return cls.from_numbered_files(
            path, ids, kinds["colour"], kinds["depth"], kinds["pose"], color_K, options, depth_K=depth_K, meta=meta
        )
