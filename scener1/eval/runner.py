"""Resumable, shardable benchmark runs.

A run calls ``predict_fn(item) -> dict`` for every item of its shard and appends one JSON line per item to a
predictions file, flushed and fsynced before the next item starts, so an interrupted run (Ctrl-C, ``kill -9``, a
crash) loses at most the item in flight. Restarting with the same arguments reads the file back, drops a torn
last line and skips every finished item. A predictor that raises :class:`~scener1.errors.ScenerError` (bad data
for one item) gets a record ``{"id", "error"}``, scored as wrong; any other exception stops the run.

Shards split the items deterministically by a hash of the item id (or of its scene, so that one process handles
all queries of a scene); ``merge_predictions`` joins the shard files and reports gaps and duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ScenerError
from .items import Item

try:  # advisory lock against two runs appending to the same file (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

SHARD_BY = ("id", "scene")


# ---------------------------------------------------------------------------------------------- shards
def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` (0 <= I < N) -> ``(I, N)``; ``"auto"`` reads the launcher's RANK / WORLD_SIZE; None -> (0, 1)."""
    if text is None:
        return 0, 1
    if text == "auto":
        return shard_from_env()
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"--shard must be I/N (e.g. 0/4) or auto, got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text}: need 0 <= I < N")
    return index, count


def shard_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """This process's shard under ``accelerate launch`` / ``torchrun`` (RANK, WORLD_SIZE), else (0, 1)."""
    env = os.environ if environ is None else environ
    try:
        count = int(env.get("WORLD_SIZE", "1"))
        index = int(env.get("RANK", env.get("LOCAL_RANK", "0")))
    except ValueError:
        raise ConfigError("RANK / WORLD_SIZE are not integers") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"RANK={index} does not fit WORLD_SIZE={count}")
    return index, count


def shard_of(key: str, count: int) -> int:
    """The shard of ``key`` among ``count``: a stable hash (unlike ``hash()``, identical in every process)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def select_shard(items: Iterable[Item], index: int, count: int, by: str = "id") -> list[Item]:
    """The items of shard ``index`` of ``count``, grouped by scene (keeping file order within a scene)."""
    if by not in SHARD_BY:
        raise ConfigError(f"unknown shard key {by!r}; choose from {', '.join(SHARD_BY)}")
    picked = [it for it in items if count == 1 or shard_of(it.id if by == "id" else it.scene_id, count) == index]
    first_seen: dict[str, int] = {}
    for pos, it in enumerate(picked):
        first_seen.setdefault(it.scene_id, pos)
    return sorted(picked, key=lambda it: first_seen[it.scene_id])  # stable: file order within a scene


def shard_path(out_dir: str | Path, index: int, count: int) -> Path:
    out_dir = Path(out_dir)
    return out_dir / ("predictions.jsonl" if count == 1 else f"predictions.shard-{index}-of-{count}.jsonl")


# ---------------------------------------------------------------------------------------------- JSONL
@dataclass(frozen=True)
class JsonlContent:
    records: dict[str, dict]  # id -> record (an error record superseded by a later retry is replaced)
    good_bytes: int  # length of the file up to the end of its last complete line
    torn: bool  # the file ended in a partial line (an interrupted write)


def parse_jsonl(data: bytes, name: str) -> JsonlContent:
    """Prediction records from JSONL bytes: one object with an ``id`` per line.

    A final line without its newline is the trace of an interrupted write: it is reported, not parsed. A
    complete line that is not a JSON object, or an id that occurs twice (other than an error record followed by
    its retry), raises with the line number.
    """
    records: dict[str, dict] = {}
    where_of: dict[str, int] = {}
    end = data.rfind(b"\n") + 1
    torn = end < len(data) and bool(data[end:].strip())
    for line_no, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ScenerError(f"{name}:{line_no}: not a JSON object (corrupt line; remove it to continue)") from None
        if not isinstance(record, dict) or "id" not in record:
            raise ScenerError(f"{name}:{line_no}: a prediction line must be a JSON object with an \"id\"")
        key = str(record["id"])
        if key in records and not records[key].get("error"):
            raise ScenerError(f"{name}: id {key} occurs twice (lines {where_of[key]} and {line_no})")
        records[key] = record
        where_of[key] = line_no
    return JsonlContent(records, end, torn)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_record(record: Mapping) -> bytes:
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ScenerError(f"prediction for {record.get('id')} cannot be written as JSON: {exc}") from None
    return (text + "\n").encode("utf-8")


class PredictionWriter:
    """An append-only JSONL prediction file that survives being killed.

    Opening reads what is there (``records``), truncates a torn last line and locks the file against a second
    writer; every :meth:`write` appends one line and flushes it to disk (``os.fsync``) before returning.
    """

    def __init__(self, path: str | Path, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+b")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise ScenerError(f"cannot write predictions to {self.path}: {exc.strerror or exc}") from None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise ScenerError(f"another process is writing {self.path}") from None
            self._file.seek(0)
            content = parse_jsonl(self._file.read(), str(self.path))
            self.torn_line_dropped = content.torn
            if content.torn or content.good_bytes < self._file.tell():
                self._file.truncate(content.good_bytes)
                self._sync()
            self.records = content.records
        except BaseException:
            self._file.close()
            raise

    def _sync(self) -> None:
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def write(self, record: Mapping) -> None:
        if "id" not in record:
            raise ValueError("a prediction record needs an id")
        self._file.write(encode_record(record))
        self._sync()
        self.records[str(record["id"])] = dict(record)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()  # closing releases the lock

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class RunSummary:
    path: Path
    shard: tuple[int, int]
    total: int  # items in this shard
    resumed: int  # items found finished when the run started
    written: int  # predictions written by this run
    failed: int  # items of this shard whose record is an error
    torn_line_dropped: bool


def run_benchmark(
    items: Sequence[Item],
    predict_fn: Callable[[Item], Mapping],
    out_path: str | Path,
    shard: tuple[int, int] = (0, 1),
    *,
    shard_by: str = "id",
    validate: Callable[[Mapping, Item], Any] | None = None,
    retry_errors: bool = False,
    progress: bool = True,
    fsync: bool = True,
) -> RunSummary:
    """Predict every item of ``shard`` that ``out_path`` does not hold yet, one fsynced JSON line per item.

    ``validate(record, item)`` (e.g. a benchmark's ``parse_prediction``) checks each new record before it is
    written, so a predictor returning malformed output stops the run at once instead of at scoring time.
    """
    from tqdm import tqdm

    index, count = shard
    selected = select_shard(items, index, count, by=shard_by)
    wanted = {it.id for it in selected}
    written = 0
    with PredictionWriter(out_path, fsync=fsync) as writer:
        foreign = [key for key in writer.records if key not in wanted]
        if foreign:
            raise ScenerError(
                f"{out_path} holds predictions for items outside shard {index}/{count} of this benchmark "
                f"(first: {foreign[0]}); write to another file or pass the same --shard as before"
            )
        done = {key for key, rec in writer.records.items() if not (retry_errors and rec.get("error"))}
        todo = [it for it in selected if it.id not in done]
        bar = tqdm(total=len(selected), initial=len(selected) - len(todo), disable=not progress,
                   desc=f"shard {index}/{count}" if count > 1 else "predicting", unit="item", dynamic_ncols=True)
        try:
            for item in todo:
                try:
                    output = predict_fn(item)
                except ScenerError as exc:  # bad data for this item: record it and go on
                    record: dict = {"id": item.id, "error": str(exc)}
                else:
                    if not isinstance(output, Mapping):
                        raise TypeError(f"predict_fn must return a dict, got {type(output).__name__} for {item.id}")
                    record = {"id": item.id, **{k: v for k, v in output.items() if k != "id"}}
                    if validate is not None:
                        try:
                            validate(json.loads(encode_record(record)), item)  # check what will be read back
                        except ScenerError as exc:
                            raise ScenerError(
                                f"the predictor returned a malformed prediction for {item.id}: {exc}"
                            ) from None
                writer.write(record)
                written += 1
                bar.update(1)
        finally:
            bar.close()
        failed = sum(1 for key in wanted if writer.records.get(key, {}).get("error"))
        return RunSummary(Path(out_path), (index, count), len(selected), len(selected) - len(todo), written, failed,
                          writer.torn_line_dropped)


def find_scene(root: str | Path, scene_id: str, dataset: str = "") -> Path | None:
    """The recording of ``scene_id`` under ``root`` in any layout the readers support, or None.

    Tried: ``root/<scene>`` (a folder: exported ScanNet, posed images, synthetic), ``root/<scene>.sens``,
    ``root/<scene>/<scene>.sens``, ``root/<dataset>/<scene>.mp4``, ``root/<scene>.mp4`` and
    ``root/<dataset>/<scene>`` (VSI-Bench's video release groups scenes by source dataset).
    """
    from .gt import check_scene_id

    root = Path(root)
    check_scene_id(scene_id)
    candidates = [root / f"{scene_id}.sens", root / scene_id / f"{scene_id}.sens", root / f"{scene_id}.mp4"]
    if dataset:
        check_scene_id(dataset)
        candidates += [root / dataset / f"{scene_id}.mp4", root / dataset / scene_id]
    candidates.append(root / scene_id)
    for path in candidates:
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            return path
    return None


def attach_scenes(items: Sequence[Item], root: str | Path) -> list[Item]:
    """``items`` with ``scene_path`` set from ``root``; raises naming the missing scenes."""
    import dataclasses

    root = Path(root)
    if not root.is_dir():
        raise ScenerError(f"scans folder not found: {root}")
    found: dict[tuple[str, str], Path | None] = {}
    out = []
    for it in items:
        dataset = getattr(it, "dataset", "")
        key = (it.scene_id, dataset)
        if key not in found:
            found[key] = find_scene(root, it.scene_id, dataset)
        path = found[key]
        out.append(dataclasses.replace(it, scene_path=None if path is None else str(path)))
    missing = sorted({sid for (sid, _), p in found.items() if p is None})
    if missing:
        raise ScenerError(f"{len(missing)} of {len(found)} scenes not found under {root} (first: {missing[0]})")
    return out


# ---------------------------------------------------------------------------------------------- merge
def read_jsonl(path: str | Path) -> JsonlContent:
    path = Path(path)
    if not path.is_file():
        raise ScenerError(f"predictions file not found: {path}")
    return parse_jsonl(path.read_bytes(), str(path))


def merge_predictions(
    paths: Sequence[str | Path], expected_ids: Sequence[str], out_path: str | Path | None = None
) -> dict[str, dict]:
    """Join shard files into one id -> record map (and a JSONL file at ``out_path``, in ``expected_ids`` order).

    Raises one line naming the gaps (expected ids without a record) and duplicates (ids in two files) with the
    first example of each. Records for ids outside ``expected_ids`` are an error too (a shard of another run).
    """
    merged: dict[str, dict] = {}
    origin: dict[str, str] = {}
    duplicates: list[str] = []
    for path in paths:
        for key, record in read_jsonl(path).records.items():
            if key in merged:
                duplicates.append(f"{key} in {origin[key]} and {path}")
            else:
                merged[key] = record
                origin[key] = str(path)
    expected = set(expected_ids)
    gaps = [key for key in expected_ids if key not in merged]
    foreign = [key for key in merged if key not in expected]
    problems = []
    if gaps:
        problems.append(f"{len(gaps)} items missing (first: {gaps[0]})")
    if duplicates:
        problems.append(f"{len(duplicates)} duplicated (first: {duplicates[0]})")
    if foreign:
        problems.append(f"{len(foreign)} unknown ids (first: {foreign[0]})")
    if problems:
        raise ScenerError("merge: " + "; ".join(problems))
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(out_path.name + ".tmp")
        with open(tmp, "wb") as f:
            for key in expected_ids:
                f.write(encode_record(merged[key]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    return merged
