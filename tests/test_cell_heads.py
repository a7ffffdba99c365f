"""Cell heads (category / colour of each vision token) and the image stage's check of its boxes with them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scener1.errors import ConfigError
from scener1.grounding import ImageCandidate, ImageSettings
from scener1.models import cell_verifier as verify_module
from scener1.grounding.core import decide
from scener1.models.cell_verifier import CellVerifier, QueryTarget, box_score, cells_in_box, query_target
from scener1.models.cell_heads import HEADS_FILE, INFO_FILE, CellHeads, load_cell_heads, save_cell_heads
from scener1.parsing import BoxParse
from scener1.types import Frame, Intrinsics

CATEGORIES = ("none", "chair", "table", "trash can")
COLOURS = ("none", "red", "blue")


BOX = np.array([0.25, 0.3, 0.5, 0.7], np.float32)  # the one box the heads' box map draws, as a share of the frame


def one_hot_heads() -> CellHeads:
    """Heads reading a 7-wide feature: the first four entries are category logits, the last three colour logits;
    the box map draws :data:`BOX` on every cell."""
    eye = np.eye(7, dtype=np.float32) * 10
    return CellHeads(CATEGORIES, COLOURS, eye[:4], np.zeros(4, np.float32), eye[4:], np.zeros(3, np.float32),
                     np.zeros((4, 7), np.float32), np.log(BOX / (1 - BOX)))


@pytest.mark.parametrize(
    "query, category, colour",
    [
        ("this is a blue chair. it is next to the red table.", "chair", "blue"),
        ("the chair next to the red table. it is blue.", "chair", "blue"),  # the anchor's colour is not the chair's
        ("find the table farthest from the door. it is red.", "table", "red"),
        ("among the red chairs, pick the largest one.", "chair", "red"),
        ("The Trash Cans near the bed", "trash can", None),
        ("the sofa by the window", None, None),  # no category the heads know: not checked
    ],
)
def test_the_query_names_its_target_category_and_colour(query, category, colour):
    assert query_target(query, CATEGORIES, COLOURS) == QueryTarget(category, colour)


def test_a_box_scores_the_mean_of_the_cells_it_covers():
    match = np.zeros((3, 4))
    match[1, 2] = 0.9
    match[1, 3] = 0.3
    # a 160 x 120 image: cells of 40 px; the box covers the centres of cells (1, 2) and (1, 3)
    assert cells_in_box((80, 40, 160, 80), (160, 120), (3, 4)).sum() == 2
    assert box_score(match, (80, 40, 160, 80), (160, 120)) == pytest.approx(0.6)
    # a box smaller than a cell still reads the cell under its centre
    assert box_score(match, (85, 45, 90, 50), (160, 120)) == pytest.approx(0.9)
    assert box_score(match, (0, 0, 40, 40), (160, 120)) == 0.0


def test_heads_round_trip_and_broken_files_are_clear_errors(tmp_path):
    heads = one_hot_heads()
    assert load_cell_heads(tmp_path) is None and load_cell_heads(None) is None  # no heads: no check
    save_cell_heads(tmp_path, heads, {"eval": {"object": 0.5}})
    back = load_cell_heads(tmp_path)
    assert back.categories == CATEGORIES and back.colours == COLOURS
    np.testing.assert_array_equal(back.colour_weight, heads.colour_weight)
    np.testing.assert_allclose(back.boxes(np.zeros((2, 7), np.float32)), [BOX, BOX], rtol=1e-6)
    plain = CellHeads(CATEGORIES, COLOURS, heads.category_weight, heads.category_bias, heads.colour_weight,
                      heads.colour_bias)
    (tmp_path / "plain").mkdir()
    save_cell_heads(tmp_path / "plain", plain, {})
    assert load_cell_heads(tmp_path / "plain").boxes(np.zeros((1, 7))) is None  # no box map: no heads' boxes
    with pytest.raises(ConfigError, match="box map"):
        CellHeads(CATEGORIES, COLOURS, heads.category_weight, heads.category_bias, heads.colour_weight,
                  heads.colour_bias, np.zeros((4, 5), np.float32), np.zeros(4, np.float32))
    features = np.zeros((2, 7), np.float32)
    features[0, 1] = features[0, 5] = features[1, 3] = features[1, 4] = 1.0
    category, colour = back.probabilities(features)
    assert category.argmax(-1).tolist() == [1, 3] and colour.argmax(-1).tolist() == [1, 0]
    np.testing.assert_allclose(category.sum(-1), 1.0, rtol=1e-6)
    with pytest.raises(ConfigError, match="7-wide"):
        back.probabilities(np.zeros((1, 5)))

    info = json.loads((tmp_path / INFO_FILE).read_text())
    (tmp_path / INFO_FILE).write_text(json.dumps({**info, "categories": ["none", "chair"]}))
    with pytest.raises(ConfigError, match="do not fit"):
        load_cell_heads(tmp_path)
    (tmp_path / HEADS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="cannot read the cell heads"):
        load_cell_heads(tmp_path)
    (tmp_path / INFO_FILE).unlink()
    with pytest.raises(ConfigError, match="without its partner"):
        load_cell_heads(tmp_path)


def candidate(box, confidence, verify=None, point=(0.0, 0.0, 1.0)) -> ImageCandidate:
    return ImageCandidate(position=0, frame_index=0, raw_output="", parsed=BoxParse(box, "ok", "x", format_ok=True),
                          mean_logprob=None, confidence=confidence, model_image_size=(160, 120), depth_ok=True,
                          point=point, verify=verify)


def test_the_check_outweighs_a_confident_box_on_the_wrong_object():
    pose = np.eye(4)
    K = Intrinsics(100.0, 100.0, 80.0, 60.0, 160, 120)
    frames = [Frame(0, 0.0, np.zeros((120, 160, 3), np.uint8), np.ones((120, 160), np.float32), K, K, pose)] * 2
    # two boxes far apart (their points do not project into each other's box): no agreement between them
    wrong = candidate((0, 0, 20, 20), 0.9, verify=0.05, point=(-0.6, -0.5, 1.0))
    right = candidate((140, 100, 160, 120), 0.4, verify=0.8, point=(0.7, 0.5, 1.0))
    settings = ImageSettings(num_candidates=2)
    result = decide("the chair", [wrong, right], frames, settings, "p", 0.0, {})
    assert result.box == right.box and [c.chosen for c in result.candidates] == [False, True]
    assert json.loads(result.trace.to_json())["parsed"]["candidates"][1]["verify"] == 0.8
    # without the check (weight 0, or nothing checked) the confident box wins
    assert decide("the chair", [wrong, right], frames, ImageSettings(verify_weight=0.0), "p", 0.0, {}).box == wrong.box
    unchecked = [candidate(wrong.box, 0.9, point=wrong.point), candidate(right.box, 0.4, point=right.point)]
    assert decide("the chair", unchecked, frames, settings, "p", 0.0, {}).box == wrong.box
    with pytest.raises(ConfigError, match="verify_weight"):
        ImageSettings(verify_weight=-1.0)


def test_the_verifier_reads_each_frame_once_and_scores_its_boxes(monkeypatch):
    """Token features stand in for the tower: a red chair in the top-left cell, a blue chair bottom-right."""
    grid = np.zeros((3, 4, 7), np.float32)
    grid[..., 0] = 1.0  # background elsewhere
    grid[0, 0] = [0, 1, 0, 0, 0, 1, 0]
    grid[2, 3] = [0, 1, 0, 0, 0, 0, 1]
    calls = []

    def fake_tower(vlm, images):
        calls.append(len(images))
        return [grid for _ in images]

    monkeypatch.setattr(verify_module, "tower_cells", fake_tower)
    verifier = CellVerifier(object(), one_hot_heads())
    image = np.zeros((120, 160, 3), np.uint8)
    top_left, bottom_right = (0, 0, 40, 40), (120, 80, 160, 120)
    target = verifier.target("the blue chair by the table")
    assert target == QueryTarget("chair", "blue")
    blue = verifier.score(target, [(7, image), (7, image), (8, image)], [top_left, bottom_right, None])
    assert blue[0] < 0.01 and blue[1] > 0.99 and blue[2] is None
    red = verifier.score(verifier.target("the red chair"), [(7, image)], [top_left])
    assert red[0] > 0.99
    either = verifier.score(verifier.target("a chair"), [(7, image)], [bottom_right])  # no colour: category alone
    assert either[0] > 0.99
    assert calls == [2]  # frames 7 and 8 read once, then from the cache
    assert verifier.score(verifier.target("the sofa"), [(9, image)], [top_left]) == [None]
    verifier.forget()
    verifier.score(target, [(7, image)], [top_left])
    assert calls == [2, 1]


def tower_sees_a_red_chair(monkeypatch, scene, positions) -> None:
    """A fake tower (features for :func:`one_hot_heads`): a red chair in one cell of the frames at ``positions``,
    background everywhere else."""
    chair_frames = {scene.frame(p).color.tobytes() for p in positions}
    background = np.zeros((3, 4, 7), np.float32)
    background[..., 0] = 1.0
    chair = background.copy()
    chair[1, 1] = [0, 1, 0, 0, 0, 1, 0]
    monkeypatch.setattr(verify_module, "tower_cells", lambda vlm, images: [
        chair if image.tobytes() in chair_frames else background for image in images])


def test_seeking_asks_the_model_on_the_frames_where_the_heads_see_the_target(tmp_path, monkeypatch):
    from helpers import make_frames, write_scannet

    from scener1.data import open_scene
    from scener1.grounding import ImageGrounder
    from scener1.models import RecordedVLM, load_vlm
    from scener1.models.tiny import build_tiny_vlm

    shows = {5, 13, 20}  # the frames on which the (fake) tower sees a chair
    with open_scene(write_scannet(tmp_path / "scene0001_00", make_frames(24, step=15, color_scale=4))) as scene:
        tower_sees_a_red_chair(monkeypatch, scene, shows)
        base = load_vlm(build_tiny_vlm(tmp_path / "tiny", "qwen3_vl"))
        answer = '<answer>{"bbox_2d": [10, 10, 60, 60], "label": "chair"}</answer>'

        def ground(query, **settings):
            vlm = RecordedVLM(base, [answer] * 3)
            grounder = ImageGrounder(vlm, ImageSettings(num_candidates=3, **settings), CellVerifier(vlm, one_hot_heads()))
            return grounder.ground(scene, query, np.arange(24))

        sought = ground("the red chair", seek_frames=24)
        assert [c.position for c in sought.candidates] == sorted(shows)
        assert all(c.presence > 0.99 for c in sought.candidates)
        assert sought.trace.inputs["verifier"] == {"category": "chair", "colour": "red", "weight": 1.0,
                                                   "seek_frames": 24, "replace_below": 0.0}
        assert all(c.replaced is None for c in sought.candidates)  # replace_below 0: the model's boxes stand
        # the model's box misses the chair's cell: with replace_below the heads' own box takes its place
        own = ground("the red chair", seek_frames=24, replace_below=0.3)
        h, w = scene.frame(5).color.shape[:2]
        for c in own.candidates:
            assert c.replaced["model_box"] == pytest.approx(sought.candidates[0].box, abs=0.05)
            assert c.replaced["model_score"] < 0.01
            assert c.box == pytest.approx((0.25 * w, 0.3 * h, 0.5 * w, 0.7 * h), abs=0.1) and c.verify > 0.99
        assert json.loads(own.trace.to_json())["parsed"]["candidates"][0]["replaced"]["model_score"] < 0.01
        spread_out = ground("the red chair")  # seek_frames 0: spread evenly, as before
        assert [c.position for c in spread_out.candidates] != sorted(shows)
        assert all(c.presence is not None and c.verify is not None for c in spread_out.candidates)
        unknown = ground("the wall", seek_frames=24)  # a target the heads do not know: spread, unchecked
        assert [c.position for c in unknown.candidates] == [c.position for c in spread_out.candidates]
        assert all(c.presence is None and c.verify is None for c in unknown.candidates)
        with pytest.raises(ConfigError, match="seek_frames"):
            ImageSettings(seek_frames=-2)


def test_the_heads_span_is_the_best_frame_and_its_strong_neighbours():
    from scener1.temporal import presence_span

    times = np.arange(8) * 0.5
    presence = np.array([0.1, 0.2, 0.5, 0.9, 0.6, 0.3, 0.8, 0.1])
    # best frame 3 (1.5 s); 2 and 4 reach half of it, 5 does not (6 does, but is not joined to the run)
    assert presence_span(presence, times, 4.0) == pytest.approx((1.0 - 0.25, 2.0 + 0.25))
    assert presence_span(presence, times, 4.0, ratio=1.0) == pytest.approx((1.25, 1.75))
    assert presence_span(np.full(8, 0.3), times, 3.6) == pytest.approx((0.0, 3.6))  # clipped to the video
    assert presence_span(np.array([np.nan, 0.2]), times[:2], 1.0) == pytest.approx((0.25, 0.75))
    with pytest.raises(ValueError, match="one presence value per shown frame"):
        presence_span(presence, times[:3], 4.0)


def test_the_temporal_stage_takes_the_heads_span_and_keeps_the_models_answer(tmp_path, monkeypatch):
    from helpers import make_frames, write_scannet

    from scener1.data import open_scene
    from scener1.models import RecordedVLM, load_vlm
    from scener1.models.tiny import build_tiny_vlm
    from scener1.temporal import TemporalGrounder, TemporalSettings

    with open_scene(write_scannet(tmp_path / "scene0001_00", make_frames(12, step=30, color_scale=4))) as scene:
        times = scene.timestamps - scene.timestamps[0]
        tower_sees_a_red_chair(monkeypatch, scene, (6, 7))
        base = load_vlm(build_tiny_vlm(tmp_path / "tiny", "qwen3_vl"))
        answer = "<think>at the start</think><answer>0s to 1s</answer>"

        def ground(query, **settings):
            vlm = RecordedVLM(base, [answer])
            grounder = TemporalGrounder(vlm, TemporalSettings(fps=100.0, **settings),
                                        CellVerifier(vlm, one_hot_heads()))
            return grounder.ground(scene, query)

        by_heads = ground("the red chair")
        step = float(np.median(np.diff(times)))
        assert by_heads.span_source == "heads"
        assert by_heads.span == pytest.approx((times[6] - step / 2, times[7] + step / 2))
        assert set(by_heads.positions.tolist()) >= {6, 7} and 0 not in by_heads.positions
        parsed = json.loads(by_heads.trace.to_json())["parsed"]
        assert parsed["answer"]["value"] == [0.0, 1.0] and parsed["heads"]["target"]["category"] == "chair"
        assert by_heads.to_dict()["span_source"] == "heads"

        by_model = ground("the red chair", span_source="model")
        assert by_model.span_source == "model" and by_model.span == (0.0, 1.0)
        unknown = ground("the wall")  # a category the heads do not know: the model's answer
        assert unknown.span_source == "model" and unknown.span == (0.0, 1.0)
        with pytest.raises(ConfigError, match="span_source"):
            TemporalSettings(span_source="heads")
