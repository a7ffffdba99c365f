"""Pretraining the vision tower of a from-scratch VLM on dense per-token targets (Scene-R1-tiny's first stage).

Real Qwen-VL models start from a vision encoder that already knows what things look like; a tiny model
trained from scratch only gets four numbers per image from the box answers of supervised fine-tuning.
Here every merged vision token of every training frame is told which object it shows (category, colour)
and where that object's visible box is (:mod:`scener1.rl.dense`), through three linear heads on the very
features the language model reads. The heads are thrown away; the tower's weights go on to SFT.

    pretrain_vision("outputs/train_tiny/init", train_scenes, VisionPretrainConfig(), "outputs/train_tiny/vision")

Resumable: the tower, heads and optimizer are saved every ``save_every`` steps (``torch.save``, read back
with ``weights_only=True``) and a rerun carries on from there; the finished model is an ordinary
checkpoint directory (safetensors, processor files, prompt info).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

STATE_FILE = "pretrain_state.pt"
SUMMARY_FILE = "vision_pretrain.json"


@dataclass(frozen=True)
class VisionPretrainConfig:
    steps: int = 1000
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_rate: float = 0.1  # cosine decay to this share of learning_rate
    color_weight: float = 1.0
    box_weight: float = 5.0  # L1 on boxes in [0, 1] is small next to the cross-entropies
    frame_stride: int = 2  # every n-th frame of each training scene
    min_share: float = 0.2  # a cell shows an object covering at least this share of it (small ones count)
    flip: bool = False  # mirror half the frames left-right (targets with them): twice the views, no side bias
    # Videos reach the tower as pairs of *different* frames per token at a smaller size; a tower that has
    # only seen images (each frame doubled) reads them badly (linear probe: object cells 0.12 vs 0.38).
    video_share: float = 0.0  # share of each batch given as two-frame videos, targets of the first frame
    video_frames: int = 20  # frames the temporal stage shows: each gets 1/video_frames of the video budget
    video_gap_s: float = 0.5  # seconds between a pair's frames (the temporal stage samples at 2 fps)
    precision: str = "bf16"  # bf16 autocast (faster on recent CPUs) or fp32
    log_every: int = 25
    save_every: int = 200
    eval_frames: int = 120
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.frame_stride < 1 or self.eval_frames < 0:
            raise ConfigError("vision pretraining: steps >= 0, batch_size >= 1, frame_stride >= 1, eval_frames >= 0")
        if not self.learning_rate > 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_rate <= 1:
            raise ConfigError("vision pretraining: learning_rate > 0, warmup_steps >= 0, min_lr_rate in [0, 1]")
        if self.precision not in ("bf16", "fp32"):
            raise ConfigError(f"vision pretraining: precision must be bf16 or fp32, got {self.precision!r}")
        if min(self.log_every, self.save_every) < 1 or not 0 < self.min_share <= 1:
            raise ConfigError("vision pretraining: log_every, save_every >= 1 and min_share in (0, 1]")
        if not 0 <= self.video_share <= 1 or self.video_frames < 2 or not self.video_gap_s >= 0:
            raise ConfigError("vision pretraining: video_share in [0, 1], video_frames >= 2, video_gap_s >= 0")


def _heads(hidden: int) -> Any:
    import torch
    from torch import nn

    from ..rl.dense import CATEGORY_CLASSES, COLOR_CLASSES

    class DenseHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.category = nn.Linear(hidden, len(CATEGORY_CLASSES))
            self.color = nn.Linear(hidden, len(COLOR_CLASSES))
            self.box = nn.Linear(hidden, 4)

        def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return self.category(features), self.color(features), torch.sigmoid(self.box(features))

    return DenseHeads()


@dataclass
class VisionInputs:
    """Processed pixels of a batch for the tower: images, then two-frame videos (either may be absent)."""

    images: Any = None  # the image processor's output (pixel_values, image_grid_thw)
    videos: Any = None  # the video processor's output (pixel_values_videos, video_grid_thw)


class DenseBatches:
    """Frames and their cell targets in batches, in an order fixed by the seed (so a resumed run sees the
    batches it would have seen). A ``video_share`` of each batch goes in as two-frame videos (the frame and
    the one ``video_gap_s`` later) at the size the temporal stage's videos have."""

    def __init__(self, scenes: Sequence[str | Path], processor: Any, stride: int, min_share: float, seed: int,
                 flip: bool = False, video_share: float = 0.0, video_frames: int = 20, video_gap_s: float = 0.5):
        from ..rl.datasets import FrameSource, load_scene_truth
        from ..rl.dense import frame_positions

        self.truths = [load_scene_truth(s) for s in scenes]
        self.items = frame_positions(self.truths, stride)
        if not self.items:
            raise ConfigError("vision pretraining: the scenes have no frames")
        self.processor, self.min_share, self.seed, self.flip = processor, min_share, seed, flip
        self.video_share, self.video_gap_s = video_share, video_gap_s
        budget = dict(getattr(processor.video_processor, "size", None) or {})  # a SizeDict: total pixels of a video
        if video_share > 0 and not budget.get("longest_edge"):
            raise ConfigError("vision pretraining: video_share needs a video processor with a pixel budget")
        # a pair gets the pixels (and the floor) two of the temporal stage's frames get
        self.video_size = {k: 2 * int(budget[k]) // video_frames for k in ("shortest_edge", "longest_edge")
                           if budget.get(k)} or None
        self.frames = FrameSource()

    def batch(self, step: int, size: int) -> tuple[Any, list[Any]]:
        """Batch ``step``: items ``step * size`` onwards of a stream of per-epoch permutations."""
        picked, orders = [], {}
        for i in range(step * size, (step + 1) * size):
            epoch, offset = divmod(i, len(self.items))
            if epoch not in orders:  # a batch spans at most two epochs
                orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.items))
            picked.append(self.items[int(orders[epoch][offset])])
        flips = np.random.default_rng([self.seed, step, 1]).random(size) < 0.5 if self.flip else None
        videos = round(self.video_share * size)
        return self.load(picked[: size - videos], flips[: size - videos] if flips is not None else None,
                         videos=picked[size - videos :], video_flips=flips[size - videos :] if flips is not None else None)

    def _color(self, k: int, p: int, flip: bool) -> np.ndarray:
        from ..rl.datasets import mirror_image

        image = self.frames.scene(str(self.truths[k].path)).color(p)
        return mirror_image(image) if flip else image

    def _targets(self, k: int, p: int, size: tuple[int, int], flip: bool) -> Any:
        from ..rl.dense import cell_targets, mirror_targets, read_instance_map

        cell = int(self.processor.image_processor.patch_size) * int(self.processor.image_processor.merge_size)
        cells = cell_targets(read_instance_map(self.truths[k].path, p), self.truths[k], p, size, cell, self.min_share)
        return mirror_targets(cells) if flip else cells

    def load(self, picked: Sequence[tuple[int, int]], flips: Sequence[bool] | None = None, *,
             videos: Sequence[tuple[int, int]] = (), video_flips: Sequence[bool] | None = None
             ) -> tuple[VisionInputs, list[Any]]:
        """Frames ``picked`` as images and ``videos`` as two-frame videos; targets in that order."""
        flips = [False] * len(picked) if flips is None else [bool(f) for f in flips]
        video_flips = [False] * len(videos) if video_flips is None else [bool(f) for f in video_flips]
        patch = int(self.processor.image_processor.patch_size)
        inputs, targets = VisionInputs(), []
        if picked:
            images = [self._color(k, p, f) for (k, p), f in zip(picked, flips, strict=True)]
            inputs.images = self.processor.image_processor(images=images, return_tensors="pt")
            for (k, p), (_, gh, gw), f in zip(picked, inputs.images["image_grid_thw"].tolist(), flips, strict=True):
                targets.append(self._targets(k, p, (gw * patch, gh * patch), f))
        if videos:
            from .vlm import fixed_frame_options

            clips = []
            for (k, p), f in zip(videos, video_flips, strict=True):
                later = min(p + max(round(self.video_gap_s * self.truths[k].fps), 1), len(self.truths[k].frames) - 1)
                clips.append(np.stack([self._color(k, p, f), self._color(k, later, f)]))
            inputs.videos = self.processor.video_processor(videos=clips, size=self.video_size, return_tensors="pt",
                                                           **fixed_frame_options(self.processor))
            for (k, p), (_, gh, gw), f in zip(videos, inputs.videos["video_grid_thw"].tolist(), video_flips, strict=True):
                targets.append(self._targets(k, p, (gw * patch, gh * patch), f))
        return inputs, targets

    def close(self) -> None:
        self.frames.close()


def _target_tensors(targets: Sequence[Any]) -> tuple[Any, Any, Any]:
    import torch

    category = torch.from_numpy(np.concatenate([t.category.ravel() for t in targets]))
    color = torch.from_numpy(np.concatenate([t.color.ravel() for t in targets]))
    box = torch.from_numpy(np.concatenate([t.box.reshape(-1, 4) for t in targets]))
    return category, color, box


def cell_features(model: Any, inputs: VisionInputs | Any) -> Any:
    """(tokens, hidden) merged vision features of a processed batch (a :class:`VisionInputs`, or an image
    processor's output): what the language model reads, images first."""
    import torch

    visual = model.model.visual
    if not isinstance(inputs, VisionInputs):
        inputs = VisionInputs(images=inputs)
    parts = []
    for batch, pixels, grid in ((inputs.images, "pixel_values", "image_grid_thw"),
                                (inputs.videos, "pixel_values_videos", "video_grid_thw")):
        if batch is not None:
            out = visual(batch[pixels].to(visual.device, visual.dtype), grid_thw=batch[grid].to(visual.device),
                         return_dict=True)
            parts.append(out.pooler_output)
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def dense_losses(model: Any, heads: Any, inputs: Any, targets: Sequence[Any], config: VisionPretrainConfig
                 ) -> tuple[Any, dict[str, float]]:
    """The weighted loss of one batch and its parts (category / colour cross-entropy, box L1)."""
    import torch
    import torch.nn.functional as F

    features = cell_features(model, inputs)
    category, color, box = _target_tensors(targets)
    if features.shape[0] != category.shape[0]:
        raise RuntimeError(f"{features.shape[0]} vision tokens for {category.shape[0]} cell targets")
    cat_logits, col_logits, box_pred = heads(features.float())
    loss_cat = F.cross_entropy(cat_logits, category)
    on = category > 0
    if on.any():
        loss_col = F.cross_entropy(col_logits[on], color[on])
        loss_box = (box_pred[on] - box[on]).abs().mean()
    else:
        loss_col = loss_box = torch.zeros((), device=features.device)
    loss = loss_cat + config.color_weight * loss_col + config.box_weight * loss_box
    parts = {"loss": loss, "category": loss_cat, "color": loss_col, "box_l1": loss_box}
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def evaluate_dense(model: Any, heads: Any, batches: DenseBatches, frames: int, batch_size: int = 16,
                   videos: bool = False, prefix: str | None = None) -> dict[str, float]:
    """Cell accuracy on ``frames`` evenly spaced frames of ``batches``' scenes: category on cells showing
    an object and on the rest, colour on object cells, mean box L1 (share of the frame). ``videos``: the
    frames go in as two-frame videos (figures named ``dense_video/...``); ``prefix`` names them otherwise."""
    import torch

    n = min(frames, len(batches.items))
    picked = [batches.items[int(i)] for i in np.linspace(0, len(batches.items) - 1, n).round()] if n else []
    hits = {"object": [], "background": [], "color": [], "box_l1": []}
    with torch.no_grad():
        for start in range(0, len(picked), batch_size):
            chunk = picked[start : start + batch_size]
            inputs, targets = batches.load([], videos=chunk) if videos else batches.load(chunk)
            features = cell_features(model, inputs)
            cat_logits, col_logits, box_pred = heads(features.float())
            category, color, box = _target_tensors(targets)
            on = category > 0
            right = cat_logits.argmax(-1) == category
            hits["object"] += right[on].tolist()
            hits["background"] += right[~on].tolist()
            hits["color"] += (col_logits.argmax(-1) == color)[on].tolist()
            hits["box_l1"] += (box_pred[on] - box[on]).abs().mean(-1).tolist()
    prefix = prefix or ("dense_video" if videos else "dense")
    return {f"{prefix}/{k}": float(np.mean(v)) for k, v in hits.items() if v}  # no object cells: no object figures


def _learning_rate(step: int, config: VisionPretrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    done = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    floor = config.min_lr_rate
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))


def _save_state(path: Path, state: dict[str, Any]) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous state intact


def pretrain_vision(model_dir: str | Path, scenes: Sequence[str | Path], config: VisionPretrainConfig,
                    out_dir: str | Path, eval_scenes: Sequence[str | Path] = (), progress: bool = True) -> Path:
    """Train ``model_dir``'s vision tower on the dense targets of ``scenes``; write the whole model to
    ``out_dir`` (a finished ``out_dir`` is returned as it is) with ``vision_pretrain.json`` (settings,
    curves, held-out cell accuracy on ``eval_scenes``)."""
    import torch

    from . import load_vlm

    out = Path(out_dir)
    summary_path = out / SUMMARY_FILE
    if summary_path.is_file() and json.loads(summary_path.read_text()).get("done"):
        return out
    out.mkdir(parents=True, exist_ok=True)
    vlm = load_vlm(model_dir, device="cpu", dtype="float32")
    model, processor = vlm.model, vlm.processor
    if not hasattr(getattr(model, "model", None), "visual") or model.config.model_type != "qwen3_vl":
        raise ConfigError(f"vision pretraining needs a Qwen3-VL model (Scene-R1-tiny); {model_dir} is "
                          f"{model.config.model_type}")
    torch.manual_seed(config.seed)
    heads = _heads(model.config.text_config.hidden_size)
    visual = model.model.visual.train()
    params = [*visual.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    step, history = 0, []
    state_path = out / STATE_FILE
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        visual.load_state_dict(state["visual"])
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), list(state["history"])

    video = {"video_frames": config.video_frames, "video_gap_s": config.video_gap_s}
    batches = DenseBatches(scenes, processor, config.frame_stride, config.min_share, config.seed, config.flip,
                           video_share=config.video_share, **video)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="vision pretraining", unit="step")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16")
    running: list[dict[str, float]] = []
    while step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, config)
        inputs, targets = batches.batch(step, config.batch_size)
        with autocast:
            loss, parts = dense_losses(model, heads, inputs, targets, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        running.append(parts)
        if step % config.log_every == 0 or step == config.steps:
            history.append({"step": step, "learning_rate": optimizer.param_groups[0]["lr"],
                            **{k: float(np.mean([r[k] for r in running])) for k in running[0]}})
            running = []
            if bar is not None:
                bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
        if step % config.save_every == 0 or step == config.steps:
            _save_state(state_path, {"visual": visual.state_dict(), "heads": heads.state_dict(),
                                     "optimizer": optimizer.state_dict(), "step": step, "history": history})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    visual.eval()
    metrics: dict[str, float] = {}
    if eval_scenes and config.eval_frames:
        held = DenseBatches(eval_scenes, processor, 1, config.min_share, config.seed, **video)
        metrics = evaluate_dense(model, heads, held, config.eval_frames)
        if config.video_share > 0:  # how the tower reads the temporal stage's videos
            metrics.update(evaluate_dense(model, heads, held, config.eval_frames, videos=True))
        held.close()
        # the same figures on the training frames (unmirrored, as evaluate_dense loads them): the gap to the held-out
        # ones says whether the tower fits its scenes (more scenes help) or cannot tell objects apart (a larger tower)
        metrics.update(evaluate_dense(model, heads, batches, config.eval_frames, prefix="dense_train"))
    batches.close()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    prompts = Path(model_dir) / "scener1_prompts.json"  # the prompt version and box convention travel along
    if prompts.is_file():
        shutil.copy2(prompts, out / prompts.name)
    summary = {"done": True, "model": str(model_dir), "config": asdict(config), "metrics": metrics,
               "history": history}
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    state_path.unlink(missing_ok=True)
    return out
