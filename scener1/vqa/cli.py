"""``scener1 vqa``: answer questions about a scene, one (``--question``) or a file of them (``--questions``).

Wiring (in scener1/cli.py)::

    p = sub.add_parser("vqa", help="answer questions about a scene (3D measurements + VLM)")
    vqa_cli.add_arguments(p)
    p.set_defaults(func=vqa_cli.run)

Only the standard library is imported here; the work is imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli_args import add_scene_arguments, open_scene_from_args

MODES = ("auto", "geometry", "vlm", "vlm_facts")  # keep in step with scener1.vqa.engine.MODES
GROUNDERS = ("pipeline", "oracle", "none")
CHUNK = 8  # questions answered (and written) together in batch mode


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Answer questions about an RGB-D scene. VSI-Bench-type questions (counting, distances, sizes, room size, "
        "relative distance and direction, route planning, appearance order) are measured on the objects lifted "
        "to 3D; free-form questions go to the VLM, with the measurements as context."
    )
    add_scene_arguments(p)
    q = p.add_argument_group("questions")
    one = q.add_mutually_exclusive_group(required=True)
    one.add_argument("--question", metavar="TEXT", help="the question")
    one.add_argument("--questions", metavar="FILE",
                     help="a file of questions: JSON list or JSONL of {id, question, options, situation} "
                          "(or VSI-Bench rows), or plain text with one question per line; resumable")
    q.add_argument("--options", nargs="+", metavar="OPTION",
                   help="multiple-choice options with --question, e.g. 'A. left' 'B. right' (or bare texts)")
    q.add_argument("--situation", metavar="TEXT", help="the agent's situation (SQA3D style), with --question")
    a = p.add_argument_group("answering")
    a.add_argument("--grounder", choices=GROUNDERS, default="pipeline",
                   help="who finds the objects: pipeline (the grounding VLM, default), oracle (ground-truth 2D boxes: "
                        "a synthetic scene's gt/, or a ScanNet scan with --oracle-points/--oracle-boxes), none")
    a.add_argument("--mode", choices=MODES, default=None,
                   help="auto (geometry, VLM for free-form and failures; default), geometry, vlm (video only), "
                        "vlm_facts (VLM with the measured facts)")
    a.add_argument("--config", metavar="FILE|PRESET", help="pipeline config (configs/default.yaml + this)")
    a.add_argument("--model", metavar="DIR", help="VLM checkpoint (default: the pipeline config's model)")
    a.add_argument("--oracle-points", metavar="FILE", help="ScanNet oracle: the scan's points (mmdet3d .bin, raw frame)")
    a.add_argument("--oracle-boxes", metavar="FILE", help="ScanNet oracle: its *_aligned_bbox.npy")
    a.add_argument("--oracle-label-map", metavar="FILE", help="ScanNet oracle: scannetv2-labels.combined.tsv")
    a.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="pipeline options (tracker.name=sam2 ...) and VQA options prefixed vqa. "
                        "(vqa.heads.size_from_views=min, vqa.grounding.max_lifts=6 ...)")
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, metavar="DIR", help="result.json (one question) or answers.jsonl (a file)")
    o.add_argument("--overwrite", action="store_true", help="answer again questions already in --out")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def read_questions(path: str | Path) -> list[dict]:
    """Questions from a file as dicts with ``id``, ``question``, ``options``, ``situation``; ids default to the row."""
    from ..errors import ConfigError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"questions file does not exist: {p}")
    rows: list = []
    if p.suffix == ".parquet":
        import pandas as pd

        try:
            rows = pd.read_parquet(p).to_dict("records")
        except Exception as exc:  # pyarrow raises many unrelated types for a bad file
            raise ConfigError(f"{p}: not a readable parquet file ({exc})") from None
    elif p.suffix in (".json", ".jsonl"):
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix == ".json":
                rows = json.loads(text)
            else:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p} is not valid JSON: {exc}") from None
        if not isinstance(rows, list):
            raise ConfigError(f"{p} must hold a list of questions")
    else:
        rows = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    out, seen = [], set()
    for k, row in enumerate(rows):
        if isinstance(row, str):
            row = {"question": row}
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
            raise ConfigError(f"{p}: entry {k} needs a non-empty 'question'")
        qid = str(row.get("id", row.get("question_id", f"q{k:04d}")))
        if qid in seen:
            raise ConfigError(f"{p}: question id {qid!r} appears twice")
        seen.add(qid)
        options = row.get("options")
        options = [] if options is None else [str(o) for o in list(options)]
        situation = row.get("situation")
        out.append({"id": qid, "question": row["question"], "options": options,
                    "situation": str(situation) if situation else None})
    if not out:
        raise ConfigError(f"{p} holds no questions")
    return out


def _done_ids(path: Path) -> set[str]:
    """Ids already answered in ``answers.jsonl`` (a torn last line from a killed run is dropped)."""
    if not path.is_file():
        return set()
    done, lines = set(), path.read_text(encoding="utf-8").splitlines(keepends=True)
    good = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a partial line: the question is answered again
        if line.endswith("\n"):
            done.add(str(record.get("id")))
            good.append(line)
    if len(good) != len(lines):
        path.write_text("".join(good), encoding="utf-8")
    return done


def _print(result: dict) -> None:
    answer = result["answer"] if result["answer"] is not None else "(no answer)"
    print(f"[{result['type']}] {result['question'][:100]}")
    print(f"  answer {answer}   source {result['source']}   status {result['status']}")
    geo = result.get("geometry") or {}
    summary = (geo.get("computation") or {}).get("summary")
    if summary:
        print(f"  3D     {summary}")
    for note in result["notes"]:
        print(f"  note   {note}")


def run(args: argparse.Namespace) -> int:
    """Run ``scener1 vqa``; bad input raises a one-line :class:`~scener1.errors.ScenerError`."""
    from ..errors import ConfigError
    from .engine import Question, VQAEngine

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out must be a folder, {out} is a file")
    if args.questions and (args.options or args.situation):
        raise ConfigError("--options and --situation go with --question (a questions file carries its own)")
    oracle_files = {k: v for k, v in (("points", args.oracle_points), ("boxes", args.oracle_boxes),
                                      ("label_map", args.oracle_label_map)) if v}
    if oracle_files and args.grounder != "oracle":
        raise ConfigError("--oracle-points/--oracle-boxes/--oracle-label-map go with --grounder oracle")
    vqa_opts = [o for o in args.overrides if o.startswith("vqa.")]
    pipe_opts = [o for o in args.overrides if not o.startswith("vqa.")]
    if args.question:
        rows = [{"id": "q0000", "question": args.question, "options": args.options or [], "situation": args.situation}]
        answers_path = None
    else:
        rows = read_questions(args.questions)
        answers_path = out / "answers.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    if answers_path is not None and args.overwrite:
        answers_path.unlink(missing_ok=True)
    done = _done_ids(answers_path) if answers_path is not None else set()
    todo = [r for r in rows if r["id"] not in done]
    if not todo:
        print(f"all {len(rows)} questions already answered in {answers_path} (use --overwrite to redo them)")
        return 0
    # the scene first: a wrong path is reported before a model is loaded
    with open_scene_from_args(args) as scene:
        engine = VQAEngine.build(args.grounder, mode=args.mode, config=args.config, overrides=pipe_opts,
                                 model=args.model, vqa_overrides=vqa_opts, oracle_files=oracle_files)
        chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]
        bar = None
        if len(todo) > 1 and not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="questions", unit="q")
        for chunk in chunks:
            questions = [Question(r["question"], tuple(r["options"]), r["situation"], r["id"]) for r in chunk]
            results = engine.answer_many(scene, questions)
            for result in results:
                record = result.to_json()
                if answers_path is None:
                    (out / "result.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
                    _print(record)
                    print(f"wrote {out / 'result.json'}")
                else:
                    with open(answers_path, "a", encoding="utf-8") as f:  # one line per answer, at once
                        f.write(json.dumps(record) + "\n")
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    if answers_path is not None:
        print(f"{len(todo)} questions answered ({len(done)} were already done) -> {answers_path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m scener1.vqa.cli`` (the same as ``scener1 vqa``)."""
    from ..cli_args import run_command

    parser = argparse.ArgumentParser(prog="scener1 vqa")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command(lambda: run(args), "finished answers are saved; run again to resume")


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["add_arguments", "main", "read_questions", "run"]
