"""Grounding the objects a question names: 2D detections from a swappable detector, lifted to 3D by the lifting
stage, de-duplicated across frames by 3D overlap.

A :class:`Detector` turns a :class:`~scener1.vqa.router.Mention` into 2D boxes on frames of the scene. Two kinds
exist: the VLM pipeline (:class:`PipelineDetector`: the grounding model, by its object listing or asked by name) and
oracles that read ground truth (:mod:`scener1.vqa.oracle`: synthetic scenes' per-frame boxes, ScanNet boxes
projected from the ground-truth points). Whatever the detector, the 3D answer comes from the same code:
:class:`InstanceGrounder` lifts the boxes with :func:`scener1.lifting.lift`, merges lifts that overlap in 3D into
one :class:`Instance` and skips boxes an instance already explains (its points project into the box), so counting
sees each object once however many frames show it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import ConfigError, ScenerError
from ..types import PointCloud
from .router import Mention

if TYPE_CHECKING:
    from ..data.scene import Scene
    from ..lifting.boxes import Box3D
    from ..lifting.object_lift import LiftConfig, LiftResult
    from ..pipeline import Pipeline
    from ..tracking.base import Tracker


@dataclass(frozen=True)
class Detection:
    """One 2D box of the mentioned category on one frame (colour pixels, x2/y2 exclusive)."""

    position: int
    frame_index: int
    box: tuple[float, float, float, float]
    label: str
    score: float = 1.0  # detector confidence (oracles: visible share)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame_index, "box_2d": [round(float(v), 1) for v in self.box], "label": self.label,
                "score": round(float(self.score), 3), "source": self.source}


class Detector(Protocol):
    """Finds boxes of a mentioned object on the scene's frames."""

    name: str

    def detect(self, scene: Scene, mention: Mention, every_instance: bool) -> list[Detection]:
        """Boxes of ``mention`` on frames of ``scene``. With ``every_instance`` the detector should try to cover
        every instance of the category (counting, appearance order); otherwise the one meant is enough."""
        ...


LISTING = ("off", "every", "all")


@dataclass(frozen=True)
class GroundingSettings:
    """How detections become 3D instances (lengths in metres)."""

    max_lifts: int = 10  # lifts per mention (each costs a tracking + fusion run)
    lifts_per_instance: int = 3  # views lifted for one object (their sizes are combined; more views, fewer holes)
    min_view_gap_s: float = 0.6  # extra views of an object come from frames at least this far apart in time
    explained_iou: float = 0.4  # a box is explained by an instance whose visible projection overlaps it this much
    merge_overlap: float = 0.3  # lifts are one object when this share of the smaller one lies within merge_distance
    merge_distance: float = 0.05
    merge_iou: float = 0.3  # ... or when their axis-aligned boxes overlap this much
    merge_gap_cut: float = 0.15  # an object seen only in boxes cut by the image border joins an instance this close
    border_px: int = 3  # boxes within this many pixels of the image border are cut objects: tried last
    max_points: int = 20000  # an instance's cloud is thinned to this many points
    visibility_tolerance: float = 0.05  # depth agreement (metres, and 3 % of the range) for a point to count as seen
    carve: bool = True  # drop points that other frames' boxes of the object leave out
    # the grounding model's search for every instance of a category (counting, appearance order)
    frames_every_instance: int = 8  # frames spread over the video
    # the model's listing of every object on a frame (the detection prompt) instead of asking by name:
    # off; every: for every instance of a category; all: also for one object named by its category alone
    # (all: held-out VSI-Bench-style numeric MRA 39.2 -> 48.1, choice accuracy 31.0 -> 45.6 with Scene-R1-tiny)
    listing: str = "all"

    def __post_init__(self) -> None:
        if self.listing not in LISTING:
            raise ConfigError(f"unknown listing '{self.listing}'; choose from {', '.join(LISTING)}")
        if self.frames_every_instance < 1:
            raise ConfigError("frames_every_instance must be >= 1")
        if self.max_lifts < 1 or self.lifts_per_instance < 1:
            raise ConfigError("max_lifts and lifts_per_instance must be >= 1")
        for name in ("explained_iou", "merge_overlap", "merge_iou"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must lie in (0, 1], got {getattr(self, name)}")
        if self.merge_distance <= 0 or self.visibility_tolerance <= 0:
            raise ConfigError("merge_distance and visibility_tolerance must be positive")


@dataclass(frozen=True)
class LiftRecord:
    """One lift done for a mention (kept in the trace)."""

    detection: Detection
    status: str
    reason: str
    n_points: int
    box_3d: Box3D | None
    seconds: float
    instance: int | None = None  # which instance it went to

    def to_dict(self) -> dict[str, Any]:
        return {**self.detection.to_dict(), "status": self.status, **({"reason": self.reason} if self.reason else {}),
                "n_points": self.n_points, "box_3d": None if self.box_3d is None else self.box_3d.to_dict(),
                "seconds": round(self.seconds, 3), "instance": self.instance}


@dataclass(frozen=True, eq=False)
class Instance:
    """One object in 3D: the union of the lifts that overlap, carved by its boxes on other frames, in the lifting
    stage's coordinate frame. ``view_of_point`` says which of ``views`` each point came from."""

    category: str
    cloud: PointCloud = field(repr=False)
    box_3d: Box3D
    views: tuple[LiftResult, ...] = field(repr=False)
    view_of_point: np.ndarray = field(repr=False)
    detections: tuple[Detection, ...] = field(repr=False)
    carved: int = 0  # points removed because other frames' boxes of the object leave them out

    @property
    def support(self) -> int:
        """Detections it accounts for (lifted or explained)."""
        return len(self.detections)

    @property
    def center(self) -> np.ndarray:
        return np.asarray(self.box_3d.center, np.float64)

    def view_points(self) -> list[np.ndarray]:
        """The carved points of each view (lift) on its own."""
        return [self.cloud.points[self.view_of_point == k].astype(np.float64) for k in range(len(self.views))]

    def to_dict(self) -> dict[str, Any]:
        counts = np.bincount(self.view_of_point, minlength=len(self.views)) if len(self.views) else []
        return {"category": self.category, "box_3d": self.box_3d.to_dict(), "n_points": len(self.cloud),
                "views": [{"frame": v.frame_index, "box_2d": list(v.box_2d), "n_points": int(n)}
                          for v, n in zip(self.views, counts)],
                "support": self.support, "carved_points": self.carved}


@dataclass(frozen=True, eq=False)
class GroundedMention:
    """Every instance found for a mention, with the detections and lifts behind them."""

    mention: Mention
    instances: tuple[Instance, ...]
    detections: int
    lifts: tuple[LiftRecord, ...]
    coordinate_frame: str
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def found(self) -> bool:
        return bool(self.instances)

    def ranked(self) -> list[Instance]:
        """The instances, those most detections point at first (ties: the larger cloud)."""
        return sorted(self.instances, key=lambda i: (i.support, len(i.cloud)), reverse=True)

    def main(self) -> Instance:
        """The instance meant when a question names one object: the one most detections point at."""
        if not self.instances:
            raise ScenerError(f"'{self.mention.text}' was not found in the scene")
        return self.ranked()[0]

    def to_dict(self) -> dict[str, Any]:
        return {"mention": self.mention.to_dict(), "instances": [i.to_dict() for i in self.instances],
                "detections": self.detections, "lifts": [r.to_dict() for r in self.lifts],
                "coordinate_frame": self.coordinate_frame, "notes": list(self.notes), "seconds": round(self.seconds, 3)}


# ---------------------------------------------------------------------------------------------- geometry helpers
def frame_to_result(scene: Scene) -> np.ndarray:
    """4x4 transform from the scene's world frame to the frame lifted objects are reported in."""
    return np.eye(4) if scene.axis_alignment is None else np.asarray(scene.axis_alignment, np.float64)


def visible_projection(points_world: np.ndarray, depth: np.ndarray, pose: np.ndarray, depth_intrinsics,
                       color_intrinsics, tolerance: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Which world points a frame sees (depth-consistent, :func:`scener1.data.camera.visible`) and their
    continuous colour-pixel coordinates."""
    from ..data.camera import project, visible

    if len(points_world) == 0 or not np.isfinite(pose).all():
        return np.zeros(len(points_world), bool), np.zeros((len(points_world), 2))
    seen = visible(points_world, depth, depth_intrinsics, pose, abs_tol=tolerance, rel_tol=0.03)
    uv, _ = project(points_world, color_intrinsics, pose)
    return seen, uv


def overlap_share(a: np.ndarray, b: np.ndarray, distance: float) -> float:
    """Share of the smaller point set lying within ``distance`` of the other (k-d tree)."""
    from scipy.spatial import cKDTree

    if len(a) == 0 or len(b) == 0:
        return 0.0
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    d, _ = cKDTree(big).query(small, k=1, distance_upper_bound=distance)
    return float(np.mean(np.isfinite(d)))


# ---------------------------------------------------------------------------------------------- the grounder
class _Building:
    """An instance while grounding runs (mutable): its views, points and the detections it accounts for."""

    def __init__(self, result: LiftResult, det: Detection):
        self.views = [result]
        self.points = result.cloud.points.astype(np.float64)
        self.colors = result.cloud.colors
        self.view_of_point = np.zeros(len(self.points), np.int32)
        self.dets = [det]
        self.carved = 0

    def add_view(self, result: LiftResult, det: Detection | None) -> None:
        self.points = np.concatenate([self.points, result.cloud.points.astype(np.float64)])
        self.colors = np.concatenate([self.colors, result.cloud.colors])
        self.view_of_point = np.concatenate([self.view_of_point, np.full(result.n_points, len(self.views), np.int32)])
        self.views.append(result)
        if det is not None:
            self.dets.append(det)

    def absorb(self, other: _Building) -> None:
        offset = len(self.views)
        self.points = np.concatenate([self.points, other.points])
        self.colors = np.concatenate([self.colors, other.colors])
        self.view_of_point = np.concatenate([self.view_of_point, other.view_of_point + offset])
        self.views += other.views
        self.dets += other.dets
        self.carved += other.carved

    def keep(self, mask: np.ndarray) -> None:
        self.carved += int((~mask).sum())
        self.points, self.colors, self.view_of_point = self.points[mask], self.colors[mask], self.view_of_point[mask]

    @property
    def box(self) -> Box3D:
        from ..lifting.boxes import aabb_of_points

        return aabb_of_points(self.points)

    @property
    def sample(self) -> np.ndarray:
        return self.points[:: max(len(self.points) // 3000, 1)]


class InstanceGrounder:
    """Detections -> lifted, de-duplicated 3D instances; holds the detector, the tracker and the lift settings."""

    def __init__(self, detector: Detector, lift_config: LiftConfig | None = None, tracker: Tracker | None = None,
                 settings: GroundingSettings | None = None):
        from ..lifting.object_lift import LiftConfig

        self.detector = detector
        self.lift_config = lift_config or LiftConfig()
        self.tracker = tracker
        self.settings = settings or GroundingSettings()

    @property
    def name(self) -> str:
        return self.detector.name

    def ground(self, scene: Scene, mention: Mention, every_instance: bool = False) -> GroundedMention:
        """Find ``mention``'s instances: every one (``every_instance``) or the one meant, from a few views."""
        from ..lifting import aabb_iou
        from ..lifting.object_lift import lift
        from ..tracking import build_tracker

        s = self.settings
        t0 = time.perf_counter()
        tracker = self.tracker or build_tracker("geometric")
        detections = self.detector.detect(scene, mention, every_instance)
        frame_name = "axis_aligned" if scene.axis_alignment is not None else "raw"
        if not detections:
            return GroundedMention(mention, (), 0, (), frame_name, (f"the detector ({self.name}) found no '{mention.text}'",),
                                   time.perf_counter() - t0)
        W, H = scene.color_intrinsics.size
        ranked = sorted(detections, key=lambda d: -self._quality(d, W, H))
        views = _FrameViews(scene, s.visibility_tolerance)
        built: list[_Building] = []
        lifts: list[LiftRecord] = []
        notes: list[str] = []

        for det in ranked:
            if len(lifts) >= s.max_lifts:
                notes.append(f"stopped after {s.max_lifts} lifts ({len(detections)} detections)")
                break
            k = self._explained_by(det, built, views)
            if k is not None:
                inst = built[k]
                inst.dets.append(det)
                # another view of a known object: lifted (once far enough in time from the views held) only when
                # one object is wanted; for every instance, lifts go to objects not seen yet
                times = [scene.timestamps[scene.position(v.frame_index)] for v in inst.views]
                far = all(abs(scene.timestamps[det.position] - t) >= s.min_view_gap_s for t in times)
                if every_instance or len(inst.views) >= s.lifts_per_instance or not far:
                    continue
            t1 = time.perf_counter()
            try:
                result = lift(scene, det.frame_index, det.box, tracker=tracker, config=self.lift_config)
            except ScenerError as exc:
                lifts.append(LiftRecord(det, "error", str(exc), 0, None, time.perf_counter() - t1))
                continue
            record = LiftRecord(det, result.status, result.reason, result.n_points, result.box_3d,
                                time.perf_counter() - t1)
            if result.status != "ok":
                lifts.append(record)
                continue
            target = k
            if target is None:
                pts = result.cloud.points.astype(np.float64)
                for j, inst in enumerate(built):
                    if (overlap_share(pts, inst.points, s.merge_distance) >= s.merge_overlap
                            or aabb_iou(result.box_3d, inst.box) >= s.merge_iou):
                        target = j
                        break
            if target is None:
                built.append(_Building(result, det))
                target = len(built) - 1
            else:
                built[target].add_view(result, None if k is not None else det)
            lifts.append(replace(record, instance=target))
            if not every_instance and len(built[target].views) >= s.lifts_per_instance:
                break  # the object meant is seen from enough views

        built = self._merge_all(built, W, H)
        out = []
        for inst in built:
            if s.carve:
                self._carve(inst, views)
            if len(inst.points) < self.lift_config.min_points:
                notes.append(f"an instance lost its points to carving (from frame {inst.views[0].frame_index})")
                continue
            keep = np.arange(len(inst.points))
            if len(keep) > s.max_points:
                keep = np.sort(np.random.default_rng(0).choice(len(keep), s.max_points, replace=False))
            cloud = PointCloud(inst.points[keep].astype(np.float32), np.ascontiguousarray(inst.colors[keep], np.uint8))
            out.append(Instance(mention.category, cloud, inst.box, tuple(inst.views), inst.view_of_point[keep],
                                tuple(inst.dets), inst.carved))
        if not out and lifts:
            notes.append("every lift failed: " + "; ".join(dict.fromkeys(r.reason or r.status for r in lifts)))
        return GroundedMention(mention, tuple(out), len(detections), tuple(lifts), frame_name, tuple(notes),
                               time.perf_counter() - t0)

    # ------------------------------------------------------------------ helpers
    def _cut(self, det: Detection, W: int, H: int) -> bool:
        """Whether the box meets the image border (the object may go on beyond the picture)."""
        x1, y1, x2, y2 = det.box
        m = self.settings.border_px
        return x1 < m or y1 < m or x2 > W - m or y2 > H - m

    def _quality(self, det: Detection, W: int, H: int) -> float:
        """Uncut boxes first (a box at the image border does not hold the whole object), then larger and surer."""
        x1, y1, x2, y2 = det.box
        area = max(x2 - x1, 0) * max(y2 - y1, 0) / float(W * H)
        return det.score * area + (0.0 if self._cut(det, W, H) else 1.0)

    def _explained_by(self, det: Detection, built: list[_Building], views: _FrameViews) -> int | None:
        """The instance whose visible points project onto ``det``'s box (2D IoU of the boxes), if any."""
        from ..rl.rewards import box_iou

        best, best_iou = None, 0.0
        for k, inst in enumerate(built):
            seen, uv = views.project(det.position, inst.sample)
            if seen.sum() < 10:
                continue
            u, v = uv[seen, 0], uv[seen, 1]
            iou = box_iou((float(u.min()), float(v.min()), float(u.max()) + 1, float(v.max()) + 1), det.box)
            if iou > best_iou:
                best, best_iou = k, iou
        return best if best_iou >= self.settings.explained_iou else None

    def _carve(self, inst: _Building, views: _FrameViews, max_frames: int = 12, margin: float = 0.05) -> None:
        """Drop points that frames showing the object see outside its box there (a neighbour the tracker took
        along): a point goes when it is seen outside at least as often as inside. Boxes whose frame sees most of
        the instance elsewhere are not the same object and do not vote; a carve taking more than half is refused."""
        dets = sorted({d.position: d for d in inst.dets}.values(), key=lambda d: d.position)
        if len(dets) < 2:
            return
        pick = np.unique(np.rint(np.linspace(0, len(dets) - 1, min(max_frames, len(dets)))).astype(int))
        inside = np.zeros(len(inst.points), np.int32)
        outside = np.zeros(len(inst.points), np.int32)
        for i in pick:
            d = dets[int(i)]
            seen, uv = views.project(d.position, inst.points)
            if seen.sum() < 10:
                continue
            x1, y1, x2, y2 = d.box
            mx, my = margin * (x2 - x1) + 2, margin * (y2 - y1) + 2
            in_box = (uv[:, 0] >= x1 - mx) & (uv[:, 0] < x2 + mx) & (uv[:, 1] >= y1 - my) & (uv[:, 1] < y2 + my)
            if (seen & in_box).sum() < 0.5 * seen.sum():
                continue
            inside += seen & in_box
            outside += seen & ~in_box
        keep = ~((outside >= 1) & (outside >= inside))
        if keep.sum() >= 0.5 * len(keep):
            inst.keep(keep)

    def _merge_all(self, built: list[_Building], W: int, H: int) -> list[_Building]:
        """Merge instances that overlap in 3D (two lifts of one object that no projection check caught), and
        instances known only from boxes cut by the image border into a neighbour closer than ``merge_gap_cut``
        (a part of an object whose whole was seen elsewhere)."""
        from ..lifting import aabb_iou
        from .geometry import closest_distance

        s = self.settings
        items = list(built)
        changed = True
        while changed:
            changed = False
            for i in range(len(items)):
                for j in range(i + 1, len(items)):
                    a, b = items[i], items[j]
                    same = (aabb_iou(a.box, b.box) >= s.merge_iou
                            or overlap_share(a.sample, b.sample, s.merge_distance) >= s.merge_overlap)
                    a_cut = all(self._cut(d, W, H) for d in a.dets)
                    b_cut = all(self._cut(d, W, H) for d in b.dets)
                    if not same and (a_cut != b_cut):
                        same = closest_distance(a.sample, b.sample).distance <= s.merge_gap_cut
                    if same:
                        if a_cut and not b_cut:
                            a, b = b, a
                            items[i], items[j] = a, b
                        a.absorb(b)
                        items.pop(j)
                        changed = True
                        break
                if changed:
                    break
        return items


class _FrameViews:
    """Depth frames decoded once per grounding run, for projecting points (result frame) into them."""

    def __init__(self, scene: Scene, tolerance: float, max_cached: int = 96):
        self.scene = scene
        self.tolerance = tolerance
        self.max_cached = max_cached
        self.world_of_result = np.linalg.inv(frame_to_result(scene))
        self._frames: dict[int, Any] = {}

    def project(self, position: int, points_result: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if position not in self._frames:
            if len(self._frames) >= self.max_cached:
                self._frames.pop(next(iter(self._frames)))
            self._frames[position] = self.scene.frame_or_none(position)
        frame = self._frames[position]
        if frame is None:  # unreadable: nothing of the points is seen there
            return np.zeros(len(points_result), bool), np.zeros((len(points_result), 2))
        W = self.world_of_result
        pts = np.asarray(points_result, np.float64) @ W[:3, :3].T + W[:3, 3]
        return visible_projection(pts, frame.depth, frame.pose, frame.depth_intrinsics, frame.color_intrinsics,
                                  self.tolerance)


# ---------------------------------------------------------------------------------------------- the VLM detector
class PipelineDetector:
    """Boxes from the grounding model. By name (``listing=off``): for one object the temporal stage picks when it is
    seen and the image stage boxes it on several frames of that span (every box of every answer is kept); for every
    instance of a category the image stage is asked for "every <category>" on ``frames_every_instance`` frames spread
    over the video. From the model's listing (``listing=every`` or ``all``): the same frames are asked to list every
    object in the image (:data:`scener1.prompts.DETECTION_PROMPT`, the task Scene-R1-tiny is trained on) and the boxes
    labelled with the category are kept, for a mention named by its category alone ("the lamp", "chairs"; not "the
    red lamp", whose colour a label does not carry): every instance of it (``every``), and also the one object
    (``all``). Nothing of the category listed: asked by name. The listing does not depend on the mention, so it is
    asked once per scene."""

    name = "pipeline"

    def __init__(self, pipeline: Pipeline, settings: GroundingSettings | None = None):
        self.pipeline = pipeline
        self.settings = settings or GroundingSettings()
        self._listing: tuple[str, list[Detection]] | None = None  # (scene path, every labelled box), one scene

    def detect(self, scene: Scene, mention: Mention, every_instance: bool) -> list[Detection]:
        from ..grounding import ImageGrounder

        listing = self.settings.listing
        by_category = not mention.attributes and not mention.qualifier  # a listing's labels say no more
        if by_category and (listing == "all" or listing == "every" and every_instance):
            wanted = label_key(mention.category)
            listed = [d for d in self.listed_boxes(scene) if label_key(d.label) == wanted]
            if listed:
                return listed
        query = mention.text
        if every_instance:
            positions = np.flatnonzero(scene.valid_poses)
            settings = replace(self.pipeline.image.settings, num_candidates=self.settings.frames_every_instance)
            grounder = ImageGrounder(self.pipeline.vlm, settings, self.pipeline.image.verifier)
            image = grounder.ground(scene, f"every {mention.category}", positions)
        else:
            span = self.pipeline.temporal.ground(scene, query)
            image = self.pipeline.image.ground(scene, query, span.positions)
        out = []
        for c in image.candidates:
            for b in c.parsed.boxes:
                out.append(Detection(c.position, c.frame_index, tuple(float(v) for v in b.box), b.label or mention.category,
                                     float(c.confidence) or 0.5, "vlm"))
        return out

    def listed_boxes(self, scene: Scene) -> list[Detection]:
        """Every labelled box the model lists on ``frames_every_instance`` frames of the scene (kept for the last
        scene asked)."""
        from ..grounding import ImageGrounder
        from ..grounding.core import shrink_to_pixels
        from ..models.vlm import ChatRequest
        from ..parsing import BoxGeometry, parse_box
        from ..prompts import detection_messages

        key = str(scene.path)
        if self._listing is not None and self._listing[0] == key:
            return self._listing[1]
        vlm, s = self.pipeline.vlm, self.pipeline.image.settings
        positions = np.flatnonzero(scene.valid_poses)
        if len(positions) == 0:
            return []
        frames = ImageGrounder(vlm, s, self.pipeline.image.verifier).select_frames(
            scene, positions, {}, self.settings.frames_every_instance)
        messages = detection_messages(vlm.box_coordinates, vlm.prompt_version)
        requests = [ChatRequest(messages, images=(shrink_to_pixels(f.color, s.image_max_pixels),)) for f, _ in frames]
        answers = vlm.generate(requests, s.generation, output_scores=True)
        out = []
        for (frame, _), answer in zip(frames, answers):
            height, width = frame.color.shape[:2]
            geometry = BoxGeometry(vlm.box_coordinates, answer.image_sizes[0], (width, height))
            parsed = parse_box(answer.text, geometry, s.min_box_size)
            confidence = math.exp(answer.mean_logprob) if answer.mean_logprob is not None else 0.5
            position = scene.position(frame.index)
            out += [Detection(position, frame.index, tuple(float(v) for v in b.box), b.label, confidence, "vlm-list")
                    for b in parsed.boxes if b.label]
        self._listing = (key, out)
        return out



def label_key(label: str) -> str:
    """A label compared loosely: lower case, single spaces, a plural "s" dropped ("Chairs" == "chair")."""
    words = " ".join(str(label).lower().replace("_", " ").split())
    return words[:-1] if words.endswith("s") and not words.endswith("ss") else words
