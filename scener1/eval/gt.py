"""Ground truth shared by the ScanNet benchmarks: per-scene object boxes and the ScanNet label map.

Boxes come from ScanRefer's preprocessed ``<scene>_aligned_bbox.npy`` files: float64 ``(K, 8)`` rows
``[cx, cy, cz, dx, dy, dz, nyu40_label, object_id]`` in the axis-aligned frame, ``object_id`` being the
0-based ScanNet aggregation id used by ScanRefer, ReferIt3D, Multi3DRefer and ScanQA. The synthetic scenes
of ``scener1.synth`` are written in the same layout under ``<root>/<scene>/gt/``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ScenerError
from .boxes import aabb_from_center_size

#: ScanRefer's 18 evaluation classes (17 ScanNet nyu40 classes and "others"), in its own order.
SCANREFER_CLASSES = (
    "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter", "desk",
    "curtain", "refrigerator", "shower curtain", "toilet", "sink", "bathtub", "others",
)
_SCANREFER_NAMED = frozenset(SCANREFER_CLASSES[:-1])

_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def check_scene_id(scene_id: str) -> str:
    """``scene_id`` if it is a plain name (it becomes part of file paths: nothing may escape the root)."""
    if not isinstance(scene_id, str) or not _SAFE_ID.match(scene_id) or ".." in scene_id:
        raise ScenerError(f"invalid scene id {scene_id!r}: expected a plain name such as scene0011_00")
    return scene_id


def scanrefer_class(nyu40_class: str) -> str:
    """The ScanRefer evaluation class of a nyu40 class name (anything outside the 17 named ones is "others")."""
    return nyu40_class if nyu40_class in _SCANREFER_NAMED else "others"


@dataclass(frozen=True)
class LabelMap:
    """The parts of ``scannetv2-labels.combined.tsv`` the benchmarks need."""

    raw_to_nyu40class: dict[str, str]  # raw_category (as in ScanRefer object_name, with spaces) -> nyu40class
    nyu40id_to_class: dict[int, str]  # nyu40 id -> nyu40class

    @classmethod
    def read(cls, path: str | Path) -> "LabelMap":
        path = Path(path)
        if not path.is_file():
            raise ScenerError(f"label map not found: {path} (expected scannetv2-labels.combined.tsv)")
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows:
            raise ScenerError(f"{path}: empty label map")
        header = [h.strip() for h in rows[0]]
        try:
            raw_col, id_col, cls_col = header.index("raw_category"), header.index("nyu40id"), header.index("nyu40class")
        except ValueError:
            raise ScenerError(f"{path}: not a ScanNet label map (needs raw_category, nyu40id, nyu40class columns)") from None
        raw, ids = {}, {}
        for line_no, row in enumerate(rows[1:], start=2):
            if len(row) <= max(raw_col, id_col, cls_col):
                if any(c.strip() for c in row):
                    raise ScenerError(f"{path}:{line_no}: too few columns")
                continue
            name, nyu_class = row[raw_col].strip(), row[cls_col].strip()
            raw[name] = nyu_class
            try:
                ids[int(row[id_col])] = nyu_class
            except ValueError:
                raise ScenerError(f"{path}:{line_no}: nyu40id {row[id_col]!r} is not an integer") from None
        return cls(raw, ids)

    def class_of_name(self, object_name: str) -> str:
        """ScanRefer class of an ``object_name`` (underscores read as spaces; unknown names are "others")."""
        return scanrefer_class(self.raw_to_nyu40class.get(object_name.replace("_", " "), ""))

    def class_of_nyu40(self, nyu40_id: int) -> str:
        return scanrefer_class(self.nyu40id_to_class.get(int(nyu40_id), ""))


@dataclass(frozen=True, eq=False)
class SceneBoxes:
    """The annotated objects of one scene."""

    scene_id: str
    object_ids: np.ndarray  # (K,) int64
    labels: np.ndarray  # (K,) int64 nyu40 ids
    aabbs: np.ndarray  # (K, 6) float64 min/max, axis-aligned frame
    rows: dict[int, int]  # object id -> row

    def __len__(self) -> int:
        return len(self.object_ids)

    def index_of(self, object_ids) -> np.ndarray:
        """Row indices of ``object_ids``; raises naming the first id the scene lacks."""
        rows = []
        for object_id in object_ids:
            row = self.rows.get(int(object_id))
            if row is None:
                raise ScenerError(f"{self.scene_id}: object {int(object_id)} is not among the scene's ground-truth boxes")
            rows.append(row)
        return np.asarray(rows, dtype=np.int64)

    def boxes_of(self, object_ids) -> np.ndarray:
        return self.aabbs[self.index_of(object_ids)]


def load_scene_boxes(path: str | Path, scene_id: str) -> SceneBoxes:
    """Read one ``<scene>_aligned_bbox.npy``."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ScenerError(f"cannot read ground-truth boxes {path}: {exc}") from None
    if arr.ndim != 2 or arr.shape[1] < 8 or not np.issubdtype(arr.dtype, np.number):
        raise ScenerError(f"{path}: expected a numeric (K, 8) array [cx,cy,cz,dx,dy,dz,label,object_id], got {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr[:, :8]).all() or (arr[:, 3:6] < 0).any():
        raise ScenerError(f"{path}: boxes with non-finite values or negative sizes")
    object_ids = arr[:, 7].astype(np.int64)
    if len(np.unique(object_ids)) != len(object_ids):
        raise ScenerError(f"{path}: an object id occurs twice")
    aabbs = aabb_from_center_size(arr[:, :3], arr[:, 3:6])
    rows = {int(object_id): row for row, object_id in enumerate(object_ids)}
    return SceneBoxes(scene_id, object_ids, arr[:, 6].astype(np.int64), aabbs, rows)


class GTBoxStore:
    """Finds and caches per-scene box files under ``root``.

    Layouts tried, in order: ``root/<scene>_aligned_bbox.npy`` (ScanRefer's ``scannet_data``),
    ``root/<scene>/<scene>_aligned_bbox.npy`` and ``root/<scene>/gt/<scene>_aligned_bbox.npy`` (synthetic scenes).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ScenerError(f"ground-truth box folder not found: {self.root}")
        self._cache: dict[str, SceneBoxes] = {}

    def path_of(self, scene_id: str) -> Path | None:
        check_scene_id(scene_id)
        name = f"{scene_id}_aligned_bbox.npy"
        for candidate in (self.root / name, self.root / scene_id / name, self.root / scene_id / "gt" / name):
            if candidate.is_file():
                return candidate
        return None

    def has(self, scene_id: str) -> bool:
        return scene_id in self._cache or self.path_of(scene_id) is not None

    def scene(self, scene_id: str) -> SceneBoxes:
        boxes = self._cache.get(scene_id)
        if boxes is None:
            path = self.path_of(scene_id)
            if path is None:
                raise ScenerError(
                    f"no ground-truth boxes for {scene_id} under {self.root} (expected {scene_id}_aligned_bbox.npy; "
                    "test-split boxes are hidden)"
                )
            boxes = self._cache[scene_id] = load_scene_boxes(path, scene_id)
        return boxes
