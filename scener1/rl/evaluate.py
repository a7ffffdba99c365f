"""Scoring a model on grounding rows (held-out scenes): 2D box accuracy, pointing, temporal IoU, VQA answers.

Answers are decoded greedily and read with the pipeline's own parsers against the image size the model
actually saw, so the figures are those the pipeline would get from the same answers.

Metrics (``image/...`` over image rows, ``temporal/...`` over temporal rows; an unusable answer scores 0):

- ``image/miou``: mean IoU of the answer's box with the target's visible-pixel box;
- ``image/acc@0.5``: share of answers with IoU >= 0.5;
- ``image/pointing``: share of answers whose box centre lies inside the target's box;
- ``image/absent_acc``: on rows asked on a frame without the target (``absent``), the share answered
  "not in the image" (``[]``); ``image/said_absent``: the share of the other rows answered so (the image
  figures above are over those other rows only);
- ``temporal/miou``: mean IoU of the span with the best of the target's clearly-seen intervals;
- ``detect/precision``, ``detect/recall``: on detection rows (list every object of a frame), the share of listed
  boxes, and of the frame's objects, in a one-to-one match where a listed box's centre lies inside the true box
  of an object with the same label (the test the VQA heads' listing needs: the right object, by name);
- ``vqa/score``: mean benchmark score of VQA answers (MRA for numeric types, exact match otherwise);
- ``detect/format``: share of listings in ``<answer>`` tags whose boxes are all usable and labelled;
- ``*/format`` (the others): share of answers in the exact ``<think>..</think><answer>..</answer>`` form that parse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..parsing import parse_box, parse_span
from .rewards import best_span_iou, box_geometry, box_iou, centre_inside


@dataclass(frozen=True)
class RowResult:
    task: str
    query: str
    answer: str
    score: float  # IoU (box or span), 0 when unusable
    format_ok: bool
    hit: bool  # image: centre inside the target box (absent rows: answered []); temporal: IoU >= 0.5; vqa: score >= 0.5
    prediction: tuple[float, ...] | None
    absent: bool = False  # an image row on a frame without the target
    said_absent: bool = False  # the answer was "not in the image" ([])
    counts: tuple[int, int, int] | None = None  # detection rows: (matched, listed, true) objects

    def to_dict(self) -> dict[str, Any]:
        out = {"task": self.task, "query": self.query, "answer": self.answer, "score": round(self.score, 4),
               "format_ok": self.format_ok, "hit": self.hit,
               "prediction": None if self.prediction is None else [round(float(v), 2) for v in self.prediction]}
        if self.absent or self.said_absent:
            out.update(absent=self.absent, said_absent=self.said_absent)
        if self.counts is not None:
            out["matched"], out["listed"], out["true"] = self.counts
        return out


@dataclass(frozen=True)
class EvalReport:
    metrics: dict[str, float]
    results: tuple[RowResult, ...]


def score_image_answer(text: str, row: Mapping[str, Any], model_size: tuple[int, int] | None,
                       convention: str) -> RowResult:
    parsed = parse_box(text, box_geometry(row["image_size"], model_size, convention))
    target = row["box"]
    if row.get("absent"):
        right = parsed.absent
        return RowResult("image", row["query"], text, float(right), parsed.format_ok and (right or parsed.value is not None),
                         right, None if parsed.value is None else tuple(parsed.value), absent=True, said_absent=right)
    if parsed.value is None:
        return RowResult("image", row["query"], text, 0.0, parsed.absent and parsed.format_ok, False, None,
                         said_absent=parsed.absent)
    inside = centre_inside(parsed.value, target)
    return RowResult("image", row["query"], text, box_iou(parsed.value, target), parsed.format_ok, inside,
                     tuple(parsed.value))


def listing_matches(listed: Sequence[tuple[Sequence[float], str | None]],
                    truth: Sequence[tuple[Sequence[float], str]]) -> int:
    """How many listed ``(box, label)`` pairs match true ones one to one, a match being the same label and the
    listed box's centre inside the true box. The assignment (scipy's Hungarian solver) takes as many matches as
    possible and, among those, the largest total IoU."""
    if not listed or not truth:
        return 0
    from scipy.optimize import linear_sum_assignment

    tie_break = 1.0 / (min(len(listed), len(truth)) + 1)  # IoU never outweighs one more match
    weight = np.zeros((len(listed), len(truth)))
    for i, (box, label) in enumerate(listed):
        for j, (true_box, true_label) in enumerate(truth):
            if label == true_label and centre_inside(box, true_box):
                weight[i, j] = 1.0 + tie_break * box_iou(box, true_box)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return int((weight[rows, cols] > 0).sum())


def score_detect_answer(text: str, row: Mapping[str, Any], model_size: tuple[int, int] | None,
                        convention: str) -> RowResult:
    """A listing of every object on the frame against the row's own answer (the objects it was built from)."""
    reference = parse_box(row["completion"][0]["content"],
                          box_geometry(row["image_size"], row.get("model_image_size"), row.get("box_coordinates")))
    truth = [(b.box, b.label or "") for b in reference.boxes]
    parsed = parse_box(text, box_geometry(row["image_size"], model_size, convention))
    listed = [(b.box, b.label) for b in parsed.boxes]
    matched = listing_matches(listed, truth)
    f1 = 2.0 * matched / (len(listed) + len(truth)) if listed or truth else 1.0
    # a listing has no <think> part: well formed is an <answer> whose boxes are all usable and labelled
    well_formed = (parsed.answer is not None and not parsed.rejected and len(listed) == len(parsed.raw_boxes)
                   and all(label for _, label in listed) and (bool(listed) or parsed.absent))
    return RowResult("detect", row["query"], text, f1, well_formed,
                     bool(truth) and matched == len(truth) == len(listed), None,
                     counts=(matched, len(listed), len(truth)))


def score_temporal_answer(text: str, row: Mapping[str, Any]) -> RowResult:
    parsed = parse_span(text, duration=row.get("duration"))
    if parsed.value is None:
        return RowResult("temporal", row["query"], text, 0.0, False, False, None)
    iou = best_span_iou(parsed.value, row["spans"])
    return RowResult("temporal", row["query"], text, iou, parsed.format_ok, iou >= 0.5, tuple(parsed.value))


def score_vqa_answer(text: str, row: Mapping[str, Any]) -> RowResult:
    from .vqa_rewards import vqa_answer_reward, vqa_format_reward

    columns = {k: [row.get(k)] for k in ("question_type", "ground_truth", "answers")}
    score = float(vqa_answer_reward([text], **columns)[0] or 0.0)
    format_ok = vqa_format_reward([text], **columns)[0] == 1.0
    return RowResult("vqa", row["query"], text, score, format_ok, score >= 0.5, None)


def summarise(results: Sequence[RowResult]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    absent = [r for r in results if r.task == "image" and r.absent]
    if absent:
        metrics["image/absent_n"] = float(len(absent))
        metrics["image/absent_acc"] = float(np.mean([r.hit for r in absent]))
    for task in ("image", "temporal", "vqa"):
        own = [r for r in results if r.task == task and not r.absent]
        if not own:
            continue
        scores = np.array([r.score for r in own])
        metrics[f"{task}/n"] = float(len(own))
        metrics[f"{task}/score" if task == "vqa" else f"{task}/miou"] = float(scores.mean())
        metrics[f"{task}/format"] = float(np.mean([r.format_ok for r in own]))
        if task == "image":
            metrics["image/acc@0.5"] = float((scores >= 0.5).mean())
            metrics["image/acc@0.25"] = float((scores >= 0.25).mean())
            metrics["image/pointing"] = float(np.mean([r.hit for r in own]))
            metrics["image/said_absent"] = float(np.mean([r.said_absent for r in own]))
        elif task == "temporal":
            metrics["temporal/acc@0.5"] = float((scores >= 0.5).mean())
    listings = [r.counts for r in results if r.task == "detect" and r.counts is not None]
    if listings:
        matched, listed, true = (sum(c[k] for c in listings) for k in range(3))
        metrics["detect/n"] = float(len(listings))
        metrics["detect/precision"] = matched / listed if listed else 0.0
        metrics["detect/recall"] = matched / true if true else 0.0
        metrics["detect/format"] = float(np.mean([r.format_ok for r in results if r.task == "detect"]))
    return metrics


def evaluate_rows(vlm: Any, rows: Sequence[Mapping[str, Any]], frames: Any, *, max_new_tokens: int = 96,
                  batch_size: int | None = None, progress: bool = True) -> EvalReport:
    """Answer every row greedily with ``vlm`` (a :class:`scener1.models.VLM`) and score the answers."""
    from ..models.training import row_request
    from ..models.vlm import GenerationSettings
    from .datasets import VIDEO_TASKS

    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    step = batch_size or vlm.batch_size
    # rows grouped by task (videos first): batches of one kind keep padding small
    rank = {task: k for k, task in enumerate(VIDEO_TASKS)}
    order = sorted(range(len(rows)), key=lambda i: (rank.get(rows[i]["task"], len(rank)), i))
    chunks = [order[i : i + step] for i in range(0, len(order), step)]
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="evaluating", unit="batch")
    results: dict[int, RowResult] = {}
    for chunk in chunks:
        answers = vlm.generate([row_request(rows[i], frames) for i in chunk], settings, output_scores=True)
        for i, answer in zip(chunk, answers, strict=True):
            row = rows[i]
            if row["task"] == "temporal":
                results[i] = score_temporal_answer(answer.text, row)
            elif row["task"] == "vqa":
                results[i] = score_vqa_answer(answer.text, row)
            elif row["task"] == "detect":
                size = answer.image_sizes[0] if answer.image_sizes else None
                results[i] = score_detect_answer(answer.text, row, size, vlm.box_coordinates)
            else:
                size = answer.image_sizes[0] if answer.image_sizes else None
                results[i] = score_image_answer(answer.text, row, size, vlm.box_coordinates)
    ordered = tuple(results[i] for i in range(len(rows)))
    return EvalReport(summarise(ordered), ordered)


class AlteredFrames:
    """A frame source whose colour frames come back mirrored left-right (``mirror``) or as one flat grey
    (``grey``): the inputs of :func:`image_reliance`. Everything else is read from ``frames``."""

    MODES = ("mirror", "grey")

    def __init__(self, frames: Any, mode: str):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.frames, self.mode = frames, mode

    def image(self, row: Mapping[str, Any]) -> np.ndarray:
        from .datasets import mirror_image

        image = self.frames.image(row)
        if self.mode == "mirror":
            return mirror_image(image)
        return np.full_like(image, 128)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.frames, name)


def mirrored_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An image row whose target box is mirrored left-right, to score answers on a mirrored frame."""
    from .datasets import mirror_box

    return {**row, "box": list(mirror_box(row["box"], float(row["image_size"][0])))}


def image_reliance(vlm: Any, rows: Sequence[Mapping[str, Any]], frames: Any, *, max_new_tokens: int = 96,
                   batch_size: int | None = None, progress: bool = True,
                   plain: Sequence[RowResult] | None = None) -> dict[str, float]:
    """Does the model's box come from the picture? Image rows answered three times: as they are, on the
    frame mirrored left-right, and on a flat grey frame.

    - ``reliance/pointing``, ``reliance/mirror_pointing``: pointing accuracy on the frames and on the mirrored
      frames (scored against the mirrored target; a query naming left or right is then wrong, so expect a
      little less);
    - ``reliance/mirror_follow``: correlation of the box centre's x with the mirrored frame's centre x,
      mirrored back: near +1 when boxes move with the objects, near -1 when they stay where they were;
    - ``reliance/grey_pointing``: pointing with no picture at all, what the query and the prior alone reach.

    ``plain``: the rows' answers on the frames as they are, when already scored (one per image row, in order).
    """
    image = [dict(r) for r in rows if r["task"] == "image" and not r.get("absent")]
    if not image:
        return {}
    kwargs = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
    if plain is None:
        plain = evaluate_rows(vlm, image, frames, **kwargs).results
    elif len(plain) != len(image):
        raise ValueError(f"{len(plain)} plain answers for {len(image)} image rows")
    mirrored = evaluate_rows(vlm, [mirrored_row(r) for r in image], AlteredFrames(frames, "mirror"), **kwargs).results
    grey = evaluate_rows(vlm, image, AlteredFrames(frames, "grey"), **kwargs).results
    xs = [(0.5 * (a.prediction[0] + a.prediction[2]),
           float(r["image_size"][0]) - 0.5 * (b.prediction[0] + b.prediction[2]))
          for r, a, b in zip(image, plain, mirrored, strict=True)
          if a.prediction is not None and b.prediction is not None]
    metrics = {"reliance/n": float(len(image)),
               "reliance/pointing": float(np.mean([r.hit for r in plain])),
               "reliance/mirror_pointing": float(np.mean([r.hit for r in mirrored])),
               "reliance/grey_pointing": float(np.mean([r.hit for r in grey]))}
    x = np.array(xs).reshape(-1, 2)
    if len(x) >= 3 and x[:, 0].std() > 0 and x[:, 1].std() > 0:  # undefined (left out) for constant boxes
        metrics["reliance/mirror_follow"] = float(np.corrcoef(x[:, 0], x[:, 1])[0, 1])
    return metrics
