"""Answer rewards for RL on VQA (scener1.rl.vqa_rewards): the benchmarks' own scoring, in TRL's convention."""

from __future__ import annotations

import numpy as np
import pytest

from scener1.rl.vqa_rewards import (
    REWARDS,
    answer_text,
    vqa_answer_reward,
    vqa_exact_match_reward,
    vqa_format_reward,
    vqa_mra_reward,
)


def mra(pred: float, gt: float) -> float:
    """VSI-Bench MRA written out here: thresholds 0.50, 0.55, ..., 0.95 on the relative error."""
    return float(np.mean([abs(pred - gt) / gt <= 1 - t for t in np.linspace(0.5, 0.95, 10)]))


def test_numeric_answers_score_mean_relative_accuracy():
    completions = ["<think>three chairs</think><answer>3</answer>", "<think>x</think><answer>2.3 meters</answer>",
                   "<think>x</think><answer>about two</answer>", "<answer>117</answer>"]
    rewards = vqa_answer_reward(completions, question_type=["object_counting", "object_abs_distance",
                                                           "object_abs_distance", "object_size_estimation"],
                                ground_truth=["3", "2.0", "2.0", "100"])
    assert rewards == pytest.approx([1.0, mra(2.3, 2.0), 0.0, mra(117, 100)])
    assert 0 < rewards[1] < 1 and 0 < rewards[3] < 1


def test_choice_answers_score_exact_letters_case_insensitively():
    completions = ["<think>left of it</think><answer>b</answer>", "<think>.</think><answer>B. right</answer>",
                   "<think>.</think><answer>right</answer>", "<think>.</think><answer>A</answer>"]
    rewards = vqa_answer_reward(completions, question_type=["object_rel_direction_easy"] * 4, ground_truth=["B"] * 4)
    assert rewards == [1.0, 1.0, 0.0, 0.0]  # the option's text alone is not the benchmark's answer


def test_free_form_answers_match_references_after_normalisation():
    completions = ["<think>.</think><answer>The brown chair.</answer>", "<think>.</think><answer>two</answer>",
                   "<think>.</think><answer>black</answer>", "<think>.</think><answer></answer>"]
    rewards = vqa_answer_reward(completions, question_type=["free_form"] * 4,
                                answers=[["brown chair"], ["2"], ["brown"], ["anything"]])
    assert rewards == [1.0, 1.0, 0.0, 0.0]


def test_mixed_batches_split_between_the_partial_rewards():
    kw = {"question_type": ["object_counting", "object_rel_distance", "free_form"], "ground_truth": ["4", "C", None],
          "answers": [None, None, ["sofa"]]}
    completions = ["<think>a</think><answer>5.3</answer>", "<think>a</think><answer>C</answer>",
                   [{"role": "assistant", "content": "<think>a</think><answer>sofa</answer>"}]]
    assert vqa_mra_reward(completions, **kw) == [pytest.approx(mra(5.3, 4)), None, None]
    assert vqa_exact_match_reward(completions, **kw) == [None, 1.0, 1.0]
    assert set(REWARDS) == {"vqa_answer", "vqa_mra", "vqa_exact_match", "vqa_format"}


def test_rows_of_other_tasks_get_none():
    rewards = vqa_answer_reward(["<answer>3</answer>", "<answer>3</answer>"], question_type=["object_counting"] * 2,
                                ground_truth=["3", "3"], task=["image", "vqa"])
    assert rewards == [None, 1.0]
    assert vqa_format_reward(["<think>a</think><answer>3</answer>"], task=["temporal"]) == [None]


def test_format_reward_wants_both_tags_and_an_answer():
    texts = ["<think>a</think><answer>3</answer>", "<answer>3</answer>", "<think>a</think><answer> </answer>",
             "3", "<think>a</think>\n<answer>B</answer>\n"]
    assert vqa_format_reward(texts) == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_answers_without_tags_are_read_from_the_text_outside_the_reasoning():
    assert answer_text("<think>hmm</think> 7") == "7"
    assert vqa_answer_reward(["<think>hmm</think> 7"], question_type=["object_counting"], ground_truth=["7"]) == [1.0]


def test_bad_columns_raise():
    with pytest.raises(ValueError, match="has 1 values for 2"):
        vqa_answer_reward(["<answer>1</answer>"] * 2, question_type=["object_counting"], ground_truth=["1", "1"])
    with pytest.raises(ValueError, match="not a number"):
        vqa_answer_reward(["<answer>1</answer>"], question_type=["object_counting"], ground_truth=["many"])
    with pytest.raises(ValueError, match="unknown question_type"):
        vqa_answer_reward(["<answer>1</answer>"], question_type=["trivia"], ground_truth=["1"])
