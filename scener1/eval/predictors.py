"""Predictors for ``scener1 eval --run``: a name or ``MODULE:FACTORY``.

A factory is called as ``factory(benchmark, **options)`` (options from ``--predictor-arg KEY=VALUE``, as strings)
and returns ``predict_fn(item) -> dict`` in the benchmark's prediction layout. ``predict_fn`` should raise
:class:`~scener1.errors.ScenerError` for an item it cannot answer (recorded and scored as wrong); under
``accelerate launch`` it should put its model on ``cuda:$LOCAL_RANK``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence

from ..errors import ConfigError
from .benchmark import Benchmark
from .items import Item

#: built-in predictors
PREDICTORS = {
    "oracle": "the ground truth itself: checks data paths, formats and scoring end to end (scores 100)",
    "pipeline": "scener1's grounding pipeline on the scans of --scans (options: config=FILE, model=DIR, and any "
    "pipeline option as KEY=VALUE, e.g. tracker.name=sam2); answers the grounding benchmarks",
    "vqa": "scener1's VQA engine on the scans of --scans (options: grounder=pipeline|oracle|none, "
    "mode=auto|geometry|vlm|vlm_facts, config=FILE, model=DIR, vqa.KEY=VALUE); answers VSI-Bench, ScanQA, SQA3D",
}

#: Item tasks the pipeline predictor answers, and how its box becomes a prediction.
_GROUNDING_TASKS = ("grounding", "referit3d", "multi_grounding")


def parse_options(pairs: Sequence[str] | None) -> dict[str, str]:
    options = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--predictor-arg must be KEY=VALUE, got {pair!r}")
        options[key.strip()] = value
    return options


def make_predictor(spec: str, benchmark: Benchmark, options: Mapping[str, str] | None = None) -> Callable[[Item], dict]:
    options = dict(options or {})
    if spec == "oracle":
        if options:
            raise ConfigError("the oracle predictor takes no options")
        return benchmark.oracle
    if spec == "pipeline":
        return pipeline_predictor(benchmark, **options)
    if spec == "vqa":
        from ..vqa.predictor import vqa_predictor

        return vqa_predictor(benchmark, **options)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"unknown predictor {spec!r}: use {' or '.join(PREDICTORS)} or MODULE:FACTORY")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--predictor {spec}: cannot import {module_name} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"--predictor {spec}: {module_name} has no callable {attr}")
    predict_fn = factory(benchmark, **options)
    if not callable(predict_fn):
        raise ConfigError(f"--predictor {spec}: the factory must return a callable predict_fn(item) -> dict")
    return predict_fn


def pipeline_predictor(benchmark: Benchmark, config: str | None = None, model: str | None = None,
                       **overrides: str) -> Callable[[Item], dict]:
    """``predict_fn`` grounding each item's text with :class:`scener1.pipeline.Pipeline` on its scene.

    The model and tracker are loaded once; the last scene stays open, so runs sharded ``--shard-by scene``
    decode each scan once. Boxes must be in the scan's axis-aligned frame, as the benchmarks' are: a scan
    without an axis alignment is answered with an error (scored as wrong) instead of a box in the wrong frame.
    """
    from ..errors import ScenerError
    from ..pipeline import Pipeline

    settings = [f"{k}={v}" for k, v in overrides.items()] + ([f"model.path={model}"] if model else [])
    pipe = Pipeline.from_config(config, settings)
    opened: dict[str, object] = {}

    def predict(item: Item) -> dict:
        if item.task not in _GROUNDING_TASKS:
            raise ScenerError(f"the pipeline predictor grounds objects; it does not answer {item.task} items")
        result = pipe.ground(item_scene(item, opened), item.text).to_json()
        if result["box_3d"] is not None and result["coordinate_frame"] != "axis_aligned":
            raise ScenerError(f"scene {item.scene_id} has no axis alignment (add its meta file): "
                              "boxes would not be in the benchmark's frame")
        boxes = [] if result["box_3d"] is None else [result["box_3d"]]
        answer = {"boxes_3d": boxes} if item.task == "multi_grounding" else {"box_3d": result["box_3d"]}
        if item.task != "multi_grounding" and result["box_3d"] is None:
            raise ScenerError(f"no 3D box: {result['status']} ({'; '.join(result['notes'])})")
        return {**answer, "status": result["status"], "frame": result["frame"], "box_2d": result["box_2d"]}

    return predict


def item_scene(item: Item, opened: dict):
    """The open scene of ``item`` (from ``--scans``); ``opened`` keeps only the last one open, so runs
    sharded by scene decode each scan once."""
    from ..data import open_scene
    from ..errors import ScenerError

    if item.scene_path is None:
        raise ScenerError(f"scene {item.scene_id} not found under --scans")
    if item.scene_path not in opened:
        for scene in opened.values():
            scene.close()
        opened.clear()
        opened[item.scene_path] = open_scene(item.scene_path)
    return opened[item.scene_path]
