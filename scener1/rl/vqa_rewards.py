"""Answer rewards for reinforcement learning on 3D VQA, as plain reward functions in TRL's convention.

Each is ``f(completions, **columns) -> list[float | None]`` (see :mod:`scener1.rl.rewards`). Answers are read from
the ``<answer>`` block (the text outside ``<think>`` when the tag is missing) and scored with the benchmarks' own
rules from :mod:`scener1.eval`, so a reward never credits what the benchmark would not:

- numeric VSI-Bench types: Mean Relative Accuracy of the answer's first word (VSI-Bench's extraction);
- multiple-choice VSI-Bench types: exact match of that word with the option letter, case-insensitive;
- free-form questions (ScanQA / SQA3D): exact match against any reference after refined normalisation
  (articles, punctuation, number words).

Columns read: ``question_type`` (a VSI-Bench type or ``free_form``), ``ground_truth`` (VSI-Bench rows) or
``answers`` (the references of free-form rows), and optionally ``task``: rows whose task is set to something else
than ``"vqa"`` get ``None`` (the reward does not apply to them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..eval.metrics import mean_relative_accuracy, parse_number, vsi_first_word
from ..eval.text import basic_normalize, exact_match
from ..eval.vsibench import CHOICE_TYPES, NUMERIC_TYPES
from ..parsing import split_tags
from .rewards import _column, completion_text

FREE_FORM = "free_form"


def answer_text(completion: Any) -> str:
    """The answer a completion gives: its ``<answer>`` block, else what lies outside the reasoning."""
    tagged = split_tags(completion_text(completion))
    return tagged.answer if tagged.answer is not None else tagged.remainder


def _applies(task: Any) -> bool:
    return task is None or task == "vqa"


def vqa_answer_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """The benchmark score of each answer: MRA for numeric types, exact match otherwise (in [0, 1])."""
    n = len(completions)
    types, truths = _column(columns, "question_type", n), _column(columns, "ground_truth", n)
    refs, tasks = _column(columns, "answers", n), _column(columns, "task", n)
    out: list[float | None] = []
    for completion, qtype, truth, references, task in zip(completions, types, truths, refs, tasks):
        if not _applies(task) or qtype is None:
            out.append(None)
            continue
        answer = answer_text(completion)
        if qtype in NUMERIC_TYPES:
            gt = parse_number(str(truth))
            if gt is None:
                raise ValueError(f"ground truth {truth!r} of a {qtype} row is not a number")
            out.append(mean_relative_accuracy(parse_number(vsi_first_word(answer)), gt))
        elif qtype in CHOICE_TYPES:
            out.append(1.0 if vsi_first_word(answer).lower() == str(truth).strip().lower() else 0.0)
        elif qtype == FREE_FORM:
            references = [str(r) for r in (references if references is not None else [truth]) if r is not None]
            if not references:
                raise ValueError("a free-form row needs 'answers' (or a 'ground_truth')")
            out.append(1.0 if basic_normalize(answer) and exact_match(answer, references, refined=True) else 0.0)
        else:
            raise ValueError(f"unknown question_type {qtype!r}")
    return out


def vqa_mra_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """MRA of numeric answers; ``None`` for rows that are not numeric VSI-Bench types."""
    types = _column(columns, "question_type", len(completions))
    scores = vqa_answer_reward(completions, **columns)
    return [s if t in NUMERIC_TYPES else None for s, t in zip(scores, types)]


def vqa_exact_match_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """Exact match (option letters, free-form answers after normalisation); ``None`` for numeric rows."""
    types = _column(columns, "question_type", len(completions))
    scores = vqa_answer_reward(completions, **columns)
    return [s if (t in CHOICE_TYPES or t == FREE_FORM) else None for s, t in zip(scores, types)]


def vqa_format_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """1 for exactly ``<think>...</think><answer>...</answer>`` with a non-empty answer, else 0."""
    tasks = _column(columns, "task", len(completions))
    out: list[float | None] = []
    for completion, task in zip(completions, tasks):
        if not _applies(task):
            out.append(None)
            continue
        tagged = split_tags(completion_text(completion))
        out.append(1.0 if tagged.format_ok and (tagged.answer or "").strip() else 0.0)
    return out


REWARDS = {"vqa_answer": vqa_answer_reward, "vqa_mra": vqa_mra_reward, "vqa_exact_match": vqa_exact_match_reward,
           "vqa_format": vqa_format_reward}
