"""Procedural RGB-D scenes with complete ground truth (issue 3): demo data, training data, an exact benchmark.

A scene is a furnished room (rectangular or L-shaped, a door and a window, 6-20 objects of 16 categories
built from primitive meshes), scanned by a handheld-like camera path and ray-cast with Open3D into colour,
depth and instance maps. It is written in the ScanNet exported layout with ground-truth boxes, per-frame
visibility, per-object visible time intervals, a scene graph and ScanRefer / ScanQA / VSI-Bench style
annotations (see :mod:`scener1.synth.writer` for the files).

>>> from scener1.synth import generate_scene
>>> path = generate_scene("outputs/synth", seed=0, frames=60)   # doctest: +SKIP

Importing this package is cheap; Open3D is imported only when rendering starts.
"""

from __future__ import annotations

from .generator import (
    DEMO_SEED,
    SynthScene,
    build_scene,
    default_intrinsics,
    ensure_demo_scene,
    generate_dataset,
    generate_scene,
    preview_frames,
    scene_name,
)
from .writer import write_annotations

__all__ = [
    "DEMO_SEED",
    "SynthScene",
    "build_scene",
    "default_intrinsics",
    "ensure_demo_scene",
    "generate_dataset",
    "generate_scene",
    "preview_frames",
    "scene_name",
    "write_annotations",
]
