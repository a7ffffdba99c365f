"""Metric definitions on hand-computed cases: box IoU, Multi3DRefer F1, VSI-Bench MRA, answer normalisation,
caption metrics."""

import shutil

import numpy as np
import pytest

from scener1.errors import ScenerError
from scener1.eval.boxes import aabb_iou, aabb_iou_matrix, box_to_json, corners, parse_box
from scener1.eval.metrics import (
    caption_scores,
    mean_relative_accuracy,
    multi_target_f1,
    parse_number,
    vsi_first_word,
)
from scener1.eval.text import basic_normalize, exact_match, refined_normalize, relaxed_match


def box(lo, hi):
    return np.array([*lo, *hi], dtype=float)


# ---------------------------------------------------------------------------------------------- boxes
def test_iou_of_touching_nested_overlapping_and_degenerate_boxes():
    unit = box((0, 0, 0), (1, 1, 1))
    assert aabb_iou(unit, unit) == pytest.approx(1.0)
    assert aabb_iou(unit, box((1, 0, 0), (2, 1, 1))) == 0.0  # sharing a face
    assert aabb_iou(unit, box((1, 1, 1), (2, 2, 2))) == 0.0  # sharing a corner
    assert aabb_iou(unit, box((3, 3, 3), (4, 4, 4))) == 0.0  # apart
    # nested: a 1x1x1 box inside a 2x2x2 box -> 1/8 whatever its position inside
    assert aabb_iou(box((0.5, 0.5, 0.5), (1.5, 1.5, 1.5)), box((0, 0, 0), (2, 2, 2))) == pytest.approx(1 / 8)
    # half-overlap along x: intersection 0.5, union 1.5
    assert aabb_iou(unit, box((0.5, 0, 0), (1.5, 1, 1))) == pytest.approx(1 / 3)
    # a flat box has no volume: IoU 0, never NaN (also against itself)
    flat = box((0, 0, 0), (1, 1, 0))
    assert aabb_iou(flat, flat) == 0.0 and aabb_iou(flat, unit) == 0.0
    # a missing prediction (NaN row) scores 0
    assert aabb_iou(np.full(6, np.nan), unit) == 0.0


def test_iou_is_symmetric_vectorised_and_matches_the_matrix_form():
    rng = np.random.default_rng(0)
    lo = rng.uniform(-1, 1, (50, 3))
    a = np.concatenate([lo, lo + rng.uniform(0.1, 1, (50, 3))], 1)
    lo = rng.uniform(-1, 1, (50, 3))
    b = np.concatenate([lo, lo + rng.uniform(0.1, 1, (50, 3))], 1)
    elementwise = aabb_iou(a, b)
    np.testing.assert_allclose(elementwise, aabb_iou(b, a))
    np.testing.assert_allclose(np.diag(aabb_iou_matrix(a, b)), elementwise)
    assert ((elementwise >= 0) & (elementwise <= 1)).all() and (elementwise > 0).any()


def test_every_box_layout_parses_to_the_same_box():
    target = box((1, 2, 3), (3, 3, 7))
    layouts = [
        {"center": [2, 2.5, 5], "size": [2, 1, 4]},
        {"min": [1, 2, 3], "max": [3, 3, 7]},
        [[1, 2, 3], [3, 3, 7]],
        corners(target).tolist(),
        [corners(target).tolist()],  # a one-box list, as M3DRef-CLIP writes it
        box_to_json(target),
    ]
    for layout in layouts:
        np.testing.assert_allclose(parse_box(layout), target)
    # ScanRefer's corner order does not matter: any permutation of the 8 corners is the same box
    np.testing.assert_allclose(parse_box(corners(target)[::-1].tolist()), target)


@pytest.mark.parametrize("bad", [
    {"center": [0, 0], "size": [1, 1, 1]},
    {"center": [0, 0, 0], "size": [1, -1, 1]},
    {"center": [0, 0, "x"], "size": [1, 1, 1]},
    {"centre": [0, 0, 0]},
    [[0, 0, 0], [1, 1]],
    [[2, 0, 0], [1, 1, 1]],
    {"center": [0, 0, float("nan")], "size": [1, 1, 1]},
    "box",
])
def test_malformed_boxes_raise_a_clear_error(bad):
    with pytest.raises(ScenerError):
        parse_box(bad)


# ---------------------------------------------------------------------------------------------- Multi3DRefer F1
def test_multi_target_f1_zero_target_queries():
    none = np.zeros((0, 6))
    some = box((0, 0, 0), (1, 1, 1))[None]
    assert multi_target_f1(none, none) == (1.0, 1.0)  # nothing to find, nothing predicted
    assert multi_target_f1(some, none) == (0.0, 0.0)  # a false positive on a zero-target query
    assert multi_target_f1(none, some) == (0.0, 0.0)  # a missed target


def test_multi_target_f1_counts_matched_pairs_per_threshold():
    gt = np.stack([box((0, 0, 0), (1, 1, 1)), box((5, 0, 0), (6, 1, 1))])
    exact = gt[0]
    third = box((0.5, 0, 0), (1.5, 1, 1))  # IoU 1/3 with gt[0]; shifted by 5 it has IoU 1/3 with gt[1]
    far = box((20, 0, 0), (21, 1, 1))
    # one exact hit + one IoU-1/3 hit (TP only at 0.25) + one false positive: F1 = 2*TP / (3 + 2)
    pred = np.stack([exact, far, third + [5, 0, 0, 5, 0, 0]])
    f25, f50 = multi_target_f1(pred, gt)
    assert f25 == pytest.approx(2 * 2 / 5) and f50 == pytest.approx(2 * 1 / 5)
    assert multi_target_f1(gt, gt) == (1.0, 1.0)


def test_multi_target_f1_uses_the_optimal_assignment_not_a_greedy_one():
    # p0-g0 has the largest IoU (0.65); a greedy matcher takes it and leaves p1-g1 (0.12), one pair above 0.5.
    # The assignment maximising total IoU pairs p0-g1 and p1-g0 (0.55 each): two pairs above 0.5.
    g0, g1 = box((0, 0, 0), (2, 1, 1)), box((1.0, 0, 0), (3.0, 1, 1))
    p0, p1 = box((0.42, 0, 0), (2.42, 1, 1)), box((-0.58, 0, 0), (1.42, 1, 1))
    iou = aabb_iou_matrix(np.stack([p0, p1]), np.stack([g0, g1]))
    np.testing.assert_allclose(iou, [[1.58 / 2.42, 1.42 / 2.58], [1.42 / 2.58, 0.42 / 3.58]])
    assert iou.argmax() == 0  # p0-g0 is the single best pair
    assert multi_target_f1(np.stack([p0, p1]), np.stack([g0, g1])) == (1.0, 1.0)


# ---------------------------------------------------------------------------------------------- VSI-Bench
def test_mra_on_hand_computed_cases_and_edges():
    assert mean_relative_accuracy(10.0, 10.0) == 1.0
    assert mean_relative_accuracy(None, 10.0) == 0.0
    # relative error 0.5 passes only theta = 0.50 (1 - 0.50 = 0.5 compares equal)
    assert mean_relative_accuracy(15.0, 10.0) == pytest.approx(0.1)
    assert mean_relative_accuracy(5.0, 10.0) == pytest.approx(0.1)
    # relative error 0.3 passes theta 0.50 .. 0.70 (5 of 10); 0.51 passes none
    assert mean_relative_accuracy(13.0, 10.0) == pytest.approx(0.5)
    assert mean_relative_accuracy(15.1, 10.0) == 0.0
    # relative error 0.05: 1 - 0.95 is 0.050000000000000044 in float64, so it passes all ten, as officially
    assert mean_relative_accuracy(10.5, 10.0) == pytest.approx(1.0)
    # relative error 0.2 vs 1 - 0.8 = 0.19999999999999996: the official float64 comparison fails theta 0.80
    assert mean_relative_accuracy(12.0, 10.0) == pytest.approx(0.6)
    assert mean_relative_accuracy(0.0, 0.0) == 1.0 and mean_relative_accuracy(1.0, 0.0) == 0.0


def test_vsi_answer_extraction_and_number_parsing():
    assert vsi_first_word("3. Because I counted") == "3"
    assert vsi_first_word("  B. left") == "B"
    assert vsi_first_word("2.5 meters") == "2.5"
    assert vsi_first_word("A...") == "A"
    assert parse_number("2.5") == 2.5 and parse_number("three") is None and parse_number("nan") is None
    assert parse_number("inf") is None and parse_number("") is None


# ---------------------------------------------------------------------------------------------- answers
def test_normalisation_levels():
    assert basic_normalize("  Brown Chair. ") == "brown chair"
    assert basic_normalize("on  the\ttable") == "on the table"
    assert basic_normalize("The Table") != basic_normalize("table")  # basic keeps articles
    assert refined_normalize("The Table") == refined_normalize("table") == "table"
    assert refined_normalize("Two chairs.") == refined_normalize("2 chairs") == "2 chairs"
    assert refined_normalize("front-left") == "front left"
    assert refined_normalize("it's 2.5 m.") == "its 2.5 m"
    assert refined_normalize("o'clock") == refined_normalize("oclock")


def test_exact_and_relaxed_matching():
    refs = ["dark brown", "brown"]
    assert exact_match("Brown", refs) and exact_match("brown.", refs)
    assert not exact_match("the brown", refs)  # EM@1 forgives formatting only
    assert exact_match("the brown", refs, refined=True)
    assert not exact_match("light brown", refs, refined=True)
    assert relaxed_match("light brown", refs)  # contains a reference
    assert relaxed_match("dark", refs)  # contained in a reference
    assert not relaxed_match("white", refs)
    assert not relaxed_match("", refs) and not relaxed_match("the", refs)  # empty after normalisation
    assert relaxed_match("two", ["2"]) and not exact_match("two", ["2"])


@pytest.mark.slow  # METEOR starts a Java process (about 10 s)
@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")
def test_caption_metrics_on_hand_computed_cases():
    # identical answers of four or more tokens: every n-gram matches, brevity penalty 1
    same = caption_scores(["a small red chair"], [["a small red chair"]], meteor=False)
    assert same["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and same["ROUGE-L"] == pytest.approx(1.0)
    # "red chair" vs "brown chair": unigram precision 1/2 with equal lengths -> BLEU-1 = 0.5; LCS 1 of 2 tokens
    # on both sides -> ROUGE-L F = 0.5
    half = caption_scores(["red chair"], [["brown chair"]], meteor=False)
    assert half["BLEU-1"] == pytest.approx(0.5, abs=1e-6)
    assert half["ROUGE-L"] == pytest.approx(0.5, abs=1e-6)
    assert half["BLEU-2"] < 1e-3
    assert "METEOR" not in half
    # METEOR (one Java start): nothing in common scores 0; the best of several references counts
    scores = caption_scores(["window"], [["door"]])
    assert scores["BLEU-1"] < 1e-6 and scores["ROUGE-L"] == 0.0 and scores["METEOR"] == 0.0
    assert caption_scores(["window"], [["door", "window"]], meteor=False)["ROUGE-L"] == pytest.approx(1.0)
