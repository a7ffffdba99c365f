"""The answer parsers: exact readings of well-formed and sloppy answers, and a fuzz test that they never raise."""

from __future__ import annotations

import math
import random

import pytest

from scener1.errors import ConfigError
from scener1.parsing import (
    MAX_TEXT_CHARS,
    BoxGeometry,
    BoxParse,
    RawBox,
    SpanParse,
    map_box,
    parse_box,
    parse_span,
    split_tags,
)

# ----------------------------------------------------------------------------------------------- tags


def test_well_formed_answer_is_format_ok_and_split():
    t = split_tags("<think>the chair is by the door</think>\n<answer>3s to 7s</answer>")
    assert t.think == "the chair is by the door"
    assert t.answer == "3s to 7s"
    assert t.format_ok and t.notes == ()


@pytest.mark.parametrize(
    "text",
    [
        "<answer>3s to 7s</answer>",  # no reasoning
        "<think>a</think>extra<answer>3s to 7s</answer>",  # text between the blocks
        "<think>a</think><answer>3s</answer><answer>4s</answer>",  # doubled answer
        "<THINK>a</THINK><answer>3s</answer>",  # the contract's tags are lower case
        "<answer>3s</answer><think>a</think>",  # wrong order
        "<think>a</think><answer>3s</answer> trailing",
    ],
)
def test_format_ok_is_strict(text):
    assert not split_tags(text).format_ok


def test_doubled_and_unclosed_tags():
    assert split_tags("<answer><answer>3s to 7s</answer></answer>").answer == "3s to 7s"
    doubled = split_tags("<answer>1s to 2s</answer> wait <answer>5s to 6s</answer>")
    assert doubled.answer == "5s to 6s" and any("2 <answer> blocks" in n for n in doubled.notes)
    unclosed = split_tags("<think>hmm</think><answer>4s to 9")
    assert unclosed.answer == "4s to 9" and "unclosed <answer>" in unclosed.notes
    prefilled = split_tags("it is on the left</think><answer>x</answer>")
    assert prefilled.think == "it is on the left" and "no opening <think>" in prefilled.notes


def test_empty_answer_is_not_confused_with_a_missing_one():
    assert split_tags("<answer></answer>").answer == ""
    assert split_tags("no tags at all").answer is None
    assert parse_span("<answer> </answer>").reason == "empty <answer>"


# ----------------------------------------------------------------------------------------------- spans


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>x</think><answer>3s to 7s</answer>", (3.0, 7.0)),
        ("<answer>3.25s to 7.5s</answer>", (3.25, 7.5)),
        ("<answer>from 3 to 7 seconds</answer>", (3.0, 7.0)),
        ("from 3 to 7 seconds", (3.0, 7.0)),  # no tags at all
        ("<answer>3.5-7s</answer>", (3.5, 7.0)),
        ("<answer>3s - 7s</answer>", (3.0, 7.0)),
        ("<answer>3s -7s</answer>", (3.0, 7.0)),
        ("<answer>[2.0, 4.5]</answer>", (2.0, 4.5)),
        ("<answer>between 1:05 and 1:10</answer>", (65.0, 70.0)),
        ("<answer>0:00:05 to 0:00:09</answer>", (5.0, 9.0)),
        ("<answer>between 1 and 2 min</answer>", (60.0, 120.0)),
        ("<answer>.5s to 2s</answer>", (0.5, 2.0)),
        ("<think>frames 40 and 50 look right</think>The answer is 4 to 5 s", (4.0, 5.0)),  # reasoning skipped
    ],
)
def test_span_forms(text, expected):
    p = parse_span(text)
    assert p.value == pytest.approx(expected)
    assert p.reason == "ok"


def test_reversed_span_is_swapped_and_said_so():
    p = parse_span("<answer>9s to 2s</answer>")
    assert p.value == (2.0, 9.0) and "reversed span swapped" in p.repairs


def test_span_clipped_to_the_video_or_refused():
    assert parse_span("<answer>-2s to 5s</answer>", duration=10).value == (0.0, 5.0)
    clipped = parse_span("<answer>8s to 15s</answer>", duration=10)
    assert clipped.value == (8.0, 10.0) and "end clipped to the video's end" in clipped.repairs
    late = parse_span("<answer>12s to 15s</answer>", duration=10)
    assert late.value is None and "after the video ends" in late.reason
    early = parse_span("<answer>-5s to -2s</answer>", duration=10)
    assert early.value is None and "before the video starts" in early.reason


@pytest.mark.parametrize(
    "text, reason",
    [
        ("<answer>5s</answer>", "only one time in the answer"),
        ("<answer>soon</answer>", "no time span in the answer"),
        ("<think>from 3 to 7</think>", "no time span in the answer"),  # numbers inside the reasoning only
        ("<answer>" + "9" * 400 + "s to 5s</answer>", "time too large"),
    ],
)
def test_unusable_spans_give_reasons(text, reason):
    p = parse_span(text)
    assert p.value is None and p.reason == reason


def test_non_text_never_raises():
    assert parse_span(None).value is None  # type: ignore[arg-type]
    geometry = BoxGeometry("resized_pixels", (100, 100), (100, 100))
    assert parse_box(12345, geometry).value is None  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- boxes

RESIZED = BoxGeometry("resized_pixels", (112, 84), (320, 240))  # 320 / 112 = 240 / 84 = 20 / 7
NORMALISED = BoxGeometry("normalized_1000", (112, 84), (640, 480))


def test_resized_pixels_map_to_original():
    p = parse_box('<think>left</think><answer>{"bbox_2d": [28, 21, 84, 63], "label": "chair"}</answer>', RESIZED)
    assert p.value == pytest.approx((80.0, 60.0, 240.0, 180.0))
    assert p.label == "chair" and p.think == "left" and p.format_ok and p.reason == "ok"


def test_normalised_coordinates_map_to_original():
    p = parse_box('<answer>{"bbox_2d": [250, 500, 750, 1000], "label": "lamp"}</answer>', NORMALISED)
    assert p.value == pytest.approx((160.0, 240.0, 480.0, 480.0))


def test_several_boxes_all_kept_first_primary():
    text = '<answer>[{"bbox_2d": [28, 21, 84, 63], "label": "a"}, {"bbox_2d": [0, 0, 7, 7], "label": "b"}]</answer>'
    p = parse_box(text, RESIZED)
    assert [b.label for b in p.boxes] == ["a", "b"]
    assert p.value == p.boxes[0].box and p.label == "a"
    assert p.boxes[1].box == pytest.approx((0.0, 0.0, 20.0, 20.0))


def test_first_usable_box_is_primary_when_the_first_is_bad():
    text = '<answer>[{"bbox_2d": [500, 500, 600, 600]}, {"bbox_2d": [28, 21, 84, 63], "label": "b"}]</answer>'
    p = parse_box(text, RESIZED)
    assert p.label == "b" and p.rejected == ("box lies outside the image",)


def test_an_empty_list_says_the_object_is_not_in_the_image():
    from scener1.parsing import ABSENT_REASON

    p = parse_box("<think>I see no lamp in the image.</think><answer>[]</answer>", RESIZED)
    assert p.absent and p.value is None and p.format_ok and p.reason == ABSENT_REASON
    assert parse_box("<answer> [ ] </answer>", RESIZED).absent  # spacing is forgiven (format_ok tells)
    for other in ("<answer>[1, 2]</answer>", "<answer>[[]]</answer>", "<answer>none</answer>", "<answer></answer>"):
        assert not parse_box(other, RESIZED).absent, other
    boxed = parse_box('<answer>{"bbox_2d": [28, 21, 84, 63]}</answer>', RESIZED)
    assert not boxed.absent and boxed.value is not None


def test_text_around_json_fences_and_nested_objects():
    wrapped = 'Sure! ```json\n{"result": {"objects": [{"bbox_2d": [28, 21, 84, 63], "label": "x"}]}}\n``` done'
    p = parse_box(f"<answer>{wrapped}</answer>", RESIZED)
    assert p.value == pytest.approx((80.0, 60.0, 240.0, 180.0)) and p.label == "x"


def test_decimals_and_key_variants():
    p = parse_box('<answer>{"bbox": [28.0, 21.0, 84.5, 63.5]}</answer>', RESIZED)
    assert p.value == pytest.approx((80.0, 60.0, 84.5 * 20 / 7, 63.5 * 20 / 7))


@pytest.mark.parametrize(
    "answer",
    [
        "{'bbox_2d': [28, 21, 84, 63], 'label': 'chair'}",  # Python dict, not JSON
        '{"bbox_2d": [28, 21, 84, 63], "label": "chair"',  # truncated JSON
        "(28, 21), (84, 63) chair",
        "28, 21, 84, 63",
    ],
)
def test_boxes_read_without_valid_json(answer):
    p = parse_box(f"<answer>{answer}</answer>", RESIZED)
    assert p.value == pytest.approx((80.0, 60.0, 240.0, 180.0))


def test_python_dict_keeps_its_label():
    assert parse_box("<answer>{'bbox_2d': [28, 21, 84, 63], 'label': 'chair'}</answer>", RESIZED).label == "chair"


def test_out_of_range_clipped_reversed_swapped():
    p = parse_box('<answer>{"bbox_2d": [-10, -10, 500, 500]}</answer>', RESIZED)
    assert p.value == (0.0, 0.0, 320.0, 240.0) and "clipped to the image" in p.repairs
    r = parse_box('<answer>{"bbox_2d": [84, 63, 28, 21]}</answer>', RESIZED)
    assert r.value == pytest.approx((80.0, 60.0, 240.0, 180.0)) and "corners swapped" in r.repairs
    n = parse_box('<answer>{"bbox_2d": [900, 900, 1100, 1200]}</answer>', NORMALISED)
    assert n.value == pytest.approx((576.0, 432.0, 640.0, 480.0))


@pytest.mark.parametrize(
    "bbox, reason",
    [
        ("[10, 10, 10, 50]", "degenerate box (0.0 x 114.3 px)"),
        ("[500, 500, 600, 600]", "box lies outside the image"),
        ("[NaN, 1, 2, 3]", "bbox_2d: box has a non-finite coordinate"),
        ("[1e999, 1, 2, 3]", "bbox_2d: box has a non-finite coordinate"),
        ("[1, 2, 3]", "bbox_2d: box has 3 numbers, not 4"),
        ('["a", 2, 3, 4]', "bbox_2d: box holds something other than numbers"),
        ("[true, 2, 3, 4]", "bbox_2d: box holds something other than numbers"),
        ("[1e308, 1, 1.5e308, 5]", "coordinates too large"),
    ],
)
def test_bad_boxes_rejected_with_reason(bbox, reason):
    p = parse_box(f'<answer>{{"bbox_2d": {bbox}}}</answer>', RESIZED)
    assert p.value is None and p.boxes == ()
    assert reason in p.rejected and p.reason.startswith("no usable box")


def test_min_size_rejects_slivers():
    text = '<answer>{"bbox_2d": [28, 21, 29, 63]}</answer>'  # 2.9 original pixels wide
    assert parse_box(text, RESIZED, min_size=1.0).value is not None
    assert parse_box(text, RESIZED, min_size=4.0).value is None


def test_map_box_directly():
    m = map_box(RawBox((0, 0, 112, 84), "all"), RESIZED)
    assert m.box == (0.0, 0.0, 320.0, 240.0) and m.label == "all"
    assert map_box(RawBox((0, 0, 0, 84)), RESIZED).startswith("degenerate")


def test_geometry_is_checked():
    with pytest.raises(ConfigError):
        BoxGeometry("pixels", (1, 1), (1, 1))
    with pytest.raises(ConfigError):
        BoxGeometry("resized_pixels", (0, 10), (10, 10))


# ----------------------------------------------------------------------------------------------- properties


def test_random_well_formed_answers_read_exactly():
    rng = random.Random(7)
    for _ in range(300):
        a, b = round(rng.uniform(0, 60), 1), round(rng.uniform(0, 60), 1)
        form = rng.choice(["{a}s to {b}s", "from {a} to {b} seconds", "{a}-{b}s", "{a} - {b}"])
        p = parse_span(f"<think>t</think><answer>{form.format(a=a, b=b)}</answer>", duration=60.0)
        assert p.value == pytest.approx((min(a, b), max(a, b)))

        mw, mh = rng.choice([(112, 84), (644, 476), (1288, 980)])
        W, H = rng.choice([(320, 240), (640, 480), (1296, 968)])
        x1, x2 = sorted(rng.sample(range(mw + 1), 2))
        y1, y2 = sorted(rng.sample(range(mh + 1), 2))
        text = f'<think>t</think><answer>{{"bbox_2d": [{x1}, {y1}, {x2}, {y2}], "label": "obj"}}</answer>'
        box = parse_box(text, BoxGeometry("resized_pixels", (mw, mh), (W, H)), min_size=0.0).value
        assert box == pytest.approx((x1 * W / mw, y1 * H / mh, x2 * W / mw, y2 * H / mh))


_FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "<ANSWER>", "< answer >", "</ think>", "<think", "answer>",
    "{", "}", "[", "]", "(", ")", ",", ":", '"', "'", "\\", "```json", "```", "\n", " ", "\t",
    '"bbox_2d"', '"bbox"', '"label"', '"chair"', "null", "true", "NaN", "Infinity", "-Infinity", "nan", "inf",
    "0", "7", "-3", "3.5", ".5", "5.", "1e5", "1e400", "-1e400", "1e-400", "9" * 40, "9" * 500, "00012",
    "s", "sec", "seconds", "min", " to ", "from ", "between ", " and ", "-", "–", "1:05", "0:00:09", "12:",
    "é", "中文", "🪑", "\u200b", "\u202e", "\x00", "\ud7ff", "ﬁ", "Ａ", "٣",
]
_VALID = [
    '<think>it is by the door</think><answer>{"bbox_2d": [28, 21, 84, 63], "label": "chair"}</answer>',
    '<think>seen early</think><answer>3.5s to 7s</answer>',
    '<answer>[{"bbox_2d": [1, 2, 30, 40]}, {"bbox_2d": [5, 5, 60, 60], "label": "lamp"}]</answer>',
]


def _adversarial(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:  # tag and number soup
        return "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(0, 40)))
    if kind < 0.65:  # a valid answer cut short
        valid = rng.choice(_VALID)
        return valid[: rng.randint(0, len(valid))]
    if kind < 0.85:  # a valid answer mutated
        chars = list(rng.choice(_VALID))
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                del chars[i]
            elif op < 0.7:
                chars.insert(i, rng.choice(_FRAGMENTS))
            else:
                chars[i] = chars[i] * rng.randint(2, 5)
        return "".join(chars)
    if kind < 0.95:  # random unicode
        return "".join(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
                       for _ in range(rng.randint(0, 200)))  # fmt: skip
    # huge or deep inputs
    return rng.choice(
        [
            "[" * 5000 + "1",
            "{" * 3000,
            '{"bbox_2d": [' * 800,
            "<answer>" * 3000,
            "<think>" + "x" * (MAX_TEXT_CHARS + 500) + "</think><answer>1s to 2s</answer>",
            "[1," * 6000,
            "1" * 6000 + " to 2",
            '{"a": ' * 1200 + "1" + "}" * 1200,
        ]
    )


def _check_span(p: SpanParse, duration: float) -> None:
    assert isinstance(p, SpanParse)
    assert (p.value is None) == (p.reason != "ok")
    if p.value is not None:
        start, end = p.value
        assert math.isfinite(start) and math.isfinite(end)
        assert 0.0 <= start <= end <= duration
    assert p.think is None or ("<think>" not in p.think and "</think>" not in p.think)


def _check_box(p: BoxParse, geometry: BoxGeometry, min_size: float) -> None:
    assert isinstance(p, BoxParse)
    assert (p.value is None) == (p.reason != "ok")
    W, H = geometry.original_size
    for mapped in p.boxes:
        x1, y1, x2, y2 = mapped.box
        assert all(math.isfinite(v) for v in mapped.box)
        assert 0.0 <= x1 < x2 <= W and 0.0 <= y1 < y2 <= H
        assert x2 - x1 >= min_size and y2 - y1 >= min_size
    if p.value is not None:
        assert p.value == p.boxes[0].box
    assert len(p.boxes) <= len(p.raw_boxes)
    assert p.label is None or (isinstance(p.label, str) and len(p.label) <= 200)


def test_fuzz_parsers_never_raise():
    rng = random.Random(20250705)
    cases = 5000
    readable = 0
    for _ in range(cases):
        text = _adversarial(rng)
        duration = rng.choice([0.0, 1.0, 37.5, 1e6])
        span = parse_span(text, duration=duration)
        _check_span(span, duration)
        geometry = BoxGeometry(
            rng.choice(["resized_pixels", "normalized_1000"]),
            (rng.randint(1, 2000), rng.randint(1, 2000)),
            (rng.randint(1, 2000), rng.randint(1, 2000)),
        )
        min_size = rng.choice([0.5, 1.0, 4.0])
        box = parse_box(text, geometry, min_size)
        _check_box(box, geometry, min_size)
        readable += (span.value is not None) + (box.value is not None)
    # the generator must reach the parsers' success paths too, not only their refusals
    assert readable > cases // 10
