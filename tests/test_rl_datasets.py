"""Dataset builders for the grounding stages: rows from a synthetic scene's ground truth, their order and
the batches the supervised trainer is fed."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from scener1.errors import ConfigError, SceneError
from scener1.prompts import image_messages, temporal_messages
from scener1.rl.datasets import (
    Curriculum,
    FrameSource,
    ImageTaskSettings,
    answer_text,
    box_in_model_coordinates,
    build_rows,
    check_rows,
    clear_intervals,
    curriculum_order,
    load_scene_truth,
    region_name,
    relation_facts,
    scene_dirs,
    vqa_rows,
)
from scener1.rl.rewards import box_iou_reward, temporal_iou_reward

MODEL_SIZE = (128, 96)  # what a processor might resize the 160 x 120 frames to


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from scener1.synth import generate_scene

    return generate_scene(tmp_path_factory.mktemp("rl_synth"), seed=5, frames=40, size=(160, 120), fps=8.0)


@pytest.fixture(scope="module")
def rows(scene):
    return build_rows([scene], model_image_size=lambda w, h: MODEL_SIZE)


def test_image_rows_hold_the_pipeline_prompt_and_an_answer_that_reads_back_to_the_target(scene, rows):
    truth = load_scene_truth(scene)
    image = [r for r in rows if r["task"] == "image"]
    assert image and {r["difficulty"] for r in image} == {0, 1}
    frames = json.loads((scene / "gt" / "frames.json").read_text())["frames"]
    for row in image:
        assert row["prompt"] == image_messages(row["query"], "resized_pixels")
        visible = {v["object_id"]: v for v in frames[row["positions"][0]]["objects"]}
        assert row["box"] == [float(c) for c in visible[row["object_id"]]["bbox"]]
        assert row["model_image_size"] == list(MODEL_SIZE) and row["image_size"] == [160, 120]
        label = truth.objects[row["object_id"]].label
        assert f'"label": "{label}"' in answer_text(row)
    # the written answer, read by the pipeline's parser, lands on the target box (rounding only)
    scores = box_iou_reward([answer_text(r) for r in image], **{k: [r[k] for r in image] for k in image[0]})
    assert min(scores) > 0.85
    check_rows(rows)


def test_frame_level_queries_name_one_object_of_the_frame(scene, rows):
    truth = load_scene_truth(scene)
    for row in (r for r in rows if r["task"] == "image" and r["difficulty"] == 0):
        visible = [truth.objects[v.object_id] for v in truth.frames[row["positions"][0]]]
        named = [o for o in visible if row["query"] in (f"the {o.category}", f"the {o.color} {o.category}")]
        assert [o.object_id for o in named] == [row["object_id"]], row["query"]


def test_rationales_state_true_relations_and_the_true_image_region(scene, rows):
    truth = load_scene_truth(scene)
    graph = truth.graph
    for row in rows[:200]:
        if row["task"] != "image":
            continue
        think = re.search(r"<think>(.*)</think>", answer_text(row)).group(1)
        obj = truth.objects[row["object_id"]]
        assert think.startswith(f"The {obj.color} {obj.category} ")
        assert f"in the {region_name(row['box'], truth.size)} of the image" in think
    # every fact phrase stems from a relation that holds in the scene graph
    for object_id in truth.objects:
        facts = relation_facts(truth, object_id)
        related = {graph.node(b).category for rel in ("on", "under", "next_to") for b in graph.related(rel, object_id)}
        for fact in facts:
            if fact.startswith(("next to", "beside", "right next to", "on", "under", "below", "underneath",
                                "placed on", "sitting on")):
                assert any(cat in fact for cat in related), (object_id, fact)


def test_region_and_model_coordinates_by_hand():
    assert region_name([0, 0, 30, 30], (300, 300)) == "top left"
    assert region_name([100, 100, 200, 200], (300, 300)) == "centre"
    assert region_name([250, 210, 300, 300], (300, 300)) == "bottom right"
    assert box_in_model_coordinates([16, 12, 80, 60], (160, 120), (128, 96), "resized_pixels") == [13, 10, 64, 48]
    assert box_in_model_coordinates([16, 12, 80, 60], (160, 120), None, "normalized_1000") == [100, 100, 500, 500]
    with pytest.raises(ConfigError):
        box_in_model_coordinates([0, 0, 1, 1], (2, 2), None, "resized_pixels")


def test_temporal_rows_use_the_stage_sampling_and_target_a_clear_interval(scene, rows):
    from scener1.temporal.core import TemporalSettings, sample_video_positions

    truth = load_scene_truth(scene)
    temporal = [r for r in rows if r["task"] == "temporal"]
    assert temporal
    positions = sample_video_positions(truth.timestamps, TemporalSettings())
    for row in temporal:
        assert row["positions"] == positions.tolist()
        assert row["prompt"] == temporal_messages(row["query"], np.asarray(row["timestamps"]))
        start, end = (float(v) for v in re.search(r"<answer>([\d.]+)s to ([\d.]+)s", answer_text(row)).groups())
        assert start < end and any(a - 1e-6 <= start and end <= b + 1e-6 for a, b in row["spans"])
        assert start in row["timestamps"] and end in row["timestamps"]  # times the model was shown
    scores = temporal_iou_reward([answer_text(r) for r in temporal],
                                 **{k: [r[k] for r in temporal] for k in ("task", "spans", "duration")})
    assert min(scores) > 0.3


def test_estimate_span_target_widens_the_shown_frames_by_half_a_step(scene, rows):
    """``span_target: estimate`` teaches where the clear interval's ends are expected to lie given the frames shown:
    half a sampling step beyond the first and last frame inside it. Answered perfectly it scores higher."""
    from scener1.rl.datasets import TemporalTaskSettings, temporal_rows

    truth = load_scene_truth(scene)
    shown = [r for r in rows if r["task"] == "temporal"]
    wide = temporal_rows(truth, TemporalTaskSettings(span_target="estimate"))
    assert [r["query"] for r in wide] == [r["query"] for r in shown] and wide[0]["prompt"] == shown[0]["prompt"]

    def span(row):
        return tuple(float(v) for v in re.search(r"<answer>([\d.]+)s to ([\d.]+)s", answer_text(row)).groups())

    half = float(np.median(np.diff(shown[0]["timestamps"]))) / 2
    for a, b in zip(shown, wide):
        (s0, s1), (w0, w1) = span(a), span(b)
        assert w0 == pytest.approx(max(0.0, s0 - half), abs=0.051) and w1 == pytest.approx(min(b["duration"], s1 + half), abs=0.051)
        assert f"from {w0:.1f} to {w1:.1f} seconds" in answer_text(b)  # the rationale says the same span
    columns = lambda rs: {k: [r[k] for r in rs] for k in ("task", "spans", "duration")}  # noqa: E731
    perfect_shown = np.mean(temporal_iou_reward([answer_text(r) for r in shown], **columns(shown)))
    perfect_wide = np.mean(temporal_iou_reward([answer_text(r) for r in wide], **columns(wide)))
    assert perfect_wide > perfect_shown
    with pytest.raises(ConfigError, match="span_target"):
        TemporalTaskSettings(span_target="middle")


def test_clear_intervals_by_hand(scene):
    truth = load_scene_truth(scene)
    oid = max(truth.objects, key=lambda i: sum(v.pixels for f in truth.frames for v in f if v.object_id == i))
    pixels = np.array([next((v.pixels for v in f if v.object_id == oid), 0) for f in truth.frames])
    need = 0.01 * 160 * 120
    intervals = clear_intervals(truth, oid, 0.01, bridge_s=0.0)
    # with no bridging, the intervals are exactly the runs of clear frames, each frame lasting 1/fps
    runs, k = [], 0
    while k < len(pixels):
        if pixels[k] >= need:
            j = k
            while j + 1 < len(pixels) and pixels[j + 1] >= need:
                j += 1
            runs.append((k / 8.0, (j + 1) / 8.0))
            k = j + 1
        else:
            k += 1
    assert len(intervals) == len(runs) and runs
    for (a, b, _), (ra, rb) in zip(intervals, runs):
        assert a == pytest.approx(ra) and b == pytest.approx(rb)
    bridged = clear_intervals(truth, oid, 0.01, bridge_s=100.0)
    assert len(bridged) == (1 if runs else 0)


def test_settings_filter_rows(scene):
    sparse = build_rows([scene], tasks=("image",), model_image_size=lambda w, h: MODEL_SIZE,
                        image=ImageTaskSettings(frame_stride=10, frame_queries=False))
    assert sparse and all(r["task"] == "image" and r["difficulty"] == 1 and r["positions"][0] % 10 == 0
                          for r in sparse)
    with pytest.raises(ConfigError, match="unknown task"):
        build_rows([scene], tasks=("captioning",))
    # without the image region the rationale keeps the facts and drops "It is in the ... of the image"
    plain = build_rows([scene], tasks=("image",), model_image_size=lambda w, h: MODEL_SIZE,
                       image=ImageTaskSettings(frame_stride=10, frame_queries=False, image_region=False))
    assert [r["box"] for r in plain] == [r["box"] for r in sparse]
    for with_region, without in zip(sparse, plain):
        a, b = answer_text(with_region), answer_text(without)
        assert "of the image" in a and "of the image" not in b
        assert b.split("</think>")[1] == a.split("</think>")[1]
        first_a, first_b = (re.search(r"<think>(.*?\.)", t).group(1) for t in (a, b))
        if first_b.endswith(" is in the image."):  # no facts to state: the region was the whole sentence
            assert first_a.startswith(first_b[: -len("in the image.")]) and first_a.endswith("of the image.")
        else:
            assert first_a == first_b


def test_scene_discovery_and_missing_ground_truth(scene, tmp_path):
    assert scene_dirs(scene.parent) == [scene] and scene_dirs(scene) == [scene]
    with pytest.raises(SceneError):
        scene_dirs(tmp_path)
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "frames.json").write_text("{}")
    with pytest.raises(SceneError, match="no ground truth gt/objects.json"):
        load_scene_truth(tmp_path)
    # the one reader of gt/ files (training rows, the demo, the held-out queries and the VQA oracle use it)
    from scener1.synth.writer import read_objects
    from scener1.vqa.oracle import SynthOracleDetector

    (tmp_path / "gt" / "objects.json").write_text("{not json")
    for read in (load_scene_truth, read_objects, SynthOracleDetector):
        with pytest.raises(SceneError, match="objects.json: not valid JSON"):
            read(tmp_path)
    (tmp_path / "gt" / "objects.json").write_text('{"objects": 3}')
    with pytest.raises(SceneError, match="no 'objects' list"):
        read_objects(tmp_path)
    assert [o["category"] for o in read_objects(scene)] == [o.category for o in load_scene_truth(scene).objects.values()]


def test_curriculum_puts_easy_rows_first_and_keeps_batches_to_one_task(rows):
    order = curriculum_order(rows, Curriculum(total=96, batch_size=8, easy_rows=16, seed=3))
    assert len(order) == 96
    assert all(rows[i]["task"] == "image" and rows[i]["difficulty"] == 0 for i in order[:16])
    for b in range(2, 12):
        assert len({rows[i]["task"] for i in order[8 * b: 8 * b + 8]}) == 1
    assert {rows[i]["task"] for i in order[16:]} == {"image", "temporal"}
    assert order == curriculum_order(rows, Curriculum(total=96, batch_size=8, easy_rows=16, seed=3))
    assert order != curriculum_order(rows, Curriculum(total=96, batch_size=8, easy_rows=16, seed=4))
    with pytest.raises(ConfigError):
        Curriculum(total=4, easy_rows=5)


def test_collator_feeds_the_prompt_exactly_as_inference_and_learns_only_the_answer(scene, rows, tmp_path):
    import torch

    from scener1.models import load_vlm
    from scener1.models.tiny import build_tiny_vlm
    from scener1.models.training import GroundingCollator, row_request

    vlm = load_vlm(build_tiny_vlm(tmp_path / "m", "qwen3_vl"))
    frames = FrameSource()
    image = [r for r in rows if r["task"] == "image"][:2]
    temporal = [r for r in rows if r["task"] == "temporal"][:1]
    vqa = build_rows([scene], tasks=("vqa",))[:2]
    for batch_rows in (image, temporal, vqa):
        batch = GroundingCollator(vlm.processor, frames)(batch_rows)
        prepared = vlm.prepare([row_request(r, frames) for r in batch_rows])
        n = prepared.prompt_length
        assert torch.equal(batch["input_ids"][:, :n], prepared.inputs["input_ids"])
        for key in ("pixel_values", "pixel_values_videos"):
            if key in prepared.inputs:
                assert torch.equal(batch[key], prepared.inputs[key])
        assert (batch["labels"][:, :n] == -100).all()
        for i, row in enumerate(batch_rows):
            learned = batch["labels"][i][batch["labels"][i] != -100]
            assert vlm.processor.tokenizer.decode(learned) == answer_text(row) + "<|im_end|>"
        loss = vlm.model(**batch).loss
        assert torch.isfinite(loss)
    frames.close()


def test_detection_rows_list_every_clear_object_of_the_frame_left_to_right(scene):
    from scener1.parsing import BoxGeometry, parse_box
    from scener1.rl.datasets import DETECTION_PROMPT, DetectionTaskSettings

    truth = load_scene_truth(scene)
    rows = build_rows([scene], tasks=("detect",), model_image_size=lambda w, h: MODEL_SIZE,
                      detect=DetectionTaskSettings(frame_stride=2, max_objects=3))
    assert rows and all(r["task"] == "detect" and r["positions"][0] % 2 == 0 for r in rows)
    for row in rows:
        assert row["prompt"][0]["content"][1]["text"].startswith(DETECTION_PROMPT)
        parsed = parse_box(answer_text(row), BoxGeometry("resized_pixels", MODEL_SIZE, (160, 120)))
        clear = sorted((v for v in truth.frames[row["positions"][0]] if v.pixels >= 0.004 * 160 * 120
                        and v.box[2] - v.box[0] >= 8 and v.box[3] - v.box[1] >= 8), key=lambda v: -v.pixels)[:3]
        assert len(parsed.boxes) == len(clear)
        centres = [b.box[0] + b.box[2] for b in parsed.boxes]
        assert centres == sorted(centres)
        truth_boxes = sorted(clear, key=lambda v: v.box[0] + v.box[2])
        for got, want in zip(parsed.boxes, truth_boxes):
            assert got.label == truth.objects[want.object_id].label
            assert max(abs(a - b) for a, b in zip(got.box, want.box)) <= 1.0  # integer rounding in model pixels
    check_rows(rows)


def test_vqa_rows_ask_as_the_vqa_head_asks_and_answer_the_scene_questions(scene):
    from scener1.prompts import vqa_messages
    from scener1.rl.evaluate import score_vqa_answer
    from scener1.rl.vqa_rewards import vqa_answer_reward
    from scener1.temporal.core import sample_video_positions
    from scener1.vqa.router import route
    from scener1.vqa.vlm_head import VLMSettings, answer_kind

    truth = load_scene_truth(scene)
    rows = vqa_rows(truth)
    vsi = json.loads((scene / "gt" / "vsibench.json").read_text())
    scanqa = json.loads((scene / "gt" / "scanqa.json").read_text())
    assert len(rows) == len(vsi) + len(scanqa) > 0
    positions = sample_video_positions(truth.timestamps, VLMSettings().clip_settings())
    for row, record in zip(rows, vsi + scanqa):
        assert row["task"] == "vqa" and row["positions"] == positions.tolist()
        rq = route(record["question"], record.get("options") or None)
        assert row["prompt"] == vqa_messages(rq.question, row["timestamps"], answer_kind(rq), row["options"])
    numeric = [r for r in rows if r["question_type"] == "object_counting"]
    assert numeric and all(r["ground_truth"] is not None and r["answers"] is None for r in numeric)
    free = [r for r in rows if r["question_type"] == "free_form"]
    assert free and all(r["answers"] and r["ground_truth"] is None for r in free)
    # the rationale states true facts: a counting row names as many colours as it counts
    count = numeric[0]
    think = answer_text(count).split("</think>")[0]
    assert think.count(",") + 1 == int(count["ground_truth"])
    # every written answer scores 1 with the VQA reward and the evaluator; a wrong one scores less
    columns = {k: [r[k] for r in rows] for k in ("task", "question_type", "ground_truth", "answers")}
    assert vqa_answer_reward([answer_text(r) for r in rows], **columns) == [1.0] * len(rows)
    check_rows(rows)
    assert score_vqa_answer(answer_text(count), count).score == 1.0
    wrong = answer_text(count).replace(f"<answer>{count['ground_truth']}", "<answer>100")
    assert score_vqa_answer(wrong, count).score < 0.5
    broken = [dict(count, completion=[{"role": "assistant", "content": wrong}])]
    with pytest.raises(ConfigError, match="scores"):
        check_rows(broken)



def test_vqa_rows_refuse_malformed_questions_in_one_line(scene, tmp_path):
    import shutil

    copy = tmp_path / scene.name
    shutil.copytree(scene / "gt", copy / "gt")
    (copy / "gt" / "vsibench.json").write_text(json.dumps([{"question": "How many chairs?"}]))
    with pytest.raises(SceneError, match="questions not in the expected form"):
        vqa_rows(load_scene_truth(copy))


def test_absent_rows_ask_on_frames_without_the_category_and_need_a_prompt_that_allows_it(scene):
    truth = load_scene_truth(scene)
    settings = ImageTaskSettings(absent_share=0.5)
    rows = build_rows([scene], tasks=("image",), model_image_size=lambda w, h: MODEL_SIZE, image=settings,
                      prompt_version="v2")
    present = [r for r in rows if not r["absent"]]
    absent = [r for r in rows if r["absent"]]
    assert present and 0.3 * len(present) < len(absent) <= 0.5 * len(present) + 10
    assert present == build_rows([scene], tasks=("image",), model_image_size=lambda w, h: MODEL_SIZE,
                                 prompt_version="v2")  # the other rows are untouched
    queries = {(r["query"], r["object_id"]) for r in present}
    for row in absent:
        category = truth.objects[row["object_id"]].category
        shown = {truth.objects[v.object_id].category for v in truth.frames[row["positions"][0]]}
        assert category not in shown and (row["query"], row["object_id"]) in queries
        assert row["box"] is None and answer_text(row).endswith("<answer>[]</answer>")
        assert f"I see no {category}" in answer_text(row) and "answer <answer>[]</answer>" in row["prompt"][0]["content"][1]["text"]
    check_rows(rows)  # every written answer earns its own reward
    again = build_rows([scene], tasks=("image",), model_image_size=lambda w, h: MODEL_SIZE, image=settings,
                       prompt_version="v2")
    assert [r["positions"] for r in again if r["absent"]] == [r["positions"] for r in absent]  # fixed per scene
    with pytest.raises(ConfigError, match="absent_share"):
        build_rows([scene], tasks=("image",), image=settings, prompt_version="v1")
    with pytest.raises(ConfigError):
        ImageTaskSettings(absent_share=1.5)


def test_mirrored_rows_show_the_mirrored_frame_and_box_it_with_the_same_query(scene):
    from scener1.parsing import BoxGeometry, parse_box
    from scener1.rl.datasets import DetectionTaskSettings, mirror_box

    rows = build_rows([scene], tasks=("image", "detect"), model_image_size=lambda w, h: MODEL_SIZE,
                      image=ImageTaskSettings(frame_stride=8, mirror=True),
                      detect=DetectionTaskSettings(frame_stride=8, mirror=True))
    plain = build_rows([scene], tasks=("image", "detect"), model_image_size=lambda w, h: MODEL_SIZE,
                       image=ImageTaskSettings(frame_stride=8), detect=DetectionTaskSettings(frame_stride=8))
    assert len(rows) == 2 * len(plain) and not any(r["mirrored"] for r in plain)
    key = lambda r: (r["task"], r["positions"][0], r["query"], r["object_id"])  # noqa: E731
    twins = {key(r): r for r in rows if not r["mirrored"]}
    frames = FrameSource()
    flipped_regions = 0
    for row in (r for r in rows if r["mirrored"]):
        twin = twins[key(row)]
        np.testing.assert_array_equal(frames.image(row), frames.image(twin)[:, ::-1])
        if row["task"] == "image":
            assert row["box"] == list(mirror_box(twin["box"], 160)) and row["prompt"] == twin["prompt"]
            region = re.search(r"in the ([a-z ]+) of the image", answer_text(row)).group(1)
            assert region == region_name(row["box"], (160, 120))
            flipped_regions += region != re.search(r"in the ([a-z ]+) of the image", answer_text(twin)).group(1)
        else:
            geometry = BoxGeometry("resized_pixels", MODEL_SIZE, (160, 120))
            got = sorted((b.label, tuple(round(c) for c in b.box)) for b in parse_box(answer_text(row), geometry).boxes)
            want = sorted((b.label, tuple(round(c) for c in mirror_box(b.box, 160)))
                          for b in parse_box(answer_text(twin), geometry).boxes)
            assert [g[0] for g in got] == [w[0] for w in want]
            assert all(max(abs(a - b) for a, b in zip(g[1], w[1])) <= 2 for g, w in zip(got, want))
    assert flipped_regions > 0  # "left" became "right" where the box crossed sides
    frames.close()
    check_rows(rows)  # every mirrored answer reads back to its mirrored target
