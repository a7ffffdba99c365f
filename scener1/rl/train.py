"""Training a grounding VLM with the Scene-R1 recipe: a supervised cold start, then GRPO.

Both stages run through TRL (``SFTTrainer`` with :class:`scener1.models.training.GroundingCollator`,
``GRPOTrainer`` with the model's processor and :mod:`scener1.rl.rewards`), on rows of
:mod:`scener1.rl.datasets`. Each stage has a config dataclass beside it (TRL style) whose fields map onto
TRL's own config; the same code runs a tiny model on a laptop CPU and a 7B model under
``accelerate launch`` with DeepSpeed ZeRO-3 (see ``configs/train/`` and ``docs/training.md``).

A stage writes checkpoints to its ``output_dir`` every ``save_steps`` and resumes from the newest one when
run again; it writes its training curves (``curves.png``, ``curves.jsonl``) there too, and the finished
model (weights, processor, ``scener1_prompts.json``) to ``output_dir/final``.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import coerce_scalar
from ..errors import ConfigError

SFT_CURVES = ("loss", "mean_token_accuracy", "eval/image/miou", "eval/image/acc@0.5", "eval/image/pointing",
              "eval/temporal/miou", "learning_rate", "grad_norm")
GRPO_CURVES = ("reward", "rewards/box_iou_reward/mean", "rewards/format_reward/mean",
               "rewards/temporal_iou_reward/mean", "eval/image/miou", "eval/image/acc@0.5",
               "completions/mean_length", "loss")


def _device_flags(device: str, precision: str = "auto") -> dict[str, Any]:
    """TrainingArguments flags for ``device`` (``auto``: CUDA when visible, ``cpu`` or ``cuda``) and
    ``precision``: ``auto`` (bf16 on a GPU that has it, else fp16 there; fp32 on CPU), ``bf16`` (autocast;
    on CPUs with AVX-512 BF16 about twice as fast as fp32 for the tiny model) or ``fp32``."""
    import torch

    device, precision = device.lower(), precision.lower()
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown training device '{device}'; use auto, cpu or cuda")
    if precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"unknown training precision '{precision}'; use auto, bf16 or fp32")
    cuda = torch.cuda.is_available() and device != "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for but no CUDA GPU is visible")
    if precision == "fp32":
        return {"use_cpu": not cuda, "bf16": False, "fp16": False}
    if not cuda:
        return {"use_cpu": True, "bf16": precision == "bf16", "fp16": False}
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision bf16 asked for but this GPU does not support bf16")
    return {"use_cpu": False, "bf16": torch.cuda.is_bf16_supported(), "fp16": not torch.cuda.is_bf16_supported()}


@dataclass
class SFTStageConfig:
    """The supervised cold start. ``total_rows`` rows are seen once each, in curriculum order
    (``easy_rows`` easy ones first, then batches drawn by ``task_weights``; a task missing from the rows
    is left out)."""

    output_dir: str
    total_rows: int = 20000
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    lr_scheduler_type: str = "cosine_with_min_lr"
    min_lr_rate: float = 0.1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    easy_rows: int = 0
    task_weights: dict[str, float] = field(default_factory=lambda: {"image": 0.8, "temporal": 0.2})
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    eval_every: int = 200
    max_answer_tokens: int = 160
    eval_max_new_tokens: int = 96
    gradient_checkpointing: bool = False
    freeze_vision_tower: bool = False  # keep the vision blocks as they are; the merger and language model learn
    dataloader_num_workers: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto | bf16 | fp32 (see _device_flags)
    deepspeed: str | None = None  # a DeepSpeed JSON config (ZeRO-3 for large models)
    report_to: str = "none"

    @property
    def steps(self) -> int:
        per_step = self.batch_size * self.gradient_accumulation_steps
        return max(1, self.total_rows // per_step)

    def to_trl(self) -> Any:
        from trl import SFTConfig

        from ..models.training import checkpointing_arguments  # always passed: TRL's own default is on

        warmup = max(0, int(round(self.warmup_ratio * self.steps)))
        kwargs: dict[str, Any] = {}
        if self.lr_scheduler_type == "cosine_with_min_lr":
            kwargs["lr_scheduler_kwargs"] = {"min_lr_rate": self.min_lr_rate}
        return SFTConfig(
            output_dir=self.output_dir, max_steps=self.steps, per_device_train_batch_size=self.batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps, learning_rate=self.learning_rate,
            lr_scheduler_type=self.lr_scheduler_type, warmup_steps=warmup, weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm, logging_steps=self.logging_steps, save_steps=self.save_steps,
            save_total_limit=self.save_total_limit, seed=self.seed, data_seed=self.seed,
            remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True}, max_length=None,
            dataloader_num_workers=self.dataloader_num_workers, deepspeed=self.deepspeed, report_to=self.report_to, disable_tqdm=False, save_only_model=False,
            **_device_flags(self.device, self.precision), **checkpointing_arguments(self.gradient_checkpointing), **kwargs,
        )


@dataclass
class GRPOStageConfig:
    """GRPO after the cold start: ``prompts_per_step`` prompts per device and step, ``num_generations``
    answers each, rewards from :mod:`scener1.rl.rewards` (format + box IoU + temporal IoU). Defaults
    follow TRL's (DAPO loss, no KL term)."""

    output_dir: str
    max_steps: int = 300
    prompts_per_step: int = 2
    num_generations: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "constant_with_warmup"
    warmup_steps: int = 10
    max_grad_norm: float = 1.0
    max_completion_length: int = 96
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.0
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    num_iterations: int = 1
    reward_weights: list[float] | None = None
    tasks: tuple[str, ...] = ("image",)
    # the share of prompts from each task; None takes the rows as they come, and then the rarer task is barely
    # trained (temporal rows are 1 in 36 of the tiny recipe's: about 17 of 600 prompts in run 13)
    task_weights: dict[str, float] | None = None
    seed: int = 0
    logging_steps: int = 5
    save_steps: int = 50
    save_total_limit: int = 2
    eval_every: int = 50
    eval_max_new_tokens: int = 96
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    use_peft: bool = False
    lora_r: int = 64
    lora_alpha: int = 128
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                    "gate_proj", "up_proj", "down_proj"])
    gradient_checkpointing: bool = False
    freeze_vision_tower: bool = False  # keep the vision blocks as they are; the merger and language model learn
    device: str = "auto"
    precision: str = "auto"
    deepspeed: str | None = None
    report_to: str = "none"

    def to_trl(self) -> Any:
        from trl import GRPOConfig

        from ..models.training import checkpointing_arguments

        return GRPOConfig(
            output_dir=self.output_dir, max_steps=self.max_steps,
            per_device_train_batch_size=self.prompts_per_step * self.num_generations,
            num_generations=self.num_generations, gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=self.learning_rate, lr_scheduler_type=self.lr_scheduler_type,
            warmup_steps=self.warmup_steps, max_grad_norm=self.max_grad_norm,
            max_completion_length=self.max_completion_length, temperature=self.temperature, top_p=self.top_p,
            beta=self.beta, loss_type=self.loss_type, scale_rewards=self.scale_rewards,
            num_iterations=self.num_iterations, reward_weights=self.reward_weights, seed=self.seed,
            data_seed=self.seed, logging_steps=self.logging_steps, save_steps=self.save_steps,
            save_total_limit=self.save_total_limit, remove_unused_columns=False, use_vllm=self.use_vllm,
            vllm_mode=self.vllm_mode, deepspeed=self.deepspeed, report_to=self.report_to, disable_tqdm=False,
            **_device_flags(self.device, self.precision), **checkpointing_arguments(self.gradient_checkpointing),
        )

    def prompt_rows(self, rows: Sequence[dict[str, Any]], world_size: int = 1) -> list[dict[str, Any]]:
        """The rows GRPO draws its prompts from: those of ``tasks``; with ``task_weights``, as many as the run
        takes, drawn per task by those weights (reproducible by ``seed``; the trainer shuffles them)."""
        rows = [r for r in rows if r["task"] in self.tasks]
        if not rows or not self.task_weights:
            return rows
        from .datasets import Curriculum, curriculum_order

        unknown = set(self.task_weights) - set(self.tasks)
        if unknown:
            raise ConfigError(f"grpo.task_weights names {', '.join(sorted(unknown))}, not among grpo.tasks "
                              f"({', '.join(self.tasks)})")
        total = self.max_steps * self.prompts_per_step * self.gradient_accumulation_steps * max(1, world_size)
        order = curriculum_order(rows, Curriculum(total=total, batch_size=1, task_weights=dict(self.task_weights),
                                                  seed=self.seed))
        return [rows[i] for i in order]

    def peft_config(self) -> Any:
        if not self.use_peft:
            return None
        from peft import LoraConfig

        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, target_modules=list(self.lora_target_modules),
                          task_type="CAUSAL_LM")


def stage_config(cls: type, values: dict[str, Any]) -> Any:
    """A stage config from a plain dict (a YAML section), refusing unknown keys with one line."""
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    values = {k: coerce_scalar(hints[k], v, f"{cls.__name__}.{k}") for k, v in values.items()}
    if "tasks" in values:
        values["tasks"] = tuple(values["tasks"])
    return cls(**values)


# --------------------------------------------------------------------------------------------- helpers
def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete ``checkpoint-N`` folder in ``output_dir`` (one with its trainer state)."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    found = []
    for p in out.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir() and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


def load_model_and_processor(model_dir: str | Path, args: Any) -> tuple[Any, Any, Any]:
    """(model, processor, VLM) from a checkpoint directory, through :func:`scener1.models.load_vlm`
    (safetensors only, no remote code). Weights load on the CPU (the trainer places them, and under
    DeepSpeed ZeRO-3 partitions them as they load, because ``args`` exist first). On a GPU without DeepSpeed
    the weights stay float32 and autocast computes in bf16 / fp16 (updates far below a bf16 weight's
    resolution would be lost); on the CPU and under DeepSpeed (which keeps its own float32 master copy) they
    load in the training precision."""
    from ..models import load_vlm

    dtype = "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32"
    if not args.use_cpu and not args.deepspeed:
        dtype = "float32"
    vlm = load_vlm(model_dir, device="cpu", dtype=dtype)
    return vlm.model, vlm.processor, vlm


def freeze_vision_tower(model: Any) -> int:
    """Stop gradients into the vision tower's patch embedding, position grid and blocks, leaving its
    mergers (the projection into the language model) trainable, as Qwen-VL fine-tuning recipes do; returns
    the number of frozen parameters. Raises ConfigError for a model without a ``visual`` tower."""
    visual = getattr(getattr(model, "model", None), "visual", None)
    if visual is None:
        raise ConfigError(f"freeze_vision_tower: {type(model).__name__} has no vision tower (model.model.visual)")
    frozen = 0
    for name, param in visual.named_parameters():
        if "merger" not in name:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def save_final(trainer: Any, processor: Any, out_dir: Path, prompt_version: str, box_coordinates: str | None) -> Path:
    """The trained model as a complete checkpoint directory that :func:`load_vlm` reads."""
    from ..prompts import write_model_prompt_info

    trainer.save_model(str(out_dir))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(str(out_dir))
        write_model_prompt_info(out_dir, prompt_version, box_coordinates)
        for extra in ("training_args.bin", "README.md"):  # a pickle and a generated card: not part of a model
            (out_dir / extra).unlink(missing_ok=True)
    return out_dir


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------- stages
def run_sft(model_dir: str | Path, rows: Sequence[dict[str, Any]], config: SFTStageConfig,
            eval_rows: Sequence[dict[str, Any]] = (), callbacks: Sequence[Any] = ()) -> Path:
    """Supervised training of the model in ``model_dir`` on ``rows``; returns ``output_dir/final``.
    ``callbacks``: extra ``transformers.TrainerCallback`` objects.

    Resumes from the newest checkpoint in ``output_dir``; does nothing when ``final`` is already there.
    """
    from datasets import Dataset

    from ..models.training import CurvesCallback, GroundingCollator, GroundingEvalCallback, ordered_sft_trainer_class
    from .datasets import Curriculum, FrameSource, curriculum_order

    out = Path(config.output_dir)
    final = out / "final"
    if (final / "config.json").is_file():
        return final
    if not rows:
        raise ConfigError("no training rows for the supervised stage")
    args = config.to_trl()
    model, processor, vlm = load_model_and_processor(model_dir, args)
    if config.freeze_vision_tower:
        freeze_vision_tower(model)
    per_step = config.batch_size * config.gradient_accumulation_steps * max(1, args.world_size)
    order = curriculum_order(rows, Curriculum(total=args.max_steps * per_step, batch_size=config.batch_size,
                                              easy_rows=config.easy_rows, task_weights=config.task_weights,
                                              seed=config.seed))
    dataset = Dataset.from_list([rows[i] for i in order])
    frames = FrameSource()
    callbacks = [CurvesCallback(out, SFT_CURVES, f"supervised cold start ({out.name})"), *callbacks]
    if eval_rows and config.eval_every > 0:
        callbacks.append(GroundingEvalCallback(processor, eval_rows, FrameSource(), config.eval_every,
                                               vlm.box_coordinates, config.eval_max_new_tokens))
    trainer = ordered_sft_trainer_class()(
        model=model, args=args, train_dataset=dataset, processing_class=processor,
        data_collator=GroundingCollator(processor, frames, config.max_answer_tokens), callbacks=callbacks,
    )
    _write_json(out / "stage_config.json", {**asdict(config), "model": str(model_dir)})  # what it started from
    trainer.train(resume_from_checkpoint=str(last_checkpoint(out)) if last_checkpoint(out) else None)
    frames.close()
    return save_final(trainer, processor, final, vlm.prompt_version, vlm.box_coordinates)


def grpo_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` of the columns GRPO needs: the conversational ``prompt``, where its frame or
    video comes from (read when a batch is built, see :func:`scener1.models.training.vision_grpo_trainer_class`)
    and the reward columns."""
    from datasets import Dataset

    columns = ("task", "scene", "positions", "timestamps", "query", "prompt", "box", "image_size",
               "model_image_size", "box_coordinates", "spans", "duration")
    return Dataset.from_list([{k: r.get(k) for k in columns} for r in rows])


def run_grpo(model_dir: str | Path, rows: Sequence[dict[str, Any]], config: GRPOStageConfig,
             eval_rows: Sequence[dict[str, Any]] = ()) -> Path:
    """GRPO on the rows of ``config.tasks`` (image and temporal grounding) starting from ``model_dir``;
    returns ``output_dir/final``. Resumable like :func:`run_sft`."""
    from ..models.training import CurvesCallback, GroundingEvalCallback, media_token_ids, vision_grpo_trainer_class
    from .datasets import VIDEO_TASKS, FrameSource
    from .rewards import REWARD_FUNCTIONS, REWARDED_TASKS

    out = Path(config.output_dir)
    final = out / "final"
    if (final / "config.json").is_file():
        return final
    unsupported = set(config.tasks) - set(REWARDED_TASKS)
    if unsupported:
        raise ConfigError(f"GRPO has no reward for {', '.join(sorted(unsupported))} rows; "
                          f"tasks must be among {', '.join(REWARDED_TASKS)}")
    if config.use_vllm and set(config.tasks) & set(VIDEO_TASKS):
        raise ConfigError("GRPO with vLLM generation takes image rows only; drop temporal from grpo.tasks "
                          "or set grpo.use_vllm=false")
    args = config.to_trl()
    rows = config.prompt_rows(rows, args.world_size)
    if not rows:
        raise ConfigError("no rows for the GRPO stage")
    model, processor, vlm = load_model_and_processor(model_dir, args)
    if config.freeze_vision_tower:
        freeze_vision_tower(model)
    if not config.use_vllm:  # vLLM takes its own sampling parameters
        args.generation_kwargs = {**(args.generation_kwargs or {}), "suppress_tokens": media_token_ids(model.config)}
    frames = FrameSource()
    callbacks = [CurvesCallback(out, GRPO_CURVES, f"GRPO ({out.name})")]
    if eval_rows and config.eval_every > 0:
        callbacks.append(GroundingEvalCallback(processor, eval_rows, FrameSource(), config.eval_every,
                                               vlm.box_coordinates, config.eval_max_new_tokens))
    trainer = vision_grpo_trainer_class()(
        model=model, reward_funcs=list(REWARD_FUNCTIONS), args=args, train_dataset=grpo_dataset(rows),
        processing_class=processor, callbacks=callbacks, peft_config=config.peft_config(), frames=frames,
    )
    _write_json(out / "stage_config.json", {**asdict(config), "model": str(model_dir)})  # what it started from
    checkpoint = last_checkpoint(out)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    frames.close()
    if config.use_peft:
        trainer.model = trainer.model.merge_and_unload()
    return save_final(trainer, processor, final, vlm.prompt_version, vlm.box_coordinates)


# --------------------------------------------------------------------------------------------- recipe
@dataclass
class DataConfig:
    """Where the rows come from. ``train`` and ``eval`` list scene folders or folders of scenes (see
    :func:`scener1.rl.datasets.scene_dirs`); ``image`` / ``temporal`` / ``detect`` / ``vqa`` hold the task
    settings' fields; ``eval_image_rows`` / ``eval_temporal_rows`` / ``eval_vqa_rows`` rows of the ``eval``
    scenes are decoded during training."""

    train: list[str]
    eval: list[str] = field(default_factory=list)
    tasks: tuple[str, ...] = ("image", "temporal")
    image: dict[str, Any] = field(default_factory=dict)
    temporal: dict[str, Any] = field(default_factory=dict)
    detect: dict[str, Any] = field(default_factory=dict)
    vqa: dict[str, Any] = field(default_factory=dict)
    eval_image_rows: int = 48
    eval_temporal_rows: int = 16
    eval_vqa_rows: int = 0
    seed: int = 0


@dataclass
class Recipe:
    """A training run: the starting checkpoint, the data, and the stages to run (``None`` skips one)."""

    model: str
    output_dir: str
    data: DataConfig
    sft: SFTStageConfig | None = None
    grpo: GRPOStageConfig | None = None


def _parse_override(text: str) -> tuple[list[str], Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"overrides are KEY=VALUE (dotted keys), got {text!r}")
    return key.strip().split("."), yaml.safe_load(value)


def recipe_from_dict(data: dict[str, Any], overrides: Sequence[str] = ()) -> Recipe:
    """A :class:`Recipe` from a plain dict (a YAML file) plus dotted ``key=value`` overrides."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    unknown = sorted(set(data) - {"model", "output_dir", "data", "sft", "grpo"})
    if unknown:
        raise ConfigError(f"unknown recipe section(s): {', '.join(unknown)}")
    for key in ("model", "output_dir", "data"):
        if not data.get(key):
            raise ConfigError(f"the recipe needs '{key}'")
    out = str(data["output_dir"])
    data_cfg = stage_config(DataConfig, data["data"])
    data_cfg.tasks = tuple(data_cfg.tasks)
    stages: dict[str, Any] = {}
    for name, cls in (("sft", SFTStageConfig), ("grpo", GRPOStageConfig)):
        section = data.get(name)
        if section is None or section is False:
            stages[name] = None
            continue
        section = dict(section)
        section.setdefault("output_dir", str(Path(out) / name))
        stages[name] = stage_config(cls, section)
    return Recipe(str(data["model"]), out, data_cfg, stages["sft"], stages["grpo"])


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    return recipe_from_dict(data, overrides)


def recipe_rows(recipe: Recipe, model_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training rows, evaluation rows) of a recipe, in the model's box convention and image sizes."""
    import numpy as np

    from ..models.training import load_processor, model_box_convention, processor_image_size
    from .datasets import (
        DetectionTaskSettings,
        ImageTaskSettings,
        TemporalTaskSettings,
        VQATaskSettings,
        build_rows,
        scene_dirs,
    )

    version, convention = model_box_convention(model_dir)
    size_fn = processor_image_size(load_processor(model_dir))
    d = recipe.data
    image = stage_config(ImageTaskSettings, d.image)
    temporal = stage_config(TemporalTaskSettings, d.temporal)
    detect = stage_config(DetectionTaskSettings, d.detect)
    vqa = stage_config(VQATaskSettings, d.vqa)

    def rows_of(roots: Sequence[str], progress: bool) -> list[dict[str, Any]]:
        scenes = [s for root in roots for s in scene_dirs(root)]
        return build_rows(scenes, tasks=d.tasks, convention=convention, model_image_size=size_fn, image=image,
                          temporal=temporal, detect=detect, vqa=vqa, prompt_version=version, progress=progress)

    train = rows_of(d.train, True)
    evaluation: list[dict[str, Any]] = []
    if d.eval:
        pool = rows_of(d.eval, False)
        rng = np.random.default_rng(d.seed)
        for task, count in (("image", d.eval_image_rows), ("temporal", d.eval_temporal_rows),
                            ("vqa", d.eval_vqa_rows)):
            own = [r for r in pool if r["task"] == task and r["difficulty"] == 1]
            pick = rng.permutation(len(own))[:count]
            evaluation += [own[i] for i in sorted(pick)]
    return train, evaluation


def run_recipe(recipe: Recipe) -> dict[str, str]:
    """Run the recipe's stages in order (each resumable); returns the final model of each stage run."""
    model = recipe.model
    finished: dict[str, str] = {}
    train, evaluation = recipe_rows(recipe, model)
    if recipe.sft is not None:
        model = str(run_sft(model, train, recipe.sft, evaluation))
        finished["sft"] = model
    if recipe.grpo is not None:
        model = str(run_grpo(model, train, recipe.grpo, evaluation))
        finished["grpo"] = model
    return finished


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m scener1.rl.train CONFIG [KEY=VALUE ...]`` (also under ``accelerate launch``)."""
    import argparse

    from ..cli_args import run_command

    parser = argparse.ArgumentParser(prog="python -m scener1.rl.train",
                                     description="Train a grounding VLM: supervised cold start, then GRPO.")
    parser.add_argument("config", help="a training recipe (YAML), e.g. configs/train/qwen3_vl.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted KEY=VALUE overrides, e.g. grpo.max_steps=2")
    args = parser.parse_args(argv)

    def train() -> None:
        for stage, path in run_recipe(load_recipe(args.config, args.overrides)).items():
            print(f"{stage}: {path}")

    return run_command(train, "checkpoints are saved; run again to resume")


if __name__ == "__main__":
    raise SystemExit(main())
