"""A tracker that needs no weights: the boxed object is segmented in 3D from depth and poses.

1. Key frame: the background surfaces around the prompt box are found as planes that hold a good share of
   a ring of pixels just outside it (floor, walls, the table an object stands on).
2. Every frame's depth is lifted to the world; a point is kept when it lies in the key box's frustum (sides
   where the box meets the image border stay open: the object goes on beyond the picture), is not in space
   the key frame saw as empty (in front of its depth), is not far behind what the key frame saw, and is not
   on a background plane. The kept points are counted in a voxel grid; voxels seen by one frame only are
   noise.
3. Occupied voxels are split into 3D-connected pieces (small gaps bridged), so a table's legs join its top,
   a lamp's pole its shade, even where one view never shows both; an object on a table is cut off by the
   table's plane.
4. On the key frame, each piece covers some pixels; the pieces whose pixels best fill the prompt box are
   the object (greedy merging of pieces close in 3D while the fit improves).
5. The mask on every frame is the pixels whose 3D point falls in the object's voxels.

An object lying flat on a background plane (a picture on a wall) leaves nothing once the plane is removed;
it is then told from the plane by colour against the ring, and grown over the frames in the same way.
The background planes the object touches are reported (``TrackResult.info["contact_planes"]``) so that
the lifting stage can extend its box to the surface it rests on, which no camera sees.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.camera import color_mask_to_depth, up_direction
from ..lifting.projector import denoise_depth
from ..types import Frame, Intrinsics
from .base import (
    FrameMask,
    TrackResult,
    box_mask,
    check_box,
    check_positions,
    depth_mask_to_color,
)

if TYPE_CHECKING:
    from ..data.scene import Scene


@dataclass(frozen=True)
class GeometricConfig:
    """Tunables of :class:`GeometricTracker` (lengths in metres, shares of the box size)."""

    min_depth: float = 0.1
    max_depth: float = 6.0
    ring_inner: float = 0.12  # the ring starts this share of the box size outside it (room for loose boxes)
    ring_outer: float = 0.4  # ... and ends here
    ring_min_px: int = 6  # minimum ring width in depth pixels
    plane_share: float = 0.08  # a plane holding this share of the ring's points is background
    max_planes: int = 5
    # depth tolerances grow with range like a structured-light / ToF sensor's error: abs, rel * z, quad * z^2,
    # plus a multiple of the measured noise
    tol_abs: float = 0.01
    tol_rel: float = 0.002
    tol_quad: float = 0.002
    plane_k: float = 2.5  # plane inliers lie within this many noise sigmas (on top of the sensor model)
    plane_cos: float = 0.8  # ... and their normal within about 37 degrees of the plane's
    floor_normal_cos: float = 0.95  # surfaces this close to horizontal count for finding the floor
    top_normal_cos: float = 0.9  # ... and as an object's top (where other things may stand)
    voxel: float = 0.02  # voxel edge of the 3D model
    bridge_voxels: int = 0  # gaps of up to 2 x this many voxels still connect (thin parts, sparse views)
    join_distance: float = 0.12  # separate 3D pieces may be combined when they come this close
    min_support: int = 2  # frames that must see a voxel (noisy depth, at least 3 frames)
    clean_noise: float = 0.001  # relative depth noise up to which one view suffices
    frustum_margin: float = 0.1  # share of the box size the object may reach outside the key box
    open_border_share: float = 1.5  # where the box meets the image border, the frustum goes on this many box sizes
    border_slack: float = 0.12  # a box side this share of the box size from the border counts as on it
    border_slack_max: float = 0.06  # ... but no more than this share of the image size
    behind_factor: float = 1.5  # the object reaches at most this many box sizes (metres) behind its front
    max_grid_cells: int = 12_000_000  # the voxel grid is coarsened beyond this
    min_piece_px: int = 8
    fill_weight: float = 0.5  # the box fit's reward for filling the box (up to half of it)
    min_join_share: float = 0.01  # a piece joining the fit covers at least this share of the box
    colour_distance: float = 14.0  # Lab distance that tells an object on a plane from the plane's own colour
    contact_gap: float = 0.06  # a background plane this close to the object is the surface it rests on
    support_reach: float = 0.4  # a floating object's hidden legs end at most this far below what is seen
    # a thin layer this close above the floor, with nothing standing on it, is floor: real scans register
    # the floor seen from many frames centimetres apart, and what is left of it would join every object
    floor_slab: float = 0.08
    floor_column: float = 0.1  # what stands on the floor reaches at least this far above the slab
    structure_samples: int = 1200  # points sampled per frame to find the floor and the walls
    max_walls: int = 8
    wall_min_extent: float = 0.8  # a wall spans at least this much across and up
    wall_probe: float = 0.5  # nothing may be seen behind a wall this far beyond its visible ends


@dataclass(frozen=True, eq=False)
class _DepthView:
    """One frame's depth prepared for segmentation."""

    depth: np.ndarray  # (h, w) float32, median-filtered when the sensor is noisy; 0 = invalid
    xyz: np.ndarray  # (h, w, 3) float32 world point of every pixel (meaningless where depth is 0)
    K: Intrinsics
    pose: np.ndarray
    noise: float  # relative depth noise (sigma / depth) left after filtering

    def tol(self, z: np.ndarray, cfg: GeometricConfig, k: float = 3.0) -> np.ndarray:
        """Depth tolerance at range ``z``: sensor error model plus ``k`` sigmas of measured noise."""
        return np.maximum(cfg.tol_abs, (cfg.tol_rel + k * self.noise) * z + cfg.tol_quad * z * z)

    def normals_at(self, flat: np.ndarray, step: int = 2) -> np.ndarray:
        """(n, 3) unit surface normals (world frame, facing the camera) at flat pixel indices, from central
        differences ``step`` pixels apart; zero where a neighbour is missing or lies across a depth jump
        (the difference would span two surfaces). Computed only where asked: most pixels never need one."""
        h, w = self.depth.shape
        s = step
        v, u = np.divmod(np.asarray(flat, np.int64), w)
        ok = (v >= s) & (v < h - s) & (u >= s) & (u < w - s)
        v, u = np.where(ok, v, s), np.where(ok, u, s)
        d = self.depth
        xyz = self.xyz
        dx = xyz[v, u + s] - xyz[v, u - s]
        dy = xyz[v + s, u] - xyz[v - s, u]
        n = np.cross(dy, dx)  # towards the camera
        norm = np.sqrt(np.einsum("ij,ij->i", n, n))
        c = d[v, u]
        ok &= (c > 0) & (d[v, u + s] > 0) & (d[v, u - s] > 0) & (d[v + s, u] > 0) & (d[v - s, u] > 0) & (norm > 0)
        # a step across a depth edge is much longer than the pixel footprint
        reach = 4.0 * s * c / self.K.fx + 0.02
        ok &= (np.einsum("ij,ij->i", dx, dx) < reach * reach * 4) & (np.einsum("ij,ij->i", dy, dy) < reach * reach * 4)
        return np.where(ok[:, None], n / np.maximum(norm, 1e-12)[:, None], np.float32(0.0)).astype(np.float32)


def _prepare(frame: Frame, cfg: GeometricConfig) -> _DepthView:
    d, noise = denoise_depth(frame.depth)
    d[(d < cfg.min_depth) | (d > cfg.max_depth)] = 0.0
    K = frame.depth_intrinsics
    rx = ((np.arange(K.width) - K.cx) / K.fx).astype(np.float32)
    ry = ((np.arange(K.height) - K.cy) / K.fy).astype(np.float32)
    pose = np.asarray(frame.pose, np.float64)
    R, t = pose[:3, :3].astype(np.float32), pose[:3, 3].astype(np.float32)
    # world = R @ (rx*z, ry*z, z) + t, written per axis to stay in float32 without (h, w, 3) temporaries
    xyz = np.empty(d.shape + (3,), np.float32)
    for a in range(3):
        xyz[..., a] = (R[a, 0] * rx[None, :] + R[a, 1] * ry[:, None] + R[a, 2]) * d + t[a]
    return _DepthView(d, xyz, K, pose, float(noise))


def _grow_box(box: tuple[int, int, int, int], share: float, min_px: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    mx = max(int(round(share * (x2 - x1))), min_px)
    my = max(int(round(share * (y2 - y1))), min_px)
    return x1 - mx, y1 - my, x2 + mx, y2 + my


def _open_sides(box: tuple[int, int, int, int], w: int, h: int, cfg: GeometricConfig) -> tuple[bool, bool, bool, bool]:
    """(left, top, right, bottom): which box sides lie on or next to the image border, where the object may
    go on out of the picture. "Next to" allows for a loose box (a detector's, or a jittered one)."""
    x1, y1, x2, y2 = box
    sx = min(cfg.border_slack * (x2 - x1), cfg.border_slack_max * w) + 2
    sy = min(cfg.border_slack * (y2 - y1), cfg.border_slack_max * h) + 2
    return x1 <= sx, y1 <= sy, x2 >= w - sx, y2 >= h - sy


def _ring(box: tuple[int, int, int, int], w: int, h: int, cfg: GeometricConfig) -> np.ndarray:
    """Pixels of a band around an integer depth-pixel box (the background the box sits on); none on the
    open sides (see :func:`_open_sides`), where what lies between the box and the border may be the object."""
    x1, y1, x2, y2 = _grow_box(box, cfg.ring_inner, 1)
    left, top, right, bottom = _open_sides(box, w, h, cfg)
    inner = box_mask((0 if left else x1, 0 if top else y1, w if right else x2, h if bottom else y2), w, h)
    outer = box_mask(_grow_box(box, cfg.ring_outer, cfg.ring_min_px + 1), w, h)
    return outer & ~inner


Plane = tuple[np.ndarray, float]  # unit normal n and offset d with n . x + d = 0 (world frame)


def _on_plane(pts: np.ndarray, z: np.ndarray, plane: Plane, view: _DepthView, cfg: GeometricConfig,
              normals: np.ndarray | None = None) -> np.ndarray:
    """Which of the points (seen at depth ``z`` in ``view``) lie on ``plane`` within the depth tolerance and,
    where their surface normal is known, face the same way (so that a plane does not slice through an object
    that merely crosses it)."""
    n, off = plane
    dist = np.abs(_dot(pts, n) + np.float32(off))
    tol = view.tol(z, cfg, k=cfg.plane_k)
    on = dist <= tol
    if normals is not None:
        c = np.abs(_dot(normals, n))
        known = np.any(normals != 0, axis=1)
        # right at an object's foot the normal mixes both surfaces: very close to the plane is enough there
        on &= ~known | (c >= cfg.plane_cos) | (dist <= 0.5 * tol)
    return on


def _ring_planes(view: _DepthView, ring: np.ndarray, cfg: GeometricConfig) -> list[Plane]:
    """Planes each holding a good share of the ring's points (RANSAC, Open3D)."""
    import open3d as o3d  # lazy

    sel = ring & (view.depth > 0)
    if int(sel.sum()) < 50:
        return []
    pts = view.xyz[sel].astype(np.float64)
    z = view.depth[sel]
    if len(pts) > 6000:
        pick = np.random.default_rng(0).choice(len(pts), 6000, replace=False)
        pts, z = pts[pick], z[pick]
    thr = float(np.median(view.tol(z, cfg, k=2.0)))
    o3d.utility.random.seed(0)  # reproducible RANSAC
    planes: list[Plane] = []
    need = max(cfg.plane_share * len(pts), 30)
    rest = pts
    for _ in range(cfg.max_planes):
        if len(rest) < need:
            break
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rest))
        model, inliers = pc.segment_plane(distance_threshold=thr, ransac_n=3, num_iterations=200)
        if len(inliers) < need:
            break
        n = np.asarray(model[:3], np.float64)
        norm = np.linalg.norm(n)
        n, d = _refine_plane(rest, n / norm, float(model[3]) / norm, thr)
        planes.append((n, d))
        keep = np.abs(_dot(rest, n) + d) > thr
        keep[inliers] = False
        rest = rest[keep]
    return planes


def _dot(pts: np.ndarray, v) -> np.ndarray:
    """``pts @ v`` for (n, 3) points, written out per axis: BLAS is slow for three-wide matrices and, on a
    loaded machine, its threads make it slower still; this stays in the points' dtype."""
    a, b, c = (float(x) for x in v)
    return pts[:, 0] * a + pts[:, 1] * b + pts[:, 2] * c


def _refine_plane(pts: np.ndarray, n: np.ndarray, d: float, thr: float) -> Plane:
    """Least-squares refit of a RANSAC plane on its inliers (twice, the second time with half the
    threshold): three noisy points tilt a plane, which over a table top's width is centimetres."""
    for t in (thr, 0.5 * thr):
        sel = np.abs(_dot(pts, n) + d) <= t
        if sel.sum() < 10:
            break
        q = pts[sel]
        c = q.mean(axis=0)
        m = np.linalg.svd(q - c, full_matrices=False)[2][-1]
        n = m if m @ n >= 0 else -m
        d = float(-n @ c)
    return n, d


def _bbox_iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# ---------------------------------------------------------------------------------------------- key frustum
@dataclass(frozen=True, eq=False)
class _Frustum:
    """Where the boxed object can be: the key box's viewing frustum (``inner``, with a small margin), behind
    what the key frame saw; ``outer`` adds a ring around it, where the background shows (a surface that
    goes on into the ring is background, an object that does is merged with something)."""

    K: Intrinsics
    R: np.ndarray  # (3, 3) float32 world -> key camera
    t: np.ndarray  # (3,) float32
    inner: tuple[float, float, float, float]  # u_lo, v_lo, u_hi, v_hi in key depth pixels
    outer: tuple[float, float, float, float]
    z_far: float
    view: _DepthView  # the key frame (for carving)
    cfg: GeometricConfig

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        R, t = self.R, self.t
        z = _dot(pts, R[2]) + t[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.K.fx * (_dot(pts, R[0]) + t[0]) / z + self.K.cx
            v = self.K.fy * (_dot(pts, R[1]) + t[1]) / z + self.K.cy
        return u, v, z

    def allowed(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(in the outer frustum, in the inner one) for world points."""
        u, v, z = self.project(pts)
        ok = (z > self.cfg.min_depth) & (z <= self.z_far)
        u_lo, v_lo, u_hi, v_hi = self.outer
        ok &= (u >= u_lo) & (u < u_hi) & (v >= v_lo) & (v < v_hi)
        # carve: the key frame saw through the space in front of its depth
        W, H = self.K.width, self.K.height
        idx = np.flatnonzero(ok & (u >= -0.5) & (u < W - 0.5) & (v >= -0.5) & (v < H - 0.5))
        cols = np.rint(u[idx]).astype(np.int64)
        rows = np.rint(v[idx]).astype(np.int64)
        measured = self.view.depth[rows, cols]
        carved = (measured > 0) & (z[idx] < measured - 1.5 * self.view.tol(measured, self.cfg))
        ok[idx[carved]] = False
        i_lo, j_lo, i_hi, j_hi = self.inner
        inner = ok & (u >= i_lo) & (u < i_hi) & (v >= j_lo) & (v < j_hi)
        return ok, inner


def _frustum(view: _DepthView, dbox, cand: np.ndarray, cfg: GeometricConfig) -> _Frustum:
    K = view.K
    x1, y1, x2, y2 = dbox
    bw, bh = x2 - x1, y2 - y1

    def bounds(share: float, extra: float) -> tuple[float, float, float, float]:
        # a box side on the image border does not bound the object: open it (far, but not without end)
        mx, my = share * bw + extra, share * bh + extra
        ox, oy = cfg.open_border_share * bw, cfg.open_border_share * bh
        left, top, right, bottom = _open_sides(dbox, K.width, K.height, cfg)
        return (x1 - 0.5 - (ox if left else mx), y1 - 0.5 - (oy if top else my),
                x2 - 0.5 + (ox if right else mx), y2 - 0.5 + (oy if bottom else my))

    z = view.depth[cand]
    z_front, z_back = (float(np.percentile(z, 5)), float(np.percentile(z, 95))) if len(z) else (1.0, 1.0)
    size = max(bw / K.fx, bh / K.fy) * float(np.median(z) if len(z) else 1.0)
    z_far = min(max(z_back, z_front + cfg.behind_factor * size) + 0.05, cfg.max_depth)
    Rw = view.pose[:3, :3].T  # world -> camera
    tw = -Rw @ view.pose[:3, 3]
    return _Frustum(K, Rw.astype(np.float32), tw.astype(np.float32), bounds(cfg.frustum_margin, 1.0),
                    bounds(cfg.ring_outer, cfg.ring_min_px + 1.0), z_far, view, cfg)


# ---------------------------------------------------------------------------------------------- voxel grid
@dataclass(frozen=True, eq=False)
class _Grid:
    """A dense voxel grid over the frustum's world bounding box."""

    origin: np.ndarray  # (3,) float32
    voxel: float
    dims: tuple[int, int, int]

    def cells(self, pts: np.ndarray) -> np.ndarray:
        """Linear cell index of each point, -1 outside the grid."""
        k = np.floor((pts - self.origin) / np.float32(self.voxel)).astype(np.int64)
        d = self.dims
        ok = (k >= 0).all(axis=1) & (k[:, 0] < d[0]) & (k[:, 1] < d[1]) & (k[:, 2] < d[2])
        lin = (k[:, 0] * d[1] + k[:, 1]) * d[2] + k[:, 2]
        return np.where(ok, lin, -1)

    @property
    def size(self) -> int:
        return int(np.prod(self.dims))


def _grid_for(fr: _Frustum, cfg: GeometricConfig) -> _Grid:
    """Grid covering the outer frustum's eight corners (near at min_depth, far at z_far)."""
    u_lo, v_lo, u_hi, v_hi = fr.outer
    K = fr.K
    corners = []
    for z in (cfg.min_depth, fr.z_far):
        for u in (u_lo, u_hi):
            for v in (v_lo, v_hi):
                corners.append([(u - K.cx) / K.fx * z, (v - K.cy) / K.fy * z, z])
    cam = np.asarray(corners)
    world = (cam - fr.t.astype(np.float64)) @ fr.R.astype(np.float64)  # inverse of R x + t
    lo, hi = world.min(axis=0) - 0.05, world.max(axis=0) + 0.05
    voxel = cfg.voxel
    while np.prod(np.ceil((hi - lo) / voxel)) > cfg.max_grid_cells:
        voxel *= 1.25
    dims = tuple(int(v) for v in np.ceil((hi - lo) / voxel).astype(np.int64) + 1)
    return _Grid(lo.astype(np.float32), voxel, dims)


def _components(occupied: np.ndarray, cfg: GeometricConfig, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """(piece label, group label) grids: pieces are 3D-connected with small gaps bridged; pieces in one group
    come within about ``join_distance`` of each other."""
    from scipy import ndimage

    full = np.ones((3, 3, 3), bool)
    bridged = ndimage.binary_dilation(occupied, full, iterations=cfg.bridge_voxels) if cfg.bridge_voxels else occupied
    pieces, _ = ndimage.label(bridged, full)
    pieces = np.where(occupied, pieces, 0)
    # groups on a grid twice as coarse (cheap), dilated to cover the join distance
    d = occupied.shape
    pad = [(0, (-s) % 2) for s in d]
    coarse = np.pad(occupied, pad).reshape(-1, 2, (d[1] + pad[1][1]) // 2, 2, (d[2] + pad[2][1]) // 2, 2)
    coarse = coarse.reshape(coarse.shape[0], 2, coarse.shape[2], 2, coarse.shape[4], 2).any(axis=(1, 3, 5))
    steps = max(int(np.ceil(cfg.join_distance / (4 * voxel))), 1)  # dilating both sides halves the reach
    coarse_groups, _ = ndimage.label(ndimage.binary_dilation(coarse, full, iterations=steps), full)
    groups = coarse_groups.repeat(2, 0).repeat(2, 1).repeat(2, 2)[: d[0], : d[1], : d[2]]
    return pieces, np.where(occupied, groups, 0)


def _select(labels: np.ndarray, groups: np.ndarray, u: np.ndarray, v: np.ndarray, box, cfg: GeometricConfig) -> list[int]:
    """Labels of the pieces whose key-frame pixels (``u, v`` with ``labels``) best fill ``box``; only pieces
    of one group (close in 3D) are combined."""
    if len(labels) == 0:
        return []
    counts = np.bincount(labels)
    box_area = (box[2] - box[0]) * (box[3] - box[1])
    ids = np.flatnonzero(counts >= max(cfg.min_piece_px, 0.002 * box_area))
    ids = ids[ids > 0]
    if len(ids) == 0:
        return []
    ids = ids[np.argsort(-counts[ids])][:32]
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], ids, "left")
    ends = np.searchsorted(labels[order], ids, "right")
    boxes, group = [], []
    for i, s, e in zip(ids, starts, ends):
        sel = order[s:e]
        boxes.append((int(u[sel].min()), int(v[sel].min()), int(u[sel].max()) + 1, int(v[sel].max()) + 1))
        group.append(int(np.bincount(groups[sel]).argmax()))

    def union_box(a, b):
        return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))

    best, best_score = [], -1.0
    starts = [k for k in range(len(ids)) if counts[ids[k]] >= cfg.min_join_share * box_area][:5] or [0]
    for start in starts:
        chosen, ub = {start}, boxes[start]
        iou = _bbox_iou(ub, box)
        while True:
            pick, pick_gain = None, 0.005
            for k in range(len(ids)):
                # a speck at the box's edge must not stretch the fit: added pieces need some size
                if k in chosen or group[k] != group[start] or counts[ids[k]] < cfg.min_join_share * box_area:
                    continue
                gain = _bbox_iou(union_box(ub, boxes[k]), box) - iou
                if gain > pick_gain:
                    pick, pick_gain = k, gain
            if pick is None:
                break
            chosen.add(pick)
            ub = union_box(ub, boxes[pick])
            iou = _bbox_iou(ub, box)
        # drop pieces the fit does not need (a chair standing in front of the boxed desk)
        for k in sorted(chosen, key=lambda k: counts[ids[k]]):
            if len(chosen) == 1:
                break
            rest = [boxes[j] for j in chosen if j != k]
            rb = rest[0]
            for b in rest[1:]:
                rb = union_box(rb, b)
            if _bbox_iou(rb, box) >= iou - 0.005:
                chosen.discard(k)
                ub, iou = rb, _bbox_iou(rb, box)
        # how much of the box the pieces fill counts too: small pieces at its edges can span a loose box
        # better than the object that fills it
        area = sum(int(counts[ids[k]]) for k in chosen)
        score = iou + cfg.fill_weight * min(area / box_area, 0.5)
        if score > best_score:
            best, best_score = sorted(int(ids[k]) for k in chosen), score
    return best


def _lab(rgb: np.ndarray) -> np.ndarray:
    import cv2  # lazy

    return cv2.cvtColor(rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)


def _colour_object(frame: Frame, view: _DepthView, dbox, ring_px: np.ndarray, cfg: GeometricConfig) -> np.ndarray:
    """Pixels of ``dbox`` on the background plane whose colour differs from the plane's own colour in the
    ring around the box (a picture on a wall, a rug on the floor), holes filled; depth resolution."""
    import cv2  # lazy
    from scipy import ndimage

    ci, di = frame.color_intrinsics, frame.depth_intrinsics
    if ci == di:
        rgb = frame.color
    else:  # the colour seen along each depth pixel's ray
        rows = np.clip(np.rint((np.arange(di.height) - di.cy) / di.fy * ci.fy + ci.cy), 0, ci.height - 1).astype(np.intp)
        cols = np.clip(np.rint((np.arange(di.width) - di.cx) / di.fx * ci.fx + ci.cx), 0, ci.width - 1).astype(np.intp)
        rgb = frame.color[rows][:, cols]
    rgb = cv2.GaussianBlur(rgb, (3, 3), 0)
    x1, y1, x2, y2 = dbox
    inside = np.zeros_like(ring_px)
    inside[y1:y2, x1:x2] = True
    if ring_px.sum() < 30:
        return np.zeros_like(ring_px)
    ref = _lab(rgb[ring_px])
    centre = np.median(ref, axis=0)
    spread = np.percentile(np.linalg.norm(ref - centre, axis=1), 90)
    cand = inside & (view.depth > 0)
    lab = _lab(rgb[cand])
    far = np.linalg.norm(lab - centre, axis=1) > max(cfg.colour_distance, 1.5 * spread)
    fg = np.zeros_like(cand)
    fg[cand] = far
    fg = cv2.morphologyEx(fg.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    n, labels = cv2.connectedComponents(fg.view(np.uint8), connectivity=8)
    if n <= 1:
        return fg
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    keep = np.flatnonzero(counts >= max(cfg.min_piece_px, 0.01 * cand.sum()))
    fg = np.isin(labels, keep)
    return ndimage.binary_fill_holes(fg) & cand


# ---------------------------------------------------------------------------------------------- the tracker
@dataclass(frozen=True, eq=False)
class _Segmentation:
    """The 3D object found for one prompt."""

    masks: dict[int, np.ndarray]  # position -> depth-resolution mask
    notes: dict[int, str]
    info: dict[str, Any]


class GeometricTracker:
    """Weight-free tracker from depth and poses (see the module docstring)."""

    name = "geometric"

    def __init__(self, config: GeometricConfig | None = None, **overrides):
        base = config or GeometricConfig()
        self.config = GeometricConfig(**{**asdict(base), **overrides}) if overrides else base

    def segment_key_frame(self, frame: Frame, box: Sequence[float]) -> tuple[np.ndarray, dict[str, Any], str]:
        """The object in ``box`` (colour pixels) from this one frame: (depth-resolution mask, facts, note
        saying why the mask is empty when it is). Up is taken as the image's up direction."""
        up = -np.asarray(frame.pose, np.float64)[:3, 1] if frame.pose_valid else np.array([0.0, 0.0, 1.0])
        seg = self._segment({0: frame}.__getitem__, 0, [0], box, up, None)
        return seg.masks.get(0, np.zeros(frame.depth.shape, bool)), seg.info, seg.notes.get(0, "")

    def track(self, scene: "Scene", positions: Sequence[int], key_position: int, box: Sequence[float]) -> TrackResult:
        start = time.perf_counter()
        positions = check_positions(scene, positions, key_position)
        ci = scene.color_intrinsics
        cbox = check_box(box, ci.width, ci.height)
        poses = scene.poses[[p for p in positions if scene.valid_poses[p]]]
        up = up_direction(poses)
        cam_height = float(np.median(poses[:, :3, 3] @ up)) if len(poses) else None
        # the key frame must be read (it holds the prompt); any other frame that cannot be is passed over
        load = lambda p: scene.frame(p) if p == key_position else scene.frame_or_none(p)  # noqa: E731
        seg = self._segment(load, key_position, positions, cbox, up, cam_height)
        masks = []
        for p in positions:
            dmask = seg.masks.get(p)
            note = seg.notes.get(p, "")
            if dmask is None or not dmask.any():
                masks.append(FrameMask.from_dense(p, int(scene.frame_ids[p]), np.zeros((ci.height, ci.width), bool),
                                                  0.0, note or "object not seen"))
                continue
            cmask = depth_mask_to_color(dmask, ci, scene.depth_intrinsics)
            masks.append(FrameMask.from_dense(p, int(scene.frame_ids[p]), cmask, 1.0, note))
        return TrackResult(key_position, cbox, tuple(masks), self.name, time.perf_counter() - start, seg.info)

    # ------------------------------------------------------------------ the work
    def _segment(self, load, key_position: int, positions: Sequence[int], box, up: np.ndarray,
                 cam_height: float | None) -> _Segmentation:
        """``load(position) -> Frame | None`` (None: unreadable, skipped); ``positions`` include the key frame."""
        from scipy import ndimage

        cfg = self.config
        key = load(key_position)
        ci, di = key.color_intrinsics, key.depth_intrinsics
        cbox = check_box(box, ci.width, ci.height)
        info: dict[str, Any] = {}
        if not key.pose_valid:
            return _Segmentation({}, {key_position: "the key frame has no valid pose"}, info)
        inside = color_mask_to_depth(box_mask(cbox, ci.width, ci.height), ci, di)
        if not inside.any():
            return _Segmentation({}, {key_position: "the box covers no depth pixel"}, info)
        view = _prepare(key, cfg)
        rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
        dbox = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        valid_in = inside & (view.depth > 0)
        if valid_in.sum() < cfg.min_piece_px:
            return _Segmentation({}, {key_position: "no valid depth inside the box"}, info)
        up = np.asarray(up, np.float64) / np.linalg.norm(up)

        # ---- the key frame: local background planes in a ring around the box; the object's depth range
        ring = _ring(dbox, di.width, di.height, cfg)
        planes = _ring_planes(view, ring, cfg)[:8]
        v_in, u_in = np.nonzero(valid_in)
        pts_in, z_in, n_in = view.xyz[v_in, u_in], view.depth[v_in, u_in], view.normals_at(v_in * di.width + u_in)
        on_any = [_on_plane(pts_in, z_in, pl, view, cfg, n_in) for pl in planes]
        off = ~np.any(on_any, axis=0) if on_any else np.ones(len(v_in), bool)
        cand = np.zeros_like(valid_in)
        if off.sum() >= 0.05 * len(v_in):
            cand[v_in[off], u_in[off]] = True
        else:
            cand = valid_in
        fr = _frustum(view, dbox, cand, cfg)
        grid = _grid_for(fr, cfg)

        # ---- lift every frame into the grid, noting which points lie on which local background plane,
        # and sample every frame sparsely for the room's floor and walls
        frames: dict[int, _FramePoints] = {}
        notes: dict[int, str] = {}
        up32 = up.astype(np.float32)
        s_pts: list[np.ndarray] = []
        s_nrm: list[np.ndarray] = []
        cams: list[np.ndarray] = []

        def add(position: int, v: _DepthView) -> None:
            sp, sn = _sample(v, cfg)
            s_pts.append(sp)
            s_nrm.append(sn)
            cams.append(v.pose[:3, 3])
            d = v.depth.ravel()
            flat = np.flatnonzero(d > 0)
            pts = v.xyz.reshape(-1, 3)[flat]
            ok, inner = fr.allowed(pts)
            flat, pts, inner = flat[ok], pts[ok], inner[ok]
            z, nn = d[flat], v.normals_at(flat)
            bits = np.zeros(len(flat), np.uint8)
            for k, pl in enumerate(planes):
                bits |= _on_plane(pts, z, pl, v, cfg, nn).astype(np.uint8) << k
            cells = grid.cells(pts)
            keep = cells >= 0
            frames[position] = _FramePoints(
                flat[keep].astype(np.int32), cells[keep], bits[keep], inner[keep],
                (_dot(nn, up32) >= cfg.top_normal_cos)[keep], v.depth.shape, pts[keep], z[keep], v,
            )

        add(key_position, view)
        others = [p for p in positions if p != key_position]
        for p in others:
            frame = load(p)
            if frame is None:
                notes[p] = "unreadable frame"
            elif not frame.pose_valid:
                notes[p] = "invalid pose"
            elif frame.depth_intrinsics != di:
                notes[p] = "other depth camera"
            else:
                add(p, _prepare(frame, cfg))
        used = len(frames)

        # ---- the room: floor and walls from the samples of all frames; what lies on or beyond them goes
        all_pts, all_nrm = np.concatenate(s_pts), np.concatenate(s_nrm)
        floor = _floor_plane(all_pts, all_nrm, up, cam_height, cfg)
        walls = _walls(all_pts, all_nrm, up, np.asarray(cams), cfg)
        structure = ([_Surface(floor[0], floor[1], spread=floor[2])] if floor is not None else []) + walls
        level = floor[0] if floor is not None else up
        floor = floor[:2] if floor is not None else None
        del all_pts, all_nrm
        s_pts.clear()  # the samples are no longer needed (the lists stay: add() refers to them)
        s_nrm.clear()
        for fp in frames.values():
            fp.room = np.zeros(len(fp.flat), bool)
            for surface in structure:
                fp.room |= _behind_structure(fp.pts, fp.z, surface, fp.view, cfg)
            fp.pts = fp.z = fp.view = None  # only needed for that

        # ---- a local plane is background where it is one surface with what the ring shows of it
        full = np.ones((3, 3, 3), bool)
        background = []
        for k in range(len(planes)):
            on = [(fp.bits >> k) & 1 == 1 for fp in frames.values()]
            cells_k = np.concatenate([fp.cells[o & ~fp.room] for fp, o in zip(frames.values(), on)])
            ring_k = np.concatenate([fp.cells[o & ~fp.room & ~fp.inner] for fp, o in zip(frames.values(), on)])
            occ = np.zeros(grid.size, bool)
            occ[cells_k] = True
            lab, _ = ndimage.label(occ.reshape(grid.dims), full)
            lab = lab.reshape(-1)
            touching = np.unique(lab[ring_k])
            background.append(np.isin(lab, touching[touching > 0]))
        # where each local plane is background (to tell whether it really lies under the object)
        plane_cells = [np.flatnonzero(bg) for bg in background]
        support = np.zeros(grid.size, np.uint16)
        tops = np.zeros(grid.size, np.uint16)
        for fp in frames.values():
            gone = fp.room.copy()
            for k, bg in enumerate(background):
                gone |= ((fp.bits >> k) & 1 == 1) & bg[fp.cells]
            fp.keep = ~gone
            # frames, not points, count: one close view must not outvote many
            support[np.unique(fp.cells[fp.keep])] += 1
            tops[np.unique(fp.cells[fp.keep & fp.up])] += 1
        del background

        kp = frames[key_position]
        in_box = inside.ravel()[kp.flat]
        flat_mode = (kp.keep & in_box).sum() < 0.05 * max(in_box.sum(), 1)
        if flat_mode:
            # nothing but background surface in the box: an object lying flat on it (a picture on a wall);
            # its colour tells it from the surface, and its voxels are those its pixels fall in
            seed = self._flat_seed(key, view, dbox, ring, valid_in, planes, structure)
            if seed.sum() < cfg.min_piece_px:
                return _Segmentation({}, {key_position: "no object surface found inside the box"}, info)
            chosen = np.zeros(grid.size, bool)
            chosen[kp.cells[seed.ravel()[kp.flat]]] = True
            for fp in frames.values():
                fp.keep = np.ones(len(fp.flat), bool)
            pieces_used = 1
        else:
            # one view is enough for clean depth (the far side of an object is often seen once); noisy
            # depth needs a second view to tell surface from noise
            min_support = cfg.min_support if used >= 3 and view.noise > cfg.clean_noise else 1
            occupied = support >= min_support
            # connectivity counts only inside the box's frustum: objects do not reach out of their box, and
            # paths through the ring around it (a table's edge, the floor) would join the boxed object to
            # its neighbours
            occ = np.flatnonzero(occupied)
            u, v, _ = fr.project(_cell_centres(grid, occ).astype(np.float32))
            i_lo, j_lo, i_hi, j_hi = fr.inner
            occupied[occ[~((u >= i_lo) & (u < i_hi) & (v >= j_lo) & (v < j_hi))]] = False
            if floor is not None:
                residue = _floor_residue(occupied, grid, floor, cfg)
                occupied[residue] = False
                info["floor_residue_voxels"] = int(len(residue))
            pieces, groups = _components(occupied.reshape(grid.dims), cfg, grid.voxel)
            pieces, groups = pieces.reshape(-1), groups.reshape(-1)
            lab = pieces[kp.cells]
            have = kp.keep & (lab > 0)
            v_k, u_k = np.divmod(kp.flat[have], di.width)
            selected = _select(lab[have], groups[kp.cells[have]], u_k, v_k, dbox, cfg)
            if not selected:
                return _Segmentation({}, {**notes, key_position: "no object surface found inside the box"}, info)
            lut = np.zeros(int(pieces.max()) + 1, bool)
            lut[selected] = True
            chosen = lut[pieces]
            seen = kp.cells[have][lut[lab[have]]]  # the chosen voxels the key frame sees
            chosen = _cut_under_supports(chosen, seen, grid, [pl for pl in planes if abs(pl[0] @ level) > 0.9], level)
            supported_by = [(pl, cells) for pl, cells in zip(planes, plane_cells) if abs(pl[0] @ level) > 0.9]
            supported_by += [(floor, None)] if floor is not None else []
            chosen, added = _add_supports(chosen, occupied, grid, fr, level, supported_by, cfg)
            info["support_voxels"] = added
            del pieces, groups
            key_cells = kp.cells[have]
            chosen, dropped = _split_supported(chosen, support, tops, grid, level, key_cells, u_k, v_k, dbox, cfg)
            info["dropped_on_top"] = dropped
            pieces_used = len(selected)
        masks: dict[int, np.ndarray] = {}
        for p, fp in frames.items():
            m = np.zeros(fp.shape[0] * fp.shape[1], bool)
            m[fp.flat[fp.keep & fp.inner & chosen[fp.cells]]] = True
            masks[p] = m.reshape(fp.shape)
        centres = _cell_centres(grid, np.flatnonzero(chosen))
        info.update(
            masks_3d_consistent=True,  # every mask pixel lies in the object's voxels: no outliers to remove
            up=[round(float(x), 5) for x in up],
            floor=None if floor is None else _plane_json(floor),
            walls=[_plane_json(w.plane) for w in walls],
            room_spread_m=[round(x.spread, 4) for x in structure],
            background_planes=len(planes),
            flat_on_plane=bool(flat_mode),
            depth_noise=round(view.noise, 5),
            voxel=round(grid.voxel, 4),
            object_voxels=int(len(centres)),
            pieces=pieces_used,
            frames_lifted=used,
            contact_planes=_contacts(centres, planes + [x.plane for x in structure], level, grid.voxel, cfg),
        )
        return _Segmentation(masks, notes, info)

    def _flat_seed(self, key: Frame, view: _DepthView, dbox, ring, valid_in, planes, structure) -> np.ndarray:
        """Key-frame pixels of an object lying flat on the background surface that fills the box."""
        cfg = self.config
        v_in, u_in = np.nonzero(valid_in)
        w = view.depth.shape[1]
        pts, z, nn = view.xyz[v_in, u_in], view.depth[v_in, u_in], view.normals_at(v_in * w + u_in)
        tests = [lambda p, zz, n, pl=pl: _on_plane(p, zz, pl, view, cfg, n) for pl in planes]
        tests += [lambda p, zz, n, pl=pl: _behind_structure(p, zz, pl, view, cfg) for pl in structure]
        if not tests:
            return np.zeros_like(valid_in)
        host = int(np.argmax([t(pts, z, nn).sum() for t in tests]))
        rv, ru = np.nonzero(ring & (view.depth > 0))
        on_host = tests[host](view.xyz[rv, ru], view.depth[rv, ru], view.normals_at(rv * w + ru))
        ring_host = np.zeros_like(valid_in)
        ring_host[rv[on_host], ru[on_host]] = True
        return _colour_object(key, view, dbox, ring_host, cfg) & valid_in


class _FramePoints:
    """One frame's points in the grid (depth pixels with their voxel and background facts)."""

    __slots__ = ("flat", "cells", "bits", "inner", "up", "shape", "pts", "z", "view", "room", "keep")

    def __init__(self, flat, cells, bits, inner, up, shape, pts, z, view):
        self.flat = flat  # (n,) int32 flat depth-pixel index
        self.cells = cells  # (n,) int64 voxel
        self.bits = bits  # (n,) uint8 bit k: on local plane k
        self.inner = inner  # (n,) bool inside the key box's frustum (not only in the ring around it)
        self.up = up  # (n,) bool an upward-facing surface
        self.shape = shape
        self.pts, self.z, self.view = pts, z, view  # kept until the room is known
        self.room = np.zeros(len(flat), bool)  # on (or beyond) the floor or a wall
        self.keep = np.ones(len(flat), bool)  # not background


def _cut_under_supports(chosen: np.ndarray, seen: np.ndarray, grid: "_Grid", surfaces: list[Plane],
                        level: np.ndarray) -> np.ndarray:
    """What the key frame sees of the object stands on a background table top: nothing under that top
    (a bin under the table, hidden behind it from the key view) belongs to the object."""
    if len(seen) == 0 or not surfaces:
        return chosen
    S = np.flatnonzero(chosen)
    c_seen = _cell_centres(grid, np.unique(seen))
    c_all = _cell_centres(grid, S)
    out = chosen.copy()
    for n, off in surfaces:
        if n @ level < 0:
            n, off = -n, -off
        d_seen = _dot(c_seen, n) + off
        if np.median(d_seen) > 0 and np.mean(d_seen > -grid.voxel) >= 0.95:
            out[S[_dot(c_all, n) + off < -1.5 * grid.voxel]] = False
    return out


def _add_supports(chosen: np.ndarray, occupied: np.ndarray, grid: "_Grid", fr: "_Frustum", level: np.ndarray,
                  surfaces: list[tuple[Plane, np.ndarray | None]], cfg: GeometricConfig) -> tuple[np.ndarray, int]:
    """An object must stand on something: when the chosen voxels neither reach the floor nor rest on a
    background surface seen under them, what lies in the column right under them and ends just below them
    is their hidden legs, pole or base (often seen only from views where the top is not), and joins.

    The column is clipped to the object's footprint, so a sofa touching a table's legs stays out.
    Returns the new chosen grid and the number of voxels added."""
    from scipy import ndimage

    S = np.flatnonzero(chosen)
    if len(S) == 0:
        return chosen, 0
    c = _cell_centres(grid, S)
    h = _dot(c, level)
    bottom = float(np.percentile(h, 1))
    # a horizontal frame: two axes across ``level``
    a1 = np.cross(level, [1.0, 0.0, 0.0] if abs(level[0]) < 0.9 else [0.0, 1.0, 0.0])
    a1 /= np.linalg.norm(a1)
    a2 = np.cross(level, a1)
    x1, x2 = _dot(c, a1), _dot(c, a2)
    pad = 0.05
    lo1, hi1, lo2, hi2 = x1.min() - pad, x1.max() + pad, x2.min() - pad, x2.max() + pad
    for (n, off), cells in surfaces:
        dist = _dot(c, n) + off
        if not (np.median(dist) > 0 and np.percentile(dist, 1) <= cfg.contact_gap + grid.voxel):
            continue
        if cells is None:  # the floor is everywhere
            return chosen, 0
        # a local plane supports the object only where it is seen under it
        pc = _cell_centres(grid, cells)
        p1, p2 = _dot(pc, a1), _dot(pc, a2)
        if np.count_nonzero((p1 >= lo1) & (p1 <= hi1) & (p2 >= lo2) & (p2 <= hi2)) >= 3:
            return chosen, 0
    cand = np.flatnonzero(occupied & ~chosen)
    if len(cand) == 0:
        return chosen, 0
    oc = _cell_centres(grid, cand)
    oh, o1, o2 = _dot(oc, level), _dot(oc, a1), _dot(oc, a2)
    u, v, _ = fr.project(oc.astype(np.float32))
    i_lo, j_lo, i_hi, j_hi = fr.inner
    col = (u >= i_lo) & (u < i_hi) & (v >= j_lo) & (v < j_hi)
    col &= (o1 >= lo1) & (o1 <= hi1) & (o2 >= lo2) & (o2 <= hi2) & (oh <= bottom + pad)
    cand, oh = cand[col], oh[col]
    if len(cand) == 0:
        return chosen, 0
    idx = np.stack(np.unravel_index(cand, grid.dims), axis=1)
    lo = idx.min(axis=0)
    g = np.zeros(tuple(idx.max(axis=0) - lo + 1), bool)
    g[tuple((idx - lo).T)] = True
    lab, n = ndimage.label(g, np.ones((3, 3, 3), bool))
    comp = lab[tuple((idx - lo).T)]
    top = np.full(n + 1, -np.inf)
    np.maximum.at(top, comp, oh)
    take = np.isin(comp, np.flatnonzero(top >= bottom - cfg.support_reach))
    out = chosen.copy()
    out[cand[take]] = True
    return out, int(take.sum())


def _split_supported(chosen: np.ndarray, support: np.ndarray, tops: np.ndarray, grid: "_Grid", level: np.ndarray,
                     key_cells: np.ndarray, u: np.ndarray, v: np.ndarray, box, cfg: GeometricConfig):
    """Cut off what stands on the object's own horizontal surfaces (a monitor on a desk, a lamp on a
    nightstand) unless the key frame's box asks for it (a chair's back above its seat does).

    A level is a height where many of the object's voxels are upward-facing surface; without a slab around
    it, the pieces lying wholly above it are kept only if they widen the box fit of the rest.
    Returns the new chosen-voxel grid and how many pieces were cut."""
    from scipy import ndimage

    S = np.flatnonzero(chosen)
    if len(S) < 50:
        return chosen, 0
    vox = grid.voxel
    h = _dot(_cell_centres(grid, S), level)
    top = tops[S] >= np.maximum(1, 0.5 * support[S])
    if top.sum() < 12:
        return chosen, 0
    ht = h[top]
    edges = np.arange(ht.min(), ht.max() + 2 * vox, vox)
    hist = np.histogram(ht, edges)[0]
    strong = (hist >= max(12, 0.15 * top.sum())) & (hist >= np.roll(hist, 1)) & (hist >= np.roll(hist, -1))
    levels = sorted(edges[:-1][strong] + vox / 2, reverse=True)
    d = grid.dims
    idx = np.stack(np.unravel_index(S, d), axis=1)
    axis = int(np.argmax(np.abs(level)))
    if abs(level[axis]) < 0.95:  # the grid is not level: no clean way to take a surface's footprint
        return chosen, 0
    across = [a for a in range(3) if a != axis]
    lo = idx.min(axis=0)
    shape = tuple(idx.max(axis=0) - lo + 1)
    local = idx - lo
    alive = np.ones(len(S), bool)
    key_pos = np.searchsorted(S, key_cells)
    key_pos = np.clip(key_pos, 0, len(S) - 1)
    key_in = S[key_pos] == key_cells
    full = np.ones((3, 3, 3), bool)
    dropped = 0
    for L in levels:
        # the slab is the band around the level, but only over the surface found at that level (its
        # footprint, one voxel wider): a monitor's panel beside a box is not cut at the box's top
        band = alive & (np.abs(h - L) <= 1.5 * vox)
        surf = band & top & (np.abs(h - L) <= vox)
        foot = np.zeros((d[across[0]] + 2, d[across[1]] + 2), bool)
        foot[idx[surf, across[0]] + 1, idx[surf, across[1]] + 1] = True
        foot = ndimage.binary_dilation(foot, np.ones((3, 3), bool))
        over = foot[idx[:, across[0]] + 1, idx[:, across[1]] + 1]
        rest = alive & ~(band & over)
        g = np.zeros(shape, bool)
        g[tuple(local[rest].T)] = True
        lab, n = ndimage.label(ndimage.binary_dilation(g, full, iterations=cfg.bridge_voxels) if cfg.bridge_voxels else g, full)
        comp = np.where(rest, lab[tuple(local.T)], 0)
        if n == 0:
            continue
        low = np.full(n + 1, np.inf)
        np.minimum.at(low, comp[rest], h[rest])
        above = np.flatnonzero(low >= L - 0.5 * vox)
        above = above[above > 0]
        if len(above) == 0:
            continue
        kcomp = np.where(key_in, comp[key_pos], 0)
        kalive = key_in & alive[key_pos]
        is_above = np.isin(kcomp, above)
        base = kalive & ~is_above
        if not base.any():
            continue
        def grow(bb, comps):
            """Greedily add the comps that widen the fit of ``bb``; (kept comps, IoU)."""
            iou = _bbox_iou(bb, box) if bb is not None else 0.0
            kept = []
            for c in comps:
                sel = kalive & (kcomp == c)
                if not sel.any():
                    continue
                cb = (int(u[sel].min()), int(v[sel].min()), int(u[sel].max()) + 1, int(v[sel].max()) + 1)
                nb = cb if bb is None else (min(bb[0], cb[0]), min(bb[1], cb[1]), max(bb[2], cb[2]), max(bb[3], cb[3]))
                if _bbox_iou(nb, box) - iou > 0.01:
                    bb, iou = nb, _bbox_iou(nb, box)
                    kept.append(c)
            return kept, iou

        counts = np.array([np.sum(kalive & (kcomp == c)) for c in above])
        ordered = [c for c, _ in sorted(zip(above, counts), key=lambda t: -t[1])]
        base_bb = (int(u[base].min()), int(v[base].min()), int(u[base].max()) + 1, int(v[base].max()) + 1)
        with_base, iou_base = grow(base_bb, ordered)
        alone, iou_alone = grow(None, ordered)
        if iou_alone > iou_base + 0.05:  # the prompt is what stands on the surface, not what holds it
            keep_comp = np.isin(comp, alone) & rest
            dropped += int(np.count_nonzero(np.unique(comp[alive & ~keep_comp])))
            alive &= keep_comp
            continue
        for c in ordered:
            if c not in with_base:
                alive &= comp != c
                dropped += 1
    out = np.zeros_like(chosen)
    out[S[alive]] = True
    return out, dropped


def _plane_json(plane: Plane) -> list[float]:
    return [round(float(x), 6) for x in (*plane[0], plane[1])]


def _sample(view: _DepthView, cfg: GeometricConfig) -> tuple[np.ndarray, np.ndarray]:
    """About ``structure_samples`` points of a view with known normals, evenly spread."""
    ok = np.flatnonzero(view.depth.ravel() > 0)
    pick = ok[:: max(len(ok) // cfg.structure_samples, 1)]
    nrm = view.normals_at(pick)
    known = np.any(nrm != 0, axis=1)
    return view.xyz.reshape(-1, 3)[pick[known]], nrm[known]


@dataclass(frozen=True, eq=False)
class _Surface:
    """A floor (unbounded) or a wall: its plane, facing into the room, and for a wall its horizontal span
    (an L-shaped room's inner walls must not cut the rest of the room)."""

    normal: np.ndarray
    offset: float
    side: np.ndarray | None = None  # horizontal direction along the wall
    span: tuple[float, float] = (-np.inf, np.inf)
    spread: float = 0.0  # how far its samples from many frames scatter about the plane (see _spread)

    @property
    def plane(self) -> Plane:
        return self.normal, self.offset


def _behind_structure(pts: np.ndarray, z: np.ndarray, surface: _Surface, view: _DepthView, cfg: GeometricConfig) -> np.ndarray:
    """Points on a floor or wall (within the depth tolerance) or beyond it (seen through an opening)."""
    tol = np.maximum(view.tol(z, cfg, k=cfg.plane_k), np.float32(surface.spread))
    out = _dot(pts, surface.normal) + np.float32(surface.offset) <= tol
    if surface.side is not None:
        a = _dot(pts, surface.side)
        out &= (a >= surface.span[0] - 0.1) & (a <= surface.span[1] + 0.1)
    return out


def _walls(pts: np.ndarray, nrm: np.ndarray, up: np.ndarray, cams: np.ndarray, cfg: GeometricConfig) -> list[_Surface]:
    """The room's walls: large vertical planes with the cameras in front and next to nothing seen behind
    them (a cabinet's front has the wall behind it; a wall has nothing behind it but what an opening shows)."""
    import open3d as o3d  # lazy

    vertical = np.abs(_dot(nrm, up)) < 0.25
    rest = pts[vertical].astype(np.float64)
    need = max(0.02 * len(rest), 150)
    walls: list[_Surface] = []
    o3d.utility.random.seed(0)
    for _ in range(cfg.max_walls * 2):
        if len(rest) < need:
            break
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rest))
        model, inliers = pc.segment_plane(distance_threshold=0.02, ransac_n=3, num_iterations=120)
        if len(inliers) < need:
            break
        inl = rest[inliers]
        keep = np.ones(len(rest), bool)
        keep[inliers] = False
        rest = rest[keep]
        n = np.asarray(model[:3], np.float64)
        norm = np.linalg.norm(n)
        n, d = n / norm, float(model[3]) / norm
        if abs(n @ up) > 0.1:
            continue
        if np.median(cams @ n + d) < 0:  # face the cameras
            n, d = -n, -d
        side = np.cross(up, n)
        along = _dot(inl, side)
        lo, hi = np.percentile(along, [2, 98])
        height = np.percentile(_dot(inl, up), [2, 98])
        if hi - lo < cfg.wall_min_extent or height[1] - height[0] < cfg.wall_min_extent:
            continue
        # behind a wall lies nothing but what an opening shows; a wardrobe's front has the wall behind it
        # just beyond its own edges, so the test reaches past the plane's visible span
        s = _dot(pts, n) + d
        a = _dot(pts, side)
        behind = (s < -0.03) & (a > lo - cfg.wall_probe) & (a < hi + cfg.wall_probe)
        if behind.mean() > 0.01:
            continue
        walls.append(_Surface(n, d, side, (float(lo), float(hi)), _spread(_dot(pts, n) + d)))
        if len(walls) >= cfg.max_walls:
            break
    return walls


def _floor_plane(points: np.ndarray, normals: np.ndarray, up: np.ndarray, cam_height: float | None,
                 cfg: GeometricConfig, min_below: float = 0.9) -> tuple[np.ndarray, float, float] | None:
    """The floor: the lowest level holding a good share of the upward-facing surface samples, at least
    ``min_below`` metres below the cameras (a table top is not a floor), refined to a least-squares plane.

    ``up`` from the poses is good to a few tenths of a degree, which over a room tilts the level by
    centimetres; the mean normal of the upward-facing samples (floor, table tops: all level) is better."""
    facing_up = _dot(normals, up) >= cfg.floor_normal_cos
    points, normals = points[facing_up], normals[facing_up]
    if len(points) < 200:
        return None
    up = normals.mean(axis=0).astype(np.float64)
    up /= np.linalg.norm(up)
    heights = _dot(points, up)
    bins = np.arange(heights.min(), heights.max() + 0.02, 0.01)
    if len(bins) < 2:
        return None
    hist = np.convolve(np.histogram(heights, bins)[0], np.ones(3), "same")
    strong = np.flatnonzero(hist >= max(0.15 * hist.max(), 0.01 * len(heights)))
    if cam_height is not None:
        strong = strong[bins[strong] < cam_height - min_below]
    if len(strong) == 0:
        return None
    b = int(strong[0])
    while b + 1 < len(hist) and hist[b + 1] > hist[b]:  # climb to the peak of that level
        b += 1
    sel = np.abs(heights - (bins[b] + 0.005)) < 0.03
    for thr in (0.03, 0.015):  # least squares, then once more on the inliers
        if sel.sum() < 50:
            return None
        pts = points[sel].astype(np.float64)
        c = pts.mean(axis=0)
        n = np.linalg.svd(pts - c, full_matrices=False)[2][-1]
        n = n if n @ up > 0 else -n
        sel = np.abs(_dot(points, n) - n @ c) < thr
    return n, float(-n @ c), _spread(_dot(points, n) - n @ c)


def _spread(residual: np.ndarray, reach: float = 0.06) -> float:
    """How far (3 robust sigmas) the samples of a surface seen from many frames scatter about its plane:
    sensor error and pose drift, which no single frame's noise shows (0.5 mm for rendered depth, about
    2 cm for ScanNet)."""
    r = residual[np.abs(residual) < reach]
    if len(r) < 50:
        return 0.0
    return float(min(3.0 * 1.4826 * np.median(np.abs(r - np.median(r))), reach / 2))


def _floor_residue(occupied: np.ndarray, grid: _Grid, floor: Plane, cfg: GeometricConfig) -> np.ndarray:
    """Occupied voxels within ``floor_slab`` of the floor with nothing occupied straight above them up to
    ``floor_column`` beyond the slab: a leftover layer of floor, not the foot of something standing on it."""
    n, d = np.asarray(floor[0], np.float64), float(floor[1])
    occ = np.flatnonzero(occupied)
    centres = _cell_centres(grid, occ)
    height = centres @ n + d
    low = height < cfg.floor_slab
    occ, centres, height = occ[low], centres[low], height[low]
    standing = np.zeros(len(occ), bool)
    for k in range(1, int(np.ceil((cfg.floor_slab + cfg.floor_column) / grid.voxel)) + 1):
        above = height + k * grid.voxel
        reach = (above >= cfg.floor_slab) & (above <= cfg.floor_slab + cfg.floor_column)
        if not reach.any():
            continue
        cells = grid.cells((centres + k * grid.voxel * n).astype(np.float32))
        standing |= reach & (cells >= 0) & occupied[np.maximum(cells, 0)]
    return occ[~standing]


def _cell_centres(grid: _Grid, cells: np.ndarray) -> np.ndarray:
    d = grid.dims
    i, rest = np.divmod(cells, d[1] * d[2])
    j, k = np.divmod(rest, d[2])
    return (np.stack([i, j, k], axis=1) + 0.5) * grid.voxel + grid.origin


def _contacts(centres: np.ndarray, planes: list[Plane], up: np.ndarray, voxel: float,
              cfg: GeometricConfig) -> list[dict[str, Any]]:
    """Background planes the object rests on or leans against: it lies on one side of the plane, above it
    or beside it (not under it), and its nearest voxels come within ``contact_gap`` of it."""
    out = []
    if len(centres) < 4:
        return out
    for n, off in planes:
        s = _dot(centres, n) + off
        side = np.sign(np.median(s))
        if side == 0 or np.mean(np.sign(s) == side) < 0.97:
            continue
        gap = float(np.percentile(np.abs(s), 0.5)) - voxel / 2
        nn = n * side  # pointing from the plane towards the object
        if gap <= cfg.contact_gap and nn @ up > -0.5:
            out.append({"normal": [round(float(x), 6) for x in nn], "offset": round(float(off * side), 6),
                        "gap": round(max(gap, 0.0), 4)})
    return out
