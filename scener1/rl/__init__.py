"""Training grounding VLMs with the Scene-R1 recipe: rewards, datasets, TRL trainers, held-out evaluation.

- :mod:`scener1.rl.rewards`: GRPO rewards as plain callables (format, temporal IoU, 2D box IoU);
- :mod:`scener1.rl.datasets`: image- and temporal-grounding rows from scenes with ground truth;
- :mod:`scener1.rl.train`: the supervised cold start and GRPO through TRL, and the recipe entry point
  (``python -m scener1.rl.train CONFIG``);
- :mod:`scener1.rl.evaluate`, :mod:`scener1.rl.benchmark`: scoring models on held-out scenes.

Names load their module on first use, so importing the package costs nothing (TRL and torch load only
when training starts).
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "REWARD_FUNCTIONS": "rewards",
    "box_iou_reward": "rewards",
    "format_reward": "rewards",
    "temporal_iou_reward": "rewards",
    "Curriculum": "datasets",
    "FrameSource": "datasets",
    "ImageTaskSettings": "datasets",
    "TemporalTaskSettings": "datasets",
    "build_rows": "datasets",
    "curriculum_order": "datasets",
    "load_scene_truth": "datasets",
    "scene_dirs": "datasets",
    "GRPOStageConfig": "train",
    "SFTStageConfig": "train",
    "Recipe": "train",
    "load_recipe": "train",
    "run_grpo": "train",
    "run_recipe": "train",
    "run_sft": "train",
    "EvalReport": "evaluate",
    "evaluate_rows": "evaluate",
    "HeldoutSettings": "benchmark",
    "compare_models": "benchmark",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
