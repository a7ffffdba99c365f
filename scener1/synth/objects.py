"""Furniture and props built from primitive meshes, one builder per category.

Every builder returns an :class:`ObjectModel` in its own frame: z up, the footprint centred on the origin,
the bottom at z = 0 and the *front* (where one sits, looks or opens doors) facing +y. Placement then only
needs a yaw and a position. Sizes follow common furniture dimensions with random variation so that most
rooms hold distinguishable objects of the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import Mesh, box_between, cylinder, ellipsoid, pose, rot_x, superellipsoid

# sRGB albedo (0..1) that each colour name stands for; renders keep the hue so the name stays right.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.70, 0.12, 0.11),
    "orange": (0.88, 0.44, 0.10),
    "yellow": (0.90, 0.76, 0.16),
    "green": (0.20, 0.50, 0.22),
    "blue": (0.15, 0.30, 0.70),
    "purple": (0.42, 0.20, 0.56),
    "pink": (0.90, 0.52, 0.62),
    "brown": (0.42, 0.26, 0.14),
    "beige": (0.82, 0.74, 0.57),
    "white": (0.90, 0.90, 0.88),
    "grey": (0.48, 0.48, 0.50),
    "black": (0.09, 0.09, 0.10),
}

# Materials the renderer understands (texture and shading model per pixel).
MATERIALS = (
    "paint", "wood", "fabric", "metal", "plastic", "leaf", "screen", "emissive", "cardboard",
    "floor_wood", "floor_tile", "carpet", "sky", "shade", "paper",
)

WOOD = {"brown": (0.42, 0.26, 0.14), "light": (0.66, 0.50, 0.32), "dark": (0.24, 0.14, 0.08)}
METAL = (0.55, 0.56, 0.58)
DARK = (0.07, 0.07, 0.08)


@dataclass(frozen=True, eq=False)
class Part:
    """One primitive of an object with its surface appearance."""

    mesh: Mesh
    color: tuple[float, float, float]  # sRGB albedo 0..1
    material: str  # one of MATERIALS

    def transformed(self, T: np.ndarray) -> "Part":
        return Part(self.mesh.transformed(T), self.color, self.material)


@dataclass(frozen=True)
class Surface:
    """A horizontal rectangle (object frame) on which smaller things can stand."""

    z: float
    xmin: float
    xmax: float
    ymin: float
    ymax: float


@dataclass(frozen=True, eq=False)
class ObjectModel:
    """An object in its own frame (see the module docstring)."""

    category: str
    color_name: str
    parts: tuple[Part, ...]
    surface: Surface | None = None  # top (or seat) where small objects may be put
    knee_space: Surface | None = None  # free floor area beneath (z = clearance height)
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.min([p.mesh.vertices.min(axis=0) for p in self.parts], axis=0)
        hi = np.max([p.mesh.vertices.max(axis=0) for p in self.parts], axis=0)
        return lo, hi

    @property
    def size(self) -> np.ndarray:
        lo, hi = self.bounds
        return hi - lo


# --------------------------------------------------------------------------------------- helpers
def _shade(rgb, factor: float) -> tuple[float, float, float]:
    return tuple(float(np.clip(c * factor, 0.0, 1.0)) for c in rgb)


def _vary(rgb, rng: np.random.Generator, amount: float = 0.05) -> tuple[float, float, float]:
    """The same named colour with a small per-instance difference (real objects are never identical)."""
    f = 1.0 + rng.uniform(-amount, amount)
    return tuple(float(np.clip(c * f + rng.uniform(-0.015, 0.015), 0.0, 1.0)) for c in rgb)


def _box(lo, hi, color, material) -> Part:
    return Part(box_between(lo, hi), tuple(color), material)


def _cyl(center, radius, height, color, material, **kw) -> Part:
    return Part(cylinder(radius, height, center, **kw), tuple(color), material)


def _legs(xs: float, ys: float, height: float, thick: float, color, material, round_: bool = False) -> list[Part]:
    """Four legs at (+-xs, +-ys) from the floor to ``height``."""
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            if round_:
                parts.append(_cyl((sx * xs, sy * ys, 0.0), thick / 2, height, color, material, segments=10))
            else:
                h = thick / 2
                parts.append(_box((sx * xs - h, sy * ys - h, 0.0), (sx * xs + h, sy * ys + h, height), color, material))
    return parts


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


# --------------------------------------------------------------------------------------- builders
def build_chair(rng: np.random.Generator, color: str) -> ObjectModel:
    c = _vary(COLORS[color], rng)
    if rng.random() < 0.4:
        return _office_chair(rng, color, c)
    w, d = rng.uniform(0.42, 0.50), rng.uniform(0.42, 0.50)
    sh, bh, st = rng.uniform(0.43, 0.48), rng.uniform(0.80, 0.95), 0.05
    wooden = rng.random() < 0.5
    leg_c, leg_m = (_vary(_pick(rng, list(WOOD.values())), rng), "wood") if wooden else (METAL if rng.random() < 0.5 else DARK, "metal")
    seat_m = _pick(rng, ["fabric", "plastic", "wood"])
    parts = _legs(w / 2 - 0.03, d / 2 - 0.03, sh - st, 0.035, leg_c, leg_m)
    parts.append(_box((-w / 2, -d / 2, sh - st), (w / 2, d / 2, sh), c, seat_m))
    for sx in (-1, 1):  # rear posts carry the back
        x = sx * (w / 2 - 0.03)
        parts.append(_box((x - 0.0175, -d / 2 + 0.0125, sh), (x + 0.0175, -d / 2 + 0.0475, bh), leg_c, leg_m))
    parts.append(_box((-w / 2 + 0.02, -d / 2 + 0.01, sh + rng.uniform(0.12, 0.2)), (w / 2 - 0.02, -d / 2 + 0.045, bh - 0.01), c, seat_m))
    return ObjectModel("chair", color, tuple(parts))


def _office_chair(rng: np.random.Generator, color: str, c) -> ObjectModel:
    w, d = rng.uniform(0.46, 0.52), rng.uniform(0.44, 0.50)
    sh, bh = rng.uniform(0.45, 0.50), rng.uniform(0.90, 1.05)
    parts = []
    for k in range(5):  # star base
        spoke = box_between((0.0, -0.02, 0.04), (0.30, 0.02, 0.08)).transformed(pose(2 * np.pi * k / 5 + 0.3))
        parts.append(Part(spoke, DARK, "plastic"))
        tip = pose(2 * np.pi * k / 5 + 0.3) @ np.array([0.28, 0.0, 0.0, 1.0])
        parts.append(Part(ellipsoid((0.05, 0.05, 0.05), (tip[0], tip[1], 0.025), rings=4, segments=6), DARK, "plastic"))
    parts.append(_cyl((0, 0, 0.08), 0.025, sh - 0.16, METAL, "metal", segments=10))
    parts.append(Part(superellipsoid((w, d, 0.08), (0, 0.01, sh - 0.04), exponent=0.3), c, "fabric"))
    parts.append(_box((-0.025, -d / 2 + 0.01, sh - 0.08), (0.025, -d / 2 + 0.05, sh + 0.15), DARK, "plastic"))
    parts.append(Part(superellipsoid((w - 0.04, 0.07, bh - sh - 0.14), (0, -d / 2 + 0.04, (bh + sh + 0.14) / 2), exponent=0.3), c, "fabric"))
    if rng.random() < 0.6:  # armrests
        for sx in (-1, 1):
            x = sx * (w / 2 + 0.01)
            parts.append(_box((x - 0.015, -0.08, sh - 0.04), (x + 0.015, -0.05, sh + 0.18), DARK, "plastic"))
            parts.append(_box((x - 0.03, -0.15, sh + 0.18), (x + 0.03, 0.12, sh + 0.21), DARK, "plastic"))
    return ObjectModel("chair", color, tuple(parts), tags=("office",))


def build_table(rng: np.random.Generator, color: str, kind: str | None = None) -> ObjectModel:
    """A dining/meeting table (rectangular or round) or a low coffee table (``kind='coffee'``)."""
    c = _vary(COLORS[color], rng)
    mat = "wood" if color in ("brown", "beige") or rng.random() < 0.3 else "plastic"
    kind = kind or ("round" if rng.random() < 0.3 else "rect")
    if kind == "round":
        r, h = rng.uniform(0.45, 0.60), rng.uniform(0.72, 0.76)
        parts = [
            _cyl((0, 0, h - 0.04), r, 0.04, c, mat, segments=32),
            _cyl((0, 0, 0.03), 0.05, h - 0.07, METAL if color != "black" else DARK, "metal", segments=12),
            _cyl((0, 0, 0), 0.26, 0.03, DARK, "metal", segments=24),
        ]
        top = Surface(h, -r * 0.6, r * 0.6, -r * 0.6, r * 0.6)
        return ObjectModel("table", color, tuple(parts), top, Surface(h - 0.06, -r * 0.6, r * 0.6, -r * 0.6, r * 0.6), tags=("round",))
    if kind == "coffee":
        w, d, h = rng.uniform(0.9, 1.3), rng.uniform(0.5, 0.7), rng.uniform(0.40, 0.47)
    else:
        w, d, h = rng.uniform(1.0, 1.8), rng.uniform(0.75, 1.0), rng.uniform(0.72, 0.77)
    t = 0.04
    leg_c = c if rng.random() < 0.6 else (METAL if color != "black" else DARK)
    parts = [_box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h), c, mat)]
    parts += _legs(w / 2 - 0.07, d / 2 - 0.07, h - t, 0.055, leg_c, mat if leg_c is c else "metal")
    for sy in (-1, 1):  # apron under the top
        parts.append(_box((-w / 2 + 0.06, sy * (d / 2 - 0.07) - 0.01, h - t - 0.08), (w / 2 - 0.06, sy * (d / 2 - 0.07) + 0.01, h - t), c, mat))
    if kind == "coffee" and rng.random() < 0.6:  # lower shelf
        parts.append(_box((-w / 2 + 0.05, -d / 2 + 0.05, 0.10), (w / 2 - 0.05, d / 2 - 0.05, 0.12), c, mat))
    top = Surface(h, -w / 2 + 0.08, w / 2 - 0.08, -d / 2 + 0.08, d / 2 - 0.08)
    knee = Surface(h - t - 0.1, -w / 2 + 0.12, w / 2 - 0.12, -d / 2 + 0.12, d / 2 - 0.12)
    return ObjectModel("table", color, tuple(parts), top, None if kind == "coffee" else knee, tags=(kind,))


def build_desk(rng: np.random.Generator, color: str) -> ObjectModel:
    c = _vary(COLORS[color], rng)
    mat = "wood" if color in ("brown", "beige") else "plastic"
    w, d, h = rng.uniform(1.1, 1.6), rng.uniform(0.6, 0.75), rng.uniform(0.73, 0.76)
    body = _shade(c, 0.92)
    parts = [_box((-w / 2, -d / 2, h - 0.03), (w / 2, d / 2, h), c, mat)]
    px0 = w / 2 - 0.43  # drawer pedestal on the right
    parts.append(_box((px0, -d / 2 + 0.02, 0.0), (w / 2 - 0.01, d / 2 - 0.04, h - 0.03), body, mat))
    dh = (h - 0.05) / 3
    handle = METAL if color != "grey" else DARK
    for k in range(3):
        z0 = 0.02 + k * dh
        parts.append(_box((px0 + 0.01, d / 2 - 0.04, z0 + 0.005), (w / 2 - 0.02, d / 2 - 0.022, z0 + dh - 0.005), c, mat))
        xm = (px0 + w / 2) / 2
        parts.append(_box((xm - 0.06, d / 2 - 0.022, z0 + dh - 0.05), (xm + 0.06, d / 2 - 0.005, z0 + dh - 0.035), handle, "metal"))
    parts.append(_box((-w / 2 + 0.01, -d / 2 + 0.02, 0.0), (-w / 2 + 0.04, d / 2 - 0.02, h - 0.03), body, mat))  # left panel
    parts.append(_box((-w / 2 + 0.04, -d / 2 + 0.04, h - 0.38), (px0, -d / 2 + 0.06, h - 0.03), body, mat))  # modesty panel
    top = Surface(h, -w / 2 + 0.06, w / 2 - 0.06, -d / 2 + 0.06, d / 2 - 0.06)
    knee = Surface(h - 0.1, -w / 2 + 0.08, px0 - 0.04, -d / 2 + 0.1, d / 2 - 0.02)
    return ObjectModel("desk", color, tuple(parts), top, knee)


def build_bed(rng: np.random.Generator, color: str) -> ObjectModel:
    """A bed whose named colour is its blanket; pillows are separate objects put on it."""
    c = _vary(COLORS[color], rng)
    w = rng.uniform(0.9, 1.0) if rng.random() < 0.4 else rng.uniform(1.4, 1.8)
    L, hb = rng.uniform(1.95, 2.1), rng.uniform(0.95, 1.2)
    frame = _vary(_pick(rng, [WOOD["brown"], WOOD["light"], WOOD["dark"], COLORS["white"], COLORS["grey"]]), rng)
    sheet = _vary((0.93, 0.92, 0.88), rng, 0.02)
    y0 = -L / 2
    parts = _legs(w / 2 - 0.05, L / 2 - 0.08, 0.12, 0.06, frame, "wood")
    parts.append(_box((-w / 2, y0 + 0.06, 0.12), (w / 2, L / 2, 0.35), frame, "wood"))
    parts.append(_box((-w / 2 - 0.03, y0, 0.0), (w / 2 + 0.03, y0 + 0.06, hb), frame, "wood"))  # headboard
    parts.append(Part(superellipsoid((w - 0.04, L - 0.1, 0.2), (0, 0.02, 0.45), exponent=0.2), sheet, "fabric"))
    yb = y0 + 0.55 + rng.uniform(0.0, 0.1)  # blanket from here to the foot, hanging over the sides
    parts.append(_box((-w / 2 - 0.015, yb, 0.53), (w / 2 + 0.015, L / 2 + 0.015, 0.575), c, "fabric"))
    for sx in (-1, 1):
        parts.append(_box((sx * (w / 2 + 0.005) - 0.01, yb, 0.27), (sx * (w / 2 + 0.005) + 0.01, L / 2 + 0.015, 0.56), c, "fabric"))
    parts.append(_box((-w / 2 - 0.015, L / 2 + 0.005, 0.27), (w / 2 + 0.015, L / 2 + 0.025, 0.56), c, "fabric"))
    surf = Surface(0.55, -w / 2 + 0.05, w / 2 - 0.05, y0 + 0.1, yb - 0.03)
    return ObjectModel("bed", color, tuple(parts), surf)


def build_sofa(rng: np.random.Generator, color: str, seats: int | None = None) -> ObjectModel:
    c = _vary(COLORS[color], rng)
    seats = seats or int(rng.integers(2, 4))
    category = "armchair" if seats == 1 else "sofa"
    a = rng.uniform(0.14, 0.22)
    w = 2 * a + seats * rng.uniform(0.52, 0.62)
    d, hb = rng.uniform(0.82, 0.95), rng.uniform(0.78, 0.9)
    legs = _legs(w / 2 - 0.06, d / 2 - 0.06, 0.08, 0.04, WOOD["dark"], "wood")
    parts = legs + [_box((-w / 2, -d / 2, 0.08), (w / 2, d / 2, 0.3), c, "fabric")]
    parts.append(_box((-w / 2 + a, -d / 2, 0.3), (w / 2 - a, -d / 2 + 0.16, hb), c, "fabric"))  # back
    cw = (w - 2 * a) / seats
    for k in range(seats):
        x0 = -w / 2 + a + k * cw
        parts.append(Part(superellipsoid((cw - 0.01, d - 0.28, 0.15), (x0 + cw / 2, 0.14 - 0.01, 0.37), exponent=0.25), _shade(c, 1.03), "fabric"))
        parts.append(Part(superellipsoid((cw - 0.01, 0.16, hb - 0.48), (x0 + cw / 2, -d / 2 + 0.22, (hb + 0.44) / 2), exponent=0.25), _shade(c, 1.03), "fabric"))
    for sx in (-1, 1):
        x = sx * (w / 2 - a / 2)
        parts.append(Part(superellipsoid((a, d, 0.56), (x, 0, 0.34), exponent=0.2), c, "fabric"))
    surf = Surface(0.44, -w / 2 + a + 0.05, w / 2 - a - 0.05, -d / 2 + 0.3, -d / 2 + 0.42)
    return ObjectModel(category, color, tuple(parts), surf)


def build_armchair(rng: np.random.Generator, color: str) -> ObjectModel:
    return build_sofa(rng, color, seats=1)


def build_cabinet(rng: np.random.Generator, color: str, tall: bool | None = None) -> ObjectModel:
    c = _vary(COLORS[color], rng)
    mat = "wood" if color in ("brown", "beige") else "plastic"
    tall = rng.random() < 0.45 if tall is None else tall
    w, d = rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.6)
    h = rng.uniform(1.6, 2.0) if tall else rng.uniform(0.75, 0.95)
    parts = [_box((-w / 2 + 0.03, -d / 2, 0.0), (w / 2 - 0.03, d / 2 - 0.05, 0.07), _shade(c, 0.6), mat)]
    parts.append(_box((-w / 2, -d / 2, 0.07), (w / 2, d / 2 - 0.015, h), _shade(c, 0.9), mat))
    n = 2 if w > 0.7 else 1
    dw = (w - 0.01) / n
    handle = METAL if color not in ("white", "grey") else DARK
    for k in range(n):
        x0 = -w / 2 + 0.005 + k * dw
        z1 = h - 0.01
        parts.append(_box((x0 + 0.003, d / 2 - 0.015, 0.075), (x0 + dw - 0.003, d / 2, z1), c, mat))
        hx = x0 + dw - 0.05 if (k == 0 and n == 2) or n == 1 else x0 + 0.05
        zc = 1.0 if tall else h - 0.15
        parts.append(_box((hx - 0.01, d / 2, zc - 0.08), (hx + 0.01, d / 2 + 0.02, zc + 0.08), handle, "metal"))
    surf = None if tall else Surface(h, -w / 2 + 0.06, w / 2 - 0.06, -d / 2 + 0.06, d / 2 - 0.06)
    return ObjectModel("cabinet", color, tuple(parts), surf, tags=("tall",) if tall else ("low",))


def build_nightstand(rng: np.random.Generator, color: str) -> ObjectModel:
    c = _vary(COLORS[color], rng)
    mat = "wood" if color in ("brown", "beige") else "plastic"
    w, d, h = rng.uniform(0.4, 0.55), rng.uniform(0.35, 0.45), rng.uniform(0.45, 0.6)
    parts = _legs(w / 2 - 0.03, d / 2 - 0.03, 0.08, 0.03, _shade(c, 0.7), mat)
    parts.append(_box((-w / 2, -d / 2, 0.08), (w / 2, d / 2 - 0.015, h), _shade(c, 0.88), mat))
    dh = (h - 0.1) / 2
    for k in range(2):
        z0 = 0.09 + k * dh
        parts.append(_box((-w / 2 + 0.01, d / 2 - 0.015, z0 + 0.004), (w / 2 - 0.01, d / 2, z0 + dh - 0.004), c, mat))
        parts.append(_box((-0.04, d / 2, z0 + dh / 2 - 0.01), (0.04, d / 2 + 0.02, z0 + dh / 2 + 0.01), METAL, "metal"))
    surf = Surface(h, -w / 2 + 0.05, w / 2 - 0.05, -d / 2 + 0.05, d / 2 - 0.05)
    return ObjectModel("nightstand", color, tuple(parts), surf)


_BOOK_COLORS = [(0.55, 0.12, 0.10), (0.12, 0.22, 0.45), (0.15, 0.35, 0.18), (0.85, 0.80, 0.68), (0.20, 0.20, 0.22),
                (0.75, 0.55, 0.15), (0.45, 0.15, 0.35), (0.30, 0.45, 0.60), (0.80, 0.35, 0.20), (0.9, 0.9, 0.88)]


def build_bookshelf(rng: np.random.Generator, color: str) -> ObjectModel:
    c = _vary(COLORS[color], rng)
    mat = "wood" if color in ("brown", "beige") else "plastic"
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.28, 0.38), rng.uniform(1.4, 2.0)
    t = 0.02
    parts = [
        _box((-w / 2, -d / 2, 0), (-w / 2 + t, d / 2, h), c, mat),
        _box((w / 2 - t, -d / 2, 0), (w / 2, d / 2, h), c, mat),
        _box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h), c, mat),
        _box((-w / 2 + t, -d / 2 + 0.01, 0), (w / 2 - t, d / 2, 0.07), c, mat),
        _box((-w / 2 + t, -d / 2, 0), (w / 2 - t, -d / 2 + 0.01, h - t), _shade(c, 0.8), mat),
    ]
    n = max(3, int(round((h - 0.09) / 0.34)))
    levels = np.linspace(0.07, h - t, n + 1)
    books: list[Mesh] = []
    book_cols = []
    for k, z in enumerate(levels[:-1]):
        if k > 0:
            parts.append(_box((-w / 2 + t, -d / 2 + 0.01, z - t), (w / 2 - t, d / 2, z), c, mat))
        space = levels[k + 1] - z - t
        x = -w / 2 + t + rng.uniform(0.0, 0.08)
        xend = w / 2 - t - rng.uniform(0.0, 0.2)
        while x < xend - 0.03:
            if rng.random() < 0.12:  # gap
                x += rng.uniform(0.05, 0.15)
                continue
            bw = rng.uniform(0.02, 0.05)
            bh = rng.uniform(0.6, 0.92) * space
            bd = rng.uniform(0.6, 0.9) * (d - 0.03)
            books.append(box_between((x, -d / 2 + 0.015, z), (x + bw, -d / 2 + 0.015 + bd, z + bh)))
            book_cols.append(_vary(_pick(rng, _BOOK_COLORS), rng, 0.1))
            x += bw + 0.002
    parts += [Part(m, col, "paper") for m, col in zip(books, book_cols)]
    return ObjectModel("bookshelf", color, tuple(parts))


def build_lamp(rng: np.random.Generator, color: str, kind: str | None = None) -> ObjectModel:
    """A floor lamp or (``kind='table'``) a table lamp; the shade carries the colour and glows."""
    c = _vary(COLORS[color], rng)
    kind = kind or "floor"
    metal = DARK if rng.random() < 0.5 else METAL
    if kind == "floor":
        h = rng.uniform(1.4, 1.75)
        rb, rt, sh = rng.uniform(0.18, 0.24), rng.uniform(0.11, 0.15), rng.uniform(0.24, 0.32)
        parts = [
            _cyl((0, 0, 0), rng.uniform(0.13, 0.16), 0.03, metal, "metal", segments=20),
            _cyl((0, 0, 0.03), 0.013, h - sh - 0.01, metal, "metal", segments=8),
            _cyl((0, 0, h - sh), rb, sh, c, "shade", radius_top=rt, caps=False, segments=24),
        ]
    else:
        h = rng.uniform(0.38, 0.55)
        rb, rt, sh = rng.uniform(0.12, 0.16), rng.uniform(0.07, 0.10), rng.uniform(0.15, 0.2)
        body = h - sh - 0.03
        base_c = _vary(_pick(rng, [COLORS["white"], COLORS["black"], (0.7, 0.6, 0.45), METAL]), rng)
        if rng.random() < 0.5:
            parts = [Part(ellipsoid((0.13, 0.13, body * 0.7), (0, 0, body * 0.35)), base_c, "plastic"),
                     _cyl((0, 0, body * 0.6), 0.01, body * 0.4 + 0.05, metal, "metal", segments=8)]
        else:
            parts = [_cyl((0, 0, 0), 0.07, 0.02, base_c, "metal", segments=16),
                     _cyl((0, 0, 0.02), 0.012, body + 0.03, base_c, "metal", segments=8)]
        parts.append(_cyl((0, 0, h - sh), rb, sh, c, "shade", radius_top=rt, caps=False, segments=20))
    return ObjectModel("lamp", color, tuple(parts), tags=(kind,))


def build_plant(rng: np.random.Generator, color: str = "green", kind: str | None = None) -> ObjectModel:
    """A potted plant (floor-standing or small for tables); its named colour is the foliage's green."""
    kind = kind or "floor"
    pot_c = _vary(_pick(rng, [(0.70, 0.36, 0.22), COLORS["white"], COLORS["grey"], COLORS["black"], (0.85, 0.8, 0.7)]), rng)
    greens = [(0.16, 0.42, 0.14), (0.22, 0.50, 0.18), (0.12, 0.34, 0.12), (0.28, 0.52, 0.20)]
    if kind == "floor":
        pr, ph = rng.uniform(0.12, 0.18), rng.uniform(0.25, 0.38)
        top, spread, n, leaf = rng.uniform(0.8, 1.4), rng.uniform(0.22, 0.36), int(rng.integers(7, 12)), (0.18, 0.34)
    else:
        pr, ph = rng.uniform(0.05, 0.08), rng.uniform(0.08, 0.12)
        top, spread, n, leaf = rng.uniform(0.25, 0.38), rng.uniform(0.06, 0.1), int(rng.integers(4, 7)), (0.07, 0.13)
    parts = [
        _cyl((0, 0, 0), pr * 0.75, ph, pot_c, "plastic", radius_top=pr, segments=18),
        _cyl((0, 0, ph - 0.02), pr * 0.95, 0.012, (0.18, 0.12, 0.08), "fabric", segments=18),
    ]
    stem_top = ph + (top - ph) * 0.55
    parts.append(_cyl((0, 0, ph - 0.02), max(0.006, pr * 0.1), stem_top - ph + 0.02, (0.30, 0.22, 0.12), "wood", segments=6))
    for _ in range(n):
        s = rng.uniform(*leaf)
        r = rng.uniform(0.0, spread)
        a = rng.uniform(0, 2 * np.pi)
        z = rng.uniform(stem_top - (top - ph) * 0.25, top - s * 0.4)
        z = min(z, top - s * 0.45)
        size = (s, s * rng.uniform(0.8, 1.2), s * rng.uniform(0.7, 1.0))
        parts.append(Part(ellipsoid(size, (r * np.cos(a), r * np.sin(a), z - size[2] / 2 + size[2] / 2), rings=6, segments=9),
                          _vary(_pick(rng, greens), rng, 0.1), "leaf"))
    return ObjectModel("plant", "green", tuple(parts), tags=(kind,))


_SCREEN_CONTENT = [(0.20, 0.45, 0.85), (0.10, 0.55, 0.60), (0.15, 0.30, 0.55), (0.35, 0.25, 0.60), (0.04, 0.04, 0.05)]


def build_monitor(rng: np.random.Generator, color: str) -> ObjectModel:
    c = _vary(COLORS[color], rng)
    w = rng.uniform(0.48, 0.66)
    hm = w * rng.uniform(0.56, 0.62)
    z0 = rng.uniform(0.08, 0.13)
    screen = _pick(rng, _SCREEN_CONTENT)
    parts = [
        _box((-0.11, -0.12, 0.0), (0.11, 0.05, 0.015), c, "plastic"),
        _box((-0.025, -0.07, 0.015), (0.025, -0.045, z0 + hm * 0.4), c, "plastic"),
        _box((-w / 2, -0.045, z0), (w / 2, -0.015, z0 + hm), c, "plastic"),
        _box((-w / 2 + 0.012, -0.015, z0 + 0.014), (w / 2 - 0.012, -0.012, z0 + hm - 0.012), screen, "screen"),
    ]
    return ObjectModel("monitor", color, tuple(parts))


def build_trash_can(rng: np.random.Generator, color: str) -> ObjectModel:
    c = _vary(COLORS[color], rng)
    h = rng.uniform(0.30, 0.48)
    if rng.random() < 0.65:
        r = rng.uniform(0.12, 0.18)
        parts = [_cyl((0, 0, 0), r * 0.9, h, c, "plastic", radius_top=r, caps=False, bottom_cap=True, segments=22),
                 _cyl((0, 0, h - 0.02), r + 0.006, 0.02, _shade(c, 0.8), "plastic", caps=False, segments=22),
                 _cyl((0, 0, 0.005), r * 0.88, 0.001, (0.12, 0.12, 0.12), "plastic", segments=22)]
    else:
        w, d, t = rng.uniform(0.22, 0.32), rng.uniform(0.18, 0.26), 0.012
        parts = [_box((-w / 2, -d / 2, 0), (w / 2, d / 2, 0.01), c, "plastic")]
        parts += [_box((-w / 2, -d / 2, 0), (w / 2, -d / 2 + t, h), c, "plastic"),
                  _box((-w / 2, d / 2 - t, 0), (w / 2, d / 2, h), c, "plastic"),
                  _box((-w / 2, -d / 2, 0), (-w / 2 + t, d / 2, h), c, "plastic"),
                  _box((w / 2 - t, -d / 2, 0), (w / 2, d / 2, h), c, "plastic")]
    return ObjectModel("trash can", color, tuple(parts))


def build_box(rng: np.random.Generator, color: str, small: bool = False) -> ObjectModel:
    c = _vary(COLORS[color], rng)
    scale = 0.55 if small else 1.0
    w, d, h = (rng.uniform(0.28, 0.6) * scale, rng.uniform(0.22, 0.45) * scale, rng.uniform(0.18, 0.45) * scale)
    if color in ("brown", "beige"):  # cardboard with a tape strip
        parts = [_box((-w / 2, -d / 2, 0), (w / 2, d / 2, h), c, "cardboard"),
                 _box((-0.025, -d / 2 - 0.001, h - 0.002), (0.025, d / 2 + 0.001, h + 0.002), _shade(c, 1.25), "plastic"),
                 _box((-0.025, d / 2 - 0.001, h - 0.08), (0.025, d / 2 + 0.002, h), _shade(c, 1.25), "plastic")]
    else:  # storage box with a lid
        parts = [_box((-w / 2, -d / 2, 0), (w / 2, d / 2, h - 0.03), c, "plastic"),
                 _box((-w / 2 - 0.008, -d / 2 - 0.008, h - 0.035), (w / 2 + 0.008, d / 2 + 0.008, h), _shade(c, 0.85), "plastic")]
    return ObjectModel("box", color, tuple(parts), Surface(h, -w / 2 + 0.03, w / 2 - 0.03, -d / 2 + 0.03, d / 2 - 0.03))


def build_pillow(rng: np.random.Generator, color: str, upright: bool = False) -> ObjectModel:
    c = _vary(COLORS[color], rng)
    w, l, t = rng.uniform(0.40, 0.62), rng.uniform(0.32, 0.45), rng.uniform(0.12, 0.17)
    size = (w, t, l) if upright else (w, l, t)
    mesh = superellipsoid(size, (0, 0, size[2] / 2), exponent=0.35)
    return ObjectModel("pillow", color, (Part(mesh, c, "fabric"),), tags=("upright",) if upright else ("flat",))


def build_picture(rng: np.random.Generator, color: str) -> ObjectModel:
    """A framed picture (abstract or landscape); its colour name is the canvas background's."""
    c = _vary(COLORS[color], rng)
    w, h = rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.75)
    fw, t = rng.uniform(0.025, 0.05), 0.03
    frame = _vary(_pick(rng, [COLORS["black"], COLORS["white"], WOOD["brown"], WOOD["light"]]), rng)
    y0, y1 = -t / 2, t / 2
    parts = [
        _box((-w / 2, y0, 0), (w / 2, y1, fw), frame, "wood"),
        _box((-w / 2, y0, h - fw), (w / 2, y1, h), frame, "wood"),
        _box((-w / 2, y0, fw), (-w / 2 + fw, y1, h - fw), frame, "wood"),
        _box((w / 2 - fw, y0, fw), (w / 2, y1, h - fw), frame, "wood"),
        _box((-w / 2 + fw, y0, fw), (w / 2 - fw, y1 - 0.008, h - fw), c, "paper"),
    ]
    iw, ih = w - 2 * fw, h - 2 * fw
    others = [k for k in COLORS if k != color]
    if rng.random() < 0.5:  # abstract blocks, each smaller than the background so its colour dominates
        for _ in range(int(rng.integers(2, 4))):
            bw, bh = rng.uniform(0.1, 0.35) * iw, rng.uniform(0.1, 0.35) * ih
            x = rng.uniform(-iw / 2, iw / 2 - bw)
            z = fw + rng.uniform(0, ih - bh)
            parts.append(_box((x, y1 - 0.0075, z), (x + bw, y1 - 0.006, z + bh), COLORS[_pick(rng, others)], "paper"))
    else:  # a simple landscape: hills and a sun
        hill = _vary(_pick(rng, [(0.25, 0.45, 0.2), (0.45, 0.35, 0.2)]), rng)
        parts.append(_box((-iw / 2, y1 - 0.0075, fw), (iw / 2, y1 - 0.006, fw + ih * 0.3), hill, "paper"))
        sun = cylinder(min(iw, ih) * 0.1, 0.0015, (0, 0, 0), segments=16)
        T = np.eye(4)  # stand the disc up, facing +y
        T[:3, :3] = rot_x(-np.pi / 2)
        T[:3, 3] = (rng.uniform(-iw / 4, iw / 4), y1 - 0.0075, fw + ih * 0.7)
        parts.append(Part(sun.transformed(T), (0.95, 0.85, 0.3), "paper"))
    return ObjectModel("picture", color, tuple(parts))


# --------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Category:
    name: str
    nyu40_id: int  # NYU40 label, as in ScanNet's benchmark box files
    colors: tuple[str, ...]  # colour names this category is made in
    builder: object


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category("chair", 5, ("red", "blue", "green", "black", "grey", "white", "brown", "orange", "yellow"), build_chair),
        Category("armchair", 5, ("red", "blue", "green", "grey", "beige", "brown", "yellow", "purple"), build_armchair),
        Category("table", 7, ("brown", "white", "black", "grey", "beige"), build_table),
        Category("desk", 14, ("brown", "white", "black", "grey", "beige"), build_desk),
        Category("bed", 4, ("blue", "red", "green", "white", "grey", "beige", "purple", "pink", "yellow"), build_bed),
        Category("sofa", 6, ("grey", "blue", "green", "red", "brown", "beige", "black", "purple"), build_sofa),
        Category("cabinet", 3, ("white", "brown", "grey", "black", "beige", "blue", "green"), build_cabinet),
        Category("nightstand", 32, ("brown", "white", "black", "grey", "beige"), build_nightstand),
        Category("bookshelf", 10, ("brown", "white", "black", "grey", "beige"), build_bookshelf),
        Category("lamp", 35, ("white", "beige", "black", "red", "blue", "yellow", "orange", "green"), build_lamp),
        Category("plant", 40, ("green",), build_plant),
        Category("monitor", 40, ("black", "white", "grey"), build_monitor),
        Category("trash can", 39, ("grey", "black", "white", "blue", "green", "red", "yellow"), build_trash_can),
        Category("box", 29, ("brown", "beige", "blue", "red", "green", "white", "yellow"), build_box),
        Category("pillow", 18, ("white", "red", "blue", "yellow", "green", "grey", "orange", "purple", "pink"), build_pillow),
        Category("picture", 11, ("blue", "red", "yellow", "white", "green", "orange", "purple"), build_picture),
    )
}


def random_color(category: str, rng: np.random.Generator) -> str:
    """A colour name from the category's palette."""
    colors = CATEGORIES[category].colors
    return colors[int(rng.integers(len(colors)))]


def build(category: str, rng: np.random.Generator, color: str | None = None, **kwargs) -> ObjectModel:
    """Build an object of ``category`` (random colour from its palette unless ``color`` is given)."""
    return CATEGORIES[category].builder(rng, color or random_color(category, rng), **kwargs)


def plural(category: str) -> str:
    """English plural of a category name ("box" -> "boxes", "shelf" -> "shelves")."""
    if category.endswith("shelf"):
        return category[:-1] + "ves"
    if category.endswith(("x", "s", "ch", "sh")):
        return category + "es"
    return category + "s"
