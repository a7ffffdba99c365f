"""Rooms (rectangular or L-shaped, with a door and a window) and plausible furniture placement.

The world frame is z up in metres with the room's bounding box starting at the origin, so scenes are
already axis-aligned. Placement works on 2D footprints (oriented rectangles): big furniture goes against
walls, chairs around tables and in front of desks, small things on tables, desks, nightstands and low
cabinets, pillows on beds and sofas, boxes and bins under desks, pictures on free wall space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import objects as obj
from .geometry import box_between, cylinder, pose, rot_z
from .objects import ObjectModel, Part

SCENE_TYPES = ("Bedroom / Hotel", "Living room / Lounge", "Office")
WALL_THICKNESS = 0.12
MAX_OBJECTS = 20
MIN_OBJECTS = 6


# ----------------------------------------------------------------------------------------- room
@dataclass(frozen=True, eq=False)
class Opening:
    """A door or window in one wall, as a span along the wall and a height range."""

    kind: str  # "door" | "window"
    wall: int  # index into Room.walls
    s0: float  # start along the wall (m from the wall's first corner)
    s1: float
    z0: float
    z1: float
    p0: np.ndarray  # (2,) xy of the span's start on the wall's inner face
    p1: np.ndarray  # (2,) xy of its end
    normal: np.ndarray  # (2,) inward wall normal

    @property
    def center(self) -> np.ndarray:
        """(3,) centre of the opening on the wall's inner face."""
        c = (self.p0 + self.p1) / 2.0
        return np.array([c[0], c[1], (self.z0 + self.z1) / 2.0])

    @property
    def width(self) -> float:
        return self.s1 - self.s0


@dataclass(frozen=True, eq=False)
class Wall:
    p0: np.ndarray  # (2,) first corner (the polygon runs counter-clockwise)
    p1: np.ndarray
    normal: np.ndarray  # (2,) unit normal pointing into the room

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.p1 - self.p0))

    @property
    def tangent(self) -> np.ndarray:
        return (self.p1 - self.p0) / self.length

    def point(self, s: float, offset: float = 0.0) -> np.ndarray:
        """xy of the point ``s`` metres along the wall, ``offset`` metres into the room."""
        return self.p0 + self.tangent * s + self.normal * offset


@dataclass(frozen=True, eq=False)
class Room:
    """A room made of one or two axis-aligned floor rectangles (an L when two)."""

    rects: tuple[tuple[float, float, float, float], ...]  # (x0, y0, x1, y1) each
    polygon: np.ndarray  # (N, 2) outline, counter-clockwise
    height: float
    door: Opening
    window: Opening
    scene_type: str
    style: dict = field(default_factory=dict)  # wall/floor appearance

    @cached_property
    def walls(self) -> list[Wall]:
        return _walls(self.polygon)

    @property
    def shape(self) -> str:
        return "L" if len(self.rects) > 1 else "rectangle"

    @property
    def area(self) -> float:
        """Floor area in square metres (shoelace formula over the outline)."""
        x, y = self.polygon[:, 0], self.polygon[:, 1]
        return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.polygon.min(axis=0), self.polygon.max(axis=0)

    def contains(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Which (N, 2) points lie inside the floor, at least ``margin`` from every wall."""
        xy = np.atleast_2d(xy)
        inside = np.zeros(len(xy), dtype=bool)
        for x0, y0, x1, y1 in self.rects:
            inside |= (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        if margin > 0:
            inside &= self.wall_distance(xy) >= margin
        return inside

    def wall_distance(self, xy: np.ndarray) -> np.ndarray:
        """Distance of (N, 2) points to the nearest wall segment."""
        xy = np.atleast_2d(xy)
        d = np.full(len(xy), np.inf)
        for w in self.walls:
            s = np.clip((xy - w.p0) @ w.tangent, 0.0, w.length)
            d = np.minimum(d, np.linalg.norm(xy - (w.p0 + s[:, None] * w.tangent), axis=1))
        return d

    @property
    def lights(self) -> np.ndarray:
        """(k, 3) ceiling light positions, one per floor rectangle."""
        return np.array([[(x0 + x1) / 2, (y0 + y1) / 2, self.height - 0.12] for x0, y0, x1, y1 in self.rects])

    def to_dict(self) -> dict:
        def opening(o: Opening) -> dict:
            return {"wall": o.wall, "p0": o.p0.tolist(), "p1": o.p1.tolist(), "z0": o.z0, "z1": o.z1,
                    "center": o.center.tolist(), "width": o.width, "normal": o.normal.tolist()}

        return {
            "shape": self.shape,
            "polygon": self.polygon.tolist(),
            "rects": [list(r) for r in self.rects],
            "height": self.height,
            "area": self.area,
            "bounds": [b.tolist() for b in self.bounds],
            "scene_type": self.scene_type,
            "door": opening(self.door),
            "window": opening(self.window),
        }


def _walls(polygon: np.ndarray) -> list[Wall]:
    walls = []
    for i in range(len(polygon)):
        p0, p1 = polygon[i], polygon[(i + 1) % len(polygon)]
        t = (p1 - p0) / np.linalg.norm(p1 - p0)
        walls.append(Wall(p0.astype(np.float64), p1.astype(np.float64), np.array([-t[1], t[0]])))
    return walls


def make_room(rng: np.random.Generator, scene_type: str | None = None) -> Room:
    """A random room 3-8 m across, rectangular or L-shaped, with one door and one window."""
    scene_type = scene_type or SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]
    if rng.random() < 0.3:
        W, D = rng.uniform(5.0, 8.0), rng.uniform(5.0, 8.0)
        cw, cd = rng.uniform(0.3, 0.5) * W, rng.uniform(0.3, 0.5) * D
        cw, cd = min(cw, W - 2.8), min(cd, D - 2.8)  # keep both arms at least 2.8 m wide
        # notch in the top-right corner, then mirror it to a random corner
        poly = np.array([[0, 0], [W, 0], [W, D - cd], [W - cw, D - cd], [W - cw, D], [0, D]], dtype=np.float64)
        rects = [(0.0, 0.0, W, D - cd), (0.0, D - cd, W - cw, D)]
        if rng.random() < 0.5:
            poly[:, 0] = W - poly[:, 0]
            poly = poly[::-1]
            rects = [(W - x1, y0, W - x0, y1) for x0, y0, x1, y1 in rects]
        if rng.random() < 0.5:
            poly[:, 1] = D - poly[:, 1]
            poly = poly[::-1]
            rects = [(x0, D - y1, x1, D - y0) for x0, y0, x1, y1 in rects]
        # start the outline at the left-most corner on y = 0, so wall 0 always runs along the x axis
        on_x_axis = np.abs(poly[:, 1]) < 1e-9
        start = int(np.argmin(np.where(on_x_axis, poly[:, 0], np.inf)))
        poly = np.roll(poly, -start, axis=0)
    else:
        W, D = rng.uniform(3.0, 8.0), rng.uniform(3.0, 8.0)
        if W * D < 11:  # very small rooms cannot hold 6 objects plus a walkway
            W, D = max(W, 3.5), max(D, 3.5)
        poly = np.array([[0, 0], [W, 0], [W, D], [0, D]], dtype=np.float64)
        rects = [(0.0, 0.0, W, D)]
    height = rng.uniform(2.5, 2.9)
    walls = _walls(poly)
    lengths = np.array([w.length for w in walls])
    ok = np.nonzero(lengths >= 1.8)[0]
    door_wall = int(rng.choice(ok))
    dw = rng.uniform(0.82, 0.95)
    s0 = rng.uniform(0.2, lengths[door_wall] - dw - 0.2)
    door = _opening("door", walls, door_wall, s0, s0 + dw, 0.0, rng.uniform(2.0, 2.1))
    # the window goes on another wall, preferably a long one
    cand = [i for i in ok if i != door_wall]
    weights = lengths[cand] / lengths[cand].sum()
    win_wall = int(rng.choice(cand, p=weights))
    ww = min(rng.uniform(1.0, 1.9), lengths[win_wall] - 0.6)
    s0 = rng.uniform(0.3, lengths[win_wall] - ww - 0.3)
    z0 = rng.uniform(0.8, 1.0)
    window = _opening("window", walls, win_wall, s0, s0 + ww, z0, min(z0 + rng.uniform(1.1, 1.4), height - 0.25))
    style = {
        "wall_color": _pick_wall(rng),
        "floor": ["floor_wood", "floor_tile", "carpet"][int(rng.choice(3, p=[0.55, 0.25, 0.2]))],
        "floor_color": None,
        "plank_axis": int(rng.integers(2)),
        "door": [((0.92, 0.91, 0.88), "paint"), (obj.WOOD["light"], "wood"), (obj.WOOD["brown"], "wood")][int(rng.integers(3))],
        "trim_color": (0.95, 0.95, 0.93),
    }
    style["floor_color"] = {
        "floor_wood": [obj.WOOD["light"], obj.WOOD["brown"], (0.58, 0.42, 0.28)][int(rng.integers(3))],
        "floor_tile": [(0.78, 0.77, 0.74), (0.55, 0.55, 0.56), (0.72, 0.66, 0.58)][int(rng.integers(3))],
        "carpet": [(0.45, 0.45, 0.48), (0.35, 0.38, 0.45), (0.55, 0.50, 0.44)][int(rng.integers(3))],
    }[style["floor"]]
    return Room(tuple(rects), poly, float(height), door, window, scene_type, style)


def _pick_wall(rng: np.random.Generator) -> tuple[float, float, float]:
    options = [(0.86, 0.85, 0.81), (0.80, 0.77, 0.70), (0.74, 0.78, 0.80), (0.76, 0.80, 0.72), (0.84, 0.80, 0.74), (0.70, 0.70, 0.70)]
    return options[int(rng.integers(len(options)))]


def _opening(kind: str, walls: list[Wall], i: int, s0: float, s1: float, z0: float, z1: float) -> Opening:
    w = walls[i]
    return Opening(kind, i, float(s0), float(s1), float(z0), float(z1), w.point(s0), w.point(s1), w.normal.copy())


# ----------------------------------------------------------------------------------------- room meshes
def room_parts(room: Room) -> list[Part]:
    """Floor, ceiling, walls with the door and window openings, trim, the door leaf and the ceiling lights."""
    st = room.style
    parts: list[Part] = []
    for x0, y0, x1, y1 in room.rects:
        parts.append(Part(box_between((x0, y0, -0.05), (x1, y1, 0.0)), st["floor_color"], st["floor"]))
        parts.append(Part(box_between((x0, y0, room.height), (x1, y1, room.height + 0.05)), (0.93, 0.93, 0.92), "paint"))
    n = len(room.walls)
    for i, w in enumerate(room.walls):
        # extend walls through convex corners so no crack opens there (never through reflex corners)
        ext0 = WALL_THICKNESS if _convex(room.polygon, i) else 0.0
        ext1 = WALL_THICKNESS if _convex(room.polygon, (i + 1) % n) else 0.0
        holes = [(o.s0, o.s1, o.z0, o.z1) for o in (room.door, room.window) if o.wall == i]
        for s0, s1, z0, z1 in _wall_pieces(-ext0, w.length + ext1, room.height, holes):
            parts.append(Part(_wall_box(w, s0, s1, z0, z1, -WALL_THICKNESS, 0.0), st["wall_color"], "paint"))
        # skirting board, interrupted by the door
        spans = [(0.0, w.length)]
        if room.door.wall == i:
            spans = [(0.0, room.door.s0 - 0.06), (room.door.s1 + 0.06, w.length)]
        for s0, s1 in spans:
            if s1 - s0 > 0.02:
                parts.append(Part(_wall_box(w, s0, s1, 0.0, 0.08, 0.0, 0.012), st["trim_color"], "paint"))
    parts += _door_parts(room)
    parts += _window_parts(room)
    for lx, ly, lz in room.lights:
        parts.append(Part(cylinder(0.2, 0.05, (lx, ly, lz + 0.07), segments=24), (1.0, 1.0, 0.97), "emissive"))
    return parts


def _convex(poly: np.ndarray, i: int) -> bool:
    a, b, c = poly[i - 1], poly[i], poly[(i + 1) % len(poly)]
    return float(np.cross(b - a, c - b)) > 0


def _wall_pieces(s_lo: float, s_hi: float, height: float, holes) -> list[tuple[float, float, float, float]]:
    """Rectangles (s0, s1, z0, z1) covering the wall face minus the openings."""
    cuts = sorted({s_lo, s_hi, *[h[0] for h in holes], *[h[1] for h in holes]})
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        mid = (a + b) / 2
        gaps = sorted((z0, z1) for s0, s1, z0, z1 in holes if s0 < mid < s1)
        z = 0.0
        for z0, z1 in gaps:
            if z0 > z:
                out.append((a, b, z, z0))
            z = max(z, z1)
        if z < height:
            out.append((a, b, z, height))
    return out


def _wall_box(w: Wall, s0: float, s1: float, z0: float, z1: float, n0: float, n1: float):
    """A box on wall ``w`` spanning [s0, s1] along it, [z0, z1] in height and [n0, n1] along its normal."""
    local = box_between((s0, n0, z0), (s1, n1, z1))
    T = np.eye(4)
    T[:3, 0] = [*w.tangent, 0.0]
    T[:3, 1] = [*w.normal, 0.0]
    T[:3, 2] = [0.0, 0.0, 1.0]
    T[:3, 3] = [*w.p0, 0.0]
    return local.transformed(T)


def _door_parts(room: Room) -> list[Part]:
    d = room.door
    w = room.walls[d.wall]
    (col, material), trim = room.style["door"], room.style["trim_color"]
    parts = [Part(_wall_box(w, d.s0, d.s1, 0.0, d.z1, -0.06, -0.03), col, material)]
    for s0, s1, z0, z1 in ((d.s0 - 0.07, d.s0, 0.0, d.z1 + 0.07), (d.s1, d.s1 + 0.07, 0.0, d.z1 + 0.07), (d.s0, d.s1, d.z1, d.z1 + 0.07)):
        parts.append(Part(_wall_box(w, s0, s1, z0, z1, 0.0, 0.015), trim, "paint"))
    hs = d.s1 - 0.08
    parts.append(Part(_wall_box(w, hs - 0.06, hs + 0.02, 1.0, 1.03, -0.03, 0.03), obj.METAL, "metal"))
    parts.append(Part(_wall_box(w, hs - 0.025, hs + 0.025, 0.94, 1.09, -0.03, -0.02), obj.METAL, "metal"))
    return parts


def _window_parts(room: Room) -> list[Part]:
    o = room.window
    w = room.walls[o.wall]
    trim = room.style["trim_color"]
    f = 0.05
    parts = [Part(_wall_box(w, o.s0 - 0.05, o.s1 + 0.05, o.z0 - 0.03, o.z0, 0.0, 0.05), trim, "paint")]  # sill
    mid = (o.s0 + o.s1) / 2
    for s0, s1, z0, z1 in ((o.s0, o.s0 + f, o.z0, o.z1), (o.s1 - f, o.s1, o.z0, o.z1), (o.s0, o.s1, o.z0, o.z0 + f),
                           (o.s0, o.s1, o.z1 - f, o.z1), (mid - f / 2, mid + f / 2, o.z0, o.z1)):
        parts.append(Part(_wall_box(w, s0, s1, z0, z1, -0.09, -0.04), trim, "paint"))
    # what lies beyond the glass: a bright sky plane far outside (no depth: see render.SKY)
    parts.append(Part(_wall_box(w, o.s0 - 2.0, o.s1 + 2.0, o.z0 - 1.5, o.z1 + 1.5, -4.0, -3.99), (0.75, 0.86, 0.98), "sky"))
    return parts


# ----------------------------------------------------------------------------------------- placed objects
@dataclass(frozen=True, eq=False)
class SceneObject:
    """An object model placed in the room."""

    object_id: int  # 0-based, as ScanNet/ScanRefer object ids
    model: ObjectModel
    yaw: float
    position: np.ndarray  # (3,) world position of the model's origin (bottom centre)
    placement: str  # "floor" | "wall" | "on" | "under"
    support: int | None = None  # object_id of what it stands on (placement "on") or under ("under")

    @property
    def category(self) -> str:
        return self.model.category

    @property
    def color_name(self) -> str:
        return self.model.color_name

    @property
    def instance_id(self) -> int:
        """Value of this object in the instance maps (ScanNet convention: object id + 1, 0 = none)."""
        return self.object_id + 1

    @cached_property
    def transform(self) -> np.ndarray:
        return pose(self.yaw, self.position)

    @cached_property
    def parts(self) -> list[Part]:
        return [p.transformed(self.transform) for p in self.model.parts]

    @cached_property
    def aabb(self) -> tuple[np.ndarray, np.ndarray]:
        verts = np.concatenate([p.mesh.vertices for p in self.parts])
        return verts.min(axis=0), verts.max(axis=0)

    @cached_property
    def obb(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(center, size, rotation 3x3): the model's own box turned by its yaw."""
        lo, hi = self.model.bounds
        center = self.transform[:3, :3] @ ((lo + hi) / 2) + self.position
        return center, hi - lo, rot_z(self.yaw)

    @cached_property
    def footprint(self) -> np.ndarray:
        """(4, 2) floor-plan corners of the oriented box."""
        c, s, R = self.obb
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * s[:2] / 2
        return corners @ R[:2, :2].T + c[:2]


def _footprint(model: ObjectModel, yaw: float, xy, margin: float = 0.0) -> np.ndarray:
    lo, hi = model.bounds
    lo, hi = lo[:2] - margin, hi[:2] + margin
    corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    return corners @ rot_z(yaw)[:2, :2].T + np.asarray(xy)[:2]


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex quads (4, 2)."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        axes = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
        for ax in axes:
            pa, pb = a @ ax, b @ ax
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


def _edge_samples(quad: np.ndarray, step: float = 0.1) -> np.ndarray:
    pts = [quad]
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        n = max(2, int(np.linalg.norm(b - a) / step))
        pts.append(a + np.linspace(0, 1, n)[:, None] * (b - a))
    return np.concatenate(pts)


# ----------------------------------------------------------------------------------------- placement
class _Placer:
    """Mutable placement state used while one room is furnished (not exposed)."""

    def __init__(self, room: Room, rng: np.random.Generator):
        self.room = room
        self.rng = rng
        self.objects: list[SceneObject] = []
        d = room.door
        w = room.walls[d.wall]
        # keep the door swing and a walkway into the room free
        self.door_zone = np.array([w.point(d.s0 - 0.25, 0.0), w.point(d.s1 + 0.25, 0.0),
                                   w.point(d.s1 + 0.25, 1.1), w.point(d.s0 - 0.25, 1.1)])

    @property
    def full(self) -> bool:
        return len(self.objects) >= MAX_OBJECTS

    def _add(self, model: ObjectModel, yaw: float, pos, placement: str, support: int | None = None) -> SceneObject:
        o = SceneObject(len(self.objects), model, float(yaw), np.asarray(pos, dtype=np.float64), placement, support)
        self.objects.append(o)
        return o

    def floor_ok(self, model: ObjectModel, yaw: float, xy, margin: float = 0.06, ignore: tuple[int, ...] = (),
                 wall: int | None = None, s_span: tuple[float, float] | None = None) -> bool:
        fp = _footprint(model, yaw, xy)
        if not self.room.contains(_edge_samples(fp), margin=0.0).all():
            return False
        if _overlap(fp, self.door_zone):
            return False
        big = _footprint(model, yaw, xy, margin)
        for o in self.objects:
            if o.placement in ("floor", "under") and o.object_id not in ignore and _overlap(big, o.footprint):
                return False
        top = model.size[2]
        win = self.room.window
        if wall == win.wall and s_span is not None and top > win.z0 - 0.03:
            if s_span[0] < win.s1 + 0.05 and s_span[1] > win.s0 - 0.05:
                return False
        return True

    # ---- against a wall
    def against_wall(self, model: ObjectModel, tries: int = 60, corner: bool = False, walls: list[int] | None = None,
                     margin: float = 0.06) -> SceneObject | None:
        """Back against a random wall (longer walls likelier; ``corner`` pushes it to a wall's end)."""
        lo, hi = model.bounds
        room = self.room
        lengths = np.array([w.length for w in room.walls])
        cand = walls if walls is not None else list(range(len(room.walls)))
        for _ in range(tries):
            i = int(self.rng.choice(cand, p=lengths[cand] / lengths[cand].sum()))
            w = room.walls[i]
            smin, smax = -lo[0] + 0.02, w.length - hi[0] - 0.02
            if smax <= smin:
                continue
            if corner:
                s = smin + self.rng.uniform(0, 0.05) if self.rng.random() < 0.5 else smax - self.rng.uniform(0, 0.05)
            else:
                s = self.rng.uniform(smin, smax)
            yaw = float(np.arctan2(-w.normal[0], w.normal[1]))
            xy = w.point(s, -lo[1] + self.rng.uniform(0.01, 0.04))
            if self.floor_ok(model, yaw, xy, margin=margin, wall=i, s_span=(s + lo[0], s + hi[0])):
                return self._add(model, yaw, (*xy, 0.0), "floor")
        return None

    def beside(self, model: ObjectModel, anchor: SceneObject, side: int, gap: float = 0.05) -> SceneObject | None:
        """Against the same wall as ``anchor``, right next to it on ``side`` (-1 left, +1 right)."""
        lo, hi = model.bounds
        alo, ahi = anchor.model.bounds
        local_x = (ahi[0] + gap - lo[0]) if side > 0 else (alo[0] - gap - hi[0])
        R = rot_z(anchor.yaw)[:2, :2]
        back = anchor.position[:2] + R @ np.array([local_x, alo[1] - lo[1]])
        if not self.floor_ok(model, anchor.yaw, back, margin=0.02):
            return None
        return self._add(model, anchor.yaw, (*back, 0.0), "floor")

    def free(self, model: ObjectModel, tries: int = 80, clearance: float = 0.1, yaw: float | None = None,
             center_bias: bool = False) -> SceneObject | None:
        lo_b, hi_b = self.room.bounds
        for _ in range(tries):
            xy = self.rng.uniform(lo_b, hi_b)
            if center_bias:
                c = lo_b + (hi_b - lo_b) / 2
                xy = c + (xy - c) * 0.6
            y = yaw if yaw is not None else (np.pi / 2) * int(self.rng.integers(4)) + self.rng.normal(0, 0.12)
            if self.room.wall_distance(xy[None])[0] < clearance + float(np.max(model.size[:2])) / 2:
                continue
            if self.floor_ok(model, y, xy, margin=clearance):
                return self._add(model, y, (*xy, 0.0), "floor")
        return None

    def at(self, model: ObjectModel, xy, yaw: float, margin: float = 0.03, ignore: tuple[int, ...] = ()) -> SceneObject | None:
        if self.floor_ok(model, yaw, xy, margin=margin, ignore=ignore):
            return self._add(model, yaw, (*np.asarray(xy)[:2], 0.0), "floor")
        return None

    # ---- on / under other objects
    def on(self, model: ObjectModel, support: SceneObject, tries: int = 30, yaw_offset: float | None = None,
           back: bool = False) -> SceneObject | None:
        surf = support.model.surface
        if surf is None:
            return None
        lo, hi = model.bounds
        for _ in range(tries):
            dyaw = yaw_offset if yaw_offset is not None else self.rng.normal(0, 0.25)
            Rl = rot_z(dyaw)[:2, :2]
            corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]]) @ Rl.T
            ex_lo, ex_hi = corners.min(axis=0), corners.max(axis=0)
            xr = (surf.xmin - ex_lo[0], surf.xmax - ex_hi[0])
            yr = (surf.ymin - ex_lo[1], surf.ymax - ex_hi[1])
            if xr[1] < xr[0] or yr[1] < yr[0]:
                return None
            lx = self.rng.uniform(*xr)
            ly = yr[0] + self.rng.uniform(0, 0.25) * (yr[1] - yr[0]) if back else self.rng.uniform(*yr)
            xy = support.position[:2] + rot_z(support.yaw)[:2, :2] @ np.array([lx, ly])
            yaw = support.yaw + dyaw
            fp = _footprint(model, yaw, xy, 0.03)
            if any(o.support == support.object_id and o.placement == "on" and _overlap(fp, o.footprint) for o in self.objects):
                continue
            return self._add(model, yaw, (*xy, support.position[2] + surf.z), "on", support.object_id)
        return None

    def under(self, model: ObjectModel, support: SceneObject, tries: int = 20) -> SceneObject | None:
        knee = support.model.knee_space
        if knee is None or model.size[2] > knee.z:
            return None
        lo, hi = model.bounds
        for _ in range(tries):
            xr = (knee.xmin - lo[0], knee.xmax - hi[0])
            yr = (knee.ymin - lo[1], knee.ymax - hi[1])
            if xr[1] < xr[0] or yr[1] < yr[0]:
                return None
            local = np.array([self.rng.uniform(*xr), self.rng.uniform(*yr)])
            xy = support.position[:2] + rot_z(support.yaw)[:2, :2] @ local
            yaw = support.yaw + self.rng.normal(0, 0.1)
            if self.floor_ok(model, yaw, xy, margin=0.02, ignore=(support.object_id,)):
                return self._add(model, yaw, (*xy, 0.0), "under", support.object_id)
        return None

    def on_wall(self, model: ObjectModel, tries: int = 40, above: SceneObject | None = None) -> SceneObject | None:
        """Hang a picture on free wall space (optionally centred above ``above``, which stands at a wall)."""
        lo, hi = model.bounds
        room = self.room
        for _ in range(tries):
            if above is not None:
                facing = np.array([-np.sin(above.yaw), np.cos(above.yaw)])
                cands = [k for k, w in enumerate(room.walls) if w.normal @ facing > 0.9]
                if not cands:
                    return None
                i = min(cands, key=lambda k: abs(float((above.position[:2] - room.walls[k].p0) @ room.walls[k].normal)))
                w = room.walls[i]
                s = float((above.position[:2] - w.p0) @ w.tangent) + self.rng.normal(0, 0.05)
                z = max(above.aabb[1][2] + self.rng.uniform(0.2, 0.35), 1.15)
            else:
                i = int(self.rng.integers(len(room.walls)))
                w = room.walls[i]
                s = self.rng.uniform(-lo[0] + 0.2, max(-lo[0] + 0.21, w.length - hi[0] - 0.2))
                z = self.rng.uniform(1.2, 1.55)
            if z + hi[2] > room.height - 0.2 or s + lo[0] < 0.15 or s + hi[0] > w.length - 0.15:
                continue
            span = (s + lo[0] - 0.1, s + hi[0] + 0.1)
            if any(o.wall == i and span[0] < o.s1 and span[1] > o.s0 for o in (room.door, room.window)):
                continue
            yaw = float(np.arctan2(-w.normal[0], w.normal[1]))
            xy = w.point(s, -lo[1] + 0.004)
            # nothing tall may stand in front of it, and pictures keep apart
            a, b = s + lo[0] - 0.05, s + hi[0] + 0.05
            strip = np.array([w.point(a, 0.0), w.point(b, 0.0), w.point(b, 0.7), w.point(a, 0.7)])
            clash = False
            for o in self.objects:
                if o.placement == "wall":
                    clash = _overlap(_footprint(model, yaw, xy, 0.15), o.footprint)
                else:
                    clash = o.aabb[1][2] > z - 0.08 and _overlap(strip, o.footprint)
                if clash:
                    break
            if not clash:
                return self._add(model, yaw, (*xy, z), "wall")
        return None


# ----------------------------------------------------------------------------------------- furnishing plans
def _chairs_around(p: _Placer, table: SceneObject, n: int, color: str | None) -> list[SceneObject]:
    """Chairs facing the table on its sides (round tables: evenly around)."""
    rng = p.rng
    lo, hi = table.model.bounds
    out = []
    color = color or obj.random_color("chair", rng)
    slots = []
    if "round" in table.model.tags:
        r = hi[0]
        a0 = rng.uniform(0, 2 * np.pi)
        for k in range(n):
            a = a0 + 2 * np.pi * k / n
            slots.append((np.array([np.cos(a), np.sin(a)]) * (r + 0.28), a + np.pi / 2))
    else:
        w, d = hi[0] - lo[0], hi[1] - lo[1]
        per_side = max(1, int(w // 0.62))
        for side in (1, -1):
            xs = np.linspace(-w / 2, w / 2, per_side + 2)[1:-1]
            for x in xs:
                slots.append((np.array([x, side * (d / 2 + 0.27)]), np.pi if side > 0 else 0.0))
        for side in (1, -1):
            slots.append((np.array([side * (w / 2 + 0.27), 0.0]), side * np.pi / 2))
        order = list(range(len(slots)))
        # long sides first, then the ends
        rng.shuffle(order[: 2 * per_side])
        slots = [slots[i] for i in order]
    for local, dyaw in slots:
        if len(out) >= n or p.full:
            break
        model = obj.build("chair", rng, color if rng.random() < 0.8 else None)
        # slots sit 0.27 m out from the edge; move each chair so its front is 3-12 cm from the table
        half = max(-model.bounds[0][1], model.bounds[1][1])
        radial = local / np.linalg.norm(local) if "round" in table.model.tags else np.sign(local) * (np.abs(local) == np.abs(local).max())
        local = local + radial * (half + rng.uniform(0.03, 0.12) - 0.27)
        xy = table.position[:2] + rot_z(table.yaw)[:2, :2] @ (local + rng.normal(0, 0.02, 2))
        c = p.at(model, xy, table.yaw + dyaw + rng.normal(0, 0.08), margin=0.02, ignore=(table.object_id,))
        if c is not None:
            out.append(c)
    return out


def _desk_group(p: _Placer, monitors: bool = True) -> SceneObject | None:
    rng = p.rng
    desk = p.against_wall(obj.build("desk", rng))
    if desk is None:
        return None
    if not p.full:
        chair = obj.build("chair", rng)
        lo, hi = desk.model.bounds
        half = max(-chair.bounds[0][1], chair.bounds[1][1])
        local = np.array([rng.uniform(-0.25, 0.05) * (hi[0] - lo[0]), hi[1] + half + rng.uniform(0.05, 0.2)])
        xy = desk.position[:2] + rot_z(desk.yaw)[:2, :2] @ local
        p.at(chair, xy, desk.yaw + np.pi + rng.normal(0, 0.15), margin=0.02, ignore=(desk.object_id,))
    if monitors and not p.full:
        p.on(obj.build("monitor", rng), desk, yaw_offset=rng.normal(0, 0.1), back=True)
    for cat, prob, kw in (("lamp", 0.35, {"kind": "table"}), ("box", 0.25, {"small": True}), ("plant", 0.25, {"kind": "table"})):
        if rng.random() < prob and not p.full:
            p.on(obj.build(cat, rng, **kw), desk)
    if rng.random() < 0.5 and not p.full:
        p.under(obj.build("trash can" if rng.random() < 0.6 else "box", rng), desk)
    return desk


def _bed_group(p: _Placer) -> SceneObject | None:
    rng = p.rng
    bed = p.against_wall(obj.build("bed", rng), margin=0.1)
    if bed is None:
        return None
    wide = bed.model.size[0] > 1.2
    pc = obj.random_color("pillow", rng)
    for _ in range(2 if wide else 1):
        if not p.full:
            p.on(obj.build("pillow", rng, pc if rng.random() < 0.7 else None), bed, yaw_offset=rng.normal(0, 0.05))
    nc = obj.random_color("nightstand", rng)
    for side in ((-1, 1) if wide and rng.random() < 0.7 else (int(rng.choice([-1, 1])),)):
        if p.full:
            break
        ns = p.beside(obj.build("nightstand", rng, nc), bed, side, gap=rng.uniform(0.03, 0.08))
        if ns is not None and rng.random() < 0.7 and not p.full:
            p.on(obj.build("lamp", rng, kind="table"), ns)
    return bed


def _sofa_group(p: _Placer) -> SceneObject | None:
    rng = p.rng
    sofa = p.against_wall(obj.build("sofa", rng), margin=0.1)
    if sofa is None:
        return None
    pc = obj.random_color("pillow", rng)
    for _ in range(int(rng.integers(1, 4))):
        if not p.full:
            p.on(obj.build("pillow", rng, pc if rng.random() < 0.6 else None, upright=True), sofa, yaw_offset=rng.normal(0, 0.08))
    lo, hi = sofa.model.bounds
    if not p.full:
        table = obj.build("table", rng, kind="coffee")
        local = np.array([rng.normal(0, 0.05), hi[1] + rng.uniform(0.35, 0.5) + table.size[1] / 2])
        xy = sofa.position[:2] + rot_z(sofa.yaw)[:2, :2] @ local
        ct = p.at(table, xy, sofa.yaw + rng.normal(0, 0.03), margin=0.05)
        if ct is not None:
            for cat, kw in (("plant", {"kind": "table"}), ("box", {"small": True}), ("lamp", {"kind": "table"})):
                if rng.random() < 0.3 and not p.full:
                    p.on(obj.build(cat, rng, **kw), ct)
            if rng.random() < 0.6 and not p.full:  # an armchair facing the coffee table from one side
                arm = obj.build("armchair", rng)
                side = int(rng.choice([-1, 1]))
                tl, th = table.bounds
                local = np.array([side * (th[0] + 0.35 + arm.size[1] / 2), 0.0])
                xy = ct.position[:2] + rot_z(ct.yaw)[:2, :2] @ local
                p.at(arm, xy, ct.yaw - side * np.pi / 2, margin=0.05)
    if rng.random() < 0.5 and not p.full:
        p.beside(obj.build("lamp", rng, kind="floor"), sofa, int(rng.choice([-1, 1])), gap=0.1)
    return sofa


def _dining_group(p: _Placer, meeting: bool = False) -> SceneObject | None:
    rng = p.rng
    table = p.free(obj.build("table", rng), clearance=0.85, center_bias=True)
    if table is None:
        return None
    n = int(rng.integers(2, 7 if meeting else 5))
    _chairs_around(p, table, n, None)
    for cat, prob, kw in (("plant", 0.3, {"kind": "table"}), ("box", 0.3, {"small": True}), ("lamp", 0.15, {"kind": "table"}), ("monitor", 0.15 if meeting else 0.0, {})):
        if rng.random() < prob and not p.full:
            p.on(obj.build(cat, rng, **kw), table)
    return table


def _low_cabinet_group(p: _Placer) -> SceneObject | None:
    rng = p.rng
    cab = p.against_wall(obj.build("cabinet", rng, tall=False))
    if cab is None:
        return None
    for cat, prob, kw in (("plant", 0.4, {"kind": "table"}), ("lamp", 0.35, {"kind": "table"}), ("box", 0.35, {"small": True}), ("monitor", 0.15, {})):
        if rng.random() < prob and not p.full:
            p.on(obj.build(cat, rng, **kw), cab)
    return cab


def _simple(category: str, where: str = "wall", **kw):
    def step(p: _Placer):
        model = obj.build(category, p.rng, **kw)
        if where == "corner":
            return p.against_wall(model, corner=True)
        if where == "free":
            return p.free(model, clearance=0.25)
        if where == "wall_or_free":
            return p.against_wall(model) if p.rng.random() < 0.6 else p.free(model, clearance=0.3)
        if where == "picture":
            return p.on_wall(model)
        return p.against_wall(model)
    return step


def _bookshelves(p: _Placer):
    """One bookshelf, sometimes with a second of the same make beside it."""
    model = obj.build("bookshelf", p.rng)
    first = p.against_wall(model)
    if first is not None and p.rng.random() < 0.35 and not p.full:
        p.beside(obj.build("bookshelf", p.rng, model.color_name if p.rng.random() < 0.5 else None), first,
                 int(p.rng.choice([-1, 1])), gap=p.rng.uniform(0.02, 0.3))
    return first


def _boxes(p: _Placer):
    """A few boxes on the floor, sometimes one stacked on another."""
    first = None
    for _ in range(int(p.rng.integers(1, 4))):
        if p.full:
            break
        b = _simple("box", "wall_or_free")(p)
        first = first or b
        if b is not None and p.rng.random() < 0.3 and not p.full:
            p.on(obj.build("box", p.rng, small=True), b)
    return first


def _plan(scene_type: str, rng: np.random.Generator) -> list:
    """Furnishing steps for a room type, most important first."""
    def maybe(prob, step):
        return [step] if rng.random() < prob else []

    if scene_type.startswith("Bedroom"):
        steps = [_bed_group] + maybe(0.25, _bed_group) + [_simple("cabinet", tall=True)] + maybe(0.6, _desk_group)
        steps += maybe(0.5, _bookshelves) + maybe(0.4, _low_cabinet_group) + maybe(0.3, _simple("armchair", "corner"))
    elif scene_type.startswith("Living"):
        steps = [_sofa_group] + maybe(0.6, _dining_group) + maybe(0.7, _low_cabinet_group) + maybe(0.6, _bookshelves)
        steps += maybe(0.3, _sofa_group) + maybe(0.4, _simple("armchair", "corner"))
    else:
        steps = [_desk_group, _desk_group] + maybe(0.6, _desk_group) + maybe(0.5, lambda p: _dining_group(p, meeting=True))
        steps += [_simple("cabinet")] + maybe(0.6, _bookshelves) + maybe(0.3, _simple("cabinet"))
    extras = [_simple("plant", "corner"), _simple("lamp", "corner", kind="floor"), _boxes, _simple("trash can", "wall"),
              _simple("picture", "picture"), _simple("picture", "picture"), _simple("plant", "corner"), _simple("chair", "wall")]
    order = rng.permutation(len(extras))
    return steps + [extras[i] for i in order]


def furnish(room: Room, rng: np.random.Generator) -> list[SceneObject]:
    """Place 6-20 objects in ``room`` following its scene type's plan."""
    p = _Placer(room, rng)
    target = int(rng.integers(MIN_OBJECTS + 2, MAX_OBJECTS + 1))
    for step in _plan(room.scene_type, rng):
        if len(p.objects) >= target:
            break
        step(p)
    if p.objects and rng.random() < 0.6:  # a picture above the bed or sofa when there is room for one
        big = [o for o in p.objects if o.category in ("bed", "sofa")]
        if big and not p.full:
            p.on_wall(obj.build("picture", rng), above=big[0])
    fillers = [_simple("box", "wall_or_free"), _simple("plant", "corner"), _simple("trash can", "wall"),
               _simple("picture", "picture"), _simple("chair", "wall")]
    k = 0
    while len(p.objects) < MIN_OBJECTS and k < 40:
        fillers[k % len(fillers)](p)
        k += 1
    return p.objects
