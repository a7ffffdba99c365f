"""Routing questions to VSI-Bench types and reading the objects they name (scener1.vqa.router)."""

from __future__ import annotations

import pytest

from scener1.errors import ConfigError
from scener1.vqa.router import FREE_FORM, mention, parse_options, route, singular

# (question, options, type, {role: category or [categories]})
CASES = [
    ("How many chair(s) are in this room?", None, "object_counting", {"object": "chair"}),
    ("How many boxes are in this room?", None, "object_counting", {"object": "box"}),
    ("How many bookshelves are there?", None, "object_counting", {"object": "bookshelf"}),
    (("Measuring from the closest point of each object, what is the distance between the trash bin and the mirror "
     "(in meters)?"), None, "object_abs_distance", {"objects": ["trash bin", "mirror"]}),
    (("What is the distance between the bookshelf and the trash can in metres, measured between the closest points "
     "of the two objects?"), None, "object_abs_distance", {"objects": ["bookshelf", "trash can"]}),
    (("What is the length of the longest dimension (length, width, or height) of the table lamp, measured in "
     "centimeters?"), None, "object_size_estimation", {"object": "table lamp"}),
    (("How long is the longest side of the trash can (its length, width or height, whichever is greatest), in "
     "centimetres?"), None, "object_size_estimation", {"object": "trash can"}),
    (("What is the size of this room (in square meters)? \nIf multiple rooms are shown, estimate the size of the "
     "combined space."), None, "room_size_estimation", {}),
    ("What is the floor area of this room in square metres?", None, "room_size_estimation", {}),
    (("Measuring from the closest point of each object, which of these objects (kettle, tv, keyboard, refrigerator) "
     "is the closest to the heater?"), ["A. kettle", "B. tv", "C. keyboard", "D. refrigerator"], "object_rel_distance",
     {"reference": "heater", "choices": ["kettle", "tv", "keyboard", "refrigerator"]}),
    (("Which of these objects is nearest to the bed, measured between closest points: the chair, the lamp, the desk "
     "or the plant?"), None, "object_rel_distance", {"reference": "bed", "choices": ["chair", "lamp", "desk", "plant"]}),
    ("If I am standing by the pillow and facing the telephone, is the fan to the left or the right of the telephone?",
     ["A. left", "B. right"], "object_rel_direction_easy", {"standing": "pillow", "facing": "telephone", "target": "fan"}),
    (("If I am standing by the nightstand and facing the microwave, is the trash bin to my left, right, or back?\nAn "
     "object is to my back if I would have to turn at least 135 degrees in order to face it."),
     ["A. back", "B. left", "C. right"], "object_rel_direction_medium",
     {"standing": "nightstand", "facing": "microwave", "target": "trash bin"}),
    (("If I am standing by the stove and facing the refrigerator, is the dishwasher to my front-left, front-right, "
     "back-left, or back-right?"), ["A. back-right", "B. front-right", "C. back-left", "D. front-left"],
     "object_rel_direction_hard", {"standing": "stove", "facing": "refrigerator", "target": "dishwasher"}),
    ("Suppose I am standing by the desk and facing the sofa. Is the lamp to my left, to my right, or behind me?",
     ["A. left", "B. back", "C. right"], "object_rel_direction_medium", {"standing": "desk", "facing": "sofa",
                                                                        "target": "lamp"}),
    (("What will be the first-time appearance order of the following categories in the video: computer mouse, table, "
     "door, keyboard?"), ["A. keyboard, table, door, computer mouse", "B. computer mouse, table, door, keyboard"],
     "obj_appearance_order", {"categories": ["computer mouse", "table", "door", "keyboard"]}),
    ("In which order do these categories first appear in the video: box, monitor, bookshelf, lamp?",
     ["A. lamp, monitor, box, bookshelf"], "obj_appearance_order", {"categories": ["box", "monitor", "bookshelf", "lamp"]}),
    (("You are a robot beginning at the door and facing the door. You want to navigate to the telephone. You will "
     "perform the following actions (Note: for each [please fill in], choose either 'turn back,' 'turn left,' or "
     "'turn right.'): 1. [please fill in] 2. Go forward until the sofa under the whiteboard. 3. [please fill in] "
     "4. Go forward until the telephone. You have reached the final destination."),
     ["A. Turn Right, Turn Left", "B. Turn Back, Turn Right"], "route_planning",
     {"start": "door", "facing": "door", "destination": "telephone"}),
    ("What color is the chair next to the table?", None, FREE_FORM, {}),
    ("What color is the cabinet in the back-middle area of the room?", None, FREE_FORM, {}),
    ("Where is the lamp located?", None, FREE_FORM, {}),
]


@pytest.mark.parametrize("question, options, qtype, roles", CASES)
def test_types_and_roles(question, options, qtype, roles):
    rq = route(question, options)
    assert rq.qtype == qtype, rq.rule
    for role, want in roles.items():
        got = rq.roles[role]
        if isinstance(want, list):
            assert [m.category for m in got] == want
        else:
            assert got.category == want
    assert rq.multiple_choice == bool(options) or qtype in ("object_rel_distance",)


def test_route_steps_keep_turns_and_waypoints_in_order():
    rq = route(CASES[17][0], CASES[17][1])
    steps = rq.roles["steps"]
    assert steps[0] == "turn" and steps[2] == "turn"
    assert steps[1].category == "sofa" and steps[1].qualifier == "under the whiteboard"
    assert steps[3].category == "telephone"


def test_mentions_split_attributes_and_plurals():
    m = mention("the two red chairs")
    assert (m.category, m.attributes) == ("chair", ("red",))
    assert mention("Trash bin(s)").category == "trash bin"
    assert mention("shelves").category == "shelf"
    assert mention("the sofa under the whiteboard").qualifier == "under the whiteboard"
    assert singular("glasses") == "glasses" and singular("couches") == "couch" and singular("batteries") == "battery"


def test_options_with_and_without_letters():
    assert [(o.letter, o.text) for o in parse_options(["A. left", "B. right"])] == [("A", "left"), ("B", "right")]
    assert [(o.letter, o.text) for o in parse_options(["left", "back"])] == [("A", "left"), ("B", "back")]
    assert [o.letter for o in parse_options(["(C) x", "D) y"])] == ["C", "D"]
    with pytest.raises(ConfigError, match="repeat"):
        parse_options(["A. x", "A. y"])
    with pytest.raises(ConfigError, match="not one string"):
        parse_options("A. x")


def test_bad_questions_are_one_line_errors():
    with pytest.raises(ConfigError, match="empty"):
        route("   ")
    with pytest.raises(ConfigError, match="must be text"):
        route(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="characters long"):
        route("how many " * 500)


def test_every_real_vsibench_question_routes_to_its_type(realdata):
    pd = pytest.importorskip("pandas")
    df = pd.read_parquet(realdata / "vsibench" / "test-00000-of-00001.parquet")
    wrong = [(r.question_type, route(r.question, None if r.options is None else list(r.options)).qtype)
             for r in df.itertuples()]
    wrong = [w for w in wrong if w[0] != w[1]]
    assert len(df) == 5130 and not wrong, wrong[:5]


def test_scanqa_questions_stay_free_form_except_plain_counting(realdata):
    import json

    rows = json.loads((realdata / "scanqa" / "ScanQA_v1.0_val.json").read_text())
    types = [route(r["question"]).qtype for r in rows]
    assert set(types) <= {FREE_FORM, "object_counting"}
    counted = [r["question"] for r, t in zip(rows, types) if t == "object_counting"]
    assert 0 < len(counted) < 0.01 * len(rows)
    assert all(q.lower().startswith("how many") for q in counted)
