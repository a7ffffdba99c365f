"""A tracker that needs no weights: segment the boxed object from depth, lift it, follow it by projection.

Key frame: the pixels inside the prompt box are split into depth-continuous pieces after removing the
background surfaces, found as planes that continue outside the box (a ring around it: floor, walls, the
table an object stands on); the pieces whose union best fills the box are the object.

Other frames, outwards from the key frame: the object's current 3D points are projected in, the pixels
whose 3D point lies near them are seeds, and every depth-continuous piece holding enough seeds joins the
mask, so parts hidden in the key frame are found as the camera moves. New points must stay inside the key
frame's box frustum and must not lie in space the key frame saw as empty (in front of its depth), which
keeps neighbouring objects and the floor behind the object out. The mask's points extend the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..data.camera import color_mask_to_depth, in_image, project
from ..types import Frame, Intrinsics
from .base import FrameMask, TrackResult, box_mask, check_box, check_positions, depth_mask_to_color

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
    tol_abs: float = 0.015
    tol_rel: float = 0.004
    tol_quad: float = 0.003
    continuity_scale: float = 1.3  # neighbouring pixels are one surface within this many tolerances
    join_distance: float = 0.08  # separate pieces of the key-frame mask must come this close in 3D
    seed_radius: float = 0.03  # a pixel re-observes the object when its point lies this close to the model
    grow_radius: float = 0.2  # new points lie at most this far from the current model
    seed_share: float = 0.08  # a depth-continuous piece joins when this share of its pixels are seeds
    min_seeds: int = 15
    frustum_margin: float = 0.1  # share of the key box size new points may project outside the key box
    behind_extent: float = 0.75  # new points lie at most this many object sizes behind the key-frame object
    search_margin: float = 0.2  # share of the projected model box searched around it on other frames
    model_voxel: float = 0.015
    min_piece_px: int = 8


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


def _prepare(frame: Frame, cfg: GeometricConfig) -> _DepthView:
    import cv2  # lazy

    d = np.nan_to_num(frame.depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    d[(d < cfg.min_depth) | (d > cfg.max_depth)] = 0.0
    valid = d > 0
    noise = _estimate_noise(d, valid)
    if noise > 0.003:  # noisy sensor: a 5x5 median keeps edges and cuts Gaussian noise about 4x (measured)
        med = cv2.medianBlur(d, 5)
        d = np.where(valid & (med > 0), med, 0.0).astype(np.float32)
        noise *= 0.3
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


def _estimate_noise(d: np.ndarray, valid: np.ndarray) -> float:
    """Relative per-pixel depth noise from the residual to a 3x3 median (robust)."""
    import cv2  # lazy

    med = cv2.medianBlur(d, 3)
    ok = valid & (med > 0)
    if ok.sum() < 100:
        return 0.0
    rel = np.abs(d[ok] - med[ok]) / med[ok]
    # for Gaussian noise the median |residual to the 3x3 median| is about 0.58 sigma (measured)
    return float(np.median(rel) / 0.58)


def _ring_and_region(box: tuple[int, int, int, int], w: int, h: int, cfg: GeometricConfig):
    """(region = box + outer ring, ring) bool masks around an integer depth-pixel box."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1

    def grow(share: float, min_px: int) -> tuple[int, int, int, int]:
        mx, my = max(int(round(share * bw)), min_px), max(int(round(share * bh)), min_px)
        return x1 - mx, y1 - my, x2 + mx, y2 + my

    inner = box_mask(grow(cfg.ring_inner, 1), w, h)
    outer = box_mask(grow(cfg.ring_outer, cfg.ring_min_px + 1), w, h)
    return outer, outer & ~inner


def _plane_inliers(view: _DepthView, sel: np.ndarray, plane: tuple[np.ndarray, float], cfg: GeometricConfig) -> np.ndarray:
    """Which pixels of ``sel`` lie on ``plane`` within the sensor tolerance of their depth."""
    n, off = plane
    v, u = np.nonzero(sel)
    dist = np.abs(view.xyz[v, u] @ n.astype(np.float32) + np.float32(off))
    on = dist <= view.tol(view.depth[v, u], cfg, k=2.5)
    out = np.zeros(sel.shape, bool)
    out[v[on], u[on]] = True
    return out


def _ring_planes(view: _DepthView, ring: np.ndarray, cfg: GeometricConfig) -> list[tuple[np.ndarray, float]]:
    """Planes (unit normal n, offset d; n.x + d = 0) each holding a good share of the ring's points."""
    import open3d as o3d  # lazy

    sel = ring & (view.depth > 0)
    n_ring = int(sel.sum())
    if n_ring < 50:
        return []
    pts = view.xyz[sel].astype(np.float64)
    z = view.depth[sel]
    if len(pts) > 6000:
        pick = np.random.default_rng(0).choice(len(pts), 6000, replace=False)
        pts, z = pts[pick], z[pick]
    thr = float(np.median(view.tol(z, cfg, k=2.0)))
    o3d.utility.random.seed(0)  # reproducible RANSAC
    planes = []
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
        planes.append((n / norm, float(model[3]) / norm))
        keep = np.ones(len(rest), bool)
        keep[inliers] = False
        rest = rest[keep]
    return planes


def _ring_background(view: _DepthView, region: np.ndarray, ring: np.ndarray, planes, cfg: GeometricConfig) -> np.ndarray:
    """Pixels of ``region`` on one of ``planes`` and connected (in the image, through the plane) to the ring:
    the surface continues outside the box, so it is background, not the object."""
    import cv2  # lazy

    bg = np.zeros(region.shape, bool)
    sel = region & (view.depth > 0)
    for plane in planes:
        on = _plane_inliers(view, sel, plane, cfg)
        n, labels = cv2.connectedComponents(on.view(np.uint8), connectivity=8)
        if n <= 1:
            continue
        touching = np.unique(labels[on & ring])
        touching = touching[touching > 0]
        bg |= np.isin(labels, touching)
    return bg


def _pieces(view: _DepthView, cand: np.ndarray, cfg: GeometricConfig) -> np.ndarray:
    """Label image of the depth-continuous pieces of ``cand`` (8-neighbourhood), -1 outside ``cand``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    depth = view.depth
    h, w = depth.shape
    idx = np.full((h, w), -1, np.int64)
    n = int(cand.sum())
    idx[cand] = np.arange(n)
    if n == 0:
        return idx
    rows, cols = [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        ya, yb = slice(0, h - dy), slice(dy, h)
        xa, xb = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        a, b = depth[ya, xa], depth[yb, xb]
        both = cand[ya, xa] & cand[yb, xb]
        step = 1.41 if dx and dy else 1.0
        ok = both & (np.abs(a - b) <= cfg.continuity_scale * step * view.tol(np.minimum(a, b), cfg, k=3.0))
        rows.append(idx[ya, xa][ok])
        cols.append(idx[yb, xb][ok])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    out = np.full((h, w), -1, np.int64)
    out[cand] = labels
    return out


def _bbox_iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _piece_adjacency(view: _DepthView, labels: np.ndarray, ids: np.ndarray, dist: float) -> np.ndarray:
    """(len(ids), len(ids)) bool: which pieces come within about ``dist`` of each other in 3D.

    All points are hashed into voxels of ``dist / 2``; two pieces touch when they occupy the same or
    neighbouring voxels (no subsampling, so thin parts such as table legs are not missed)."""
    k = len(ids)
    lut = np.full(int(labels.max()) + 1, -1, np.int64)
    lut[ids] = np.arange(k)
    sel = labels >= 0
    lab = lut[labels[sel]]
    keep = lab >= 0
    key = np.floor(view.xyz[sel][keep] / (dist / 2)).astype(np.int64)
    lab = lab[keep]
    adj = np.eye(k, dtype=bool)
    if len(key) == 0:
        return adj
    key -= key.min(axis=0) - 1  # room for the -1 neighbour
    dims = key.max(axis=0) + 2
    cell = (key[:, 0] * dims[1] + key[:, 1]) * dims[2] + key[:, 2]
    pairs = np.unique(cell * k + lab)  # one row per (voxel, piece), sorted by voxel
    hs, ls = pairs // k, pairs % k
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                nh = hs + (dx * dims[1] + dy) * dims[2] + dz
                lo = np.searchsorted(hs, nh, "left")
                hi = np.searchsorted(hs, nh, "right")
                for c in range(int((hi - lo).max(initial=0))):  # pieces sharing that voxel, one at a time
                    ok = hi - lo > c
                    adj[ls[ok], ls[lo[ok] + c]] = True
    return adj | adj.T


def _select_pieces(view: _DepthView, labels: np.ndarray, box, cfg: GeometricConfig) -> np.ndarray:
    """The union of 3D-adjacent pieces whose image bounding box best matches the prompt box."""
    lab = labels[labels >= 0]
    if len(lab) == 0:
        return np.zeros(labels.shape, bool)
    counts = np.bincount(lab)
    box_area = (box[2] - box[0]) * (box[3] - box[1])
    ids = np.flatnonzero(counts >= max(cfg.min_piece_px, 0.002 * box_area))
    if len(ids) == 0:
        return np.zeros(labels.shape, bool)
    ids = ids[np.argsort(-counts[ids])][:24]
    v, u = np.nonzero(labels >= 0)
    lv = labels[v, u]
    boxes = []
    for i in ids:
        sel = lv == i
        boxes.append((int(u[sel].min()), int(v[sel].min()), int(u[sel].max()) + 1, int(v[sel].max()) + 1))
    adj = _piece_adjacency(view, labels, ids, cfg.join_distance)

    def union_box(a, b):
        return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))

    best, best_score = None, -1.0
    for start in range(min(4, len(ids))):
        chosen, ub = {start}, boxes[start]
        iou = _bbox_iou(ub, box)
        while True:
            pick, pick_gain = None, 0.005
            for k in range(len(ids)):
                if k in chosen or not adj[k, list(chosen)].any():
                    continue
                nb = union_box(ub, boxes[k])
                gain = _bbox_iou(nb, box) - iou
                if gain > pick_gain:
                    pick, pick_gain = k, gain
            if pick is None:  # no piece widens the fit: take the adjacent pieces inside the extent
                inside = [k for k in range(len(ids)) if k not in chosen and adj[k, list(chosen)].any()
                          and union_box(ub, boxes[k]) == ub]
                if not inside:
                    break
                chosen.update(inside)
                continue
            chosen.add(pick)
            ub = union_box(ub, boxes[pick])
            iou = _bbox_iou(ub, box)
        area = sum(int(counts[ids[k]]) for k in chosen)
        score = iou + 0.1 * area / box_area  # ties go to the fuller mask
        if score > best_score:
            best, best_score = [ids[k] for k in chosen], score
    return np.isin(labels, best)


class _Model:
    """The object's 3D points (voxelised world coordinates) with a KD-tree for distance queries."""

    def __init__(self, voxel: float):
        self.voxel = voxel
        self.keys = np.empty((0, 3), np.int64)
        self.points = np.empty((0, 3))
        self._tree = None

    def add(self, pts: np.ndarray) -> None:
        if len(pts) == 0:
            return
        keys = np.unique(np.floor(np.asarray(pts, np.float64) / self.voxel).astype(np.int64), axis=0)
        merged = np.unique(np.concatenate([self.keys, keys]), axis=0)
        if len(merged) == len(self.keys):
            return
        self.keys = merged
        self.points = (merged + 0.5) * self.voxel
        self._tree = None

    def distance(self, pts: np.ndarray, upper: float) -> np.ndarray:
        from scipy.spatial import cKDTree

        if self._tree is None:
            self._tree = cKDTree(self.points)
        d, _ = self._tree.query(pts, distance_upper_bound=upper)
        return d


@dataclass(frozen=True, eq=False)
class _KeyFrame:
    """What later frames are checked against."""

    view: _DepthView
    box: tuple[int, int, int, int]  # prompt box on the depth image
    planes: list  # background planes found around the box (world frame)
    max_depth: float  # farthest key-frame object point from the key camera (metres along z)
    extent: float  # object size seen in the key frame (metres)


class GeometricTracker:
    """Weight-free tracker from depth and poses (see the module docstring)."""

    name = "geometric"

    def __init__(self, config: GeometricConfig | None = None, **overrides):
        base = config or GeometricConfig()
        self.config = GeometricConfig(**{**asdict(base), **overrides}) if overrides else base

    # ------------------------------------------------------------------ key frame
    def segment_key_frame(self, frame: Frame, box: Sequence[float]) -> tuple[np.ndarray, _KeyFrame | None, str]:
        """Depth-resolution mask of the object in ``box`` (colour pixels), what later frames are checked
        against, and a note saying why the mask is empty when it is."""
        cfg = self.config
        ci, di = frame.color_intrinsics, frame.depth_intrinsics
        cbox = check_box(box, ci.width, ci.height)
        empty = np.zeros((di.height, di.width), bool)
        inside = color_mask_to_depth(box_mask(cbox, ci.width, ci.height), ci, di)
        if not inside.any():
            return empty, None, "the box covers no depth pixel"
        view = _prepare(frame, cfg)
        rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
        dbox = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        valid_in = inside & (view.depth > 0)
        if valid_in.sum() < cfg.min_piece_px:
            return empty, None, "no valid depth inside the box"
        region, ring = _ring_and_region(dbox, di.width, di.height, cfg)
        planes = _ring_planes(view, ring, cfg)
        cand = valid_in & ~_ring_background(view, region, ring, planes, cfg)
        if cand.sum() < 0.05 * valid_in.sum():  # all of it lies on background planes (a picture on a wall)
            cand, planes = valid_in, []
        mask = _select_pieces(view, _pieces(view, cand, cfg), dbox, cfg)
        if not mask.any():
            return empty, None, "no object surface found inside the box"
        z = view.depth[mask]
        pts = view.xyz[mask]
        extent = float(np.linalg.norm(np.percentile(pts, 98, axis=0) - np.percentile(pts, 2, axis=0)))
        return mask, _KeyFrame(view, dbox, planes, float(z.max()), extent), ""

    # ------------------------------------------------------------------ tracking
    def track(self, scene: "Scene", positions: Sequence[int], key_position: int, box: Sequence[float]) -> TrackResult:
        start = time.perf_counter()
        cfg = self.config
        positions = check_positions(scene, positions, key_position)
        key = scene.frame(key_position)
        ci = key.color_intrinsics
        cbox = check_box(box, ci.width, ci.height)
        masks: dict[int, FrameMask] = {}
        if not key.pose_valid:
            key_mask, keyinfo, note = np.zeros(key.depth.shape, bool), None, "the key frame has no valid pose"
        else:
            key_mask, keyinfo, note = self.segment_key_frame(key, cbox)
        masks[key_position] = FrameMask.from_dense(
            key_position, key.index, depth_mask_to_color(key_mask, ci, key.depth_intrinsics), 1.0 if key_mask.any() else 0.0, note
        )
        info = {"key_mask_depth_px": int(key_mask.sum())}
        # outwards from the key frame, so the model grows through neighbouring views first
        others = sorted((p for p in positions if p != key_position), key=lambda p: (abs(p - key_position), p < key_position))
        if keyinfo is None:
            for p in others:
                masks[p] = FrameMask.from_dense(p, int(scene.frame_ids[p]), np.zeros((ci.height, ci.width), bool), 0.0, note)
            return TrackResult(key_position, cbox, tuple(masks[p] for p in positions), self.name,
                               time.perf_counter() - start, info)
        info.update(depth_noise=round(keyinfo.view.noise, 5), background_planes=len(keyinfo.planes))
        model = _Model(cfg.model_voxel)
        model.add(keyinfo.view.xyz[key_mask])
        for p in others:
            frame = scene.frame(p)
            mask, score, why = self._follow(frame, model, keyinfo)
            masks[p] = FrameMask.from_dense(
                p, frame.index, depth_mask_to_color(mask, frame.color_intrinsics, frame.depth_intrinsics), score, why
            )
        info["model_points"] = len(model.points)
        return TrackResult(key_position, cbox, tuple(masks[p] for p in positions), self.name,
                           time.perf_counter() - start, info)

    def _follow(self, frame: Frame, model: _Model, key: _KeyFrame) -> tuple[np.ndarray, float, str]:
        cfg = self.config
        di = frame.depth_intrinsics
        empty = np.zeros((di.height, di.width), bool)
        if not frame.pose_valid:
            return empty, 0.0, "invalid pose"
        uv, z = project(model.points, di, frame.pose)
        front = (z > cfg.min_depth) & in_image(uv, di.width, di.height)
        if front.sum() < cfg.min_seeds:
            return empty, 0.0, "out of view"
        view = _prepare(frame, cfg)
        cols = np.rint(uv[front, 0]).astype(np.int64)
        rows = np.rint(uv[front, 1]).astype(np.int64)
        measured = view.depth[rows, cols]
        zf = z[front]
        seen = (measured > 0) & (np.abs(measured - zf) <= view.tol(zf, cfg) + cfg.model_voxel)
        score = float(seen.mean())
        if seen.sum() < cfg.min_seeds:
            return empty, score, "occluded or not seen"
        # search the projected model's box, widened, plus a ring around it for the local background test
        x1, x2, y1, y2 = cols.min(), cols.max() + 1, rows.min(), rows.max() + 1
        mx, my = int(cfg.search_margin * (x2 - x1)) + 3, int(cfg.search_margin * (y2 - y1)) + 3
        sbox = (max(x1 - mx, 0), max(y1 - my, 0), min(x2 + mx, di.width), min(y2 + my, di.height))
        search = box_mask(sbox, di.width, di.height) & (view.depth > 0)
        region, ring = _ring_and_region(sbox, di.width, di.height, cfg)
        bg = _ring_background(view, region, ring, _ring_planes(view, ring, cfg), cfg)
        for plane in key.planes:  # the key frame's background surfaces are background everywhere
            bg |= _plane_inliers(view, search, plane, cfg)
        cand = search & ~bg
        v, u = np.nonzero(cand)
        if len(v) == 0:
            return empty, score, "no depth near the object"
        pts = view.xyz[v, u].astype(np.float64)
        ok = self._allowed_by_key(pts, key)
        dist = np.full(len(pts), np.inf)
        if ok.any():
            dist[ok] = model.distance(pts[ok], cfg.grow_radius)
        ok &= np.isfinite(dist)
        cand = np.zeros_like(cand)
        cand[v[ok], u[ok]] = True
        seed_r = max(cfg.seed_radius, float(np.median(view.tol(zf, cfg))))
        seeds = np.zeros_like(cand)
        s = ok & (dist <= seed_r)
        seeds[v[s], u[s]] = True
        labels = _pieces(view, cand, cfg)
        inside = labels >= 0
        if not inside.any():
            return empty, score, "no surface near the object"
        counts = np.bincount(labels[inside])
        seed_counts = np.bincount(labels[seeds & inside], minlength=len(counts))
        keep = np.flatnonzero((seed_counts >= cfg.min_seeds) & (seed_counts >= cfg.seed_share * counts))
        if len(keep) == 0:
            return empty, score, "object not re-found"
        mask = np.isin(labels, keep)
        model.add(view.xyz[mask])
        return mask, score, ""

    def _allowed_by_key(self, pts: np.ndarray, key: _KeyFrame) -> np.ndarray:
        """Points inside the key box's frustum (with a margin), not in space the key frame saw empty (in
        front of its depth) and not far behind the object it saw."""
        cfg = self.config
        K = key.view.K
        uv, z = project(pts, K, key.view.pose)
        x1, y1, x2, y2 = key.box
        mx, my = cfg.frustum_margin * (x2 - x1) + 1, cfg.frustum_margin * (y2 - y1) + 1
        ok = (z > 0) & (uv[:, 0] >= x1 - 0.5 - mx) & (uv[:, 0] < x2 - 0.5 + mx)
        ok &= (uv[:, 1] >= y1 - 0.5 - my) & (uv[:, 1] < y2 - 0.5 + my)
        ok &= z <= key.max_depth + cfg.behind_extent * key.extent
        idx = np.flatnonzero(ok & in_image(uv, K.width, K.height))
        cols = np.rint(uv[idx, 0]).astype(np.int64)
        rows = np.rint(uv[idx, 1]).astype(np.int64)
        measured = key.view.depth[rows, cols]
        carved = (measured > 0) & (z[idx] < measured - 1.5 * key.view.tol(measured, cfg))
        ok[idx[carved]] = False
        return ok
