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
}


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
