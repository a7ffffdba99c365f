"""Reading prediction files in every accepted layout (documented in docs/evaluation.md).

* ``.jsonl``: one JSON object per line (what ``--run`` writes); a torn last line from a killed run is skipped.
* ``.json``: a list of objects (the ScanRefer and ScanQA benchmark submission formats are such lists), or an
  object mapping item ids to records.
* ``.parquet`` / ``.csv``: rows, e.g. VSI-Bench ``id`` + ``prediction``.
* a folder of ``<scene_id>.json`` files, each a list of records of that scene (M3DRef-CLIP's output layout).

A record names its item by ``id`` or by the benchmark's own keys (ScanRefer ``scene_id``/``object_id``/``ann_id``,
Multi3DRefer ``scene_id``/``ann_id``, ScanQA/SQA3D ``question_id``, Nr3D/Sr3D ``stimulus_id`` + ``utterance``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ..errors import ScenerError
from .benchmark import Benchmark, read_json
from .runner import read_jsonl


def _table_rows(path: Path) -> list[dict]:
    import pandas as pd

    try:
        df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, keep_default_na=False)
    except Exception as exc:  # pandas/pyarrow raise many unrelated types for a bad file
        raise ScenerError(f"{path}: not a readable table ({exc})") from None
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in df.to_dict("records")]


def iter_records(path: str | Path) -> Iterator[tuple[str, Mapping]]:
    """``(where, record)`` for every record in a prediction file or folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise ScenerError(f"{path}: a predictions folder must hold <scene_id>.json files")
        for file in files:
            data = read_json(file, "predictions file")
            if not isinstance(data, list):
                raise ScenerError(f"{file}: expected a list of predictions of scene {file.stem}")
            for i, record in enumerate(data):
                if not isinstance(record, Mapping):
                    raise ScenerError(f"{file}: entry {i} is not an object")
                yield f"{file}: entry {i}", {"scene_id": file.stem, **record}
        return
    if not path.is_file():
        raise ScenerError(f"predictions file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        content = read_jsonl(path)
        for key, record in content.records.items():
            yield f"{path}: id {key}", record
    elif suffix == ".json":
        data = read_json(path, "predictions file")
        if isinstance(data, Mapping):
            data = [{"id": key, **value} if isinstance(value, Mapping) else None for key, value in data.items()]
        if not isinstance(data, list):
            raise ScenerError(f"{path}: expected a list of predictions or an object mapping ids to predictions")
        for i, record in enumerate(data):
            if not isinstance(record, Mapping):
                raise ScenerError(f"{path}: entry {i} is not an object")
            yield f"{path}: entry {i}", record
    elif suffix in (".parquet", ".csv"):
        for i, record in enumerate(_table_rows(path)):
            yield f"{path}: row {i}", record
    else:
        raise ScenerError(f"{path}: predictions must be .jsonl, .json, .parquet, .csv or a folder of .json files")


def torn_files(paths: Sequence[str | Path]) -> list[str]:
    """The JSONL files among ``paths`` that end in a partial line (an interrupted run)."""
    return [str(p) for p in paths if Path(p).suffix.lower() == ".jsonl" and read_jsonl(p).torn]


def load_predictions(paths: Sequence[str | Path], benchmark: Benchmark) -> dict[str, dict]:
    """Every record of ``paths`` keyed by item id; an id given twice (within or across files) raises.

    Several files are the shards of one run: this is the merge step, with the gap check left to
    :func:`~scener1.eval.benchmark.evaluate` (which names the items without a prediction).
    """
    records: dict[str, dict] = {}
    where_of: dict[str, str] = {}
    for path in paths:
        for where, record in iter_records(path):
            key = str(record["id"]) if record.get("id") is not None else benchmark.key_of(record)
            if key is None:
                raise ScenerError(f"{where}: no \"id\" (and not the benchmark's own keys for {benchmark.name})")
            if key in records:
                raise ScenerError(f"duplicate prediction for {key}: {where_of[key]} and {where}")
            records[key] = dict(record)
            where_of[key] = where
    return records


def write_jsonl(records: Mapping[str, Mapping], path: str | Path) -> None:
    """Records as JSONL (ids first), e.g. the merged shards of a run."""
    from .runner import encode_record

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for key, record in records.items():
            f.write(encode_record({"id": key, **{k: v for k, v in record.items() if k != "id"}}))

