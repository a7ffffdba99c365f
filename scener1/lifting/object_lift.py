"""From a 2D box on one frame to a 3D object: track the box, fuse the masked depth, clean, box it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.sampling import sample_frames
from ..errors import ConfigError, ScenerError
from ..types import PointCloud
from .boxes import Box3D
from .projector import clean_points, fuse_masked_frames, object_boxes

if TYPE_CHECKING:
    from ..data.scene import Scene
    from ..tracking.base import Tracker


@dataclass(frozen=True)
class LiftConfig:
    """How frames are chosen and how masked depth becomes points (lengths in metres)."""

    max_frames: int = 60  # frame budget around the key frame (evenly spread over the window)
    window_s: float | None = None  # only frames within this many seconds of the key frame (None = all)
    min_depth: float = 0.1
    max_depth: float = 3.0  # consumer depth sensors err by centimetres beyond ~3 m
    erosion_px: int = 2  # mask erosion on the depth image (drops mixed depth at object borders)
    denoise: bool = True  # median-filter depth whose measured per-pixel noise is high (no effect on clean depth)
    voxel_size: float = 0.01
    statistical: tuple[int, float] | None = (20, 2.0)
    dbscan_eps: float | None = 0.05
    dbscan_min_points: int = 10
    keep_cluster_ratio: float = 0.0  # 0 = largest DBSCAN cluster only
    # the statistical / DBSCAN outlier removal above: "always", "never", or "auto" = unless the tracker's
    # masks are already consistent in 3D (the geometric tracker's are; removal would cut thin legs and poles)
    outlier_removal: str = "auto"
    aabb_trim: float = 0.0  # share of points dropped at each end of each axis for the AABB
    min_points: int = 20  # fewer cleaned points than this is "no_points"
    # extend the boxes to a surface the tracker found the object resting on or hanging against (floor,
    # table, wall) when it ends at most this far from it: no camera sees an object's underside or back
    contact_extent: float | None = 0.06

    def __post_init__(self) -> None:
        if self.max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1, got {self.max_frames}")
        if not 0 <= self.min_depth < self.max_depth:
            raise ConfigError(f"need 0 <= min_depth < max_depth, got {self.min_depth} and {self.max_depth}")
        if self.erosion_px < 0:
            raise ConfigError(f"erosion_px must be >= 0, got {self.erosion_px}")
        if self.window_s is not None and not self.window_s > 0:
            raise ConfigError(f"window_s must be positive, got {self.window_s}")
        if self.outlier_removal not in ("auto", "always", "never"):
            raise ConfigError(f"outlier_removal must be auto, always or never, got {self.outlier_removal!r}")
        if not 0 <= self.aabb_trim < 0.5:
            raise ConfigError(f"aabb_trim must lie in [0, 0.5), got {self.aabb_trim}")


@dataclass(frozen=True, eq=False)
class LiftResult:
    """The 3D object of one prompt; boxes and points are in ``coordinate_frame``."""

    status: str  # "ok" or "no_points"
    reason: str  # why, when status is not "ok"
    frame_index: int  # key frame (its name in the source)
    box_2d: tuple[int, int, int, int]  # the prompt as used (clipped), key frame colour pixels
    coordinate_frame: str  # "axis_aligned" (scene's axisAlignment @ raw) or "raw"
    box_3d: Box3D | None  # axis-aligned box
    obb: Box3D | None  # oriented box
    n_points: int
    frames_used: tuple[int, ...]  # frames (names) that contributed points
    cloud: PointCloud = field(repr=False)
    trace: dict[str, Any] = field(default_factory=dict, repr=False)
    key_mask: np.ndarray | None = field(default=None, repr=False)  # tracker mask on the key frame (colour px)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            **({"reason": self.reason} if self.reason else {}),
            "frame": self.frame_index,
            "box_2d": list(self.box_2d),
            "coordinate_frame": self.coordinate_frame,
            "box_3d": None if self.box_3d is None else self.box_3d.to_dict(),
            "obb": None if self.obb is None else self.obb.to_dict(),
            "n_points": self.n_points,
            "frames_used": list(self.frames_used),
            "trace": self.trace,
        }


def select_positions(scene: "Scene", key_position: int, max_frames: int, window_s: float | None = None) -> list[int]:
    """Valid-pose frames (within ``window_s`` seconds of the key frame), thinned evenly to ``max_frames``;
    the key frame is always among them."""
    valid = scene.valid_poses.copy()
    if window_s is not None:
        valid &= np.abs(scene.timestamps - scene.timestamps[key_position]) <= window_s
    positions = sample_frames(scene.timestamps, valid, max_frames=max(max_frames - 1, 1))
    out = sorted(set(int(p) for p in positions) | {int(key_position)})
    if len(out) > max_frames:  # the key frame pushed the budget over: drop the neighbour closest to it
        others = [p for p in out if p != key_position]
        nearest = min(others, key=lambda p: abs(p - key_position))
        out.remove(nearest)
    return out


def lift(
    scene: "Scene",
    frame_index: int,
    box: Sequence[float],
    tracker: "Tracker | None" = None,
    config: LiftConfig | None = None,
    positions: Sequence[int] | None = None,
) -> LiftResult:
    """Lift the object in ``box`` (colour pixels of the frame named ``frame_index``) to 3D.

    The tracker defaults to the geometric one. ``positions`` overrides the frame choice of ``config``.
    Bad input (unknown frame, invalid key pose, a box outside the image or degenerate) raises a
    :class:`ScenerError`; an object without usable depth gives ``status="no_points"`` and a reason.
    """
    from ..tracking import build_tracker
    from ..tracking.base import check_box

    cfg = config or LiftConfig()
    tracker = tracker or build_tracker("geometric")
    t0 = time.perf_counter()
    key_position = scene.position(frame_index)
    ci = scene.color_intrinsics
    cbox = check_box(box, ci.width, ci.height)
    if not scene.valid_poses[key_position]:
        raise ScenerError(f"frame {frame_index} has no valid camera pose; choose another key frame")
    if positions is None:
        positions = select_positions(scene, key_position, cfg.max_frames, cfg.window_s)
    track = tracker.track(scene, positions, key_position, cbox)
    t_track = time.perf_counter()
    key = track.mask_at(key_position)
    key_mask = None if key.empty else key.dense()

    def pairs():
        for m in track.masks:
            if not m.empty:
                yield scene.frame(m.position), m.dense()

    fused = fuse_masked_frames(pairs(), cfg.min_depth, cfg.max_depth, cfg.erosion_px, denoise=cfg.denoise)
    remove = cfg.outlier_removal == "always" or (
        cfg.outlier_removal == "auto" and not track.info.get("masks_3d_consistent", False)
    )
    cleaned, clean_info = clean_points(
        fused.cloud, cfg.voxel_size, cfg.statistical if remove else None, cfg.dbscan_eps if remove else None,
        cfg.dbscan_min_points, cfg.keep_cluster_ratio,
    )
    t_fuse = time.perf_counter()
    aligned = scene.axis_alignment is not None
    frame_name = "axis_aligned" if aligned else "raw"
    frames_used = tuple(sorted({int(s.frame_index) for s in fused.frames if s.points > 0}))
    trace = {
        "tracker": track.summary(),
        "config": _jsonable(asdict(cfg)),
        "fusion": {"raw_points": len(fused.cloud), **clean_info, "per_frame": [s.to_dict() for s in fused.frames]},
        "seconds": {
            "track": round(t_track - t0, 3),
            "fuse_and_clean": round(t_fuse - t_track, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
    }
    if len(cleaned) < cfg.min_points:
        key_note = key.note
        if len(fused.cloud) == 0:
            reason = key_note or "the masks hold no depth within the validity range"
            reason = f"{reason} ({cfg.min_depth:g}-{cfg.max_depth:g} m)" if not key_note else reason
        else:
            reason = f"only {len(cleaned)} points left after outlier removal (need {cfg.min_points})"
        empty = PointCloud(np.empty((0, 3), np.float32), np.empty((0, 3), np.uint8))
        return LiftResult("no_points", reason, int(frame_index), cbox, frame_name, None, None, 0, frames_used,
                          empty, trace, key_mask)
    contacts = [] if cfg.contact_extent is None else track.info.get("contact_planes", [])
    extra = contact_points(cleaned.points, contacts, cfg.contact_extent or 0.0)
    if len(extra):
        trace["contact_points"] = len(extra)
    cloud = cleaned.transformed(scene.axis_alignment) if aligned else cleaned
    box_pts = np.concatenate([cleaned.points, extra]) if len(extra) else cleaned.points
    aabb, obb = object_boxes(box_pts, scene.axis_alignment if aligned else None, cfg.aabb_trim)
    return LiftResult(
        "ok", "", int(frame_index), cbox, frame_name, aabb, obb, len(cloud), frames_used, cloud, trace, key_mask
    )


def contact_points(points: np.ndarray, planes: Sequence[dict[str, Any]], reach: float) -> np.ndarray:
    """The object's points within ``reach`` of a contact plane, dropped onto it (world frame).

    Each plane is ``{"normal": n, "offset": d}`` with ``n . x + d = 0`` and ``n`` pointing from the plane
    towards the object; added to the box's points, they carry the box down to the floor under a sofa's
    hidden legs or back to the wall behind a picture."""
    out = []
    pts = np.asarray(points, np.float64)
    for plane in planes:
        n = np.asarray(plane["normal"], np.float64)
        dist = pts @ n + float(plane["offset"])
        near = (dist >= -reach) & (dist <= reach)
        if near.any():
            out.append(pts[near] - dist[near, None] * n)
    return np.concatenate(out).astype(np.float32) if out else np.empty((0, 3), np.float32)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
