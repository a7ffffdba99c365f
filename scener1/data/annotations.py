"""scener1's ground-truth files (``gt/``) for a real scan, derived from its benchmark annotations.

The dataset builders (:mod:`scener1.rl.datasets`), the pipeline benchmark (:mod:`scener1.rl.benchmark`) and the
synthetic oracle read a scene's ``gt/objects.json``, ``gt/frames.json`` and ``gt/scanrefer.json``, which
:mod:`scener1.synth` writes for its own scenes. :func:`annotate_scan` writes them for a real scan from what the
benchmarks publish: the axis-aligned ground-truth boxes (ScanRefer/VoteNet ``<scene>_aligned_bbox.npy``), the
names of their classes and, optionally, the scan's ScanRefer descriptions. A real scan can then be trained and
evaluated on like a synthetic one (``tools/train_tiny.py``'s data folders, the GPU recipe's ``data``).

ScanNet annotates objects in 3D only, so which object a pixel shows is derived from geometry: each depth pixel is
lifted into the axis-aligned frame and belongs to the smallest ground-truth box that holds it (a chair pushed
under a table is the chair's); pixels within ``floor_margin`` of the floor (the 1st height percentile of the scan's
depth) belong to no object. The labels are resampled onto the colour image (the depth pixel on the same ray) and
boxed as the synthetic instance maps are (x2, y2 exclusive). Pixels without depth belong to nothing, so an
object's pixel count is that of its measured surface (glass and black surfaces count less).

Not written, because the annotations do not say: ``room.json`` (door and window; relation facts then come from
the objects alone), colours (rationales say "the chair"), instance maps (the vision pretraining stage needs
synthetic scenes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, SceneError
from .camera import back_project, color_labels_from_depth, transform_points

if TYPE_CHECKING:
    from ..eval.gt import SceneBoxes
    from ..eval.items import GroundingItem
    from ..types import Intrinsics
    from .scene import Scene

#: the files :func:`write_annotations` writes under ``gt/`` (and refuses to overwrite unless asked)
WRITTEN = ("objects.json", "frames.json", "scanrefer.json", "annotation.json")


@dataclass(frozen=True)
class AnnotationSettings:
    """How pixels are assigned to ground-truth boxes (see the module docstring)."""

    floor_margin: float = 0.03  # pixels up to this height above the floor belong to no object
    min_depth: float = 0.1
    max_depth: float = 10.0
    floor_frames: int = 20  # frames sampled to find the floor height
    min_pixels: int = 20  # an object counts as visible on a frame from this many colour pixels

    def __post_init__(self) -> None:
        if self.floor_margin < 0:
            raise ConfigError("floor_margin must be >= 0")
        if not 0 <= self.min_depth < self.max_depth:
            raise ConfigError("min_depth must be >= 0 and below max_depth")


@dataclass
class ScanAnnotation:
    """The ``gt/`` files of one scan, as JSON-ready dictionaries, and what was noticed while making them."""

    objects: dict[str, Any]
    frames: dict[str, Any]
    scanrefer: list[dict[str, Any]]
    info: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def label_points(points: np.ndarray, box_min: np.ndarray, box_max: np.ndarray) -> np.ndarray:
    """(N,) index of the smallest box (rows of ``box_min``/``box_max``, (K, 3)) holding each point, -1 for none."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    lo, hi = np.asarray(box_min, np.float64).reshape(-1, 3), np.asarray(box_max, np.float64).reshape(-1, 3)
    if len(lo) == 0 or len(pts) == 0:
        return np.full(len(pts), -1, np.int64)
    order = np.argsort(np.prod(hi - lo, axis=1), kind="stable")  # smallest first: a chair wins over the table
    lo, hi = lo[order], hi[order]
    inside = np.ones((len(pts), len(lo)), bool)
    for axis in range(3):  # (N, K) per axis keeps memory at one boolean matrix
        inside &= (pts[:, axis, None] >= lo[None, :, axis]) & (pts[:, axis, None] <= hi[None, :, axis])
    first = inside.argmax(axis=1)
    return np.where(inside.any(axis=1), order[first], -1).astype(np.int64)


def floor_height(scene: Scene, alignment: np.ndarray, settings: AnnotationSettings) -> float:
    """The floor's height in the axis-aligned frame: the 1st percentile of depth points of sampled frames."""
    from .sampling import sample_frames

    heights = []
    di = scene.depth_intrinsics
    for position, depth in scene.depths(sample_frames(scene.timestamps, scene.valid_poses,
                                                      max_frames=settings.floor_frames)):
        depth = depth[::4, ::4]  # every 16th pixel is plenty for a percentile
        pts = back_project(depth, di.scaled(depth.shape[1], depth.shape[0]), scene.poses[position],
                           min_depth=settings.min_depth, max_depth=settings.max_depth)
        heights.append(transform_points(pts, alignment)[:, 2])
    z = np.concatenate(heights) if heights else np.zeros(0)
    if len(z) == 0:
        raise SceneError(f"{scene.path}: no valid depth on the sampled frames; cannot find the floor")
    return float(np.percentile(z, 1))


def frame_labels(depth: np.ndarray, pose: np.ndarray, depth_intrinsics: Intrinsics, color_intrinsics: Intrinsics,
                 alignment: np.ndarray, box_min: np.ndarray, box_max: np.ndarray, floor_z: float,
                 settings: AnnotationSettings) -> np.ndarray:
    """(H, W) colour-image map of ``object index + 1`` (0 = no object) of one frame (see the module docstring):
    only its depth and pose are read."""
    di = depth_intrinsics
    labels = np.zeros((di.height, di.width), np.int64)
    if np.isfinite(pose).all():
        pts, rows, cols = back_project(depth, di, pose, min_depth=settings.min_depth,
                                       max_depth=settings.max_depth, return_pixels=True)
        aligned = transform_points(pts.astype(np.float64), alignment)
        index = label_points(aligned, box_min, box_max)
        index[aligned[:, 2] < floor_z + settings.floor_margin] = -1
        labels[rows, cols] = index + 1
    return color_labels_from_depth(labels, color_intrinsics, di)


def annotate_scan(scene: Scene, boxes: SceneBoxes, names: Mapping[int, str],
                  descriptions: Sequence[GroundingItem] = (), settings: AnnotationSettings | None = None,
                  progress: bool | str = False) -> ScanAnnotation:
    """The ``gt/`` files of ``scene`` from its ground-truth ``boxes`` (axis-aligned frame; ``names``: nyu40 id ->
    class name) and its ScanRefer ``descriptions`` (other scenes' are ignored)."""
    from ..synth.writer import aabb_record, frame_objects, frames_seen, visibility_record

    s = settings or AnnotationSettings()
    if scene.axis_alignment is None:
        raise SceneError(f"{scene.path}: no axis alignment; the ground-truth boxes are in the axis-aligned frame "
                         "(pass the scan's meta file, scene<id>.txt, with --meta)")
    if len(boxes) == 0:
        raise SceneError(f"{boxes.scene_id}: no ground-truth boxes")
    if not scene.valid_poses.any():
        raise SceneError(f"{scene.path}: no frame has a valid pose")
    notes = []
    steps = np.diff(scene.timestamps)
    step = float(np.median(steps)) if len(steps) else 1.0 / scene.fps
    if len(steps) and (np.abs(steps - step) > 0.25 * step).any():
        notes.append(f"frames are not evenly spaced in time (median {step:.3f} s); the builders' spans assume they are")
    fps = 1.0 / step
    alignment = scene.axis_alignment
    box_min, box_max = boxes.aabbs[:, :3], boxes.aabbs[:, 3:]
    floor_z = floor_height(scene, alignment, s)

    per_frame: list[list[dict[str, Any]]] = []
    for position, depth in scene.depths(progress=progress):  # colour is never decoded
        per_frame.append(frame_objects(frame_labels(depth, scene.poses[position], scene.depth_intrinsics,
                                                    scene.color_intrinsics, alignment, box_min, box_max, floor_z, s)))

    seen = frames_seen(per_frame, s.min_pixels)
    objects = []
    for k in range(len(boxes)):
        lo, hi = box_min[k], box_max[k]
        objects.append({
            "object_id": k,
            "source_object_id": int(boxes.object_ids[k]),
            "category": names.get(int(boxes.labels[k]), f"nyu40:{int(boxes.labels[k])}"),
            "nyu40_id": int(boxes.labels[k]),
            "color": "",
            "aabb": aabb_record(lo, hi),
            "obb": {"center": ((lo + hi) / 2).tolist(), "size": (hi - lo).tolist(), "rotation": np.eye(3).tolist()},
            **visibility_record(seen.get(k, np.zeros(0, np.int64)), fps),
        })
    if not any(o["visible_frames"] for o in objects):
        notes.append("no object is seen on any frame: do the boxes belong to this scan?")

    by_source = {int(o): k for k, o in enumerate(boxes.object_ids)}
    records, missing = [], 0
    for item in descriptions:
        if item.scene_id != boxes.scene_id:
            continue
        k = by_source.get(int(item.object_id))
        if k is None:
            missing += 1
            continue
        records.append({"scene_id": boxes.scene_id, "object_id": str(k), "source_object_id": str(item.object_id),
                        "object_name": item.object_name, "ann_id": str(item.ann_id), "description": item.text,
                        "relation": {}, "temporal_span": objects[k]["visible_intervals"]})
    if missing:
        notes.append(f"{missing} descriptions name objects without a ground-truth box and were left out")

    W, H = scene.color_intrinsics.size
    frames = {"scene_id": boxes.scene_id, "fps": fps, "size": [W, H], "visibility_min_pixels": s.min_pixels,
              "frames": [{"frame": int(scene.frame_ids[p]), "timestamp": round(float(scene.timestamps[p]), 6),
                          "objects": objs} for p, objs in enumerate(per_frame)]}
    objects_json = {"scene_id": boxes.scene_id, "fps": fps, "num_frames": len(per_frame),
                    "visibility_min_pixels": s.min_pixels, "objects": objects,
                    "id_convention": "object_id is the row of the ground-truth box file (0-based); source_object_id "
                                     "the scan's own object id (ScanRefer's object_id)"}
    info = {"annotator": "scener1.data.annotations", "floor_z": round(floor_z, 4), "settings": asdict(s),
            "objects": len(objects), "visible_objects": sum(1 for o in objects if o["visible_frames"]),
            "descriptions": len(records), "notes": notes}
    return ScanAnnotation(objects_json, frames, records, info, notes)


def _check_free(gt: Path, overwrite: bool) -> None:
    present = [name for name in WRITTEN if (gt / name).exists()]
    if present and not overwrite:
        raise ConfigError(f"{gt} already holds {', '.join(present)}; pass --overwrite to replace them")


def write_annotations(scene_dir: str | Path, annotation: ScanAnnotation, overwrite: bool = False) -> Path:
    """Write ``annotation`` into ``scene_dir/gt/`` (where the readers look); refuses to replace existing files
    unless ``overwrite``. Returns the ``gt`` folder."""
    from ..synth.writer import write_json

    gt = Path(scene_dir) / "gt"
    _check_free(gt, overwrite)
    for name, data in (("objects.json", annotation.objects), ("frames.json", annotation.frames),
                       ("scanrefer.json", annotation.scanrefer), ("annotation.json", annotation.info)):
        write_json(gt / name, data)
    return gt


def annotate_scannet(scene: Scene, boxes_npy: str | Path, label_map: str | Path, scanrefer: str | Path | None = None,
                     scene_id: str | None = None, settings: AnnotationSettings | None = None, overwrite: bool = False,
                     progress: bool | str = False) -> tuple[Path, ScanAnnotation]:
    """Read a ScanNet scan's published annotations and write its ``gt/`` files into the scene folder (what
    ``scener1 annotate`` does). ``scene_id`` defaults to the folder's name; ScanRefer entries of other scenes in
    ``scanrefer`` are skipped."""
    from ..eval.gt import LabelMap, check_scene_id, load_scene_boxes
    from ..eval.scanrefer import load_scanrefer

    if not scene.path.is_dir():
        raise SceneError(f"{scene.path}: ground truth is written into a scene folder (gt/); export this recording "
                         "to a folder first")
    scene_id = check_scene_id(scene_id or scene.path.name)
    _check_free(scene.path / "gt", overwrite)  # before the slow part
    boxes = load_scene_boxes(boxes_npy, scene_id)
    names = LabelMap.read(label_map).nyu40id_to_class
    descriptions = load_scanrefer(scanrefer) if scanrefer is not None else []
    if scanrefer is not None and not any(d.scene_id == scene_id for d in descriptions):
        raise ConfigError(f"{scanrefer} has no description of {scene_id} (pass --scene-id if the folder is named "
                          "otherwise)")
    annotation = annotate_scan(scene, boxes, names, descriptions, settings, progress)
    return write_annotations(scene.path, annotation, overwrite=True), annotation
