"""Small dataclasses shared by every stage.

Conventions (everywhere in scener1):
- poses are 4x4 camera-to-world matrices (OpenCV camera: x right, y down, z forward);
- depth is float32 metres with 0 meaning invalid;
- pixel coordinates are continuous with the centre of pixel (u, v) at (u, v); a pixel box
  ``[x1, y1, x2, y2]`` is in the original colour image with x2/y2 *exclusive* (a full-image box is
  ``[0, 0, W, H]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of one image stream, in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    @classmethod
    def from_matrix(cls, K: np.ndarray, width: int, height: int) -> "Intrinsics":
        """From a 3x3 or 4x4 camera matrix (ScanNet stores 4x4)."""
        K = np.asarray(K, dtype=np.float64)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera resampled to another resolution (pixel-centre convention preserved)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height
        )

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width, "height": self.height}


@dataclass(frozen=True, eq=False)
class Frame:
    """One RGB-D frame.

    ``index`` is the frame's name in its source (``pose/17.txt`` -> 17), not its position in the scene.
    """

    index: int
    timestamp: float  # seconds from the start of the recording
    color: np.ndarray  # (H, W, 3) uint8 RGB
    depth: np.ndarray  # (h, w) float32 metres, 0 = invalid
    color_intrinsics: Intrinsics
    depth_intrinsics: Intrinsics
    pose: np.ndarray  # (4, 4) float64 camera-to-world; NaN-filled when the source has no valid pose

    @property
    def pose_valid(self) -> bool:
        return bool(np.isfinite(self.pose).all())


@dataclass(frozen=True, eq=False)
class PointCloud:
    """Coloured 3D points (metres)."""

    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray  # (N, 3) uint8 RGB

    def __len__(self) -> int:
        return len(self.points)

    def transformed(self, T: np.ndarray) -> "PointCloud":
        """The cloud under a 4x4 transform (e.g. a scene's axis alignment)."""
        T = np.asarray(T, dtype=np.float64)
        pts = (self.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]).astype(np.float32)
        return PointCloud(pts, self.colors)
