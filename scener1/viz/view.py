"""3D views of a grounding result: the scene cloud, the object's points and boxes, the camera path.

A view is plain data (:class:`SceneView`); Open3D geometries are built from it only inside :func:`show`
and :func:`render_png`. Offscreen rendering uses Filament's Vulkan backend, which *aborts the process*
when no Vulkan driver is installed, so :func:`render_png` checks for a driver first and renders in a
forked child, turning a crash into a one-line error.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ScenerError

# Edges of a box given by its 8 corners in the order of corners_from_center_size().
_BOX_EDGES = np.array(
    [[0, 1], [1, 3], [3, 2], [2, 0], [4, 5], [5, 7], [7, 6], [6, 4], [0, 4], [1, 5], [2, 6], [3, 7]]
)


@dataclass(frozen=True, eq=False)
class Layer:
    """Points (``kind="points"``) or line segments (``kind="lines"``: consecutive point pairs)."""

    name: str
    points: np.ndarray  # (N, 3)
    colors: np.ndarray  # (N, 3) uint8, or (3,) for one colour
    kind: str = "points"
    size: float = 2.0  # point size or line width in pixels


@dataclass(frozen=True, eq=False)
class SceneView:
    layers: list[Layer] = field(default_factory=list)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        pts = np.concatenate([l.points for l in self.layers if len(l.points)]) if self.layers else np.zeros((1, 3))
        return pts.min(0), pts.max(0)


def box_corners(center, size, rotation=None) -> np.ndarray:
    """The 8 corners of a box (x varies slowest), optionally rotated by a 3x3 matrix."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    local = signs * (np.asarray(size, float) / 2.0)
    R = np.eye(3) if rotation is None else np.asarray(rotation, float)
    return local @ R.T + np.asarray(center, float)


def box_layer(name: str, corners: np.ndarray, color=(230, 40, 40), width: float = 3.0) -> Layer:
    seg = corners[_BOX_EDGES.ravel()]
    return Layer(name, seg, np.array(color, np.uint8), kind="lines", size=width)


def path_layer(positions: np.ndarray, color=(40, 90, 230)) -> Layer:
    p = np.asarray(positions, float)
    seg = np.repeat(p, 2, axis=0)[1:-1].reshape(-1, 2, 3) if len(p) > 1 else np.zeros((0, 2, 3))
    # zero-length segments (a camera turning on the spot) crash Filament's line renderer
    seg = seg[np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1) > 1e-6]
    return Layer("camera_path", seg.reshape(-1, 3), np.array(color, np.uint8), kind="lines", size=2.0)


def load_result_view(result_dir: str | Path) -> SceneView:
    """The view of a result folder: ``scene.ply`` (optional), ``object.ply``, boxes and camera path
    from ``result.json`` (all optional but at least one must be there)."""
    from ..lifting.fusion import read_ply

    root = Path(result_dir)
    if not root.is_dir():
        raise ScenerError(f"result folder does not exist: {root}")
    layers: list[Layer] = []
    # `scener1 ground --queries` writes one scene.ply beside the per-query folders
    scene_ply = next((p for p in (root / "scene.ply", root.parent / "scene.ply") if p.is_file()), None)
    if scene_ply is not None:
        scene = read_ply(scene_ply)
        layers.append(Layer("scene", scene.points, scene.colors, size=2.0))
    if (root / "object.ply").is_file():
        obj = read_ply(root / "object.ply")
        layers.append(Layer("object", obj.points, np.array([255, 140, 0], np.uint8), size=4.0))
    result = {}
    if (root / "result.json").is_file():
        try:
            result = json.loads((root / "result.json").read_text())
        except json.JSONDecodeError as exc:
            raise ScenerError(f"{root / 'result.json'} is not valid JSON: {exc}") from None
    box = result.get("box_3d") or {}
    if box.get("center") is not None and box.get("size") is not None:
        layers.append(box_layer("box_3d", box_corners(box["center"], box["size"])))
    obb = result.get("obb") or {}
    if obb.get("center") is not None and obb.get("size") is not None:
        layers.append(box_layer("obb", box_corners(obb["center"], obb["size"], obb.get("rotation")), (40, 170, 60)))
    if result.get("camera_path"):
        path = path_layer(np.asarray(result["camera_path"], float))
        if len(path.points):
            layers.append(path)
    if not layers:
        raise ScenerError(f"{root}: nothing to show (expected scene.ply, object.ply or result.json)")
    return SceneView(layers)


def _o3d_geometry(layer: Layer):
    import open3d as o3d

    pts = o3d.utility.Vector3dVector(np.asarray(layer.points, np.float64))
    cols = np.asarray(layer.colors, np.float64) / 255.0
    if layer.kind == "lines":
        n = len(layer.points) // 2
        geom = o3d.geometry.LineSet(pts, o3d.utility.Vector2iVector(np.arange(2 * n).reshape(n, 2)))
        geom.paint_uniform_color(cols if cols.ndim == 1 else cols.mean(0))
        return geom
    geom = o3d.geometry.PointCloud(pts)
    if cols.ndim == 1:
        geom.paint_uniform_color(cols)
    else:
        geom.colors = o3d.utility.Vector3dVector(cols)
    return geom


def show(view: SceneView, title: str = "scener1") -> None:
    """Open an interactive Open3D window (needs a display)."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise ScenerError("no display for an interactive window; use --png FILE to render offscreen")
    import open3d as o3d

    o3d.visualization.draw_geometries([_o3d_geometry(l) for l in view.layers], window_name=title)


def vulkan_available() -> tuple[bool, str]:
    """Whether a Vulkan loader and at least one driver (ICD) are installed, with the reason if not."""
    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return False, "no Vulkan loader (install libvulkan1)"
    icd_dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"]
    if os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES"):
        return True, ""
    if not any(glob.glob(os.path.join(d, "*.json")) for d in icd_dirs):
        return False, "no Vulkan driver (install mesa-vulkan-drivers)"
    return True, ""


def _default_camera(view: SceneView) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = view.bounds()
    center = (lo + hi) / 2
    extent = max(float(np.max(hi - lo)), 1e-3)
    eye = center + np.array([-0.4, -0.6, 0.75]) * extent  # a three-quarter view from above (z up)
    return center, eye


def _render_child(view: SceneView, path: str, width: int, height: int, center, eye) -> None:
    # Filament and the Vulkan loader print device chatter on the C streams; the parent reports failures
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import open3d as o3d

    rendering = o3d.visualization.rendering
    renderer = rendering.OffscreenRenderer(width, height)
    renderer.scene.set_background([1.0, 1.0, 1.0, 1.0])
    # post-processing off: ~20x faster on llvmpipe and nothing a point cloud needs
    renderer.scene.view.set_post_processing(False)
    for layer in view.layers:
        mat = rendering.MaterialRecord()
        if layer.kind == "lines":
            mat.shader, mat.line_width = "unlitLine", float(layer.size)
        else:
            mat.shader, mat.point_size = "defaultUnlit", float(layer.size)
        renderer.scene.add_geometry(layer.name, _o3d_geometry(layer), mat)
    renderer.setup_camera(60.0, list(map(float, center)), list(map(float, eye)), [0.0, 0.0, 1.0])
    o3d.io.write_image(path, renderer.render_to_image())


def render_png(view: SceneView, path: str | Path, width: int = 960, height: int = 720) -> Path:
    """Render ``view`` offscreen to a PNG; a clear error where no Vulkan driver exists."""
    import multiprocessing

    ok, reason = vulkan_available()
    if not ok:
        raise ScenerError(f"offscreen rendering needs Vulkan: {reason}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    center, eye = _default_camera(view)
    # Filament aborts the whole process on driver failures: render in a forked child so that a crash
    # becomes an error message here instead of killing the caller.
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_render_child, args=(view, str(path), width, height, center, eye))
    child.start()
    child.join()
    if child.exitcode != 0 or not path.is_file():
        raise ScenerError(f"offscreen rendering failed (exit code {child.exitcode}); is the Vulkan driver working?")
    return path
