"""Procedural RGB-D scenes with complete ground truth (issue 3): demo data, training data, an exact benchmark.

A scene is a furnished room (rectangular or L-shaped, a door and a window, 6-20 objects of 16 categories
built from primitive meshes), scanned by a handheld-like camera path and ray-cast with Open3D into colour,
depth and instance maps. It is written in the ScanNet exported layout with ground-truth boxes, per-frame
visibility, per-object visible time intervals, a scene graph and ScanRefer / ScanQA / VSI-Bench style
annotations (see :mod:`scener1.synth.writer` for the files).

>>> from scener1.synth import generate_scene
>>> path = generate_scene("outputs/synth", seed=0, frames=60)   # doctest: +SKIP

Importing this package is cheap: names load their module on first use, Open3D only when rendering starts.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "DEMO_SEED": "generator",
    "SynthScene": "generator",
    "build_scene": "generator",
    "default_intrinsics": "generator",
    "ensure_demo_scene": "generator",
    "generate_dataset": "generator",
    "generate_scene": "generator",
    "preview_frames": "generator",
    "scene_name": "generator",
    "write_annotations": "writer",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
