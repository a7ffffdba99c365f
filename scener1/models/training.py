"""Glue between scener1's grounding rows and the transformers / TRL trainers (the parts that need
transformers classes live here, as the rest of scener1 never imports transformers).

- :func:`prompt_inputs` turns chat requests into model inputs exactly as :meth:`scener1.models.VLM.prepare`
  does at inference (same chat template, same image and video processing, timestamps on the same clock),
  without moving them to a device;
- :class:`GroundingCollator` builds supervised batches from rows of :mod:`scener1.rl.datasets`: the prompt
  as the pipeline would send it, the answer after it, loss on the answer only;
- :class:`OrderedSFTTrainer` is TRL's ``SFTTrainer`` reading the dataset in its given order (the curriculum);
- :class:`CurvesCallback` writes the training curves (JSON lines and PNG) whenever the trainer logs;
- :class:`GroundingEvalCallback` decodes a fixed set of rows every few steps and logs IoU and accuracy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from .vlm import ChatRequest, video_kwargs


def checkpointing_arguments(enabled: bool) -> dict[str, Any]:
    """Trainer arguments that turn activation checkpointing on or off, always given: TRL's configs default it to
    on. transformers 5 calls it ``activation_checkpointing`` and warns about the old name, which older versions
    still need."""
    import dataclasses

    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"activation_checkpointing" if "activation_checkpointing" in known else "gradient_checkpointing": enabled}


def processor_image_size(processor: Any) -> Callable[[int, int], tuple[int, int]]:
    """``(width, height) -> (width, height)`` after the processor's resize, found by running it (cached)."""
    cache: dict[tuple[int, int], tuple[int, int]] = {}
    image_processor = processor.image_processor
    patch = int(image_processor.patch_size)

    def size(width: int, height: int) -> tuple[int, int]:
        key = (int(width), int(height))
        if key not in cache:
            out = image_processor(images=[np.zeros((key[1], key[0], 3), np.uint8)], return_tensors="pt")
            _, gh, gw = (int(v) for v in out["image_grid_thw"][0])
            cache[key] = (gw * patch, gh * patch)
        return cache[key]

    return size


def prompt_inputs(processor: Any, requests: Sequence[ChatRequest], padding_side: str = "left") -> Any:
    """Processor outputs (input ids, pixel values, grids) for the requests' prompts, as at inference."""
    texts = [processor.apply_chat_template(list(r.messages), tokenize=False, add_generation_prompt=True)
             for r in requests]
    images = [im for r in requests for im in r.images]
    videos = [v for r in requests for v in r.videos]
    kwargs: dict[str, Any] = {"text": texts, "padding": True, "padding_side": padding_side, "return_tensors": "pt"}
    if images:
        kwargs["images"] = images
    if videos:
        kwargs.update(video_kwargs(processor, videos))
    return processor(**kwargs)


def row_request(row: Mapping[str, Any], frames: Any) -> ChatRequest:
    """The chat request of a dataset row, its frame or video read by ``frames`` (a ``FrameSource``)."""
    from ..rl.datasets import VIDEO_TASKS

    messages = [dict(m) for m in row["prompt"]]
    if row["task"] in VIDEO_TASKS:
        return ChatRequest(messages, videos=(frames.clip(row),))
    return ChatRequest(messages, images=(frames.image(row),))


class GroundingCollator:
    """Supervised batches from grounding rows: [left padding, prompt, answer, end of turn, right padding],
    labels on the answer and the end-of-turn token only (as TRL's prompt-completion collators do)."""

    def __init__(self, processor: Any, frames: Any, max_answer_tokens: int = 160):
        self.processor = processor
        self.frames = frames
        self.max_answer_tokens = max_answer_tokens
        tokenizer = processor.tokenizer
        self.pad_id = tokenizer.pad_token_id
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        from ..rl.datasets import answer_text

        inputs = prompt_inputs(self.processor, [row_request(r, self.frames) for r in rows])
        tokenizer = self.processor.tokenizer
        answers = [tokenizer(answer_text(r), add_special_tokens=False)["input_ids"][: self.max_answer_tokens]
                   + [self.end_id] for r in rows]
        width = max(len(a) for a in answers)
        answer_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        answer_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, a in enumerate(answers):
            answer_ids[i, : len(a)] = torch.tensor(a)
            answer_mask[i, : len(a)] = 1
        prompt_ids, prompt_mask = inputs["input_ids"], inputs["attention_mask"]
        labels = torch.cat([torch.full_like(prompt_ids, -100), answer_ids.masked_fill(answer_mask == 0, -100)], dim=1)
        batch = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        for key in ("mm_token_type_ids", "token_type_ids"):
            if key in batch:  # per-token media markers: the answer holds no media
                batch[key] = torch.cat([batch[key], torch.zeros_like(answer_ids)], dim=1)
        batch["input_ids"] = torch.cat([prompt_ids, answer_ids], dim=1)
        batch["attention_mask"] = torch.cat([prompt_mask, answer_mask], dim=1)
        batch["labels"] = labels
        return batch


#: The processor's vision tensors, flattened over a batch's images and videos: (patch rows, one grid row per
#: image or video, the request attribute holding them, further tensors with one entry per image or video).
VISION_KEYS = (("pixel_values", "image_grid_thw", "images", ()),
               ("pixel_values_videos", "video_grid_thw", "videos", ("second_per_grid_ts",)))  # Qwen2.5-VL's clock
VISION_TENSORS = tuple(k for values, grid, _, per_item in VISION_KEYS for k in (values, grid, *per_item))


def split_vision_inputs(inputs: Mapping[str, Any], requests: Sequence[ChatRequest]) -> list[dict[str, Any]]:
    """Each request's share of a batch's vision tensors (``pixel_values``, ``image_grid_thw`` and the video
    pair), so that samples can be shuffled and regrouped; :func:`join_vision_inputs` undoes it."""
    shares: list[dict[str, Any]] = [{} for _ in requests]
    for values_key, grid_key, attr, per_item in VISION_KEYS:
        if grid_key not in inputs:
            continue
        grids = inputs[grid_key]
        lengths = grids.prod(-1).tolist()
        grid_at = row_at = 0
        for share, request in zip(shares, requests, strict=True):
            count = len(getattr(request, attr))
            rows = sum(lengths[grid_at : grid_at + count])
            if count:
                share[values_key] = inputs[values_key][row_at : row_at + rows]
                for key in (grid_key, *per_item):
                    if key in inputs:
                        share[key] = inputs[key][grid_at : grid_at + count]
            grid_at, row_at = grid_at + count, row_at + rows
    return shares


def join_vision_inputs(shares: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The model's vision inputs for a group of samples, from their :func:`split_vision_inputs` shares."""
    import torch

    keys = [k for k in VISION_TENSORS if any(k in s for s in shares)]
    return {k: torch.cat([torch.as_tensor(s[k]) for s in shares if k in s]) for k in keys}


def media_token_ids(config: Any) -> list[int]:
    """Ids of the tokens that stand for pixels (image and video pads, vision start and end) in a Qwen-VL config.

    A policy that samples one breaks the forward pass that scores its completion (the media tokens no longer
    match the vision inputs: a 281st GRPO step crashed so), and no answer needs them, so GRPO generation
    suppresses them all; TRL suppresses only the image pad.
    """
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return sorted({int(getattr(config, n)) for n in names if getattr(config, n, None) is not None})


def vision_grpo_trainer_class() -> type:
    """TRL's ``GRPOTrainer`` for rows with images *or videos*, prompts built exactly as inference builds them.

    TRL's trainer reads images from an ``image`` column and forwards only image tensors when it scores
    completions, so temporal rows (videos, with Qwen3-VL's timestamps) could not be trained with GRPO. This
    subclass builds each prompt with :func:`prompt_inputs` from the row itself (frames read by ``frames``, a
    ``FrameSource``), keeps every sample's share of the vision tensors beside its completion (so TRL's
    shuffling and regrouping keep them aligned), and hands them to the model whenever TRL computes
    log-probabilities. Generation, rewards, advantages and the loss are TRL's.
    """
    import torch
    from trl import GRPOTrainer

    class _WithVision:
        """The model, called with a chunk's vision inputs and media token types added."""

        def __init__(self, model: Any, extra: dict[str, Any], image_id: int, video_id: int):
            self.model, self.extra, self.image_id, self.video_id = model, extra, image_id, video_id

        def __call__(self, input_ids, **kwargs):
            types = (input_ids == self.image_id).long() + 2 * (input_ids == self.video_id).long()
            return self.model(input_ids=input_ids, mm_token_type_ids=types, **kwargs, **self.extra)

    class VisionGRPOTrainer(GRPOTrainer):
        def __init__(self, *args: Any, frames: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.frames = frames
            self._rows: list[Mapping[str, Any]] = []
            self._generated: list[dict[str, Any]] = []
            self._vision: Sequence[Mapping[str, Any]] = []
            config = self.model.config
            self._media_ids = (int(config.image_token_id), int(config.video_token_id))

        def _generate_and_score_completions(self, inputs):
            self._rows = inputs  # one row per completion to generate, in order
            output = super()._generate_and_score_completions(inputs)
            output["vision_inputs"] = self._generated
            return output

        def _tokenize_prompts(self, prompts):
            requests = [row_request(row, self.frames) for row in self._rows]
            batch = prompt_inputs(self.processing_class, requests)
            keep = batch["attention_mask"].bool()
            prompt_ids = [ids[m].tolist() for ids, m in zip(batch["input_ids"], keep, strict=True)]
            fields = {k: batch[k] for k in VISION_TENSORS if k in batch}
            if "mm_token_type_ids" in batch:  # per token: TRL pads it like the ids
                fields["mm_token_type_ids"] = [t[m].tolist() for t, m in zip(batch["mm_token_type_ids"], keep,
                                                                              strict=True)]
            self._generated = self._vision = split_vision_inputs(batch, requests)
            images = None
            if self.use_vllm:  # vLLM is handed the images themselves (run_grpo refuses videos with vLLM)
                from PIL import Image

                images = [[Image.fromarray(im) for im in r.images] for r in requests]
            return prompt_ids, images, fields

        def _compute_loss(self, model, inputs):
            self._vision = inputs["vision_inputs"]
            return super()._compute_loss(model, inputs)

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **_image_kwargs):
            # TRL's image kwargs are empty here (no image column); each chunk gets its own samples' tensors
            size = batch_size or input_ids.size(0)
            logps, entropies, aux = [], [], []
            for start in range(0, input_ids.size(0), size):
                end = min(start + size, input_ids.size(0))
                extra = {k: v.to(input_ids.device) for k, v in join_vision_inputs(self._vision[start:end]).items()}
                lp, ent, ax = super()._get_per_token_logps_and_entropies(
                    _WithVision(model, extra, *self._media_ids), input_ids[start:end], attention_mask[start:end],
                    logits_to_keep, compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss)
                logps.append(lp)
                entropies.append(ent)
                aux.append(ax)
            return (torch.cat(logps), torch.cat(entropies) if compute_entropy else None,
                    torch.stack(aux).mean() if compute_aux_loss else None)

    return VisionGRPOTrainer


def ordered_sft_trainer_class() -> type:
    """TRL's ``SFTTrainer`` reading its dataset in order (the rows are already in curriculum order)."""
    from torch.utils.data import SequentialSampler
    from trl import SFTTrainer

    class OrderedSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return SequentialSampler(dataset)

    return OrderedSFTTrainer


class CurvesCallback(TrainerCallback):
    """Writes ``curves.jsonl`` (every log entry) and ``curves.png`` (the chosen series) in ``out_dir``.

    The log history lives in the trainer state, which checkpoints save, so a resumed run's curves start
    where the killed run's stopped.
    """

    def __init__(self, out_dir: str | Path, series: Sequence[str], title: str, every_s: float = 30.0):
        self.out_dir = Path(out_dir)
        self.series = tuple(series)
        self.title = title
        self.every_s = every_s
        self._last = 0.0

    def write(self, history: Sequence[Mapping[str, Any]]) -> None:
        from ..rl.curves import plot_curves

        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "curves.jsonl", "w", encoding="utf-8") as f:
            for entry in history:
                f.write(json.dumps({k: v for k, v in entry.items() if isinstance(v, (int, float, str))}) + "\n")
        plot_curves(history, self.series, self.out_dir / "curves.png", self.title)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self.write(state.log_history)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.write(state.log_history)


class GroundingEvalCallback(TrainerCallback):
    """Every ``every`` steps, answer ``rows`` greedily with the model being trained and log their metrics
    (``eval/<metric>``) into the trainer's log history, so the curves show IoU beside the loss."""

    def __init__(self, processor: Any, rows: Sequence[Mapping[str, Any]], frames: Any, every: int,
                 box_coordinates: str, max_new_tokens: int = 96, batch_size: int = 16):
        self.processor = processor
        self.rows = list(rows)
        self.frames = frames
        self.every = every
        self.box_coordinates = box_coordinates
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def evaluate(self, model: Any) -> dict[str, float]:
        from ..rl.evaluate import evaluate_rows
        from .families import family_for_model_type
        from .vlm import VLM

        was_training = model.training
        model.eval()
        try:
            vlm = VLM(model, self.processor, family_for_model_type(model.config.model_type),
                      box_coordinates=self.box_coordinates, batch_size=self.batch_size)
            report = evaluate_rows(vlm, self.rows, self.frames, max_new_tokens=self.max_new_tokens, progress=False)
        finally:
            model.train(was_training)
        return report.metrics

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is None or not self.rows or self.every <= 0 or state.global_step % self.every:
            return
        # every process decodes the same rows: under DeepSpeed ZeRO-3 a forward pass needs all of them
        metrics = self.evaluate(model)
        state.log_history.append({"step": state.global_step, **{f"eval/{k}": v for k, v in metrics.items()}})
        control.should_log = True


def load_processor(model_dir: str | Path, trust_remote_code: bool = False) -> Any:
    """A checkpoint's processor, from disk only (the model itself is not loaded)."""
    from transformers import AutoProcessor

    from ..errors import ScenerError
    from .loading import check_model_files, resolve_model_dir

    path = resolve_model_dir(model_dir)
    check_model_files(path)
    try:
        return AutoProcessor.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ScenerError(f"cannot load the processor in {path}: {str(exc).strip().splitlines()[0]}") from None


def model_box_convention(model_dir: str | Path) -> tuple[str, str]:
    """(prompt version, box convention) a checkpoint runs with: its ``scener1_prompts.json``, else the
    family's defaults (as :func:`scener1.models.load_vlm` decides)."""
    from ..prompts import read_model_prompt_info, resolve_prompt_version
    from .families import family_for_model_type
    from .loading import check_model_files, resolve_model_dir

    path = resolve_model_dir(model_dir)
    family = family_for_model_type(check_model_files(path)["model_type"], where=str(path))
    info = read_model_prompt_info(path)
    box = info.box_coordinates if info is not None and info.box_coordinates else family.box_coordinates
    return resolve_prompt_version(info), box
