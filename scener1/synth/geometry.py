"""Primitive triangle meshes (box, cylinder, ellipsoid ...) built directly in numpy.

Meshes carry per-vertex normals so the renderer can shade curved primitives smoothly; flat faces get their
own vertices so their normals stay sharp. Everything here is pure and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh with per-vertex normals."""

    vertices: np.ndarray  # (N, 3) float64
    triangles: np.ndarray  # (M, 3) int64, counter-clockwise seen from outside
    normals: np.ndarray  # (N, 3) float64 unit vectors

    def transformed(self, T: np.ndarray) -> "Mesh":
        """The mesh under a 4x4 rigid transform (normals rotate with it)."""
        R, t = T[:3, :3], T[:3, 3]
        return Mesh(self.vertices @ R.T + t, self.triangles, self.normals @ R.T)

    def translated(self, offset) -> "Mesh":
        return Mesh(self.vertices + np.asarray(offset, dtype=np.float64), self.triangles, self.normals)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)


def merge(meshes: list[Mesh]) -> Mesh:
    """One mesh holding all triangles of ``meshes``."""
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(
        np.concatenate([m.vertices for m in meshes]),
        np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]),
        np.concatenate([m.normals for m in meshes]),
    )


# ----------------------------------------------------------------------------------------- transforms
def rot_z(yaw: float) -> np.ndarray:
    """3x3 rotation about the world z axis (counter-clockwise seen from above)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def pose(yaw: float = 0.0, position=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 transform: rotate by ``yaw`` about z, then move to ``position``."""
    T = np.eye(4)
    T[:3, :3] = rot_z(yaw)
    T[:3, 3] = position
    return T


# ----------------------------------------------------------------------------------------- primitives
_BOX_FACES = (  # (normal axis, sign): each face is a quad with its own vertices (flat shading)
    (0, 1.0), (0, -1.0), (1, 1.0), (1, -1.0), (2, 1.0), (2, -1.0),
)


def box(size, center=(0.0, 0.0, 0.0)) -> Mesh:
    """An axis-aligned box of ``size`` (sx, sy, sz) centred on ``center``."""
    half = np.asarray(size, dtype=np.float64) / 2.0
    verts, tris, norms = [], [], []
    for axis, sign in _BOX_FACES:
        u, v = [a for a in range(3) if a != axis]
        # corners ordered counter-clockwise when seen from outside the face
        quad = np.zeros((4, 3))
        quad[:, axis] = sign * half[axis]
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        if sign < 0:
            corners = corners[::-1]
        if (axis == 1):  # (u, v) = (x, z) is left-handed about +y; flip to keep outward winding
            corners = corners[::-1]
        for k, (a, b) in enumerate(corners):
            quad[k, u] = a * half[u]
            quad[k, v] = b * half[v]
        n = np.zeros(3)
        n[axis] = sign
        base = len(verts)
        verts.extend(quad)
        norms.extend([n] * 4)
        tris.extend([[base, base + 1, base + 2], [base, base + 2, base + 3]])
    return Mesh(np.asarray(verts) + np.asarray(center, dtype=np.float64), np.asarray(tris, np.int64), np.asarray(norms))


def box_between(lo, hi) -> Mesh:
    """An axis-aligned box spanning corner ``lo`` to corner ``hi``."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    return box(hi - lo, (lo + hi) / 2.0)


def cylinder(
    radius: float,
    height: float,
    center=(0.0, 0.0, 0.0),
    segments: int = 20,
    radius_top: float | None = None,
    caps: bool = True,
    bottom_cap: bool | None = None,
) -> Mesh:
    """A z-aligned cylinder (or cone frustum with ``radius_top``) whose base centre is ``center``."""
    rt = radius if radius_top is None else radius_top
    theta = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    # side: smooth normals tilted by the cone slope
    slope = (radius - rt) / max(height, 1e-9)
    side_n = np.concatenate([ring, np.full((segments, 1), slope)], axis=1)
    side_n /= np.linalg.norm(side_n, axis=1, keepdims=True)
    bottom = np.concatenate([ring * radius, np.zeros((segments, 1))], axis=1)
    top = np.concatenate([ring * rt, np.full((segments, 1), height)], axis=1)
    verts = [bottom, top]
    norms = [side_n, side_n]
    i = np.arange(segments)
    j = (i + 1) % segments
    tris = [np.stack([i, j, j + segments], 1), np.stack([i, j + segments, i + segments], 1)]
    n_used = 2 * segments
    want_bottom = caps if bottom_cap is None else bottom_cap
    for z, r, sign, want in ((0.0, radius, -1.0, want_bottom), (height, rt, 1.0, caps)):
        if not want or r <= 0:
            continue
        rim = np.concatenate([ring * r, np.full((segments, 1), z)], axis=1)
        centre = np.array([[0.0, 0.0, z]])
        verts += [rim, centre]
        norms += [np.tile([0.0, 0.0, sign], (segments + 1, 1))]
        c = n_used + segments
        if sign > 0:
            tris.append(np.stack([n_used + i, n_used + j, np.full(segments, c)], 1))
        else:
            tris.append(np.stack([n_used + j, n_used + i, np.full(segments, c)], 1))
        n_used += segments + 1
    return Mesh(
        np.concatenate(verts) + np.asarray(center, dtype=np.float64),
        np.concatenate(tris).astype(np.int64),
        np.concatenate(norms),
    )


def superellipsoid(size, center=(0.0, 0.0, 0.0), exponent: float = 1.0, rings: int = 12, segments: int = 18) -> Mesh:
    """A rounded box: an ellipsoid of extents ``size`` whose shape goes from round (``exponent`` 1) to boxy (< 1).

    Pillows and cushions read well as superellipsoids with an exponent around 0.4.
    """
    half = np.asarray(size, dtype=np.float64) / 2.0
    phi = np.linspace(-np.pi / 2, np.pi / 2, rings + 1)  # latitude
    theta = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    P, T = np.meshgrid(phi, theta, indexing="ij")

    def spow(x: np.ndarray, e: float) -> np.ndarray:
        return np.sign(x) * np.abs(x) ** e

    x = spow(np.cos(P), exponent) * spow(np.cos(T), exponent)
    y = spow(np.cos(P), exponent) * spow(np.sin(T), exponent)
    z = spow(np.sin(P), exponent)
    unit = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    verts = unit * half
    # normal of the implicit surface |x/a|^(2/e) + ... = 1 (gradient direction)
    g = 2.0 / exponent
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = np.sign(unit) * np.abs(unit) ** (g - 1) / half
    grad = np.nan_to_num(grad)
    grad[np.linalg.norm(grad, axis=1) < 1e-12] = [0.0, 0.0, 1.0]
    normals = grad / np.linalg.norm(grad, axis=1, keepdims=True)
    tris = []
    for r in range(rings):
        for s in range(segments):
            a = r * segments + s
            b = r * segments + (s + 1) % segments
            c = (r + 1) * segments + (s + 1) % segments
            d = (r + 1) * segments + s
            tris += [[a, b, c], [a, c, d]]
    return Mesh(verts + np.asarray(center, dtype=np.float64), np.asarray(tris, np.int64), normals)


def ellipsoid(size, center=(0.0, 0.0, 0.0), rings: int = 10, segments: int = 16) -> Mesh:
    return superellipsoid(size, center, exponent=1.0, rings=rings, segments=segments)
