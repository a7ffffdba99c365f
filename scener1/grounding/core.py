"""Image grounding without the model: candidate frames, lifting boxes to 3D and choosing by agreement.

A single frame's box is where Scene-R1's errors start to cascade (box -> mask -> 3D). Asking on several
frames of the span and keeping the box that other frames' boxes *agree* with in 3D (same object, seen
from elsewhere) cuts wrong boxes before they reach tracking; the model's own token confidence breaks ties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..data.camera import back_project, color_mask_to_depth, project
from ..errors import ConfigError
from ..models.vlm import GenerationSettings
from ..parsing import BoxParse
from ..trace import StageTrace, to_jsonable
from ..types import Frame, Intrinsics


@dataclass(frozen=True)
class ImageSettings:
    """How the image stage picks frames, sizes them and chooses among their answers.

    Two candidates agree when one's lifted 3D point projects inside the other's box grown by
    ``agreement_margin`` of its size and the points lie within ``max_object_size`` metres (see
    :func:`agreement_matrix`); ``centre_fraction`` is the share of a box's width and height, around its
    centre, whose depth is lifted (the rim of a box is mostly background).

    ``video_candidates`` more frames, spread over the video outside the temporal span, join the vote with
    their confidence scaled by ``video_weight``: a span that misses the object (a weak temporal stage) can
    then be outvoted by frames that show it (with ``video_weight`` below 1 a span that holds it counts for more).
    Off here, so that a grounder asked about given frames looks at those only; the pipeline's configuration
    (``configs/default.yaml``) turns it on, because Scene-R1-tiny's temporal stage is its weaker one.

    When the model ships cell heads (:mod:`scener1.models.cell_verifier`), each candidate's vote is also scaled by
    its box's score (how much it shows the query's category and colour) to the power ``verify_weight``; 0
    turns the check off. Models without cell heads (real Qwen checkpoints) are not checked. With
    ``seek_frames`` the same heads also choose which frames the model is asked on (where the target shows most).
    """

    num_candidates: int = 4
    video_candidates: int = 0
    video_weight: float = 0.5
    image_max_pixels: int = 1280 * 28 * 28
    agreement_margin: float = 0.1
    max_object_size: float = 2.0
    centre_fraction: float = 0.5
    min_box_size: float = 4.0
    min_depth: float = 0.1
    max_depth: float = 10.0
    min_depth_fraction: float = 0.2
    snap: bool = False  # snap each box onto the frame's depth segments (scener1.grounding.snapping)
    snap_min_iou: float = 0.5  # ... only onto a segment box overlapping the model's box this much
    verify_weight: float = 1.0  # votes x (cell heads' score of the box) ** verify_weight; 0: no check
    replace_below: float = 0.0  # a box scoring below this share of its frame's best cell gives way to the heads'
    # own box for the target (heads with a box map only; 0: never)
    seek_frames: int = 0  # > 0: the cell heads look through this many frames and the model is asked on
    # those where they see the target most (in the span, and again outside it); 0: candidates spread evenly
    generation: GenerationSettings = field(default_factory=lambda: GenerationSettings(max_new_tokens=256))

    def __post_init__(self) -> None:
        if self.num_candidates < 1:
            raise ConfigError(f"num_candidates must be >= 1, got {self.num_candidates}")
        if self.video_candidates < 0:
            raise ConfigError(f"video_candidates must be >= 0, got {self.video_candidates}")
        if not (math.isfinite(self.video_weight) and 0 <= self.video_weight <= 1):
            raise ConfigError(f"video_weight must be in [0, 1], got {self.video_weight}")
        if self.image_max_pixels < 64:
            raise ConfigError("image_max_pixels must be at least 64")
        if not (math.isfinite(self.agreement_margin) and self.agreement_margin >= 0):
            raise ConfigError(f"agreement_margin must be >= 0, got {self.agreement_margin}")
        if not (math.isfinite(self.max_object_size) and self.max_object_size > 0):
            raise ConfigError(f"max_object_size must be a positive number of metres, got {self.max_object_size}")
        if not 0 < self.centre_fraction <= 1:
            raise ConfigError(f"centre_fraction must be in (0, 1], got {self.centre_fraction}")
        if not 0 <= self.min_depth < self.max_depth:
            raise ConfigError("min_depth must be >= 0 and below max_depth")
        if self.generation.num_return_sequences != 1:
            raise ConfigError("the image stage reads one answer per frame (num_return_sequences = 1)")
        if not 0 < self.snap_min_iou <= 1:
            raise ConfigError(f"snap_min_iou must be in (0, 1], got {self.snap_min_iou}")
        if not 0 <= self.replace_below <= 1:
            raise ConfigError(f"replace_below must be in [0, 1], got {self.replace_below}")
        if self.seek_frames < 0:
            raise ConfigError(f"seek_frames must be >= 0, got {self.seek_frames}")
        if not (math.isfinite(self.verify_weight) and self.verify_weight >= 0):
            raise ConfigError(f"verify_weight must be a number >= 0, got {self.verify_weight}")


def spread(positions: np.ndarray, k: int, preferred: np.ndarray | None = None) -> np.ndarray:
    """Up to ``k`` of ``positions`` spread evenly (first and last kept), from the ``preferred`` ones if any."""
    positions = np.asarray(positions, dtype=np.int64)
    if preferred is not None:
        preferred = np.asarray(preferred, dtype=bool)
        if preferred.any():
            positions = positions[preferred]
    if len(positions) <= k:
        return positions
    pick = np.unique(np.rint(np.linspace(0, len(positions) - 1, k)).astype(np.int64))
    return positions[pick]


def depth_valid_fraction(depth: np.ndarray, min_depth: float = 0.0, max_depth: float = np.inf) -> float:
    """Share of depth pixels holding a usable measurement."""
    valid = np.isfinite(depth) & (depth > min_depth) & (depth < max_depth)
    return float(valid.mean()) if depth.size else 0.0


def shrink_to_pixels(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """``image`` scaled down (aspect kept) to at most ``max_pixels``; unchanged when already small enough."""
    import cv2

    h, w = image.shape[:2]
    if w * h <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (w * h))
    return cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)


def box_centre_point(
    box: tuple[float, float, float, float],
    frame: Frame,
    centre_fraction: float = 0.5,
    min_depth: float = 0.1,
    max_depth: float = 10.0,
) -> np.ndarray | None:
    """World point (3,) at the median of the depth under the central part of ``box``; ``None`` without data.

    The box is in colour pixels (x2/y2 exclusive); its central region is carried to the depth image ray
    by ray, so colour and depth may differ in resolution and aspect.
    """
    if not frame.pose_valid:
        return None
    ci = frame.color_intrinsics
    x1, y1, x2, y2 = box
    cx, cy = 0.5 * (x1 + x2), 0.5 * (y1 + y2)
    hw, hh = 0.5 * centre_fraction * (x2 - x1), 0.5 * centre_fraction * (y2 - y1)
    # pixel u covers [u - 0.5, u + 0.5): take the pixels whose centres fall inside the region, at least one
    c0 = min(max(int(math.ceil(cx - hw - 0.5)), 0), ci.width - 1)
    r0 = min(max(int(math.ceil(cy - hh - 0.5)), 0), ci.height - 1)
    c1 = min(max(int(math.ceil(cx + hw - 0.5)), c0 + 1), ci.width)
    r1 = min(max(int(math.ceil(cy + hh - 0.5)), r0 + 1), ci.height)
    mask = np.zeros((ci.height, ci.width), dtype=bool)
    mask[r0:r1, c0:c1] = True
    depth_mask = color_mask_to_depth(mask, ci, frame.depth_intrinsics)
    points = back_project(frame.depth, frame.depth_intrinsics, frame.pose, depth_mask, min_depth, max_depth)
    if len(points) == 0:
        return None
    return np.median(points.astype(np.float64), axis=0)


def agreement_matrix(
    points: np.ndarray,
    boxes: list[tuple[float, float, float, float] | None],
    intrinsics: list[Intrinsics],
    poses: np.ndarray,
    margin: float = 0.1,
    max_object_size: float = 2.0,
) -> np.ndarray:
    """(k, k) bool: whether candidates i and j point at the same object.

    They agree when one's lifted 3D point projects inside the other's box (grown by ``margin`` of its
    width and height on each side) and the two points lie within ``max_object_size`` metres. One
    direction suffices because views of a large object often show different parts of it, so a point on
    the part one frame sees may fall outside another frame's image; the distance cap stops a near object
    in front of a far one from counting. Candidates without a point, box or valid pose agree only with
    themselves.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    k = len(points)
    inside = np.zeros((k, k), dtype=bool)  # inside[i, j]: point i projects into box j
    lifted = np.isfinite(points).all(axis=1)
    for j in range(k):
        box, pose = boxes[j], poses[j]
        if box is None or not np.isfinite(pose).all() or not lifted[j]:
            continue
        x1, y1, x2, y2 = box
        mx, my = margin * (x2 - x1), margin * (y2 - y1)
        uv, z = project(points[lifted], intrinsics[j], pose)
        # pixel (u, v) covers [u - 0.5, u + 0.5): its edge coordinate is u + 0.5
        u, v = uv[:, 0] + 0.5, uv[:, 1] + 0.5
        hit = (z > 0) & (u >= x1 - mx) & (u <= x2 + mx) & (v >= y1 - my) & (v <= y2 + my)
        inside[np.flatnonzero(lifted), j] = hit
    with np.errstate(invalid="ignore"):
        near = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1) <= max_object_size
    agree = (inside | inside.T) & near & lifted[:, None] & lifted[None, :]
    agree[np.diag_indices(k)] = True
    return agree


def choose_by_agreement(
    agree: np.ndarray, confidences: np.ndarray, usable: np.ndarray
) -> tuple[int | None, np.ndarray, np.ndarray]:
    """Pick the candidate whose box the others agree with.

    ``agree`` (k, k) bool from :func:`agreement_matrix`; ``confidences`` (k,) in [0, 1]; ``usable`` (k,)
    which candidates have a box. Each usable candidate's support is the summed confidence of the usable
    candidates agreeing with it (itself included). The best-supported group wins and, inside it, the most
    confident member. Returns (chosen index or None, support (k,), members of the chosen group (k,) bool).
    """
    usable = np.asarray(usable, dtype=bool)
    k = len(usable)
    conf = np.where(usable, np.nan_to_num(np.asarray(confidences, np.float64)), 0.0)
    agree = np.asarray(agree, dtype=bool) | np.eye(k, dtype=bool)
    if not usable.any():
        return None, np.zeros(k), np.zeros(k, dtype=bool)
    support = np.where(usable, agree.astype(np.float64) @ conf, 0.0)
    # best group: highest support, then highest own confidence, then earliest
    order = np.lexsort((-np.arange(k), conf, support))
    seed = int(order[-1])
    members = agree[seed] & usable
    chosen = int(np.flatnonzero(members)[np.argmax(conf[members])])
    return chosen, support, members


@dataclass(frozen=True)
class ImageCandidate:
    """One frame asked in the image stage and what came of it."""

    position: int
    frame_index: int
    raw_output: str
    parsed: BoxParse
    mean_logprob: float | None
    confidence: float
    model_image_size: tuple[int, int]
    depth_ok: bool
    point: tuple[float, float, float] | None
    support: float = 0.0
    agrees: bool = False
    chosen: bool = False
    snap: dict[str, Any] | None = None  # what box snapping did (None when it was off or had no box)
    in_span: bool = True  # False for the frames taken from outside the temporal span (video_candidates)
    verify: float | None = None  # the cell heads' score of the box (None: not checked)
    presence: float | None = None  # ... and of the frame's best cell: does the frame show the target at all
    replaced: dict[str, Any] | None = None  # the model's box and its score when the heads' box took its place

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        return self.parsed.value


@dataclass(frozen=True, eq=False)
class ImageResult:
    """The image stage's decision: a box on one frame, with its rationale and every candidate considered.

    ``box`` is in original colour pixels (x2/y2 exclusive). ``agreement`` counts the candidates of the
    winning group, those agreeing in 3D with its best-supported member (the chosen one included). ``fallback_reason`` is
    set when no candidate gave a usable box and the whole frame was taken instead.
    """

    query: str
    box: tuple[float, float, float, float]
    position: int
    frame_index: int
    label: str | None
    think: str | None
    raw_output: str
    point: tuple[float, float, float] | None
    agreement: int
    candidates: tuple[ImageCandidate, ...]
    fallback_reason: str | None
    seconds: float
    trace: StageTrace

    @property
    def used_fallback(self) -> bool:
        return self.fallback_reason is not None

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "query": self.query,
                "box_2d": self.box,
                "position": self.position,
                "frame": self.frame_index,
                "label": self.label,
                "think": self.think,
                "raw_output": self.raw_output,
                "point": self.point,
                "agreement": self.agreement,
                "fallback_reason": self.fallback_reason,
                "seconds": self.seconds,
                "candidates": [candidate_summary(c) for c in self.candidates],
            }
        )


def candidate_summary(c: ImageCandidate) -> dict[str, Any]:
    """A candidate as it appears in traces: enough to see why it won or lost."""
    return to_jsonable(
        {
            "position": c.position,
            "frame": c.frame_index,
            "box_2d": c.box,
            "label": c.parsed.label,
            "reason": c.parsed.reason,
            "repairs": c.parsed.repairs,
            "format_ok": c.parsed.format_ok,
            "mean_logprob": c.mean_logprob,
            "confidence": c.confidence,
            "model_image_size": c.model_image_size,
            "depth_ok": c.depth_ok,
            "point": c.point,
            "support": c.support,
            "agrees": c.agrees,
            "chosen": c.chosen,
            "snap": c.snap,
            "in_span": c.in_span,
            "verify": c.verify,
            "presence": c.presence,
            "replaced": c.replaced,
        }
    )


def decide(
    query: str,
    candidates: list[ImageCandidate],
    frames: list[Frame],
    settings: ImageSettings,
    prompt: str,
    seconds: float,
    inputs: dict[str, Any],
) -> ImageResult:
    """Choose among lifted candidates (or fall back to a whole frame) and assemble result and trace."""
    usable = np.array([c.box is not None for c in candidates], dtype=bool)
    points = np.array([c.point if c.point is not None else (np.nan,) * 3 for c in candidates], dtype=np.float64)
    # frames outside the span vote at a discount (ImageSettings.video_weight); boxes the cell heads doubt, too
    conf = np.array([c.confidence * (1.0 if c.in_span else settings.video_weight)
                     * (1.0 if c.verify is None else max(c.verify, 0.0) ** settings.verify_weight)
                     for c in candidates])
    agree = agreement_matrix(
        points, [c.box for c in candidates], [f.color_intrinsics for f in frames], np.stack([f.pose for f in frames]),
        settings.agreement_margin, settings.max_object_size,
    )  # fmt: skip
    chosen, support, members = choose_by_agreement(agree, conf, usable)
    final = [
        replace(c, support=float(support[i]), agrees=bool(members[i]), chosen=i == chosen)
        for i, c in enumerate(candidates)
    ]
    if chosen is None:
        reasons = "; ".join(dict.fromkeys(c.parsed.reason for c in candidates)) or "no candidate frames"
        fallback: str | None = f"no candidate frame gave a usable box ({reasons}); the whole frame is used"
        # the middle frame among those with depth and pose, so later stages can still lift it
        pool = [i for i, c in enumerate(candidates) if c.depth_ok] or list(range(len(candidates)))
        c = final[pool[len(pool) // 2]]
        h, w = frames[pool[len(pool) // 2]].color.shape[:2]
        box: tuple[float, float, float, float] = (0.0, 0.0, float(w), float(h))
        label, point, agreement = None, None, 0
    else:
        c = final[chosen]
        fallback, box, label, point = None, c.box, c.parsed.label, c.point  # type: ignore[assignment]
        agreement = int(members.sum())
    trace = StageTrace(
        stage="image",
        inputs=to_jsonable(inputs),
        prompt=prompt,
        raw_output=tuple(x.raw_output for x in final),
        parsed=to_jsonable(
            {"box_2d": box, "frame": c.frame_index, "position": c.position, "label": label, "agreement": agreement,
             "candidates": [candidate_summary(x) for x in final]}
        ),
        fallback=fallback,
        seconds=seconds,
    )  # fmt: skip
    return ImageResult(
        query, box, c.position, c.frame_index, label, c.parsed.think, c.raw_output, point, agreement, tuple(final),
        fallback, seconds, trace,
    )  # fmt: skip
