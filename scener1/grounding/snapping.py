"""Box snapping: move the model's box onto the object that geometry says is there.

A grounding box only has to point at the right object; a box that is a little too large, too small or
shifted still carries the error into tracking and lifting. The frame's depth already separates most
objects from their surroundings: surfaces break at depth discontinuities (an object in front of the wall)
and at creases (a chair leg meeting the floor, a box on a table). Segmenting the depth at those breaks gives
*object proposals*; the model's box is replaced by the box of the proposal that best explains it, when
that proposal overlaps the model's box enough to be the same object (``min_iou``), and kept otherwise.

Proposals are single segments and the union of the segments lying mostly inside the model's box (large
objects break into several faces). Segments covering more than ``max_segment_share`` of the image are
background (floor, walls) and never proposals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..types import Frame, Intrinsics


@dataclass(frozen=True)
class SnapSettings:
    """Tunables of :func:`snap_box` (lengths in metres, shares of pixels or of the box)."""

    min_iou: float = 0.5  # snap only onto a proposal overlapping the model's box at least this much
    depth_jump: float = 0.04  # neighbours further apart in depth than this share of their depth are split
    crease_deg: float = 40.0  # neighbours whose surface normals differ by more are split
    smooth_px: int = 2  # normals are taken over this pixel step (noise)
    inside_share: float = 0.6  # a segment belongs to the union when this share of it lies in the grown box
    grow: float = 0.1  # the model's box is grown by this share of its size when collecting segments
    min_segment_px: int = 30
    max_segment_share: float = 0.6
    min_depth: float = 0.1
    max_depth: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.min_iou <= 1:
            raise ConfigError(f"snap min_iou must be in (0, 1], got {self.min_iou}")
        if not (self.depth_jump > 0 and 0 < self.crease_deg < 180 and self.smooth_px >= 1):
            raise ConfigError("snap depth_jump and crease_deg must be positive, smooth_px >= 1")
        if not (0 < self.inside_share <= 1 and self.grow >= 0 and 0 < self.max_segment_share <= 1):
            raise ConfigError("snap inside_share and max_segment_share must be in (0, 1], grow >= 0")


@dataclass(frozen=True)
class SnapResult:
    """The box after snapping (colour pixels, x2/y2 exclusive) and how it was reached."""

    box: tuple[float, float, float, float]
    changed: bool
    proposal_iou: float  # IoU of the chosen proposal with the model's box (0 when none)
    reason: str

    def to_dict(self, original: tuple[float, float, float, float]) -> dict[str, Any]:
        return {"changed": self.changed, "from": [round(float(v), 1) for v in original],
                "to": [round(float(v), 1) for v in self.box], "proposal_iou": round(self.proposal_iou, 3),
                "reason": self.reason}


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def depth_segments(depth: np.ndarray, intrinsics: Intrinsics, settings: SnapSettings | None = None) -> np.ndarray:
    """(H, W) int32 labels of the depth image's smooth surface pieces (0 = invalid depth or an edge).

    Two 4-neighbours are joined unless their depths differ by more than ``depth_jump`` of the nearer one
    or their surface normals (from ``smooth_px``-pixel differences of the back-projected points) differ by
    more than ``crease_deg``.
    """
    from scipy.ndimage import distance_transform_edt, label

    s = settings or SnapSettings()
    z = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(z) & (z > s.min_depth) & (z < s.max_depth)
    h, w = z.shape
    v, u = np.mgrid[0:h, 0:w]
    zz = np.where(valid, z, np.nan)
    points = np.stack([(u - intrinsics.cx) * zz / intrinsics.fx, (v - intrinsics.cy) * zz / intrinsics.fy, zz], -1)
    k = s.smooth_px
    # central differences over 2k pixels; at the image border one-sided (edge padding), so that creases
    # are found there too and pieces cannot leak around a cut along the border
    padded = np.pad(points, ((k, k), (k, k), (0, 0)), mode="edge")
    du = padded[k:-k, 2 * k:] - padded[k:-k, : -2 * k]
    dv = padded[2 * k:, k:-k] - padded[: -2 * k, k:-k]
    # a difference taken across a depth jump says nothing about the surface: no normal there
    jump = s.depth_jump * zz
    with np.errstate(invalid="ignore"):
        du[np.abs(du[..., 2]) > 2 * k * jump] = np.nan
        dv[np.abs(dv[..., 2]) > 2 * k * jump] = np.nan
    normals = np.cross(du, dv)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normals = normals / norm
    cos_crease = math.cos(math.radians(s.crease_deg))

    # depth jumps: a pixel is cut when it is too far in depth from its right or lower neighbour
    edge = ~valid
    with np.errstate(invalid="ignore"):
        jump_right = np.abs(zz[:, 1:] - zz[:, :-1]) > s.depth_jump * np.minimum(zz[:, 1:], zz[:, :-1])
        jump_down = np.abs(zz[1:] - zz[:-1]) > s.depth_jump * np.minimum(zz[1:], zz[:-1])
    edge[:, :-1] |= jump_right
    edge[:-1, :] |= jump_down
    # creases: normals change gradually over the 2k-pixel window, so compare the surface k pixels to
    # either side (left/right and above/below), each measured on its own side of the bend
    npad = np.pad(normals, ((k, k), (k, k), (0, 0)), mode="edge")
    with np.errstate(invalid="ignore"):
        across_u = np.sum(npad[k:-k, : -2 * k] * npad[k:-k, 2 * k:], axis=-1)
        across_v = np.sum(npad[: -2 * k, k:-k] * npad[2 * k:, k:-k], axis=-1)
    edge |= (across_u < cos_crease) | (across_v < cos_crease)  # NaN (no normal) compares False: no crease
    labels, _ = label(~edge)
    # the cuts are a few pixels wide (normals span 2 * smooth_px); give those pixels back to the nearest piece
    # so that pieces keep their true outline
    cut = (labels == 0) & valid
    if cut.any() and (labels > 0).any():
        distance, (rows, cols) = distance_transform_edt(labels == 0, return_indices=True)
        near = cut & (distance <= s.smooth_px + 1)
        labels[near] = labels[rows[near], cols[near]]
    return labels.astype(np.int32)


def segment_boxes(labels: np.ndarray) -> dict[int, tuple[int, int, int, int, int]]:
    """label -> (x1, y1, x2, y2, pixel count) of every segment, x2/y2 exclusive."""
    from scipy.ndimage import find_objects

    counts = np.bincount(labels.ravel())
    out = {}
    for i, sl in enumerate(find_objects(labels), start=1):
        if sl is None:
            continue
        out[i] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop, int(counts[i]))
    return out


def snap_to_segments(box: tuple[float, float, float, float], labels: np.ndarray,
                     settings: SnapSettings | None = None, scale: tuple[float, float] = (1.0, 1.0)) -> SnapResult:
    """Snap ``box`` (colour pixels) onto the depth segments ``labels``; ``scale`` maps depth pixels to colour
    pixels (colour width / depth width, colour height / depth height)."""
    s = settings or SnapSettings()
    sx, sy = scale
    h, w = labels.shape
    boxes = segment_boxes(labels)
    big = s.max_segment_share * h * w
    segs = {i: b for i, b in boxes.items() if s.min_segment_px <= b[4] <= big}
    if not segs:
        return SnapResult(box, False, 0.0, "no object proposals on this frame")
    # the model's box in depth pixels, grown
    bx1, by1, bx2, by2 = box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy
    gx, gy = s.grow * (bx2 - bx1), s.grow * (by2 - by1)
    c0, r0 = max(int(math.floor(bx1 - gx)), 0), max(int(math.floor(by1 - gy)), 0)
    c1, r1 = min(int(math.ceil(bx2 + gx)), w), min(int(math.ceil(by2 + gy)), h)
    model_box = (bx1, by1, bx2, by2)
    proposals: list[tuple[float, float, float, float]] = []
    if c1 > c0 and r1 > r0:
        inside = np.bincount(labels[r0:r1, c0:c1].ravel(), minlength=labels.max() + 1)
        members = sorted((i for i, b in segs.items() if inside[i] >= s.inside_share * b[4]), key=lambda i: -segs[i][4])
        # grow a union from the largest piece, adding a piece only when the union explains the box better
        union: tuple[float, float, float, float] | None = None
        for i in members:
            b = segs[i]
            grown = b[:4] if union is None else (min(union[0], b[0]), min(union[1], b[1]), max(union[2], b[2]),
                                                 max(union[3], b[3]))
            if union is None or _iou(grown, model_box) > _iou(union, model_box):
                union = tuple(float(v) for v in grown)
        if union is not None:
            proposals.append(union)
    proposals += [tuple(float(v) for v in b[:4]) for b in segs.values()]
    ious = [_iou(p, model_box) for p in proposals]
    best = int(np.argmax(ious))
    if ious[best] < s.min_iou:
        return SnapResult(box, False, float(ious[best]), f"no proposal overlaps the box enough (best IoU "
                                                         f"{ious[best]:.2f} < {s.min_iou:g})")
    p = proposals[best]
    snapped = (p[0] * sx, p[1] * sy, p[2] * sx, p[3] * sy)
    changed = any(abs(a - b) >= 0.5 for a, b in zip(snapped, box, strict=True))
    return SnapResult(snapped if changed else box, changed, float(ious[best]),
                      "snapped to a depth segment" if changed else "the box already fits a proposal")


def snap_box(box: tuple[float, float, float, float], frame: Frame, settings: SnapSettings | None = None) -> SnapResult:
    """Snap ``box`` (colour pixels of ``frame``) onto the frame's depth segments."""
    labels = depth_segments(frame.depth, frame.depth_intrinsics, settings)
    ci, di = frame.color_intrinsics, frame.depth_intrinsics
    return snap_to_segments(box, labels, settings, (ci.width / di.width, ci.height / di.height))
