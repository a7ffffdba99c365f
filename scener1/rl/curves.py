"""Training curves as a PNG, drawn with OpenCV (no plotting library needed).

Each chosen series of the trainer's log history gets its own panel: the raw values and, when there are
many, a moving average. Only entries holding the series are plotted, against their ``step``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PANEL_W, PANEL_H = 520, 220
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 16, 30, 34
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207))


def series_points(history: Sequence[Mapping[str, Any]], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the entries holding a finite ``name``."""
    steps, values = [], []
    for entry in history:
        value = entry.get(name)
        if isinstance(value, (int, float)) and math.isfinite(value) and "step" in entry:
            steps.append(float(entry["step"]))
            values.append(float(value))
    return np.asarray(steps), np.asarray(values)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def _panel(steps: np.ndarray, values: np.ndarray, name: str, colour: tuple[int, int, int]) -> np.ndarray:
    import cv2

    img = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, name, (MARGIN_L, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    x0, x1 = MARGIN_L, PANEL_W - MARGIN_R
    y0, y1 = MARGIN_T, PANEL_H - MARGIN_B
    cv2.rectangle(img, (x0, y0), (x1, y1), (160, 160, 160), 1)
    if len(steps) == 0:
        cv2.putText(img, "no data yet", (x0 + 10, (y0 + y1) // 2), font, 0.45, (120, 120, 120), 1, cv2.LINE_AA)
        return img
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    s_lo, s_hi = float(steps.min()), float(steps.max())
    if s_hi - s_lo < 1e-12:
        s_lo, s_hi = s_lo - 1, s_hi + 1

    def to_px(s: np.ndarray, v: np.ndarray) -> np.ndarray:
        px = x0 + (s - s_lo) / (s_hi - s_lo) * (x1 - x0)
        py = y1 - (v - lo) / (hi - lo) * (y1 - y0)
        return np.stack([px, py], axis=1).round().astype(np.int32)

    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        y = int(round(y1 - frac * (y1 - y0)))
        cv2.line(img, (x0 - 4, y), (x0, y), (0, 0, 0), 1)
        cv2.putText(img, f"{v:.3g}", (4, y + 4), font, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    for frac in (0.0, 0.5, 1.0):
        s = s_lo + frac * (s_hi - s_lo)
        x = int(round(x0 + frac * (x1 - x0)))
        cv2.putText(img, f"{s:.0f}", (x - 12, y1 + 16), font, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "step", ((x0 + x1) // 2 - 14, PANEL_H - 4), font, 0.38, (90, 90, 90), 1, cv2.LINE_AA)
    rgb = tuple(colour)
    faint = tuple(int(c + (255 - c) * 0.6) for c in rgb)
    pts = to_px(steps, values)
    if len(pts) == 1:
        cv2.circle(img, tuple(int(c) for c in pts[0]), 3, rgb, -1)
        return img
    window = max(1, len(values) // 20)
    cv2.polylines(img, [pts], False, faint if window > 1 else rgb, 1, cv2.LINE_AA)
    if window > 1:
        cv2.polylines(img, [to_px(steps, moving_average(values, window))], False, rgb, 2, cv2.LINE_AA)
    return img


def plot_curves(history: Sequence[Mapping[str, Any]], series: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write one panel per series (two columns) to ``path``; series without data get an empty panel."""
    import cv2

    panels = [_panel(*series_points(history, name), name, COLOURS[i % len(COLOURS)]) for i, name in enumerate(series)]
    if not panels:
        panels = [np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)]
    if len(panels) % 2:
        panels.append(np.full_like(panels[0], 255))
    rows = [np.concatenate(panels[i : i + 2], axis=1) for i in range(0, len(panels), 2)]
    header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    cv2.putText(header, title, (10, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    image = np.concatenate([header, *rows], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path
