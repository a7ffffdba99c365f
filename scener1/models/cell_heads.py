"""Cell heads: which category and colour each merged vision token of a trained model shows.

The vision stage (:mod:`scener1.models.vision_pretrain`) trains the tower through linear heads on its merged
tokens and then drops them. Fitted again on the finished model's frozen tower, the same two linear maps
(category, colour) tell the image stage how much a box looks like "the blue chair": Scene-R1-tiny's language
model often boxes an object of another category, and its own answer probability hardly knows when (area
under the ROC curve 0.56 for "this box lies on the target" on the validation scenes), while the heads' score
does (0.90). :mod:`scener1.models.cell_verifier` uses them to weigh the image stage's candidates.

    fit_cell_heads("assets/models/scene-r1-tiny", train_scenes, CellHeadsConfig(), eval_scenes=val_scenes)
    heads = load_cell_heads("assets/models/scene-r1-tiny")   # None for a model without them (e.g. Qwen)

The heads live beside the model as ``cell_heads.safetensors`` (four tensors) and ``cell_heads.json`` (class
names, settings, cell accuracy); a few kilobytes. Fitting reads the tower's features of every
``frame_stride``-th training frame once and then trains only the two linear maps, so it takes minutes; a
finished fit with the same settings is not repeated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

HEADS_FILE = "cell_heads.safetensors"
INFO_FILE = "cell_heads.json"
_TENSORS = ("category.weight", "category.bias", "colour.weight", "colour.bias")
_BOX_TENSORS = ("box.weight", "box.bias")  # optional: heads fitted before 2026-11-27 evening have none


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True, eq=False)
class CellHeads:
    """Linear maps from a merged vision token to category and colour (class 0 of each is "none") and, when
    fitted, to the visible box of the object the token shows (a share of the frame, x1 y1 x2 y2)."""

    categories: tuple[str, ...]
    colours: tuple[str, ...]
    category_weight: np.ndarray  # (categories, hidden)
    category_bias: np.ndarray  # (categories,)
    colour_weight: np.ndarray  # (colours, hidden)
    colour_bias: np.ndarray  # (colours,)
    box_weight: np.ndarray | None = None  # (4, hidden)
    box_bias: np.ndarray | None = None  # (4,)

    def __post_init__(self) -> None:
        hidden = self.category_weight.shape[-1]
        shapes_ok = (
            self.category_weight.shape == (len(self.categories), hidden)
            and self.category_bias.shape == (len(self.categories),)
            and self.colour_weight.shape == (len(self.colours), hidden)
            and self.colour_bias.shape == (len(self.colours),)
        )
        if not shapes_ok:
            raise ConfigError(
                f"cell heads: tensor shapes {self.category_weight.shape}, {self.category_bias.shape}, "
                f"{self.colour_weight.shape}, {self.colour_bias.shape} do not fit {len(self.categories)} categories "
                f"and {len(self.colours)} colours"
            )
        if (self.box_weight is None) != (self.box_bias is None) or self.box_weight is not None and (
                self.box_weight.shape != (4, hidden) or self.box_bias.shape != (4,)):
            raise ConfigError(f"cell heads: the box map must be (4, {hidden}) with a (4,) bias")
        if len(self.categories) < 2 or len(self.colours) < 2:
            raise ConfigError("cell heads need a 'none' class and at least one category and colour")

    @property
    def hidden_size(self) -> int:
        return int(self.category_weight.shape[-1])

    def probabilities(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., hidden) token features -> (..., categories) and (..., colours) probabilities."""
        x = np.asarray(features, dtype=np.float32)
        if x.shape[-1] != self.hidden_size:
            raise ConfigError(f"cell heads read {self.hidden_size}-wide features, got {x.shape[-1]}")
        category = _softmax(x @ self.category_weight.T + self.category_bias)
        colour = _softmax(x @ self.colour_weight.T + self.colour_bias)
        return category, colour

    def boxes(self, features: np.ndarray) -> np.ndarray | None:
        """(..., hidden) -> (..., 4) the visible box of each token's object as a share of the frame (None when
        the heads have no box map)."""
        if self.box_weight is None:
            return None
        x = np.asarray(features, dtype=np.float32)
        return 1.0 / (1.0 + np.exp(-(x @ self.box_weight.T + self.box_bias)))


def save_cell_heads(model_dir: str | Path, heads: CellHeads, info: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    out = Path(model_dir)
    tensors = dict(zip(_TENSORS, (heads.category_weight, heads.category_bias, heads.colour_weight, heads.colour_bias),
                       strict=True))
    if heads.box_weight is not None:
        tensors.update(zip(_BOX_TENSORS, (heads.box_weight, heads.box_bias), strict=True))
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(out / HEADS_FILE))
    record = {"categories": list(heads.categories), "colours": list(heads.colours), **info}
    (out / INFO_FILE).write_text(json.dumps(record, indent=2) + "\n")


def load_cell_heads(model_dir: str | Path | None) -> CellHeads | None:
    """The model's cell heads, or None when it has none (both files absent); a clear error when broken."""
    if model_dir is None:
        return None
    root = Path(model_dir)
    tensors_path, info_path = root / HEADS_FILE, root / INFO_FILE
    if not tensors_path.is_file() and not info_path.is_file():
        return None
    if not (tensors_path.is_file() and info_path.is_file()):
        present = HEADS_FILE if tensors_path.is_file() else INFO_FILE
        raise ConfigError(f"{root} has {present} without its partner: refit the cell heads or remove it")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        info = json.loads(info_path.read_text())
        tensors = load_file(str(tensors_path))
    except (OSError, ValueError, SafetensorError) as exc:
        raise ConfigError(f"cannot read the cell heads in {root}: {exc}") from None
    missing = [k for k in _TENSORS if k not in tensors]
    if missing or not isinstance(info, dict) or not isinstance(info.get("categories"), list) \
            or not isinstance(info.get("colours"), list):
        raise ConfigError(f"{root / HEADS_FILE}: missing {', '.join(missing) or 'class names in ' + INFO_FILE}")
    box = [tensors[k].astype(np.float32) for k in _BOX_TENSORS if k in tensors]
    return CellHeads(tuple(map(str, info["categories"])), tuple(map(str, info["colours"])),
                     *(tensors[k].astype(np.float32) for k in _TENSORS), *(box if len(box) == 2 else (None, None)))


def tower_cells(vlm: Any, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each image's merged vision tokens as a (rows, cols, hidden) float32 array, as the language model reads
    them (the processor's resize included)."""
    import torch

    from .vision_pretrain import cell_features

    if not images:
        return []
    processed = vlm.processor.image_processor(images=list(images), return_tensors="pt")
    merge = int(getattr(vlm.processor.image_processor, "merge_size", 2))
    with torch.no_grad():
        features = cell_features(vlm.model, processed).float().cpu().numpy()
    out, start = [], 0
    for _, gh, gw in processed["image_grid_thw"].tolist():
        rows, cols = gh // merge, gw // merge
        out.append(features[start : start + rows * cols].reshape(rows, cols, -1))
        start += rows * cols
    if start != len(features):
        raise RuntimeError(f"{len(features)} vision tokens for {start} cells")
    return out


@dataclass(frozen=True)
class CellHeadsConfig:
    frame_stride: int = 4  # every n-th frame of each training scene (180 scenes of 150 frames: 6,750 frames)
    min_share: float = 0.2  # a cell shows an object covering this share of it (as in the vision stage)
    steps: int = 3000  # optimiser steps over the cached features
    batch_size: int = 1024  # cells per step
    learning_rate: float = 2e-3  # cosine to zero
    weight_decay: float = 0.01
    eval_stride: int = 2  # every n-th frame of the evaluation scenes
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.frame_stride, self.steps, self.batch_size, self.eval_stride) < 1:
            raise ConfigError("cell heads: frame_stride, steps, batch_size and eval_stride must be >= 1")
        if not 0 < self.min_share <= 1 or not self.learning_rate > 0 or self.weight_decay < 0:
            raise ConfigError("cell heads: min_share in (0, 1], learning_rate > 0, weight_decay >= 0")


def _dense_set(vlm: Any, scenes: Sequence[str | Path], stride: int, min_share: float, desc: str | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cells, hidden) features with their category, colour and box targets over every ``stride``-th frame."""
    import torch

    from .vision_pretrain import DenseBatches, _target_tensors, cell_features

    batches = DenseBatches(scenes, vlm.processor, stride, min_share, seed=0)
    features, categories, colours, boxes = [], [], [], []
    chunks = range(0, len(batches.items), 32)
    if desc:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=desc, unit="batch")
    try:
        for start in chunks:
            inputs, targets = batches.load(batches.items[start : start + 32])
            with torch.no_grad():
                features.append(cell_features(vlm.model, inputs).float().cpu().numpy())
            category, colour, box = _target_tensors(targets)
            categories.append(category.numpy())
            colours.append(colour.numpy())
            boxes.append(box.numpy())
    finally:
        batches.close()
    return np.concatenate(features), np.concatenate(categories), np.concatenate(colours), np.concatenate(boxes)


def cell_accuracy(heads: CellHeads, features: np.ndarray, categories: np.ndarray, colours: np.ndarray,
                  boxes: np.ndarray | None = None) -> dict[str, float]:
    """Category accuracy on object cells and on the rest, colour accuracy and box L1 (share of the frame) on
    object cells."""
    p_category, p_colour = heads.probabilities(features)
    on = categories > 0
    right = p_category.argmax(-1) == categories
    out = {"background": float(right[~on].mean()) if (~on).any() else float("nan")}
    if on.any():
        out.update(object=float(right[on].mean()), colour=float((p_colour.argmax(-1) == colours)[on].mean()))
        predicted = heads.boxes(features[on])
        if predicted is not None and boxes is not None:
            out["box_l1"] = float(np.abs(predicted - boxes[on]).mean())
    return out


def fit_cell_heads(model_dir: str | Path, scenes: Sequence[str | Path], config: CellHeadsConfig | None = None,
                   eval_scenes: Sequence[str | Path] = (), progress: bool = True) -> dict[str, Any]:
    """Fit the cell heads on ``model_dir``'s frozen tower over ``scenes`` and write them into ``model_dir``.

    Returns the record written to ``cell_heads.json`` (settings, training and evaluation cell accuracy). A
    model that already has heads fitted with the same settings and scene count is left as it is.
    """
    import torch
    import torch.nn.functional as F

    from ..rl.dense import CATEGORY_CLASSES, COLOR_CLASSES
    from . import load_vlm

    config = config or CellHeadsConfig()
    root = Path(model_dir)
    settings = {"config": asdict(config), "train_scenes": len(scenes), "eval_scenes": len(eval_scenes), "box_map": True}
    if (root / INFO_FILE).is_file():
        try:
            done = json.loads((root / INFO_FILE).read_text())
        except ValueError:
            done = {}
        if all(done.get(k) == v for k, v in settings.items()) and (root / HEADS_FILE).is_file():
            return done
    if not scenes:
        raise ConfigError("cell heads: no training scenes")
    vlm = load_vlm(root, device="cpu", dtype="float32")
    if not hasattr(getattr(vlm.model, "model", None), "visual"):
        raise ConfigError(f"cell heads need a model with a vision tower; {root} has none")
    x, y_category, y_colour, y_box = _dense_set(vlm, scenes, config.frame_stride, config.min_share,
                                                "cell heads: training features" if progress else None)
    torch.manual_seed(config.seed)
    hidden = x.shape[1]
    category = torch.nn.Linear(hidden, len(CATEGORY_CLASSES))
    colour = torch.nn.Linear(hidden, len(COLOR_CLASSES))
    box = torch.nn.Linear(hidden, 4)
    params = [*category.parameters(), *colour.parameters(), *box.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    features, targets, targets_colour = torch.from_numpy(x), torch.from_numpy(y_category), torch.from_numpy(y_colour)
    targets_box = torch.from_numpy(y_box)
    generator = torch.Generator().manual_seed(config.seed)
    steps = range(config.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="cell heads: fitting", unit="step")
    for step in steps:
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * 0.5 * (1 + np.cos(np.pi * step / config.steps))
        pick = torch.randint(0, len(features), (config.batch_size,), generator=generator)
        on = targets[pick] > 0
        loss = F.cross_entropy(category(features[pick]), targets[pick])
        if on.any():  # colour and box are said of object cells only
            loss = loss + F.cross_entropy(colour(features[pick][on]), targets_colour[pick][on])
            loss = loss + (torch.sigmoid(box(features[pick][on])) - targets_box[pick][on]).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    heads = CellHeads(CATEGORY_CLASSES, COLOR_CLASSES,
                      *(t.detach().numpy().astype(np.float32) for t in (category.weight, category.bias, colour.weight,
                                                                        colour.bias, box.weight, box.bias)))
    record: dict[str, Any] = {**settings, "train": cell_accuracy(heads, x, y_category, y_colour, y_box)}
    if eval_scenes:
        record["eval"] = cell_accuracy(heads, *_dense_set(vlm, eval_scenes, config.eval_stride, config.min_share,
                                                          "cell heads: evaluation features" if progress else None))
    save_cell_heads(root, heads, record)
    return {"categories": list(heads.categories), "colours": list(heads.colours), **record}
