"""From depth (and masks) to 3D points: scene fusion, masked object fusion, 3D boxes, the lift stage.

Names are resolved lazily so that ``scener1.lifting.cli`` can be imported by the CLI parser without
pulling in numpy.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "fuse_frames": "fusion",
    "read_ply": "fusion",
    "voxel_down_sample": "fusion",
    "write_ply": "fusion",
    "Box3D": "boxes",
    "aabb_iou": "boxes",
    "aabb_of_points": "boxes",
    "obb_of_points": "boxes",
    "FusedPoints": "projector",
    "clean_points": "projector",
    "fuse_masked_frames": "projector",
    "object_boxes": "projector",
    "LiftConfig": "object_lift",
    "LiftResult": "object_lift",
    "lift": "object_lift",
    "select_positions": "object_lift",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
