"""Microsoft 7-Scenes sequences (and tsdf-fusion's copy of them).

Layout::

    seq/frame-NNNNNN.color.png  frame-NNNNNN.depth.png (uint16 mm, 65535 = invalid)  frame-NNNNNN.pose.txt
    seq/camera-intrinsics.txt  or  seq/../camera-intrinsics.txt   (3x3; the dataset itself ships none:
                                                                   fx = fy = 585, cx = 320, cy = 240)

A folder holding ``rgbd-frames/`` is opened as that sub-folder. Colour and depth share the intrinsics.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import SceneError
from . import io
from .scene import ImageFilesScene, SceneOptions, match_numbered

_NAME = re.compile(r"^frame-(\d+)\.(color\.png|depth\.png|pose\.txt)$")


def _frames_folder(path: Path) -> Path:
    return path / "rgbd-frames" if (path / "rgbd-frames").is_dir() else path


def _index(folder: Path) -> dict[str, dict[int, Path]]:
    kinds: dict[str, dict[int, Path]] = {"colour": {}, "depth": {}, "pose": {}}
    key = {"color.png": "colour", "depth.png": "depth", "pose.txt": "pose"}
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m:
            kinds[key[m.group(2)]][int(m.group(1))] = p
    return kinds


class SevenScenesScene(ImageFilesScene):
    format_name = "7scenes"
    description = "7-Scenes: frame-NNNNNN.color.png/.depth.png/.pose.txt + camera-intrinsics.txt"

    @classmethod
    def detect(cls, path: Path) -> bool:
        folder = _frames_folder(path)
        return folder.is_dir() and any(folder.glob("frame-*.color.png"))

    @classmethod
    def open(cls, path: Path, options: SceneOptions) -> "SevenScenesScene":
        folder = _frames_folder(path)
        kinds = _index(folder)
        ids = match_numbered(kinds, folder)
        candidates = [folder / "camera-intrinsics.txt", folder.parent / "camera-intrinsics.txt"]
        K_path = next((c for c in candidates if c.is_file()), None)
        if K_path is None:
            raise SceneError(
                f"{folder}: missing intrinsics (expected camera-intrinsics.txt here or one level up; "
                "7-Scenes uses fx=fy=585, cx=320, cy=240)"
            )
        K = io.read_camera_matrix(K_path)
        return cls.from_numbered_files(
            folder, ids, kinds["colour"], kinds["depth"], kinds["pose"], K, options, depth_K=K
        )
