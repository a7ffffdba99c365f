"""The interface every benchmark implements, and :func:`evaluate`, which scores a set of prediction records."""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ScenerError
from .items import EvalResult, Item


def read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ScenerError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ScenerError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise ScenerError(f"{path}: not UTF-8 text") from None


def require(entry: Mapping, keys: Sequence[str], where: str) -> None:
    if not isinstance(entry, Mapping):
        raise ScenerError(f"{where}: expected an object, got {type(entry).__name__}")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise ScenerError(f"{where}: missing key(s) {', '.join(missing)}")


def as_int(value: Any, where: str) -> int:
    try:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ScenerError(f"{where}: {value!r} is not an integer") from None


class Benchmark(abc.ABC):
    """A list of items and the metric that scores predictions for them.

    Subclasses implement :meth:`parse_prediction` (one record of a prediction file -> the value the metric
    needs, raising :class:`ScenerError` on malformed input) and :meth:`score` (values for every item, ``None``
    for a missing or failed one, -> :class:`EvalResult`). :meth:`oracle` gives the ground-truth prediction of an
    item, which must score 100 wherever the metric allows it.
    """

    name: ClassVar[str]

    def __init__(self, items: Sequence[Item], *, source: str = "", notes: Sequence[str] = (), label: str = "scener1"):
        self.items: tuple[Item, ...] = tuple(items)
        self.source = source
        self.notes = list(notes)
        self.label = label  # the method's name in the markdown tables
        index: dict[str, Item] = {}
        for item in self.items:
            if item.id in index:
                raise ScenerError(f"{source or self.name}: two entries share the id {item.id}")
            index[item.id] = item
        self._index = index
        if not self.items:
            raise ScenerError(f"{source or self.name}: no entries")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def item(self, item_id: str) -> Item:
        return self._index[item_id]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(it.id for it in self.items)

    def key_of(self, record: Mapping) -> str | None:
        """The item id of a record that names its item by the benchmark's own keys instead of ``id``."""
        return None

    @abc.abstractmethod
    def parse_prediction(self, record: Mapping, item: Item) -> Any:
        """The metric's input from one prediction record (raises ScenerError when malformed)."""

    @abc.abstractmethod
    def score(self, values: Mapping[str, Any]) -> EvalResult:
        """Scores for ``values[item.id]`` of every item (None: missing or failed, scored as wrong)."""

    def oracle(self, item: Item) -> dict:
        """The ground-truth prediction record (without ``id``) for ``item``."""
        raise ScenerError(f"{self.name}: no ground-truth predictor")

    def subset(self, ids: Iterable[str]) -> "Benchmark":
        """A copy restricted to the items whose id is in ``ids`` (file order kept)."""
        keep = set(ids)
        return self.replace_items([it for it in self.items if it.id in keep])

    def replace_items(self, items: Sequence[Item]) -> "Benchmark":
        """A copy holding ``items`` (same ids, e.g. with scene paths resolved)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.items = tuple(items)
        clone._index = {it.id: it for it in clone.items}
        return clone


def evaluate(benchmark: Benchmark, records: Mapping[str, Mapping], *, allow_missing: bool = False) -> EvalResult:
    """Score prediction ``records`` (item id -> record) on ``benchmark``.

    Records whose id the benchmark lacks are ignored and counted as ``extra``; a record with an ``error`` key
    (the run failed on that item) is scored as wrong and counted as ``failed``. Items without a record raise,
    unless ``allow_missing``, which scores them as wrong.
    """
    extra = [key for key in records if key not in benchmark]
    missing = [it.id for it in benchmark.items if it.id not in records]
    if missing and not allow_missing:
        raise ScenerError(
            f"{len(missing)} of {len(benchmark)} {benchmark.name} items have no prediction (first: {missing[0]}); "
            "pass --allow-missing to score them as wrong"
        )
    values: dict[str, Any] = {}
    failed = 0
    for item in benchmark.items:
        record = records.get(item.id)
        if record is None:
            values[item.id] = None
        elif record.get("error"):
            failed += 1
            values[item.id] = None
        else:
            try:
                values[item.id] = benchmark.parse_prediction(record, item)
            except ScenerError as exc:
                raise ScenerError(f"prediction for {item.id}: {exc}") from None
    result = benchmark.score(values)
    counts = {**result.counts, "predicted": len(benchmark) - len(missing), "missing": len(missing),
              "failed": failed, "extra": len(extra)}
    notes = list(result.notes)
    if missing:
        notes.append(f"{len(missing)} items without a prediction were scored as wrong (first: {missing[0]})")
    if failed:
        notes.append(f"{failed} items whose run recorded an error were scored as wrong")
    if extra:
        notes.append(f"{len(extra)} predictions for ids outside this benchmark were ignored (first: {extra[0]})")
    return dataclasses.replace(result, counts=counts, notes=tuple(notes))
