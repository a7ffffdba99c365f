"""A handheld-scan camera path: a smooth loop through free floor space, looking around at everything.

The loop passes through the room's walkable space (away from walls and furniture). Every object and a
row of points along the walls become *look targets*; each is assigned the point of the loop from which
it is seen best (clear line of sight at a comfortable distance), and the camera visits the targets in
loop order, dwelling on each before panning smoothly to the next. Height stays within 1.2-1.7 m and
small smooth jitters in position and rotation imitate a hand-held device.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .layout import Room, SceneObject

#: Line-of-sight oracle: (origins (N,3), targets (N,3)) -> (first instance id (N,), hit fraction (N,)).
SightFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

GRID = 0.1  # metres per free-space cell


@dataclass(frozen=True)
class PathOptions:
    min_height: float = 1.2
    max_height: float = 1.7
    jitter_m: float = 0.008  # hand shake, position (metres, smooth)
    jitter_deg: float = 0.5  # hand shake, rotation (degrees, smooth)


def look_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(N, 3, 3) camera-to-world rotations (OpenCV axes: x right, y down, z forward) for z-up angles."""
    cp, sp = np.cos(pitch), np.sin(pitch)
    f = np.stack([cp * np.cos(yaw), cp * np.sin(yaw), sp], axis=-1)
    r = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], axis=-1)  # f x up, normalised
    d = np.cross(f, r)
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    r2 = cr * r + sr * d
    d2 = -sr * r + cr * d
    return np.stack([r2, d2, f], axis=-1)


def _smooth(x: np.ndarray, sigma: float, periodic: bool = False) -> np.ndarray:
    """Gaussian smoothing along axis 0 (``sigma`` in samples)."""
    from scipy.ndimage import gaussian_filter1d

    if sigma <= 0:
        return x
    return gaussian_filter1d(x, sigma, axis=0, mode="wrap" if periodic else "nearest")


def _smooth_noise(rng: np.random.Generator, n: int, dims: int, sigma: float, scale: float) -> np.ndarray:
    """Smooth random wobble with standard deviation ``scale`` (correlated over ~``sigma`` samples)."""
    pad = 4 * int(np.ceil(sigma)) + 1
    raw = rng.normal(size=(n + 2 * pad + 16, dims))
    sm = _smooth(raw, sigma)
    sm = sm / max(float(sm.std()), 1e-9) * scale  # normalised over the padded run, so short runs stay tame
    return sm[pad: pad + n]


# ----------------------------------------------------------------------------------------- free space
def free_space(room: Room, objects: list[SceneObject], wall_margin: float, object_margin: float):
    """Boolean grid of walkable cells and the xy of each cell centre."""
    lo, hi = room.bounds
    xs = np.arange(lo[0] + GRID / 2, hi[0], GRID)
    ys = np.arange(lo[1] + GRID / 2, hi[1], GRID)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    xy = np.stack([X.ravel(), Y.ravel()], axis=1)
    free = room.contains(xy, margin=wall_margin)
    for o in objects:
        if o.placement not in ("floor", "under"):
            continue
        c, s, R = o.obb
        local = (xy - c[:2]) @ R[:2, :2]  # into the object's frame
        dx = np.clip(np.abs(local[:, 0]) - s[0] / 2, 0, None)
        dy = np.clip(np.abs(local[:, 1]) - s[1] / 2, 0, None)
        free &= np.hypot(dx, dy) >= object_margin
    return free.reshape(X.shape), X, Y


def _largest_component(free: np.ndarray) -> np.ndarray:
    from scipy.ndimage import label

    lab, n = label(free, structure=np.ones((3, 3)))
    if n == 0:
        return free
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (1 + int(np.argmax(sizes)))


def _bfs(free: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """Shortest 8-connected grid path from cell ``a`` to ``b`` through free cells (loops over cells only)."""
    prev = {a: a}
    q = deque([a])
    steps = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    while q:
        c = q.popleft()
        if c == b:
            break
        for di, dj in steps:
            nb = (c[0] + di, c[1] + dj)
            if 0 <= nb[0] < free.shape[0] and 0 <= nb[1] < free.shape[1] and free[nb] and nb not in prev:
                prev[nb] = c
                q.append(nb)
    if b not in prev:
        return [a, b]
    path = [b]
    while path[-1] != a:
        path.append(prev[path[-1]])
    return path[::-1]


def walk_loop(room: Room, objects: list[SceneObject], rng: np.random.Generator, samples: int = 400) -> np.ndarray:
    """(samples, 2) xy of a smooth closed walk through the room's free space, starting near the door."""
    # generous clearances first; squeeze closer to furniture when they would cut the room in two
    free, best = None, None
    for wall_m, obj_m in ((0.6, 0.35), (0.5, 0.28), (0.4, 0.2), (0.3, 0.12), (0.25, 0.05)):
        f, X, Y = free_space(room, objects, wall_m, obj_m)
        comp = _largest_component(f)
        if best is None or comp.sum() > best[0].sum():
            best = (comp, X, Y)
        if comp.sum() >= 12 and comp.sum() >= 0.8 * f.sum():
            free = comp
            break
    if free is None:
        free, X, Y = best
    if free.sum() < 3:  # hopelessly cluttered: walk the inner part of the room, ignoring furniture
        f, X, Y = free_space(room, [], 0.3, 0.0)
        free = _largest_component(f)
    cells = np.argwhere(free)
    pts = np.stack([X[free], Y[free]], axis=1)
    centre = pts.mean(axis=0)
    ang = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    dist = np.linalg.norm(pts - centre, axis=1)
    perimeter = float(np.sum(np.linalg.norm(np.roll(room.polygon, -1, 0) - room.polygon, axis=1)))
    K = int(np.clip(round(perimeter / 2.5), 5, 10))
    a0 = rng.uniform(-np.pi, np.pi)
    way = []
    for k in range(K):
        a = a0 + 2 * np.pi * k / K
        diff = np.abs((ang - a + np.pi) % (2 * np.pi) - np.pi)
        sector = np.nonzero(diff < np.pi / K)[0]
        if len(sector) == 0:
            continue
        # a point well out towards the walls, not at the very edge of free space
        goal = 0.75 * dist[sector].max()
        way.append(int(sector[np.argmin(np.abs(dist[sector] - goal))]))
    if len(way) < 3:
        way = [int(i) for i in rng.choice(len(pts), size=min(3, len(pts)), replace=False)]
    # start at the waypoint nearest the door, as if entering the room
    door = room.door.center[:2]
    first = int(np.argmin([np.linalg.norm(pts[i] - door) for i in way]))
    way = way[first:] + way[:first]
    route: list[tuple[int, int]] = []
    for i, j in zip(way, way[1:] + way[:1]):
        seg = _bfs(free, tuple(cells[i]), tuple(cells[j]))
        route.extend(seg[:-1])
    xy = np.array([[X[c], Y[c]] for c in route], dtype=np.float64)
    if len(xy) < 4:
        xy = np.concatenate([xy, xy + 0.05])
    # resample by arc length, smooth as a closed curve, resample again
    xy = _resample_closed(xy, 0.05)
    xy = _smooth(xy, sigma=0.45 / 0.05, periodic=True)
    return _resample_closed(xy, n=samples)


def _resample_closed(xy: np.ndarray, step: float | None = None, n: int | None = None) -> np.ndarray:
    closed = np.concatenate([xy, xy[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    total = s[-1]
    if n is None:
        n = max(8, int(total / step))
    q = np.linspace(0.0, total, n, endpoint=False)
    return np.stack([np.interp(q, s, closed[:, 0]), np.interp(q, s, closed[:, 1])], axis=1)


# ----------------------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Target:
    point: np.ndarray  # (3,) world point to look at
    instance: int  # object instance id, 0 for wall points
    distance: float  # preferred viewing distance


def look_targets(room: Room, objects: list[SceneObject], rng: np.random.Generator) -> list[Target]:
    """Every object plus points along the walls (so the scan also sweeps the walls), door and window."""
    out = []
    for o in objects:
        lo, hi = o.aabb
        ext = float(np.max(hi - lo))
        out.append(Target((lo + hi) / 2, o.instance_id, float(np.clip(1.3 + 0.9 * ext, 1.5, 3.2))))
    for w in room.walls:
        n = max(1, int(w.length / 3.0))
        for s in (np.arange(n) + 0.5) * w.length / n:
            out.append(Target(np.array([*w.point(s, 0.02), rng.uniform(0.9, 1.4)]), 0, 2.5))
    for o in (room.door, room.window):
        out.append(Target(o.center + np.array([*o.normal * 0.05, 0.0]), 0, 2.5))
    return out


def assign_targets(loop: np.ndarray, height: float, targets: list[Target], sight: SightFn | None) -> np.ndarray:
    """For each target, the loop sample from which it is seen best (clear line of sight, good distance)."""
    m = len(loop)
    sub = np.arange(0, m, max(1, m // 120))
    cams = np.concatenate([loop[sub], np.full((len(sub), 1), height)], axis=1)
    best = np.zeros(len(targets), dtype=np.int64)
    for k, t in enumerate(targets):
        d = np.linalg.norm(cams - t.point, axis=1)
        score = np.exp(-(((d - t.distance) / 1.2) ** 2))
        if sight is not None:
            inst, frac = sight(cams, np.broadcast_to(t.point, cams.shape))
            seen = (inst == t.instance) if t.instance > 0 else (frac >= 0.97)
            score = score * np.where(seen, 1.0, 0.05)
        best[k] = sub[int(np.argmax(score))]
    return best


# ----------------------------------------------------------------------------------------- the path
def plan_path(
    room: Room,
    objects: list[SceneObject],
    frames: int,
    rng: np.random.Generator,
    sight: SightFn | None = None,
    options: PathOptions = PathOptions(),
) -> np.ndarray:
    """(frames, 4, 4) camera-to-world poses of a handheld scan of the room."""
    loop = walk_loop(room, objects, rng)
    m = len(loop)
    base_h = rng.uniform(1.35, 1.55)
    targets = look_targets(room, objects, rng)
    at = assign_targets(loop, base_h, targets, sight)
    # targets seen from about the same spot are swept in one turning direction, not back and forth
    spot = loop[at]
    pts0 = np.array([t.point[:2] for t in targets])
    bearing = np.arctan2(pts0[:, 1] - spot[:, 1], pts0[:, 0] - spot[:, 0])
    group = np.round(at / max(1, m // 24))
    order = np.lexsort((np.mod(bearing - bearing.mean(), 2 * np.pi), group))
    targets = [targets[i] for i in order]
    at = at[order].astype(np.float64)
    nt = len(targets)
    f = np.arange(frames, dtype=np.float64)
    knots = (np.arange(nt) + 0.5) * frames / nt
    # position along the loop: drawn towards each target's best spot at its turn, blended with an even
    # walk so the pace stays steady (smoothing keeps it monotone)
    s_targets = np.interp(f, knots, at)
    s_even = np.interp(f, [knots[0], knots[-1]], [at[0], at[-1]])
    s = _smooth(0.5 * s_targets + 0.5 * s_even, sigma=max(1.0, 1.0 * frames / nt))
    idx = np.clip(s, 0, m - 1)
    i0 = np.floor(idx).astype(int)
    i1 = np.minimum(i0 + 1, m - 1)
    w = (idx - i0)[:, None]
    xy = loop[i0] * (1 - w) + loop[i1] * w
    height = base_h + 0.07 * np.sin(2 * np.pi * f / max(frames, 1) * rng.uniform(1.0, 3.0) + rng.uniform(0, 6.3))
    height = np.clip(height + _smooth_noise(rng, frames, 1, max(2.0, frames / 40), 0.03)[:, 0],
                     options.min_height + 0.02, options.max_height - 0.02)
    pos = np.concatenate([xy, height[:, None]], axis=1)

    # gaze: dwell on target k, then pan to target k+1
    pts = np.array([t.point for t in targets])
    k = np.clip(np.searchsorted(knots, f, side="right") - 1, 0, nt - 1)
    k1 = np.minimum(k + 1, nt - 1)
    span = np.maximum(knots[k1] - knots[k], 1e-9)
    u = np.clip((f - knots[k]) / span, 0.0, 1.0)
    alpha = np.clip((u - 0.4) / 0.6, 0.0, 1.0)
    alpha = alpha * alpha * (3 - 2 * alpha)
    alpha[f < knots[0]] = 0.0

    def angles(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = p - pos
        horiz = np.maximum(np.hypot(v[:, 0], v[:, 1]), 0.3)
        return np.arctan2(v[:, 1], v[:, 0]), np.arctan2(v[:, 2], horiz)

    y0, p0 = angles(pts[k])
    y1, p1 = angles(pts[k1])
    yaw = y0 + alpha * (((y1 - y0) + np.pi) % (2 * np.pi) - np.pi)
    pitch = p0 + alpha * (p1 - p0)
    yaw = np.unwrap(yaw)
    sig = max(1.0, 0.3 * frames / nt)  # pans take a while, as with a hand-held camera
    yaw = _smooth(yaw, sig)
    pitch = np.clip(_smooth(pitch, sig) - np.radians(4.0), np.radians(-60), np.radians(15))
    jit = np.radians(options.jitter_deg)
    ang = _smooth_noise(rng, frames, 3, max(1.5, frames / 100), jit)
    roll = _smooth_noise(rng, frames, 1, max(3.0, frames / 30), np.radians(1.5))[:, 0] + ang[:, 2]
    R = look_rotation(yaw + ang[:, 0], pitch + ang[:, 1], roll)
    pos = pos + _smooth_noise(rng, frames, 3, max(1.5, frames / 100), options.jitter_m)
    pos[:, 2] = np.clip(pos[:, 2], options.min_height, options.max_height)
    poses = np.tile(np.eye(4), (frames, 1, 1))
    poses[:, :3, :3] = R
    poses[:, :3, 3] = pos
    return poses


def perturb_poses(poses: np.ndarray, rng: np.random.Generator, trans_m: float = 0.02, rot_deg: float = 0.6) -> np.ndarray:
    """Poses as a tracker would estimate them: slowly drifting errors of a few centimetres and tenths of a degree."""
    from scipy.spatial.transform import Rotation

    n = len(poses)
    dt = _smooth_noise(rng, n, 3, max(3.0, n / 15), trans_m)
    dr = _smooth_noise(rng, n, 3, max(3.0, n / 15), np.radians(rot_deg))
    out = poses.copy()
    out[:, :3, :3] = Rotation.from_rotvec(dr).as_matrix() @ poses[:, :3, :3]
    out[:, :3, 3] += dt
    return out
