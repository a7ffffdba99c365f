"""The ``vqa`` predictor of ``scener1 eval --run`` (VSI-Bench, the synthetic benchmark's VSI part, ScanQA, SQA3D).

``scener1 eval synth --annotations DIR --run --predictor vqa --predictor-arg grounder=oracle --out OUT`` answers
every VSI-Bench-style item with the VQA engine on its scene. Options (``--predictor-arg KEY=VALUE``):
``grounder`` (pipeline | oracle | none), ``mode`` (auto | geometry | vlm | vlm_facts), ``config``, ``model``,
``oracle_points`` / ``oracle_boxes`` / ``oracle_label_map`` (ScanNet oracle), ``vqa.KEY`` (VQA options) and any
pipeline option as ``KEY=VALUE``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ScenerError

#: item tasks the VQA predictor answers
TASKS = ("vsibench", "qa")


def vqa_predictor(benchmark: Any, grounder: str = "pipeline", mode: str | None = None, config: str | None = None,
                  model: str | None = None, oracle_points: str | None = None, oracle_boxes: str | None = None,
                  oracle_label_map: str | None = None, **options: str) -> Callable[[Any], dict]:
    """``predict_fn(item) -> dict`` answering each item's question on its scene (kept open between items of one
    scene, so the scene's measurements are reused; shard runs by scene for the most reuse)."""
    from ..eval.predictors import item_scene
    from .engine import Question, VQAEngine

    vqa_opts = [f"{k}={v}" for k, v in options.items() if k.startswith("vqa.")]
    pipe_opts = [f"{k}={v}" for k, v in options.items() if not k.startswith("vqa.")]
    files = {k: v for k, v in (("points", oracle_points), ("boxes", oracle_boxes), ("label_map", oracle_label_map)) if v}
    engine = VQAEngine.build(grounder, mode=mode, config=config, overrides=pipe_opts, model=model,
                             vqa_overrides=vqa_opts, oracle_files=files)
    opened: dict[str, Any] = {}

    def predict(item: Any) -> dict:
        if item.task not in TASKS:
            raise ScenerError(f"the vqa predictor answers questions; it does not answer {item.task} items")
        scene = item_scene(item, opened)
        options_ = tuple(getattr(item, "options", ()) or ())
        question = Question(item.text, options_, getattr(item, "situation", None), item.id)
        result = engine.answer(scene, question)
        if result.answer is None:
            raise ScenerError(f"unanswered ({'; '.join(result.notes) or result.status})")
        extra = {"source": result.source, "status": result.status, "type": result.routed.qtype}
        if result.head is not None and result.head.computation:
            extra["computation"] = result.head.computation.get("summary")
        if item.task == "vsibench":
            return {"prediction": result.answer, **extra}
        return {"answer": result.answer, "answers_top10": [result.answer], **extra}

    return predict
