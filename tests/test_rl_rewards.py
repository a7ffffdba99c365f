"""The GRPO reward functions, each alone, on hand-computed cases."""

from __future__ import annotations

import pytest

from scener1.rl.rewards import (
    best_span_iou,
    box_iou,
    box_iou_reward,
    completion_text,
    format_reward,
    span_iou,
    temporal_iou_reward,
)

# a 320 x 240 frame the processor resized to 256 x 192: model pixels are 1.25 original pixels
IMAGE = {"task": "image", "image_size": [320, 240], "model_image_size": [256, 192],
         "box_coordinates": "resized_pixels", "box": [80.0, 60.0, 240.0, 180.0]}
TEMPORAL = {"task": "temporal", "spans": [[2.0, 4.0], [10.0, 11.0]], "duration": 12.0}


def columns(*rows: dict) -> dict[str, list]:
    keys = {k for r in rows for k in r}
    return {k: [r.get(k) for r in rows] for k in keys}


def box_answer(box: list[int]) -> str:
    return f'<think>It is on the left.</think><answer>{{"bbox_2d": {box}, "label": "chair"}}</answer>'


def test_iou_helpers_by_hand():
    # [0,0,160,120] against [80,60,240,180]: overlap 80 x 60 = 4800, union 2 * 19200 - 4800 = 33600
    assert box_iou([0, 0, 160, 120], [80, 60, 240, 180]) == pytest.approx(4800 / 33600)
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # x2 exclusive: touching boxes share nothing
    assert box_iou([5, 5, 5, 9], [0, 0, 10, 10]) == 0.0  # no area
    assert span_iou([1.0, 3.0], [2.0, 4.0]) == pytest.approx(1 / 3)
    assert span_iou([3.0, 3.0], [2.0, 4.0]) == 0.0
    assert best_span_iou([1.0, 3.0], [[2.0, 4.0], [1.0, 3.5]]) == pytest.approx(2.0 / 2.5)
    assert best_span_iou([1.0, 3.0], []) == 0.0


def test_box_iou_reward_maps_resized_pixels_back_to_the_frame():
    # model box [0, 0, 128, 96] is [0, 0, 160, 120] in the 320 x 240 frame
    rewards = box_iou_reward([box_answer([0, 0, 128, 96]), box_answer([64, 48, 192, 144])], **columns(IMAGE, IMAGE))
    assert rewards[0] == pytest.approx(4800 / 33600)
    assert rewards[1] == pytest.approx(1.0)  # [64, 48, 192, 144] * 1.25 is exactly the target


def test_box_iou_reward_normalized_1000_and_conversational_completions():
    row = {**IMAGE, "box_coordinates": "normalized_1000", "model_image_size": None}
    completion = [{"role": "assistant", "content": box_answer([0, 0, 500, 500])}]  # [0, 0, 160, 120] in pixels
    assert box_iou_reward([completion], **columns(row)) == [pytest.approx(4800 / 33600)]
    parts = [{"role": "assistant", "content": [{"type": "text", "text": box_answer([250, 250, 750, 750])}]}]
    assert completion_text(parts) == box_answer([250, 250, 750, 750])
    assert box_iou_reward([parts], **columns(row)) == [pytest.approx(1.0)]


def test_box_iou_reward_unusable_answers_and_other_tasks():
    answers = ["no box here", "<answer>[10, 10, 10, 50]</answer>", box_answer([0, 0, 128, 96])]
    rewards = box_iou_reward(answers, **columns(IMAGE, IMAGE, TEMPORAL))
    assert rewards[:2] == [0.0, 0.0]  # nothing parses; a degenerate box is refused as the pipeline refuses it
    assert rewards[2] is None  # a temporal row is not scored by the box reward


def test_temporal_iou_reward_by_hand():
    answers = ["<think>x</think><answer>1.0s to 3.0s</answer>", "<answer>9.5s to 11s</answer>",
               "<answer>whenever</answer>", "<answer>30s to 40s</answer>"]
    rewards = temporal_iou_reward(answers, **columns(TEMPORAL, TEMPORAL, TEMPORAL, TEMPORAL))
    assert rewards[0] == pytest.approx(1 / 3)  # [1, 3] vs [2, 4]
    assert rewards[1] == pytest.approx(1.0 / 1.5)  # best interval [10, 11]: overlap 1, union 1.5
    assert rewards[2] == 0.0
    assert rewards[3] == 0.0  # starts after the video ends: refused by the parser
    assert temporal_iou_reward(answers[:1], **columns(IMAGE)) == [None]


def test_format_reward_needs_exact_tags_and_a_parsing_answer():
    good_box = box_answer([0, 0, 128, 96])
    cases = [
        (good_box, IMAGE, 1.0),
        ('<answer>{"bbox_2d": [0, 0, 128, 96]}</answer>', IMAGE, 0.0),  # no reasoning
        ("<think>a</think><answer>no box</answer>", IMAGE, 0.0),  # tags right, answer unusable
        ("<think>a</think> <answer>2.0s to 4.5s</answer>", TEMPORAL, 1.0),
        ("<think>a</think><answer>2.0s to 4.5s</answer> and more", TEMPORAL, 0.0),  # text after the answer
        ("<think>a</think><answer>2.0s to 4.5s</answer>", IMAGE, 0.0),  # a span is not a box
    ]
    rewards = format_reward([c[0] for c in cases], **columns(*[c[1] for c in cases]))
    assert rewards == [c[2] for c in cases]


def test_absent_rows_reward_the_answer_not_in_the_image():
    absent = {**IMAGE, "box": None, "absent": True}
    none = "<think>I see no chair in the image.</think><answer>[]</answer>"
    boxed = box_answer([64, 48, 192, 144])
    rewards = box_iou_reward([none, boxed, none, boxed], **columns(absent, absent, IMAGE, IMAGE))
    assert rewards == [1.0, 0.0, 0.0, pytest.approx(1.0)]  # on a frame with it, "not here" earns nothing
    assert format_reward([none, "<answer>[]</answer>"], **columns(absent, IMAGE)) == [1.0, 0.0]
    # a row without the column is an ordinary row; a row with neither box nor absent is not scored
    assert box_iou_reward([none], **columns({**IMAGE, "box": None})) == [None]


def test_rewards_refuse_misaligned_columns():
    with pytest.raises(ValueError):
        box_iou_reward(["a", "b"], task=["image"], box=[[0, 0, 1, 1]], image_size=[[2, 2]])
