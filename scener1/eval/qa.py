"""3D question answering: ScanQA and SQA3D.

ScanQA (``ScanQA_v1.0_val.json``: a list of ``{question_id, scene_id, question, answers, object_ids, ...}``;
item id = ``question_id``):
EM@1 / EM@10 (the top answer / any of the top ten equals a reference after :func:`~scener1.eval.text.basic_normalize`),
EM-R@1 / EM-R@10 (the "refined" rule of :func:`~scener1.eval.text.relaxed_match`), and BLEU-1..4, METEOR, ROUGE-L,
CIDEr of the top answer against all references through pycocoevalcap (Java needed).

SQA3D (the ``v1_balanced_questions_<split>_scannetv2.json`` and ``v1_balanced_sqa_annotations_<split>_scannetv2.json``
pair, joined on ``question_id``; item id = ``question_id``): EM (refined normalisation) and EM-R of the top answer,
overall and per question type. The type comes from the question's opening as in SQA3D's code: it starts
(case-insensitively) with "what", "is", "how", "can" or "which", else "others".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScenerError
from .benchmark import Benchmark, as_int, read_json, require
from .gt import check_scene_id
from .items import EvalResult, Item, QAItem
from .metrics import caption_scores
from .report import percent, split_table
from .text import exact_match, relaxed_match

CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
SQA3D_TYPES = ("what", "is", "how", "can", "which", "others")


def answers_of_record(record: Mapping) -> tuple[str, ...]:
    """The ranked answers of a QA prediction: ``answers_top10`` / ``answer_top10`` (a list) or ``answer``."""
    for key in ("answers_top10", "answer_top10"):
        if key in record and record[key] is not None:
            answers = record[key]
            if isinstance(answers, str) or not isinstance(answers, (list, tuple)):
                raise ScenerError(f"{key} must be a list of strings")
            if not all(isinstance(a, (str, int, float)) for a in answers):
                raise ScenerError(f"{key} must hold strings")
            return tuple(str(a) for a in answers)
    if "answer" in record and record["answer"] is not None:
        answer = record["answer"]
        if not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
            raise ScenerError(f"answer must be a string, got {answer!r}")
        return (str(answer),)
    raise ScenerError("expected answer (a string) or answers_top10 (a list of strings)")


def load_scanqa(path: str | Path, id_prefix: str = "") -> list[QAItem]:
    data = read_json(path, "ScanQA annotation file")
    if not isinstance(data, list):
        raise ScenerError(f"{path}: expected a JSON list of ScanQA entries")
    items = []
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        require(entry, ("question_id", "scene_id", "question"), where)
        answers = entry.get("answers", [])  # absent in the test splits
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise ScenerError(f"{where}: answers must be a list of strings")
        items.append(QAItem(
            id=id_prefix + str(entry["question_id"]),
            scene_id=check_scene_id(entry["scene_id"]),
            text=str(entry["question"]),
            question_id=str(entry["question_id"]),
            answers=tuple(answers),
            object_ids=tuple(as_int(v, where) for v in entry.get("object_ids") or ()),
        ))
    return items


def sqa3d_question_type(question: str) -> str:
    q = question.lstrip().lower()
    for prefix in ("what", "is", "how", "can", "which"):
        if q.startswith(prefix):
            return prefix
    return "others"


def load_sqa3d(paths: Sequence[str | Path]) -> list[QAItem]:
    """SQA3D items from its questions file and annotations file (given in either order).

    A single questions file is accepted too when its sibling annotations file (same folder, ``questions``
    replaced by ``sqa_annotations`` in the name) exists.
    """
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and "questions" in paths[0].name:
        sibling = paths[0].with_name(paths[0].name.replace("questions", "sqa_annotations"))
        if sibling.is_file():
            paths.append(sibling)
    questions = annotations = None
    for path in paths:
        data = read_json(path, "SQA3D file")
        if isinstance(data, dict) and "questions" in data:
            questions = (path, data["questions"])
        elif isinstance(data, dict) and "annotations" in data:
            annotations = (path, data["annotations"])
        else:
            raise ScenerError(f"{path}: neither an SQA3D questions file nor an annotations file")
    if questions is None or annotations is None:
        raise ScenerError("SQA3D needs its questions file and its sqa_annotations file (--annotations Q.json A.json)")
    answers_by_id: dict[int, tuple[str, ...]] = {}
    for i, ann in enumerate(annotations[1]):
        where = f"{annotations[0]}: annotation {i}"
        require(ann, ("question_id", "answers"), where)
        if not isinstance(ann["answers"], list):
            raise ScenerError(f"{where}: answers must be a list")
        answers_by_id[as_int(ann["question_id"], where)] = tuple(
            str(a["answer"]) if isinstance(a, Mapping) else str(a) for a in ann["answers"]
        )
    items = []
    for i, q in enumerate(questions[1]):
        where = f"{questions[0]}: question {i}"
        require(q, ("question_id", "scene_id", "question"), where)
        qid = as_int(q["question_id"], where)
        if qid not in answers_by_id:
            raise ScenerError(f"{where}: question {qid} has no annotation in {annotations[0]}")
        items.append(QAItem(
            id=str(qid),
            scene_id=check_scene_id(q["scene_id"]),
            text=str(q["question"]),
            question_id=str(qid),
            answers=answers_by_id[qid],
            situation=str(q.get("situation", "")),
            question_type=sqa3d_question_type(str(q["question"])),
        ))
    return items


class _QABenchmark(Benchmark):
    def key_of(self, record: Mapping) -> str | None:
        return str(record["question_id"]) if "question_id" in record else None

    def parse_prediction(self, record: Mapping, item: Item) -> tuple[str, ...]:
        return answers_of_record(record)

    def oracle(self, item: Item) -> dict:
        self._references(item)
        return {"answer": item.answers[0], "answers_top10": list(item.answers[:10])}

    def _references(self, item: QAItem) -> tuple[str, ...]:
        if not item.answers:
            raise ScenerError(f"{self.name}: item {item.id} has no reference answers (a test split cannot be scored here)")
        return item.answers


class ScanQABenchmark(_QABenchmark):
    name = "scanqa"

    def __init__(self, items: Sequence[QAItem], *, caption_metrics: bool = True, **kwargs):
        super().__init__(items, **kwargs)
        self.caption_metrics = caption_metrics

    def score(self, values: Mapping[str, Any]) -> EvalResult:
        top, refs, em1, em10, emr1, emr10 = [], [], [], [], [], []
        for it in self.items:
            references = self._references(it)
            answers = values.get(it.id) or ("",)
            top.append(answers[0])
            refs.append(references)
            em1.append(exact_match(answers[0], references))
            em10.append(any(exact_match(a, references) for a in answers[:10]))
            emr1.append(relaxed_match(answers[0], references))
            emr10.append(any(relaxed_match(a, references) for a in answers[:10]))
        overall = {"EM@1": percent(em1), "EM@10": percent(em10), "EM-R@1": percent(emr1), "EM-R@10": percent(emr10)}
        notes = []
        if self.caption_metrics:
            overall.update({k: v * 100.0 for k, v in caption_scores(top, refs).items()})
        else:
            notes.append("caption metrics (BLEU, METEOR, ROUGE-L, CIDEr) not computed (--no-caption-metrics)")
        metrics = {"overall": overall}
        counts = {"overall": len(self.items)}
        columns = [(m, "overall", m) for m in ("EM@1", "EM@10", *CAPTION_METRICS, "EM-R@1")]
        return EvalResult(self.name, metrics, counts, split_table(metrics, columns, self.label), tuple(notes))


class SQA3DBenchmark(_QABenchmark):
    name = "sqa3d"

    def score(self, values: Mapping[str, Any]) -> EvalResult:
        em, emr = [], []
        for it in self.items:
            references = self._references(it)
            answer = (values.get(it.id) or ("",))[0]
            em.append(exact_match(answer, references, refined=True))
            emr.append(relaxed_match(answer, references))
        em, emr = np.array(em), np.array(emr)
        types = np.array([it.question_type for it in self.items])
        masks = {t: types == t for t in SQA3D_TYPES}
        masks["overall"] = np.ones(len(self.items), bool)
        metrics = {s: {"EM": percent(em[m]), "EM-R": percent(emr[m])} for s, m in masks.items()}
        counts = {s: int(m.sum()) for s, m in masks.items()}
        columns = [(t.capitalize(), t, "EM") for t in SQA3D_TYPES] + [("Avg.", "overall", "EM")]
        return EvalResult(self.name, metrics, counts, split_table(metrics, columns, self.label, counts))
