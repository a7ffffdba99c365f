"""Results as files: a JSON with every metric and count, and markdown tables shaped like the papers' tables."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .items import EvalResult


def percent(values: Sequence[float] | np.ndarray) -> float | None:
    """Mean of 0/1 (or fractional) scores in percent; None for an empty split."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean() * 100.0) if values.size else None


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(header[i])), *(len(str(r[i])) for r in rows)) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def split_table(
    metrics: Mapping[str, Mapping[str, float | None]],
    columns: Sequence[tuple[str, str, str]],
    name: str,
    counts: Mapping[str, int] | None = None,
) -> str:
    """One row of ``metrics[split][metric]`` values under headers, plus a row of item counts per column."""
    header = ["Method", *(title for title, _, _ in columns)]
    rows = [[name, *(fmt(metrics.get(split, {}).get(metric)) for _, split, metric in columns)]]
    if counts is not None:
        rows.append(["(items)", *(str(counts.get(split, 0)) for _, split, _ in columns)])
    return markdown_table(header, rows)


def write_results(result: EvalResult, out_dir: str | Path, extra: Mapping | None = None) -> tuple[Path, Path]:
    """``results.json`` and ``results.md`` in ``out_dir`` (written to a temporary name, then renamed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {**result.to_dict(), **(dict(extra) if extra else {})}
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    for path, text in ((json_path, json.dumps(payload, indent=2) + "\n"), (md_path, result.markdown())):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return json_path, md_path
