"""Ray-cast rendering with Open3D's ``RaycastingScene``: shaded colour, depth, instance ids.

All triangles of a scene go into one mesh, so a hit's primitive id indexes per-triangle tables (part,
instance, material, colour) directly. Shading is done in numpy over the hit pixels: procedural textures
(wood grain, planks, tiles, fabric noise) projected from a tileable noise image, ceiling point lights
with ray-cast shadows, window light, ambient bounce and a little specular; then vignetting, blur and sensor
noise so frames look like a camera's rather than a clean raster. Optional depth noise mimics a structured-
light sensor (axial noise growing with distance, holes at edges, grazing angles and dark glossy screens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import Intrinsics
from .layout import Room, SceneObject, room_parts
from .objects import MATERIALS, Part

MAT = {name: i for i, name in enumerate(MATERIALS)}
_INVALID = np.uint32(0xFFFFFFFF)
_TEX_SIZE = 256


@dataclass(frozen=True, eq=False)
class CompiledScene:
    """Flat triangle tables for one scene (world frame)."""

    vertices: np.ndarray  # (Nv, 3) float32
    triangles: np.ndarray  # (Nt, 3) uint32
    tri_part: np.ndarray  # (Nt,) int32 part index
    tri_normals: np.ndarray  # (Nt, 3, 3) float32 normals at the three corners
    tri_smooth: np.ndarray  # (Nt,) bool: corner normals differ (curved surface), so interpolate them
    part_instance: np.ndarray  # (P,) uint16: object id + 1, 0 for room structure
    part_color: np.ndarray  # (P, 3) float32 linear-light albedo
    part_material: np.ndarray  # (P,) int16 index into MATERIALS
    part_grain: np.ndarray  # (P,) int8 world axis along which wood grain runs (longest extent)
    lights: np.ndarray  # (k, 3) point light positions
    window: tuple[np.ndarray, np.ndarray]  # (centre (3,), inward normal (3,))
    texture: np.ndarray  # (S, S) float32 tileable multi-octave noise in [0, 1]


@dataclass(frozen=True, eq=False)
class RenderResult:
    color: np.ndarray  # (H, W, 3) uint8 RGB
    depth: np.ndarray  # (H, W) float32 metres along the optical axis, 0 = no surface
    instance: np.ndarray  # (H, W) uint16 object id + 1, 0 = room structure / nothing
    cos_incidence: np.ndarray  # (H, W) float32 |n . ray| (for sensor-noise models)
    material: np.ndarray  # (H, W) int16 material index, -1 = nothing hit


def noise_texture(rng: np.random.Generator, size: int = _TEX_SIZE) -> np.ndarray:
    """A tileable noise image with features from 1 to ~16 texels (several octaves baked in)."""
    from scipy.ndimage import gaussian_filter

    out = np.zeros((size, size), np.float64)
    for sigma, weight in ((8.0, 0.45), (3.0, 0.3), (1.2, 0.17), (0.6, 0.08)):
        layer = gaussian_filter(rng.random((size, size)), sigma, mode="wrap")
        out += weight * (layer - layer.mean()) / layer.std()
    lo, hi = np.percentile(out, [1, 99])
    return np.clip((out - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def compile_scene(room: Room, objects: list[SceneObject], rng: np.random.Generator) -> CompiledScene:
    """Gather the room structure and every object's parts into one triangle soup with lookup tables."""
    parts: list[Part] = []
    instance: list[int] = []
    for p in room_parts(room):
        parts.append(p)
        instance.append(0)
    for o in objects:
        for p in o.parts:
            parts.append(p)
            instance.append(o.instance_id)
    verts, tris, tri_part, tri_norm = [], [], [], []
    offset = 0
    for k, p in enumerate(parts):
        m = p.mesh
        verts.append(m.vertices)
        tris.append(m.triangles + offset)
        tri_part.append(np.full(len(m.triangles), k, np.int32))
        tri_norm.append(m.normals[m.triangles])
        offset += len(m.vertices)
    tri_normals = np.concatenate(tri_norm).astype(np.float32)
    grain = []
    for p in parts:
        if p.material == "floor_wood":
            grain.append(int(room.style.get("plank_axis", 0)))
        else:
            v = p.mesh.vertices
            grain.append(int(np.argmax(v.max(axis=0) - v.min(axis=0))))
    win = room.window
    return CompiledScene(
        vertices=np.concatenate(verts).astype(np.float32),
        triangles=np.concatenate(tris).astype(np.uint32),
        tri_part=np.concatenate(tri_part),
        tri_normals=tri_normals,
        tri_smooth=np.abs(tri_normals - tri_normals[:, :1]).max(axis=(1, 2)) > 1e-4,
        part_instance=np.array(instance, dtype=np.uint16),
        part_color=np.array([p.color for p in parts], dtype=np.float32) ** 2.2,  # sRGB-ish -> linear light
        part_material=np.array([MAT[p.material] for p in parts], dtype=np.int16),
        part_grain=np.array(grain, dtype=np.int8),
        lights=room.lights,
        window=(win.center, np.array([*win.normal, 0.0])),
        texture=noise_texture(rng),
    )


def camera_rays(intr: Intrinsics) -> np.ndarray:
    """(H*W, 3) camera-frame ray directions with z = 1, so a hit distance t is the depth itself."""
    u, v = np.meshgrid(np.arange(intr.width, dtype=np.float32), np.arange(intr.height, dtype=np.float32))
    x = (u - np.float32(intr.cx)) / np.float32(intr.fx)
    y = (v - np.float32(intr.cy)) / np.float32(intr.fy)
    return np.stack([x, y, np.ones_like(x)], axis=-1).reshape(-1, 3)


def _hash2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer pair (plank and tile tints)."""
    h = (a.astype(np.int64) * 73856093) ^ (b.astype(np.int64) * 19349663)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


# Per material: texture frequency (texels per metre), texture amplitude, grain stretch (1 = isotropic),
# low-frequency blotch amplitude and specular strength.
def _material_table() -> np.ndarray:
    t = np.zeros((len(MATERIALS), 5), np.float32)
    rows = {
        "paint": (60, 0.03, 1, 0.02, 0.0), "wood": (500, 0.30, 0.03, 0.06, 0.12), "fabric": (900, 0.22, 1, 0.10, 0.0),
        "metal": (200, 0.04, 1, 0.02, 0.5), "plastic": (300, 0.05, 1, 0.03, 0.12), "leaf": (350, 0.65, 1, 0.2, 0.05),
        "screen": (50, 0.0, 1, 0.0, 0.3), "emissive": (1, 0.0, 1, 0.0, 0.0), "cardboard": (500, 0.16, 1, 0.06, 0.0),
        "floor_wood": (450, 0.35, 0.02, 0.05, 0.14), "floor_tile": (150, 0.07, 1, 0.04, 0.18),
        "carpet": (1400, 0.30, 1, 0.10, 0.0), "sky": (10, 0.0, 1, 0.0, 0.0), "shade": (600, 0.05, 1, 0.0, 0.0),
        "paper": (300, 0.05, 1, 0.03, 0.02),
    }
    for name, vals in rows.items():
        t[MAT[name]] = vals
    return t


_MTAB = _material_table()


class Renderer:
    """Renders frames of one compiled scene; keeps the ray-casting structure between frames."""

    def __init__(self, scene: CompiledScene, intrinsics: Intrinsics):
        import open3d as o3d  # lazy: ~1 s to import

        self._o3d = o3d
        self.scene = scene
        self.intr = intrinsics
        self._rc = o3d.t.geometry.RaycastingScene()
        self._rc.add_triangles(o3d.core.Tensor(scene.vertices), o3d.core.Tensor(scene.triangles))
        self._dirs = camera_rays(intrinsics)
        self._unit_dirs = self._dirs / np.linalg.norm(self._dirs, axis=1, keepdims=True)
        self._flat_normals = scene.tri_normals[:, 0].copy()
        self._lights = scene.lights.astype(np.float32)
        self._window = (scene.window[0].astype(np.float32), scene.window[1].astype(np.float32))
        h, w = intrinsics.height, intrinsics.width
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
        self._vignette = (1.0 - 0.18 * r2)[..., None].astype(np.float32)
        # sensor noise bank (std 0.012 in display units), sliced at a random offset per frame
        self._noise_bank = (np.random.default_rng(12345).standard_normal(2 * h * w + 1024) * 0.012).astype(np.float32)

    # ------------------------------------------------------------------ ray casting
    def _rays(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        rays = np.empty((len(dirs), 6), np.float32)
        rays[:, :3] = origins
        rays[:, 3:] = dirs
        return rays

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> dict[str, np.ndarray]:
        out = self._rc.cast_rays(self._o3d.core.Tensor(self._rays(origins, dirs)))
        return {k: out[k].numpy() for k in ("t_hit", "primitive_ids", "primitive_uvs")}

    def occluded(self, origins: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Whether the segments from ``origins`` to ``targets`` hit any geometry (shadow rays)."""
        rays = self._rays(origins, targets - origins)
        return self._rc.test_occlusions(self._o3d.core.Tensor(rays), tnear=0.0, tfar=0.999).numpy()

    def first_instance(self, origins: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Instance id and hit fraction of the first surface along each segment (line-of-sight checks)."""
        hit = self.cast(origins, targets - origins)
        prim = hit["primitive_ids"]
        ok = prim != _INVALID
        inst = np.zeros(len(prim), np.int64)
        inst[ok] = self.scene.part_instance[self.scene.tri_part[prim[ok]]]
        return inst, hit["t_hit"]

    # ------------------------------------------------------------------ full frame
    def render(self, pose: np.ndarray, rng: np.random.Generator) -> RenderResult:
        """Colour, depth and instance ids seen from ``pose`` (4x4 camera-to-world)."""
        sc = self.scene
        h, w = self.intr.height, self.intr.width
        R = pose[:3, :3].astype(np.float32)
        origin = pose[:3, 3].astype(np.float32)
        world = self._dirs @ R.T
        hit = self.cast(origin, world)
        prim = hit["primitive_ids"]
        ok = prim != _INVALID
        prim = np.where(ok, prim, 0).astype(np.int64)  # misses use triangle 0's tables, then get overridden
        t = np.where(ok, hit["t_hit"], 20.0).astype(np.float32)
        part = sc.tri_part[prim]
        mat = np.where(ok, sc.part_material[part], MAT["sky"]).astype(np.int16)
        p = origin + world * t[:, None]

        n = self._flat_normals[prim]
        sm = np.nonzero(sc.tri_smooth[prim] & ok)[0]  # interpolate corner normals only on curved primitives
        if len(sm):
            cn = sc.tri_normals[prim[sm]]
            uv = hit["primitive_uvs"][sm]
            u, v = uv[:, :1], uv[:, 1:]
            ns = cn[:, 0] * (1 - u - v) + cn[:, 1] * u + cn[:, 2] * v
            n[sm] = ns / np.sqrt(np.maximum(np.einsum("ij,ij->i", ns, ns), 1e-12))[:, None]
        dn = self._unit_dirs @ R.T
        facing = np.einsum("ij,ij->i", n, dn)
        n *= np.where(facing > 0, -1.0, 1.0).astype(np.float32)[:, None]  # back faces are seen from either side
        cos_inc = np.abs(facing)

        albedo = sc.part_color[part] * self._texture(p, n, mat, part, (h, w))[:, None]
        diffuse, spec = self._lighting(p, n, dn, mat, ok, (h, w))
        rgb = albedo * diffuse[:, None] + spec[:, None]
        self._emissive(rgb, p, mat, part, n, dn, ok)

        img = rgb.reshape(h, w, 3) * self._vignette
        color = self._camera(img, rng)
        sky = mat == MAT["sky"]
        depth = np.where(sky, 0.0, t).astype(np.float32).reshape(h, w)
        inst = np.where(ok, sc.part_instance[part], 0).astype(np.uint16).reshape(h, w)
        return RenderResult(color, depth, inst, np.where(ok, cos_inc, 0).reshape(h, w).astype(np.float32),
                            np.where(ok, mat, -1).astype(np.int16).reshape(h, w))

    # ------------------------------------------------------------------ shading pieces
    def _lookup(self, u: np.ndarray, v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Bilinear, wrapping noise lookup at texel coordinates (one C call for the whole image)."""
        import cv2

        S = np.float32(_TEX_SIZE)
        mu = np.mod(u, S).astype(np.float32).reshape(shape)
        mv = np.mod(v, S).astype(np.float32).reshape(shape)
        return cv2.remap(self.scene.texture, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).ravel()

    def _texture(self, p: np.ndarray, n: np.ndarray, mat: np.ndarray, part: np.ndarray, shape) -> np.ndarray:
        """Multiplicative albedo modulation per pixel (1 = untextured), planar-projected noise per material."""
        freq, amp, stretch, blotch = (_MTAB[:, j][mat] for j in range(4))
        grain = self.scene.part_grain[part]
        an = np.abs(n)
        # texture plane: the two axes other than the normal's dominant one (planar projection)
        x_dom = (an[:, 0] >= an[:, 1]) & (an[:, 0] >= an[:, 2])
        y_dom = ~x_dom & (an[:, 1] >= an[:, 2])
        pu = np.where(x_dom, p[:, 1], p[:, 0])
        pv = np.where(x_dom | y_dom, p[:, 2], p[:, 1])
        gu = np.where(x_dom, grain == 1, grain == 0)
        gv = np.where(x_dom | y_dom, grain == 2, grain == 1)
        # wood grain: long streaks along the grain axis
        fu = freq * np.where(gu, stretch, np.float32(1.0))
        fv = freq * np.where(gv, stretch, np.float32(1.0))
        off = (part % 97).astype(np.float32) * np.float32(37.0)  # decorrelate neighbouring parts
        fine = self._lookup(pu * fu + off, pv * fv + off * np.float32(0.61), shape)
        coarse = self._lookup(pu * np.float32(25.0) + off, pv * np.float32(25.0), shape)
        out = 1.0 + amp * (fine - 0.5) * 2.0 + blotch * (coarse - 0.5) * 2.0

        k = np.nonzero(mat == MAT["floor_wood"])[0]
        if len(k):
            ax = int(self.scene.part_grain[part[k[0]]])
            along, across = p[k, ax], p[k, 1 - ax]
            width, length = 0.16, 1.25
            row = np.floor(across / width)
            shifted = along + _hash2(row, row * 7 + 3) * length
            col = np.floor(shifted / length)
            tint = 0.8 + 0.36 * _hash2(row, col)
            seam = (np.abs(across / width - np.round(across / width)) * width < 0.003) | (
                np.abs(shifted / length - np.round(shifted / length)) * length < 0.003)
            out[k] *= tint * np.where(seam, 0.55, 1.0)
        k = np.nonzero(mat == MAT["floor_tile"])[0]
        if len(k):
            s = 0.5
            x, y = p[k, 0] / s, p[k, 1] / s
            grout = (np.abs(x - np.round(x)) * s < 0.004) | (np.abs(y - np.round(y)) * s < 0.004)
            out[k] = np.where(grout, 0.72, out[k] * (0.93 + 0.12 * _hash2(np.floor(x), np.floor(y))))
        return out.astype(np.float32)

    def _lighting(self, p, n, dn, mat, ok, shape) -> tuple[np.ndarray, np.ndarray]:
        """Diffuse irradiance and specular intensity per pixel (shadows ray-cast at half resolution)."""
        import cv2

        h, w = shape
        diffuse = np.float32(0.22) + np.float32(0.10) * n[:, 2]  # ambient bounce, brighter facing up
        ks = _MTAB[mat, 4]
        shiny = np.nonzero(ks > 0)[0]
        spec = np.zeros(len(p), np.float32)
        # shadow rays from every other pixel in each direction, interpolated back up (softens their edges)
        sub = np.arange(h * w).reshape(h, w)[::2, ::2].ravel()
        sub_ok = ok[sub]
        start = p[sub] + n[sub] * np.float32(0.01)
        for L in self._lights:
            vec = L[None, :] - p
            d2 = np.einsum("ij,ij->i", vec, vec)
            inv = 1.0 / np.sqrt(d2)
            lam = np.clip(np.einsum("ij,ij->i", n, vec) * inv, 0.0, None)
            vis = np.ones(len(sub), np.float32)
            idx = np.nonzero(sub_ok)[0]
            vis[idx] = np.where(self.occluded(start[idx], np.broadcast_to(L, (len(idx), 3))), 0.3, 1.0)
            vis_full = cv2.resize(vis.reshape((h + 1) // 2, (w + 1) // 2), (w, h), interpolation=cv2.INTER_LINEAR).ravel()
            diffuse += np.float32(1.6) * lam * vis_full / (1.0 + np.float32(0.12) * d2)
            if len(shiny):
                l = vec[shiny] * inv[shiny, None]
                hv = l - dn[shiny]
                hv /= np.sqrt(np.maximum(np.einsum("ij,ij->i", hv, hv), 1e-12))[:, None]
                c = np.clip(np.einsum("ij,ij->i", n[shiny], hv), 0.0, None)
                c5 = c * c
                c5 = c5 * c5 * c
                c10 = c5 * c5
                c40 = c10 * c10
                c40 *= c40  # c ** 40 without a per-pixel pow
                spec[shiny] += ks[shiny] * c40 * vis_full[shiny]
        # daylight through the window, falling into the room and a little downwards
        wc, wn = self._window
        wdir = wn + np.array([0.0, 0.0, -0.35], np.float32)
        wdir /= np.linalg.norm(wdir)
        wv = p - wc
        diffuse += np.float32(0.45) * np.clip(-(n @ wdir), 0.0, None) / (1.0 + np.float32(0.15) * np.einsum("ij,ij->i", wv, wv))
        diffuse += np.float32(0.08) * np.clip(-np.einsum("ij,ij->i", n, dn), 0.0, None)  # fill from the viewer's side
        return diffuse.astype(np.float32), spec * np.float32(0.9)

    def _emissive(self, rgb: np.ndarray, p, mat, part, n, dn, ok) -> None:
        """Surfaces that give off light (in place): ceiling lights, lamp shades, screens, the sky."""
        col = self.scene.part_color[part]
        k = np.nonzero(mat == MAT["emissive"])[0]
        rgb[k] = 2.5
        k = np.nonzero(mat == MAT["shade"])[0]  # lamp shades glow from the bulb inside
        rgb[k] = col[k] * 2.2 + 0.05
        k = np.nonzero(mat == MAT["screen"])[0]
        if len(k):
            # a lit screen shows its content colour with a gentle vertical gradient; dark screens stay glossy
            z = p[k, 2]
            grad = 0.85 + 0.3 * (z - z.min()) / max(float(np.ptp(z)), 1e-3)
            refl = 0.05 * np.clip(-np.einsum("ij,ij->i", n[k], dn[k]), 0, 1)[:, None]
            rgb[k] = col[k] * 1.1 * grad[:, None] + refl
        k = np.nonzero(mat == MAT["sky"])[0]
        if len(k):
            up = np.clip((p[k, 2] - 0.5) / 3.0, 0.0, 1.0)[:, None]
            rgb[k] = (1.3 - 0.4 * up) * np.array([0.82, 0.9, 1.0], np.float32)

    def _camera(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Linear light -> 8-bit sRGB with soft highlight roll-off, lens blur and sensor noise."""
        import cv2

        # tone curve and gamma through a lookup table (a power per pixel is the slowest step otherwise)
        idx = np.clip(img * np.float32(_LUT_SCALE), 0, len(_TONE_LUT) - 1).astype(np.int32)
        x = _TONE_LUT[idx]
        x = cv2.GaussianBlur(x, (3, 3), 0.55)
        h, w = x.shape[:2]
        # sensor noise: a random window of a pre-drawn noise bank (deterministic through ``rng``)
        start = int(rng.integers(0, len(self._noise_bank) - h * w))
        noise = self._noise_bank[start:start + h * w].reshape(h, w, 1)
        x = x + noise * (np.float32(0.6) + np.float32(0.4) * x)
        return np.clip(x * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8)


def _tone_lut(size: int = 4096, max_in: float = 8.0) -> np.ndarray:
    x = np.linspace(0.0, max_in, size, dtype=np.float64) * 1.15
    x = x / (1.0 + 0.22 * x)  # gentle highlight compression
    return (np.clip(x, 0.0, 1.0) ** (1 / 2.2)).astype(np.float32)


_TONE_LUT = _tone_lut()
_LUT_SCALE = (len(_TONE_LUT) - 1) / 8.0


# ----------------------------------------------------------------------------------------- sensor models
def noisy_depth(res: RenderResult, rng: np.random.Generator) -> np.ndarray:
    """Depth as a structured-light sensor would measure it (millimetres are applied by the writer).

    Axial noise grows with the square of distance; depth discontinuities lose pixels on their far side,
    surfaces seen at grazing angles and dark glossy screens drop out, and a few random speckle holes appear.
    """
    import cv2

    z = res.depth.copy()
    valid = z > 0
    sigma = 0.0012 + 0.0019 * np.square(np.clip(z - 0.4, 0.0, None))
    z = np.where(valid, z + rng.normal(size=z.shape).astype(np.float32) * sigma, 0.0)
    zmax = cv2.dilate(res.depth, np.ones((3, 3), np.uint8))
    zmin = cv2.erode(np.where(valid, res.depth, 1e3).astype(np.float32), np.ones((3, 3), np.uint8))
    edge = (zmax - zmin) > 0.06 * np.maximum(res.depth, 0.5)
    holes = (edge & (rng.random(z.shape) < 0.6)) | (res.cos_incidence < 0.12) | (rng.random(z.shape) < 0.003)
    holes |= (res.material == MAT["screen"]) & (rng.random(z.shape) < 0.7)
    holes |= z > 8.0
    z[holes] = 0.0
    return z.astype(np.float32)
