"""The benchmarks' metric definitions as pure functions (see docs/evaluation.md for their sources).

Values are fractions in [0, 1] here; the benchmark classes report percentages.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence

import numpy as np

from ..errors import ScenerError
from .boxes import aabb_iou_matrix

#: VSI-Bench's MRA confidence thresholds 0.50, 0.55, ..., 0.95, compared as ``1 - theta`` in float64 exactly as
#: the official code does (so boundary cases round the same way).
MRA_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_MRA_TOLERANCES = 1.0 - MRA_THRESHOLDS


def multi_target_f1(pred: np.ndarray, gt: np.ndarray, thresholds: Sequence[float] = (0.25, 0.5)) -> tuple[float, ...]:
    """Multi3DRefer F1 of one query at each IoU threshold.

    Predicted and ground-truth boxes ``(M, 6)`` / ``(K, 6)`` are paired by the Hungarian assignment that maximises
    total IoU; pairs with IoU >= k are true positives and F1 = 2 TP / (M + K). A query without targets scores 1
    when nothing is predicted and 0 otherwise; a query with targets and no prediction scores 0.
    """
    from scipy.optimize import linear_sum_assignment

    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 6)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 6)
    if len(gt) == 0:
        return tuple(1.0 if len(pred) == 0 else 0.0 for _ in thresholds)
    if len(pred) == 0:
        return tuple(0.0 for _ in thresholds)
    iou = aabb_iou_matrix(pred, gt)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    matched = iou[rows, cols]
    total = len(pred) + len(gt)
    return tuple(2.0 * int((matched >= k).sum()) / total for k in thresholds)


def vsi_first_word(prediction: str) -> str:
    """VSI-Bench's answer extraction: the first space-separated word, trailing full stops removed."""
    return str(prediction).strip().split(" ")[0].rstrip(".").strip()


def parse_number(text: str) -> float | None:
    """A float, or None when the text is not a plain number (scored 0 by VSI-Bench)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def mean_relative_accuracy(pred: float | None, gt: float) -> float:
    """VSI-Bench MRA: mean over theta in 0.50..0.95 of ``|pred - gt| / gt <= 1 - theta``.

    An unparsable prediction (None) scores 0. The references are positive in the released benchmark; a zero
    reference (undefined relative error) scores 1 only for an exact 0.
    """
    if pred is None:
        return 0.0
    if gt == 0:
        return 1.0 if pred == 0 else 0.0
    relative_error = abs(pred - gt) / abs(gt)
    return float((relative_error <= _MRA_TOLERANCES).mean())


def caption_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], meteor: bool = True
) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of each prediction against its references, via pycocoevalcap.

    Sentences go through the PTB tokenizer first, as in the COCO caption evaluation. METEOR and the tokenizer run
    Java (METEOR's start-up takes seconds; ``meteor=False`` leaves it out). Returns fractions (CIDEr is not
    bounded by 1).
    """
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    if not predictions:
        return {}
    if shutil.which("java") is None:
        raise ScenerError(
            "caption metrics (BLEU, METEOR, ROUGE-L, CIDEr) need Java for pycocoevalcap's tokenizer and METEOR: "
            "install a JRE (Debian: default-jre-headless) or pass --no-caption-metrics"
        )
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    except ImportError:
        raise ScenerError("caption metrics need pycocoevalcap (pip install 'scener1[eval]')") from None
    for refs in references:
        if not refs:
            raise ScenerError("every question needs at least one reference answer for caption metrics")
    # one tokenizer run (one Java start) for references and predictions together
    sentences = {("ref", i): [{"caption": str(r)} for r in refs] for i, refs in enumerate(references)}
    sentences.update({("pred", i): [{"caption": str(p)}] for i, p in enumerate(predictions)})
    try:
        tokens = PTBTokenizer().tokenize(sentences)
    except PermissionError as exc:  # the tokenizer writes a temporary file beside its jar
        raise ScenerError(f"pycocoevalcap's tokenizer cannot write next to its jar ({exc}); install it writable") from None
    gts = {i: tokens[("ref", i)] for i in range(len(references))}
    res = {i: tokens[("pred", i)] for i in range(len(predictions))}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    out = {f"BLEU-{n + 1}": float(bleu[n]) for n in range(4)}
    out.update({"ROUGE-L": float(rouge), "CIDEr": float(cider)})
    if meteor:
        scorer = Meteor()
        try:
            out["METEOR"] = float(scorer.compute_score(gts, res)[0])
        finally:
            del scorer  # stops its Java process
    return out
