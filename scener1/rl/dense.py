"""Dense targets for pretraining a vision tower: what object each merged vision token shows.

A VLM trained from scratch learns what things look like only through the four numbers of a box answer,
a weak signal for its vision tower (the tiny model's boxes ignored the picture: docs/training.md). Real
VLMs start from a pretrained vision encoder. The synthetic scenes know the object of every pixel, so
each merged token (a ``cell`` x ``cell`` square of the resized frame) gets the category and colour of the
object covering most of it and that object's visible box: supervision on every token of every frame.
:func:`scener1.models.vision_pretrain.pretrain_vision` trains on these targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SceneError
from ..synth.objects import CATEGORIES, COLORS
from .datasets import SceneTruth

#: Class 0 of both heads is "no object covers this cell" (wall, floor, ceiling, window, door).
CATEGORY_CLASSES = ("none", *CATEGORIES)
COLOR_CLASSES = ("none", *COLORS)


@dataclass(frozen=True)
class CellTargets:
    """Targets of one frame on its grid of merged tokens, row-major as the processor orders them."""

    category: np.ndarray  # (rows, cols) int64, index into CATEGORY_CLASSES
    color: np.ndarray  # (rows, cols) int64, index into COLOR_CLASSES
    box: np.ndarray  # (rows, cols, 4) float32: the object's visible box / (W, H, W, H); 0 where no object

    @property
    def has_object(self) -> np.ndarray:
        return self.category > 0


def read_instance_map(scene_dir: str | Path, position: int) -> np.ndarray:
    """The (H, W) instance map of a synthetic scene's frame (``object_id + 1`` per pixel, 0 = none)."""
    import cv2

    path = Path(scene_dir) / "gt" / "instance" / f"{position}.png"
    instance = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if instance is None or instance.ndim != 2:
        raise SceneError(f"{path}: missing or not a one-channel instance map")
    return instance.astype(np.int64)


def cell_targets(instance: np.ndarray, truth: SceneTruth, position: int, model_size: tuple[int, int],
                 cell: int = 32, min_share: float = 0.2) -> CellTargets:
    """Per-cell targets of frame ``position``: the object covering at least ``min_share`` of a cell (the
    largest if several do) through the processor's resize to ``model_size`` (W, H); vectorised over pixels."""
    height, width = instance.shape
    cols, rows = int(model_size[0]) // cell, int(model_size[1]) // cell
    if cols < 1 or rows < 1:
        raise ValueError(f"model image size {model_size} is smaller than one {cell}-pixel cell")
    # the cell of each pixel column / row, through the resize
    cx = np.minimum(((np.arange(width) + 0.5) * model_size[0] / width) // cell, cols - 1).astype(np.int64)
    cy = np.minimum(((np.arange(height) + 0.5) * model_size[1] / height) // cell, rows - 1).astype(np.int64)
    labels = int(instance.max()) + 1
    index = (cy[:, None] * cols + cx[None, :]) * labels + instance
    counts = np.bincount(index.ravel(), minlength=rows * cols * labels).reshape(rows * cols, labels)
    if labels > 1:
        best = counts[:, 1:].argmax(axis=1) + 1
        share = counts[np.arange(len(best)), best] / np.maximum(counts.sum(axis=1), 1)
        best = np.where(share >= min_share, best, 0)
    else:
        best = np.zeros(rows * cols, np.int64)

    category = np.zeros(labels, np.int64)
    color = np.zeros(labels, np.int64)
    box = np.zeros((labels, 4), np.float32)
    visible = {v.object_id: v.box for v in truth.frames[position]}
    scale = np.array([width, height, width, height], np.float32)
    for label in np.unique(best[best > 0]):
        obj = truth.objects.get(int(label) - 1)
        if obj is None:
            raise SceneError(f"{truth.path}: frame {position} shows instance {label}, which no object has")
        category[label] = CATEGORY_CLASSES.index(obj.category)
        color[label] = COLOR_CLASSES.index(obj.color) if obj.color in COLOR_CLASSES else 0
        if obj.object_id in visible:
            box[label] = np.asarray(visible[obj.object_id], np.float32) / scale
    return CellTargets(category[best].reshape(rows, cols), color[best].reshape(rows, cols),
                       box[best].reshape(rows, cols, 4))


def mirror_targets(targets: CellTargets) -> CellTargets:
    """The targets of the frame mirrored left-right (cells reversed along each row, boxes mirrored)."""
    box = targets.box[:, ::-1].copy()
    on = targets.category[:, ::-1] > 0
    x1 = box[..., 0].copy()
    box[..., 0] = np.where(on, 1.0 - box[..., 2], 0.0)
    box[..., 2] = np.where(on, 1.0 - x1, 0.0)
    return CellTargets(targets.category[:, ::-1].copy(), targets.color[:, ::-1].copy(), box)


def frame_positions(truths: Sequence[SceneTruth], stride: int = 1) -> list[tuple[int, int]]:
    """(scene index, frame position) of every ``stride``-th frame of each scene."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return [(k, p) for k, truth in enumerate(truths) for p in range(0, len(truth.frames), stride)]
