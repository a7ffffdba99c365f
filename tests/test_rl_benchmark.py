"""Scoring grounding answers and the held-out comparison of models."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from scener1.rl.evaluate import listing_matches, score_detect_answer, score_image_answer, score_temporal_answer, summarise

IMAGE_ROW = {"task": "image", "query": "the lamp", "image_size": [320, 240], "box": [80.0, 60.0, 240.0, 180.0]}
TEMPORAL_ROW = {"task": "temporal", "query": "the lamp", "spans": [[2.0, 4.0]], "duration": 10.0}


def answer(box: list[int]) -> str:
    return f'<think>t</think><answer>{{"bbox_2d": {box}, "label": "lamp"}}</answer>'


def test_scores_by_hand():
    # model saw 256 x 192: [64, 48, 192, 144] is the target exactly; [0, 0, 120, 90] -> [0, 0, 150, 112.5]
    exact = score_image_answer(answer([64, 48, 192, 144]), IMAGE_ROW, (256, 192), "resized_pixels")
    assert exact.score == pytest.approx(1.0) and exact.hit and exact.format_ok
    corner = score_image_answer(answer([0, 0, 120, 90]), IMAGE_ROW, (256, 192), "resized_pixels")
    # overlap [80, 60, 150, 112.5] = 3675, union 16875 + 19200 - 3675; centre (75, 56.25) lies outside
    assert corner.score == pytest.approx(3675 / 32400) and not corner.hit
    shifted = score_image_answer(answer([100, 80, 228, 176]), IMAGE_ROW, (256, 192), "resized_pixels")
    # [125, 100, 285, 220] in original pixels: overlap 115 x 80, centre (205, 160) inside the target
    assert shifted.hit and shifted.score == pytest.approx(9200 / 29200)
    broken = score_image_answer("no box", IMAGE_ROW, (256, 192), "resized_pixels")
    assert broken.score == 0.0 and not broken.hit and broken.prediction is None
    span = score_temporal_answer("<think>t</think><answer>2.0s to 3.0s</answer>", TEMPORAL_ROW)
    assert span.score == pytest.approx(0.5) and span.hit
    metrics = summarise([exact, corner, shifted, broken, span])
    assert metrics["image/n"] == 4 and metrics["image/acc@0.5"] == pytest.approx(1 / 4)
    assert metrics["image/pointing"] == pytest.approx(2 / 4) and metrics["temporal/miou"] == pytest.approx(0.5)
    assert metrics["image/format"] == pytest.approx(3 / 4)


def test_absent_rows_are_scored_apart_from_the_others():
    absent_row = {**IMAGE_ROW, "box": None, "absent": True}
    none = "<think>I see no lamp in the image.</think><answer>[]</answer>"
    right = score_image_answer(none, absent_row, (256, 192), "resized_pixels")
    wrong = score_image_answer(answer([64, 48, 192, 144]), absent_row, (256, 192), "resized_pixels")
    exact = score_image_answer(answer([64, 48, 192, 144]), IMAGE_ROW, (256, 192), "resized_pixels")
    timid = score_image_answer(none, IMAGE_ROW, (256, 192), "resized_pixels")
    assert right.hit and right.score == 1.0 and right.format_ok and right.to_dict()["absent"]
    assert not wrong.hit and wrong.score == 0.0 and wrong.prediction is not None
    assert timid.said_absent and not timid.hit and timid.format_ok
    metrics = summarise([right, wrong, exact, timid])
    assert metrics["image/absent_n"] == 2 and metrics["image/absent_acc"] == pytest.approx(0.5)
    # the box figures are over the rows that show the target
    assert metrics["image/n"] == 2 and metrics["image/pointing"] == pytest.approx(0.5)
    assert metrics["image/said_absent"] == pytest.approx(0.5)


def listing(items: list[tuple[list[int], str]]) -> str:
    return "<answer>[" + ", ".join(f'{{"bbox_2d": {b}, "label": "{label}"}}' for b, label in items) + "]</answer>"


def test_listing_matches_one_to_one_by_label_and_centre():
    chair, table = ([0, 0, 100, 100], "chair"), ([100, 0, 200, 100], "table")
    assert listing_matches([chair, table], [chair, table]) == 2
    assert listing_matches([([10, 10, 50, 50], "table")], [chair]) == 0  # right place, wrong name
    assert listing_matches([([150, 0, 250, 100], "chair")], [chair]) == 0  # centre outside the box
    # two listed boxes on one chair count once; the other chair of the frame is missed
    assert listing_matches([chair, ([10, 10, 60, 60], "chair")], [chair, ([300, 0, 400, 100], "chair")]) == 1
    # the assignment takes the most matches, not the best single IoU: the big box may only serve the big chair
    big, small = ([0, 0, 200, 200], "chair"), ([40, 40, 60, 60], "chair")
    assert listing_matches([([0, 0, 200, 200], "chair"), ([45, 45, 55, 55], "chair")], [small, big]) == 2
    assert listing_matches([], [chair]) == 0 and listing_matches([chair], []) == 0


def test_detection_rows_score_precision_and_recall_over_all_rows():
    row = {"task": "detect", "query": "", "image_size": [320, 240], "model_image_size": [256, 192],
           "box_coordinates": "resized_pixels",
           "completion": [{"role": "assistant", "content": listing([([0, 0, 64, 64], "chair"),
                                                                    ([128, 0, 256, 96], "table")])}]}
    both = score_detect_answer(listing([([4, 4, 60, 60], "chair"), ([130, 2, 250, 90], "table")]), row, (256, 192),
                               "resized_pixels")
    assert both.counts == (2, 2, 2) and both.hit and both.format_ok and both.score == 1.0
    # the table listed as a lamp, and a sofa that is not there
    half = score_detect_answer(listing([([4, 4, 60, 60], "chair"), ([130, 2, 250, 90], "lamp"),
                                        ([0, 100, 50, 150], "sofa")]), row, (256, 192), "resized_pixels")
    assert half.counts == (1, 3, 2) and not half.hit and half.score == pytest.approx(2 / 5)
    broken = score_detect_answer("I see a chair", row, (256, 192), "resized_pixels")
    assert broken.counts == (0, 0, 2) and not broken.format_ok and broken.to_dict()["true"] == 2
    metrics = summarise([both, half, broken])
    assert metrics["detect/n"] == 3 and metrics["detect/precision"] == pytest.approx(3 / 5)
    assert metrics["detect/recall"] == pytest.approx(3 / 6) and metrics["detect/format"] == pytest.approx(2 / 3)


def test_blind_baseline_answers_the_whole_frame_and_the_whole_video():
    from scener1.rl.benchmark import blind_metrics, markdown_report

    big = {**IMAGE_ROW, "box": [0.0, 0.0, 320.0, 200.0]}  # covers 5/6 of the frame, and its centre
    metrics = blind_metrics([IMAGE_ROW, big, TEMPORAL_ROW, {"task": "vqa"}])
    # the whole frame [0, 0, 320, 240]: IoU 19200 / 76800 with the lamp, 64000 / 76800 with the big box
    assert metrics["image/n"] == 2 and metrics["image/miou"] == pytest.approx((0.25 + 64000 / 76800) / 2)
    assert metrics["image/pointing"] == pytest.approx(1.0)  # the frame's centre lies in both
    assert metrics["image/acc@0.5"] == pytest.approx(0.5)
    assert metrics["temporal/miou"] == pytest.approx(0.2)  # [0, 10] s against [2, 4] s
    table = markdown_report({"m": {"temporal/miou": 0.3}}, {"scenes": 1}, {"blind": metrics})
    assert "| metric | target | m | *blind* |" in table and "| temporal/miou | >= 0.5 | 0.300 | 0.200 |" in table


def test_best_constant_span_is_fitted_in_fractions_of_each_video():
    from scener1.rl.benchmark import constant_span_metrics, markdown_report

    rows = [TEMPORAL_ROW,  # [2, 4] of 10 s
            {**TEMPORAL_ROW, "spans": [[7.0, 9.0], [2.0, 4.0]]},  # any one of several intervals is right
            {**TEMPORAL_ROW, "spans": [[4.0, 8.0]], "duration": 20.0},  # the same fifth of a longer video
            {"task": "image"}]
    metrics = constant_span_metrics(rows)
    assert metrics["temporal/n"] == 3 and metrics["temporal/miou"] == pytest.approx(1.0)
    assert (metrics["temporal/constant_start"], metrics["temporal/constant_end"]) == (0.2, 0.4)
    moved = constant_span_metrics([TEMPORAL_ROW, {**TEMPORAL_ROW, "spans": [[6.0, 8.0]]}])
    assert moved["temporal/miou"] == pytest.approx(0.5)  # no one span fits both: one of them exactly is best
    assert constant_span_metrics([{"task": "image"}]) == {}
    table = markdown_report({"m": {"temporal/miou": 0.3, "image/miou": 0.2}}, {"scenes": 1}, {"best constant span": metrics})
    assert "| temporal/miou | >= 0.5 | 0.300 | 1.000 |" in table and "| image/miou |  | 0.200 | - |" in table


def test_chosen_frame_check_says_where_a_query_was_lost():
    from scener1.rl.benchmark import chosen_frame_check
    from scener1.rl.datasets import Visible

    views = (Visible(3, 500, (10, 20, 50, 60)), Visible(7, 90, (100, 0, 120, 30)))
    assert chosen_frame_check(views, 3, (20.0, 30.0, 40.0, 50.0)) == (True, True)  # centre (30, 40)
    assert chosen_frame_check(views, 3, (100.0, 0.0, 120.0, 30.0)) == (True, False)  # boxed object 7 instead
    assert chosen_frame_check(views, 3, (0.0, 0.0, 100.0, 120.0)) == (True, False)  # centre (50, 60): edges exclusive
    assert chosen_frame_check(views, 5, (20.0, 30.0, 40.0, 50.0)) == (False, False)  # not on this frame
    assert chosen_frame_check(views, 3, None) == (True, False)  # no box of its own (whole-frame fallback)


def test_candidate_checks_bound_what_a_better_vote_could_reach():
    from scener1.rl.benchmark import candidate_checks
    from scener1.rl.datasets import Visible

    truth = [(Visible(3, 500, (10, 20, 50, 60)),), (Visible(7, 90, (100, 0, 120, 30)),), ()]
    on_target, on_other = (20.0, 30.0, 40.0, 50.0), (100.0, 0.0, 120.0, 30.0)
    # one of three frames shows the target, and its candidate boxed it
    assert candidate_checks(truth, 3, [(0, on_target), (1, on_other), (2, on_other)]) == (1 / 3, True)
    # the frame shows it but the box lies elsewhere; a candidate without a box counts as a miss
    assert candidate_checks(truth, 3, [(0, on_other), (0, None), (1, on_other)]) == (2 / 3, False)
    assert candidate_checks(truth, 7, [(1, on_other)]) == (1.0, True)
    assert candidate_checks(truth, 3, []) == (0.0, False)


def test_heldout_rows_add_absent_rows_only_for_models_asked_for_them(tmp_path):
    from scener1.models.tiny import build_tiny_vlm
    from scener1.prompts import write_model_prompt_info
    from scener1.rl import benchmark
    from scener1.synth import generate_scene

    scene = generate_scene(tmp_path / "scenes", seed=9, frames=24, size=(160, 120), fps=8.0)
    model = build_tiny_vlm(tmp_path / "m", "qwen3_vl", seed=1)
    settings = benchmark.HeldoutSettings(image_rows=6, temporal_rows=2, absent_rows=3, detect_rows=0)
    plain = benchmark.heldout_rows([scene], model, settings)
    assert not any(r["absent"] for r in plain if r["task"] == "image")
    write_model_prompt_info(model, "v2", "resized_pixels")
    rows = benchmark.heldout_rows([scene], model, settings)
    absent = [r for r in rows if r["task"] == "image" and r["absent"]]
    assert len(absent) == 3 and all(r["box"] is None for r in absent)
    # the other rows are the same items (their prompts now in v2's wording)
    assert [(r["query"], r["positions"]) for r in rows[:8]] == [(r["query"], r["positions"]) for r in plain]
    # listing rows come last and leave the other items as they were
    listed = benchmark.heldout_rows([scene], model, replace(settings, detect_rows=4))
    assert [r["task"] for r in listed[len(rows):]] == ["detect"] * 4 and listed[: len(rows)] == rows
    table = benchmark.markdown_report({"m": {"image/absent_acc": 0.5}}, {"absent rows": 3})
    assert "| image/absent_acc |  | 0.500 |" in table and "absent rows 3" in table


@pytest.mark.slow
def test_models_are_compared_on_the_same_items_and_not_run_twice(tmp_path, monkeypatch):
    from scener1.models.tiny import build_tiny_vlm
    from scener1.rl import benchmark
    from scener1.synth import generate_scene

    scene = generate_scene(tmp_path / "scenes", seed=9, frames=24, size=(160, 120), fps=8.0)
    models = {"a": build_tiny_vlm(tmp_path / "a", "qwen3_vl", seed=1), "b": build_tiny_vlm(tmp_path / "b", "qwen3_vl",
                                                                                            seed=2)}
    settings = benchmark.HeldoutSettings(image_rows=3, temporal_rows=1, pipeline_queries=1, batch_size=4,
                                         max_new_tokens=8, pipeline_overrides=("lifting.max_frames=4",),
                                         reliance_rows=2, detect_rows=2, detect_max_new_tokens=8)
    report = benchmark.compare_models(models, [scene], settings, tmp_path / "eval", progress=False)
    assert set(report["results"]) == {"a", "b"} and report["counts"]["image rows"] == 3
    assert report["baselines"]["blind"]["image/n"] == 3 and "*blind*" in (tmp_path / "eval" / "report.md").read_text()
    first = [json.loads(x) for x in (tmp_path / "eval" / "predictions_a.jsonl").read_text().splitlines()]
    second = [json.loads(x) for x in (tmp_path / "eval" / "predictions_b.jsonl").read_text().splitlines()]
    assert [p["query"] for p in first] == [p["query"] for p in second] and len(first) == 7
    # the listing rows: every object of the frame counted, the model's boxes matched against them
    listed = [p for p in first if p["task"] == "detect"]
    assert len(listed) == 2 and all(p["true"] >= 1 for p in listed) and report["counts"]["detection rows"] == 2
    assert report["results"]["a"]["detect/recall"] == sum(p["matched"] for p in listed) / sum(p["true"] for p in listed)
    assert first[-1]["task"] == "pipeline" and "iou" in first[-1]
    # a generated scene has per-frame truth: the pipeline's chosen frame is checked against it
    assert isinstance(first[-1]["target_seen"], bool) and isinstance(first[-1]["pointing"], bool)
    assert report["results"]["a"]["3d/target_seen"] == float(first[-1]["target_seen"])
    # ... and so is every frame its image stage asked: the chosen one is among them
    assert 0 <= first[-1]["candidates_seen"] <= 1
    assert report["results"]["a"]["3d/any_pointing"] >= float(first[-1]["pointing"])
    assert "| image/acc@0.5 | >= 0.5 |" in (tmp_path / "eval" / "report.md").read_text()
    assert report["results"]["a"]["reliance/n"] == 2 and "| reliance/grey_pointing |" in (
        tmp_path / "eval" / "report.md").read_text()

    monkeypatch.setattr(benchmark, "evaluate_model", lambda *a, **k: pytest.fail("a finished model was run again"))
    again = benchmark.compare_models(models, [scene], settings, tmp_path / "eval", progress=False)
    assert again["results"] == report["results"]


class _BoxingModel:
    """A stand-in VLM: ``looks`` boxes the frame's red pixels; otherwise the box comes from the query alone."""

    batch_size, box_coordinates = 4, "resized_pixels"

    def __init__(self, looks: bool):
        self.looks = looks

    def generate(self, requests, settings, output_scores=False):
        from scener1.models.vlm import Generation

        out = []
        for request in requests:
            image = request.images[0]
            red = (image[..., 0] > 200) & (image[..., 1] < 50)
            if self.looks and red.any():
                ys, xs = np.nonzero(red)
                box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            else:  # the query's number says where
                x = int(request.messages[-1]["content"][-1]["text"].split()[-1])
                box = [x, 20, x + 30, 40]
            out.append(Generation(answer(box), 0.0, 1, ((image.shape[1], image.shape[0]),)))
        return out


class _Frames:
    def __init__(self, images):
        self.images = images

    def image(self, row):
        return self.images[row["id"]]


def test_image_reliance_tells_a_model_that_looks_from_one_that_does_not():
    from scener1.rl.evaluate import AlteredFrames, image_reliance, mirrored_row

    rng = np.random.default_rng(0)
    images, rows = [], []
    for i in range(12):
        image = np.full((60, 200, 3), 90, np.uint8)
        x = int(rng.integers(0, 160))
        image[20:40, x : x + 30] = (230, 20, 20)
        images.append(image)
        text = f"the red box {x}"  # the query alone gives the place on the frame as it is
        rows.append({"id": i, "task": "image", "query": text, "image_size": [200, 60], "box": [x, 20, x + 30, 40],
                     "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]})
    frames = _Frames(images)
    assert mirrored_row(rows[0])["box"] == [200 - rows[0]["box"][2], 20, 200 - rows[0]["box"][0], 40]
    assert AlteredFrames(frames, "mirror").image(rows[0])[25, 199 - rows[0]["box"][0]].tolist() == [230, 20, 20]
    with pytest.raises(ValueError):
        AlteredFrames(frames, "blur")

    looking = image_reliance(_BoxingModel(True), rows, frames, progress=False)
    assert looking["reliance/pointing"] == 1.0 and looking["reliance/mirror_pointing"] == 1.0
    assert looking["reliance/mirror_follow"] > 0.99
    blind = image_reliance(_BoxingModel(False), rows, frames, progress=False)
    assert blind["reliance/pointing"] > 0.9 and blind["reliance/grey_pointing"] == blind["reliance/pointing"]
    assert blind["reliance/mirror_follow"] < -0.9 and blind["reliance/mirror_pointing"] < 0.5
    # a looking model finds nothing on a grey frame and falls back to its prior
    assert looking["reliance/grey_pointing"] == blind["reliance/grey_pointing"]
