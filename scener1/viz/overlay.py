"""2D overlays: a frame with its box and mask, for result folders and traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def draw_overlay(
    color: np.ndarray,
    box: tuple[float, float, float, float] | None = None,
    mask: np.ndarray | None = None,
    label: str | None = None,
    box_color: tuple[int, int, int] = (255, 40, 40),
    mask_color: tuple[int, int, int] = (255, 140, 0),
) -> np.ndarray:
    """An RGB copy of ``color`` with the mask tinted and the box (x2/y2 exclusive) outlined."""
    import cv2

    out = color.copy()
    if mask is not None:
        m = mask.astype(bool)
        out[m] = (0.5 * out[m] + 0.5 * np.array(mask_color)).astype(np.uint8)
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        thickness = max(1, round(min(out.shape[:2]) / 200))
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), box_color, thickness)
        if label:
            scale = max(0.4, min(out.shape[:2]) / 600)
            cv2.putText(out, label, (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, scale, box_color, thickness)
    return out


def save_rgb(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB image (PNG/JPEG by suffix), creating parent folders."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write image {path}")
    return path
