"""Oracle detectors: 2D boxes taken from ground truth, for measuring the 3D heads without a grounding model.

They stand in for the VLM detector only; the boxes still go through the lifting stage, so every measurement comes
from lifted geometry, never from the ground-truth 3D boxes.

- :class:`SynthOracleDetector` reads a synthetic scene's ``gt/frames.json`` (per frame: object id, visible pixels,
  mask box) and ``gt/objects.json`` (category, colour).
- :class:`ScanNetOracleDetector` derives boxes for a real ScanNet scan: the points of the scan's point cloud (raw
  frame) that lie in an object's ground-truth box (axis-aligned frame) are projected into a frame, kept where the
  frame's depth agrees (a z-buffer against the measured depth), and boxed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ScenerError
from .grounding import Detection, visible_projection
from .router import Mention, singular

if TYPE_CHECKING:
    from ..data.scene import Scene
    from ..types import Frame

#: other names of the synthetic and ScanNet categories used by benchmark questions
SYNONYMS = {
    "trash bin": "trash can", "trashcan": "trash can", "garbage can": "trash can", "garbage bin": "trash can",
    "waste bin": "trash can", "wastebasket": "trash can", "recycling bin": "trash can", "couch": "sofa",
    "bookcase": "bookshelf", "book shelf": "bookshelf", "shelf": "bookshelf", "night stand": "nightstand",
    "bedside table": "nightstand", "painting": "picture", "poster": "picture", "frame": "picture",
    "potted plant": "plant", "houseplant": "plant", "flower pot": "plant", "desk lamp": "lamp", "floor lamp": "lamp",
    "table lamp": "lamp", "computer monitor": "monitor", "screen": "monitor", "display": "monitor",
    "cushion": "pillow", "office chair": "chair", "dining table": "table", "coffee table": "table",
    "side table": "table", "end table": "table", "cupboard": "cabinet", "dresser": "cabinet", "wardrobe": "cabinet",
    "fridge": "refrigerator", "tv": "television", "television": "tv", "sofa chair": "armchair",
    "carton": "box", "cardboard box": "box",
}


def _norm(name: str) -> str:
    words = re.sub(r"[_\-]+", " ", str(name).lower()).split()
    if words:
        words[-1] = singular(words[-1])
    return " ".join(words)


def category_matches(mention: str, category: str) -> bool:
    """Whether a mentioned category names a ground-truth category (same words, singular, or a listed synonym)."""
    a, b = _norm(mention), _norm(category)
    if not a or not b:
        return False
    if a == b or a.replace(" ", "") == b.replace(" ", ""):
        return True
    return SYNONYMS.get(a) == b or SYNONYMS.get(b) == a


def _colour_filter(ids: list[int], colours: dict[int, str], mention: Mention) -> list[int]:
    wanted = [a for a in mention.attributes if a in {c for c in colours.values() if c}]
    if not wanted:
        return ids
    kept = [i for i in ids if colours.get(i) in wanted]
    return kept or ids  # an attribute the annotation does not know (or a wrong one) does not hide the category


# ---------------------------------------------------------------------------------------------- synthetic scenes
class SynthOracleDetector:
    """Ground-truth mask boxes of a synthetic scene (``scener1.synth``), on up to ``max_frames`` frames."""

    name = "oracle"

    def __init__(self, scene_dir: str | Path, max_frames: int = 75, min_pixels: int | None = None):
        root = Path(scene_dir)
        frames_path, objects_path = root / "gt" / "frames.json", root / "gt" / "objects.json"
        if not frames_path.is_file() or not objects_path.is_file():
            raise ScenerError(f"{root}: the oracle needs ground truth (gt/frames.json and gt/objects.json of a "
                              "synthetic scene); use the pipeline grounder for other scenes")
        from ..synth.writer import read_gt, read_objects

        frames, objects = read_gt(root, "frames.json"), read_objects(root)
        if not isinstance(frames, dict):
            raise ScenerError(f"{root / 'gt' / 'frames.json'}: not a frames file (an object with 'frames' expected)")
        self.categories = {int(o["object_id"]): str(o["category"]) for o in objects}
        self.colours = {int(o["object_id"]): str(o.get("color") or "") for o in objects}
        self.min_pixels = int(min_pixels if min_pixels is not None else frames.get("visibility_min_pixels", 20))
        self.frames = frames.get("frames", [])
        self.max_frames = max_frames

    @classmethod
    def available(cls, scene_dir: str | Path) -> bool:
        root = Path(scene_dir)
        return (root / "gt" / "frames.json").is_file() and (root / "gt" / "objects.json").is_file()

    def object_ids(self, mention: Mention) -> list[int]:
        ids = [i for i, c in self.categories.items() if category_matches(mention.category, c)]
        return _colour_filter(ids, self.colours, mention)

    def detect(self, scene: Scene, mention: Mention, every_instance: bool) -> list[Detection]:
        from ..data.sampling import sample_frames

        ids = set(self.object_ids(mention))
        if not ids:
            return []
        names = {int(i): p for p, i in enumerate(scene.frame_ids)}
        usable = sample_frames(scene.timestamps, scene.valid_poses, max_frames=self.max_frames)
        keep = {int(scene.frame_ids[p]) for p in usable}
        out = []
        for entry in self.frames:
            frame = int(entry["frame"])
            if frame not in keep or frame not in names:
                continue
            for obj in entry.get("objects", []):
                oid = int(obj["object_id"])
                if oid in ids and int(obj["pixels"]) >= self.min_pixels:
                    out.append(Detection(names[frame], frame, tuple(float(v) for v in obj["bbox"]), self.categories[oid],
                                         1.0, "oracle:gt/frames.json"))
        return out


# ---------------------------------------------------------------------------------------------- real ScanNet scans
class ScanNetOracleDetector:
    """Boxes of ScanNet objects from ground-truth points: an object is the scan's points inside its GT box.

    ``points_raw`` (N, 3) is the scan's point cloud in the raw frame, ``boxes`` the ``(K, 8)`` rows of a
    ``*_aligned_bbox.npy`` file (axis-aligned frame) and ``axis_alignment`` the scan's ``axisAlignment``.
    ``names`` maps nyu40 ids to class names (for matching mentions).
    """

    name = "oracle"

    def __init__(self, points_raw: np.ndarray, boxes: np.ndarray, axis_alignment: np.ndarray,
                 names: dict[int, str] | None = None, max_frames: int = 60, min_visible: float = 0.2,
                 margin: float = 0.02, min_points: int = 30):
        pts = np.asarray(points_raw, np.float64)
        if pts.ndim != 2 or pts.shape[1] < 3:
            raise ScenerError(f"points must be an (N, 3+) array, got shape {pts.shape}")
        self.points_raw = pts[:, :3]
        self.boxes = np.asarray(boxes, np.float64).reshape(-1, 8)
        self.axis_alignment = np.asarray(axis_alignment, np.float64).reshape(4, 4)
        self.names = dict(names or {})
        self.max_frames = max_frames
        self.min_visible = min_visible
        self.margin = margin
        self.min_points = min_points
        A = self.axis_alignment
        self._aligned = self.points_raw @ A[:3, :3].T + A[:3, 3]
        self._members: dict[int, np.ndarray] = {}

    @classmethod
    def from_files(cls, points_bin: str | Path, boxes_npy: str | Path, axis_alignment: np.ndarray,
                   label_map: str | Path | None = None, **kwargs: Any) -> ScanNetOracleDetector:
        """From an mmdet3d ``.bin`` point file (float32 x, y, z, r, g, b), an ``*_aligned_bbox.npy`` and the
        scan's alignment; ``label_map`` (scannetv2-labels.combined.tsv) names the nyu40 ids."""
        points_bin, boxes_npy = Path(points_bin), Path(boxes_npy)
        for p in (points_bin, boxes_npy):
            if not p.is_file():
                raise ScenerError(f"oracle ground truth not found: {p}")
        raw = np.fromfile(points_bin, dtype=np.float32)
        if raw.size % 6:
            raise ScenerError(f"{points_bin}: expected float32 rows of x, y, z, r, g, b")
        boxes = np.load(boxes_npy, allow_pickle=False)
        if boxes.ndim != 2 or boxes.shape[1] < 8:
            raise ScenerError(f"{boxes_npy}: expected a (K, 8) array of boxes")
        names = None
        if label_map is not None:
            from ..eval.gt import LabelMap

            names = LabelMap.read(label_map).nyu40id_to_class
        return cls(raw.reshape(-1, 6), boxes[:, :8], axis_alignment, names, **kwargs)

    def __len__(self) -> int:
        return len(self.boxes)

    def category(self, k: int) -> str:
        label = int(self.boxes[k, 6])
        return self.names.get(label, f"nyu40:{label}")

    def members(self, k: int) -> np.ndarray:
        """Raw-frame points of object ``k`` (those inside its GT box, grown by ``margin``)."""
        if k not in self._members:
            c, s = self.boxes[k, :3], self.boxes[k, 3:6]
            lo, hi = c - s / 2 - self.margin, c + s / 2 + self.margin
            inside = np.all((self._aligned >= lo) & (self._aligned <= hi), axis=1)
            self._members[k] = self.points_raw[inside]
        return self._members[k]

    def project(self, scene: Scene, k: int, position: int) -> tuple[tuple[float, float, float, float], float, bool] | None:
        """(colour-pixel box of the visible points, share of the object's points seen, whether the object reaches
        beyond the image) on the frame at ``position``, or None when fewer than ``min_points`` are seen."""
        pts = self.members(k)
        if len(pts) < self.min_points or not scene.valid_poses[position]:
            return None
        frame = scene.frame(position)
        return self._project(pts, frame)

    def _project(self, pts: np.ndarray, frame) -> tuple[tuple[float, float, float, float], float, bool] | None:
        seen, uv = visible_projection(pts, frame.depth, frame.pose, frame.depth_intrinsics, frame.color_intrinsics)
        if int(seen.sum()) < self.min_points:
            return None
        ci = frame.color_intrinsics
        u, v = uv[seen, 0], uv[seen, 1]
        box = (max(float(np.floor(u.min() + 0.5)), 0.0), max(float(np.floor(v.min() + 0.5)), 0.0),
               min(float(np.floor(u.max() + 0.5)) + 1, ci.width), min(float(np.floor(v.max() + 0.5)) + 1, ci.height))
        from ..data.camera import in_image, project

        all_uv, z = project(pts, ci, frame.pose)
        cut = bool(((z <= 0) | ~in_image(all_uv, ci.width, ci.height)).any())
        return box, float(seen.mean()), cut

    def best_view(self, frames: Sequence[Frame], k: int) -> tuple[Frame, tuple[float, float, float, float], float] | None:
        """(frame, colour-pixel box, share of the object's points seen) for the frame of ``frames`` that sees the
        most of object ``k`` (the lifting benchmark's prompt), or None when none sees ``min_points``."""
        pts = self.members(k)
        best = None
        if len(pts) >= self.min_points:
            for frame in frames:
                found = self._project(pts, frame) if frame.pose_valid else None
                if found is not None and (best is None or found[1] > best[2]):
                    best = (frame, found[0], found[1])
        return best

    def object_detections(self, scene: Scene, k: int, positions=None) -> list[Detection]:
        """Boxes of object ``k`` on the frames at ``positions`` (evenly sampled frames by default)."""
        from ..data.sampling import sample_frames

        if positions is None:
            positions = sample_frames(scene.timestamps, scene.valid_poses, max_frames=self.max_frames)
        pts = self.members(k)
        if len(pts) < self.min_points:
            return []
        out = []
        for p in positions:
            frame = scene.frame(int(p))
            if not frame.pose_valid:
                continue
            found = self._project(pts, frame)
            if found is None or found[1] < self.min_visible:
                continue
            box, share, cut = found
            # a cut object's box is not its whole extent: rank it low (the grounder tries uncut boxes first)
            out.append(Detection(int(p), frame.index, box, self.category(k), share * (0.3 if cut else 1.0),
                                 "oracle:scannet-gt-points"))
        return out

    def detect(self, scene: Scene, mention: Mention, every_instance: bool) -> list[Detection]:
        out = []
        for k in range(len(self)):
            if category_matches(mention.category, self.category(k)):
                out.extend(self.object_detections(scene, k))
        return out
