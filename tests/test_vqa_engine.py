"""The VLM head (recorded answers through a tiny Qwen-VL's processor), answer modes, ``scener1 vqa`` and the
``vqa`` predictor of ``scener1 eval``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scener1.data import open_scene
from scener1.eval.cli import main as eval_main
from scener1.models import RecordedVLM, load_vlm
from scener1.models.tiny import build_tiny_vlm
from scener1.synth import generate_scene
from scener1.vqa import Question, VQAEngine, VQASettings, read_answer, route
from scener1.vqa.cli import main as vqa_main
from scener1.vqa.engine import oracle_factory
from scener1.vqa.vlm_head import VLMAnswerer

SEED = 23
#: cheaper grounding for the command-line runs (fewer lifts and frames); also exercises vqa.* options
FAST = ["vqa.grounding.lifts_per_instance=1", "vqa.grounding.max_lifts=4", "vqa.lifting.max_frames=20"]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    return generate_scene(tmp_path_factory.mktemp("synth"), SEED, frames=40, size=(160, 120), fps=10.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_vlm(build_tiny_vlm(tmp_path_factory.mktemp("tiny") / "qwen2_5_vl", "qwen2_5_vl"))


def rows(scene_dir: Path) -> list[dict]:
    return json.loads((scene_dir / "gt" / "vsibench.json").read_text())


def first(scene_dir: Path, qtype: str) -> dict:
    return next(r for r in rows(scene_dir) if r["question_type"] == qtype)


def engine_with(tiny, answers, mode: str) -> tuple[VQAEngine, RecordedVLM]:
    settings = VQASettings(mode=mode)
    vlm = RecordedVLM(tiny, answers)
    return VQAEngine(oracle_factory(settings), VLMAnswerer(vlm, settings.vlm), settings), vlm


# ---------------------------------------------------------------------------------------------- reading answers
def test_reading_model_answers_never_raises():
    choice = route("Is the lamp to my left or right?", ["A. left", "B. right"])
    assert read_answer("<think>it is on my right</think><answer>B</answer>", choice).value == "B"
    assert read_answer("<think>.</think><answer>(b) right</answer>", choice).value == "B"
    assert read_answer("<think>.</think><answer>right</answer>", choice).value == "B"  # the option's text
    assert read_answer("<think>.</think><answer>E</answer>", choice).value is None
    numeric = route("How many chair(s) are in this room?")
    assert read_answer("<think>.</think><answer>2.5 m</answer>", numeric).value == "2.5"
    assert read_answer("<think>.</think><answer>three</answer>", numeric).value == "3"
    assert read_answer("I count 4 chairs", numeric).value == "4"  # no tags: read from the text
    bad = read_answer("<think>.</think><answer>many</answer>", numeric)
    assert bad.value is None and "no number" in bad.reason
    free = route("What color is the sofa?")
    good = read_answer("<think>it looks grey</think><answer>Grey fabric.</answer>", free)
    assert good.value == "Grey fabric" and good.format_ok and good.think == "it looks grey"
    assert read_answer("<think>.</think><answer></answer>", free).value is None
    assert read_answer(None, free).value is None  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- modes
def test_video_only_answers_with_no_measurement_in_the_prompt(scene_dir, tiny):
    mc, num = first(scene_dir, "object_rel_direction_easy"), first(scene_dir, "object_counting")
    engine, vlm = engine_with(tiny, ["<think>looking</think><answer>B</answer>", "<think>one</think><answer>4</answer>"],
                              "vlm")
    with open_scene(scene_dir) as scene:
        results = engine.answer_many(scene, [Question(mc["question"], tuple(mc["options"])), Question(num["question"])])
    assert [r.answer for r in results] == ["B", "4"] and {r.source for r in results} == {"vlm"}
    assert all(r.head is None for r in results)  # nothing was grounded or measured
    assert "Options:\nA." in vlm.prompts_seen[0] and "Measurements" not in vlm.prompts_seen[0]
    assert "<|video_pad|>" in vlm.prompts_seen[0] and num["question"] in vlm.prompts_seen[1]
    trace = results[0].to_json()["vlm"]["trace"]
    assert trace["stage"] == "vqa_vlm" and trace["raw_output"] == ["<think>looking</think><answer>B</answer>"]


def test_measured_facts_reach_the_vlm(scene_dir, tiny):
    size = first(scene_dir, "object_size_estimation")
    engine, vlm = engine_with(tiny, ["<think>the reconstruction says so</think><answer>77</answer>"], "vlm_facts")
    with open_scene(scene_dir) as scene:
        res = engine.answer(scene, size["question"])
    assert res.answer == "77" and res.source == "vlm"
    prompt = vlm.prompts_seen[0]
    assert "Measurements from the 3D reconstruction" in prompt
    assert f"longest side of the {res.routed.roles['object'].category}: {res.head.answer} cm" in prompt
    assert res.to_json()["vlm"]["with_facts"] is True


def test_auto_mode_uses_the_vlm_for_free_form_questions_and_failed_heads(scene_dir, tiny):
    room = first(scene_dir, "room_size_estimation")
    engine, vlm = engine_with(tiny, ["<think>.</think><answer>wooden</answer>", "<think>.</think><answer>120</answer>",
                                     "no tags at all"], "auto")
    questions = [Question("What is the bed made of?"), Question(room["question"]),
                 Question("What is the length of the longest dimension (length, width, or height) of the piano, "
                          "measured in centimeters?"),
                 Question("Where is the piano?")]
    with open_scene(scene_dir) as scene:
        free, measured, fallback, garbled = engine.answer_many(scene, questions)
    assert (free.answer, free.source, free.status) == ("wooden", "vlm", "ok")
    assert measured.source == "geometry" and measured.vlm is None and float(measured.answer) > 0
    assert (fallback.answer, fallback.source, fallback.status) == ("120", "vlm", "fallback")
    assert "piano" in fallback.notes[0] and "piano: not found" in vlm.prompts_seen[1]
    assert garbled.answer == "no tags at all" and not garbled.vlm.format_ok  # a phrase: read from the text
    assert len(vlm.prompts_seen) == 3  # the measured question never reached the model


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_one_question_and_a_resumable_batch(scene_dir, tmp_path, capsys):
    room = first(scene_dir, "room_size_estimation")
    out = tmp_path / "one"
    assert vqa_main(["--scene", str(scene_dir), "--question", room["question"], "--grounder", "oracle",
                     "--mode", "geometry", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["type"] == "room_size_estimation" and float(result["answer"]) > 0
    assert "answer" in capsys.readouterr().out

    direction = first(scene_dir, "object_rel_direction_easy")
    batch = [{"id": "room", "question": room["question"]},
             {"id": "dir", "question": direction["question"], "options": direction["options"]},
             {"id": "count", "question": first(scene_dir, "object_counting")["question"]}]
    qfile = tmp_path / "questions.jsonl"
    qfile.write_text("".join(json.dumps(b) + "\n" for b in batch))
    args = ["--scene", str(scene_dir), "--questions", str(qfile), "--grounder", "oracle", "--mode", "geometry",
            "--out", str(tmp_path / "batch"), "--quiet", *FAST]
    assert vqa_main(args) == 0
    answers = tmp_path / "batch" / "answers.jsonl"
    lines = answers.read_text().splitlines(keepends=True)
    assert [json.loads(x)["id"] for x in lines] == ["room", "dir", "count"]
    # a run killed while writing leaves a partial last line: only that question is answered again
    answers.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    assert vqa_main(args) == 0
    again = answers.read_text().splitlines()
    assert [json.loads(x)["id"] for x in again] == ["room", "dir", "count"]
    assert json.loads(again[2])["answer"] == json.loads(lines[2])["answer"]
    assert "1 questions answered (2 were already done)" in capsys.readouterr().err
    assert vqa_main(args) == 0 and "already answered" in capsys.readouterr().out


def test_cli_rejects_bad_combinations(scene_dir, tmp_path, capsys):
    base = ["--scene", str(scene_dir), "--out", str(tmp_path / "x")]
    qfile = tmp_path / "q.txt"
    qfile.write_text("How many beds are in this room?\n")
    assert vqa_main(base + ["--questions", str(qfile), "--options", "A. x"]) == 2
    assert "go with --question" in capsys.readouterr().err
    assert vqa_main(base + ["--question", "How many beds are in this room?", "--oracle-boxes", "b.npy"]) == 2
    assert "go with --grounder oracle" in capsys.readouterr().err
    assert vqa_main(base + ["--question", "  ", "--grounder", "oracle", "--mode", "geometry"]) == 2
    assert "empty" in capsys.readouterr().err
    assert vqa_main(base + ["--question", "How many beds?", "--grounder", "oracle", "vqa.heads.size_from_views=max"]) == 2
    assert "size_from_views" in capsys.readouterr().err
    # a wrong scene is named before any model is looked for (the default model is not shipped here)
    assert vqa_main(["--scene", str(tmp_path / "noscene"), "--out", str(tmp_path / "x"), "--question", "How many beds?",
                     "--model", str(tmp_path / "nomodel")]) == 2
    assert "scene path does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- scener1 eval
def vsi_parquet(scene_dir: Path, path: Path, types: tuple[str, ...]) -> pd.DataFrame:
    picked = [r for r in rows(scene_dir) if r["question_type"] in types]
    df = pd.DataFrame({"id": list(range(len(picked))), "dataset": "synth", "scene_name": scene_dir.name,
                       "question_type": [r["question_type"] for r in picked],
                       "question": [r["question"] for r in picked], "ground_truth": [r["ground_truth"] for r in picked],
                       "options": [r["options"] or None for r in picked]})
    df.to_parquet(path)
    return df


def independent_score(df: pd.DataFrame, predictions: dict[str, str]) -> dict[str, float]:
    per_type = {}
    for qtype, group in df.groupby("question_type"):
        scores = []
        for row in group.itertuples():
            word = predictions[str(row.id)].strip().split(" ")[0].rstrip(".")
            if row.options is None:
                gt = float(row.ground_truth)
                scores.append(np.mean([abs(float(word) - gt) / gt <= 1 - t for t in np.linspace(0.5, 0.95, 10)]))
            else:
                scores.append(float(word.lower() == row.ground_truth.lower()))
        per_type[qtype] = 100 * float(np.mean(scores))
    return per_type


def test_eval_runs_the_vqa_predictor_and_scores_vsibench(scene_dir, tmp_path):
    df = vsi_parquet(scene_dir, tmp_path / "vsi.parquet", ("room_size_estimation", "object_rel_direction_easy",
                                                           "object_counting"))
    out = tmp_path / "run"
    code = eval_main(["vsibench", "--annotations", str(tmp_path / "vsi.parquet"), "--run", "--predictor", "vqa",
                      "--predictor-arg", "grounder=oracle", "--predictor-arg", "mode=geometry",
                      *[a for opt in FAST for a in ("--predictor-arg", opt)],
                      "--scans", str(scene_dir.parent), "--out", str(out), "--quiet"])
    assert code == 0
    records = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(df) and all("error" not in r for r in records)
    assert all(r["source"] == "geometry" and r["type"] == df.question_type[int(r["id"])] for r in records)
    results = json.loads((out / "results.json").read_text())
    expected = independent_score(df, {r["id"]: r["prediction"] for r in records})
    for qtype, value in expected.items():
        key = "object_rel_direction" if qtype.startswith("object_rel_direction") else qtype
        assert next(iter(results["metrics"][key].values())) == pytest.approx(value)


def test_eval_scores_prediction_files_in_vsibench_format(scene_dir, tmp_path):
    df = vsi_parquet(scene_dir, tmp_path / "vsi.parquet", ("object_counting", "object_rel_direction_easy"))
    rng = np.random.default_rng(0)
    preds = {}
    for row in df.itertuples():
        if row.options is None:
            preds[str(row.id)] = f"{float(row.ground_truth) * rng.uniform(0.6, 1.4):.3f} objects"
        else:
            preds[str(row.id)] = rng.choice(["A", "B"]) + ". because"
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps({"id": int(k), "prediction": v}) + "\n" for k, v in preds.items()))
    assert eval_main(["vsibench", "--annotations", str(tmp_path / "vsi.parquet"), "--predictions", str(path),
                      "--out", str(tmp_path / "scored")]) == 0
    results = json.loads((tmp_path / "scored" / "results.json").read_text())
    expected = independent_score(df, preds)
    assert results["metrics"]["object_counting"]["MRA"] == pytest.approx(expected["object_counting"])
    assert results["metrics"]["object_rel_direction"]["acc"] == pytest.approx(expected["object_rel_direction_easy"])


# ---------------------------------------------------------------------------------------------- the VLM grounder
def test_pipeline_grounder_lifts_the_grounding_models_boxes(scene_dir, tiny):
    """The VLM detector: the temporal and image stages' boxes (recorded answers, mapped from the model's resized
    image) go through the same lifting as the oracle's and land on the object."""
    from scener1.lifting import Box3D, aabb_iou
    from scener1.pipeline import Pipeline
    from scener1.temporal import TemporalSettings
    from scener1.tracking import build_tracker
    from scener1.vqa import (
        GroundingSettings,
        InstanceGrounder,
        PipelineDetector,
        mention,
    )
    from scener1.vqa.engine import default_lift_config

    objects = json.loads((scene_dir / "gt" / "objects.json").read_text())["objects"]
    frames_gt = {f["frame"]: {o["object_id"]: o["bbox"] for o in f["objects"]}
                 for f in json.loads((scene_dir / "gt" / "frames.json").read_text())["frames"]}
    counts = {}
    for o in objects:
        counts[o["category"]] = counts.get(o["category"], 0) + 1
    target = max((o for o in objects if counts[o["category"]] == 1), key=lambda o: o["visible_frames"])
    span = "<think>seen throughout</think><answer>0.0s to 3.9s</answer>"
    every = TemporalSettings(fps=10.0, max_frames=40)
    with open_scene(scene_dir) as scene:
        probe = Pipeline(RecordedVLM(tiny, [span]), build_tracker("geometric"), temporal=every)
        positions = probe.temporal.ground(scene, target["category"]).positions
        frames = [f for f, _ in probe.image.select_frames(scene, positions, {})]
        answers, boxed = [span], 0
        for f in frames:
            box = frames_gt[f.index].get(target["object_id"])
            if box is None:
                answers.append("<think>not here</think><answer>none</answer>")
                continue
            mw, mh = tiny.model_image_size(f.color.shape[1], f.color.shape[0])
            sx, sy = mw / f.color.shape[1], mh / f.color.shape[0]
            model_box = [round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)]
            answers.append(f'<think>there</think><answer>{{"bbox_2d": {model_box}, "label": "x"}}</answer>')
            boxed += 1
        pipe = Pipeline(RecordedVLM(tiny, answers), build_tracker("geometric"), temporal=every)
        by_name = GroundingSettings(lifts_per_instance=1, listing="off")
        grounder = InstanceGrounder(PipelineDetector(pipe, by_name), default_lift_config(), pipe.tracker, by_name)
        grounded = grounder.ground(scene, mention(target["category"]))
    assert boxed >= 2 and grounded.detections == boxed
    assert grounded.found and all(r.detection.source == "vlm" for r in grounded.lifts)
    truth = Box3D.from_min_max(np.array(target["aabb"]["min"]), np.array(target["aabb"]["max"]))
    assert aabb_iou(grounded.main().box_3d, truth) > 0.3


def test_pipeline_grounder_counts_from_the_models_object_listing(scene_dir, tiny):
    """``listing=every``: the model is asked once per scene to list every object (the detection
    prompt it is trained on); the boxes labelled with the category, whatever their case or plural, are lifted and
    de-duplicated into one instance per object; another category reuses the same listing."""
    from scener1.pipeline import Pipeline
    from scener1.prompts import DETECTION_PROMPT
    from scener1.tracking import build_tracker
    from scener1.vqa import GroundingSettings, InstanceGrounder, PipelineDetector, mention
    from scener1.vqa.engine import default_lift_config
    from scener1.vqa.grounding import label_key

    objects = {o["object_id"]: o for o in json.loads((scene_dir / "gt" / "objects.json").read_text())["objects"]}
    frames_gt = {f["frame"]: f["objects"] for f in json.loads((scene_dir / "gt" / "frames.json").read_text())["frames"]}
    settings = GroundingSettings(listing="every", frames_every_instance=6, max_lifts=12)
    with open_scene(scene_dir) as scene:
        probe = Pipeline(RecordedVLM(tiny, []), build_tracker("geometric"))
        frames = [f for f, _ in probe.image.select_frames(scene, np.flatnonzero(scene.valid_poses), {}, 6)]
        answers, seen = [], {}
        for i, f in enumerate(frames):
            mw, mh = tiny.model_image_size(f.color.shape[1], f.color.shape[0])
            sx, sy = mw / f.color.shape[1], mh / f.color.shape[0]
            items = []
            for o in frames_gt[f.index]:
                if o["pixels"] < 150:
                    continue
                category = objects[o["object_id"]]["category"]
                seen.setdefault(category, set()).add(o["object_id"])
                label = category.upper() + "s" if i % 2 else category  # labels are compared loosely
                b = o["bbox"]
                items.append({"bbox_2d": [round(b[0] * sx), round(b[1] * sy), round(b[2] * sx), round(b[3] * sy)],
                              "label": label})
            answers.append(f"<think>.</think><answer>{json.dumps(items)}</answer>")
        vlm = RecordedVLM(tiny, answers)
        pipe = Pipeline(vlm, build_tracker("geometric"))
        grounder = InstanceGrounder(PipelineDetector(pipe, settings), default_lift_config(), pipe.tracker, settings)
        # the category seen as the most distinct objects, and another one
        first_cat, second_cat = sorted(seen, key=lambda c: (-len(seen[c]), c))[:2]
        first = grounder.ground(scene, mention(first_cat), every_instance=True)
        second = grounder.ground(scene, mention(second_cat), every_instance=True)
        assert len(vlm.prompts_seen) == len(frames) and all(DETECTION_PROMPT in p for p in vlm.prompts_seen)
        assert not vlm.answers  # every listing was read, and the second category asked nothing more
        # a category the model never listed is asked for by name, as with listing=off
        vlm.answers = [("<think>.</think><answer>none</answer>", -0.1)] * 6
        unlisted = grounder.ground(scene, mention("giraffe"), every_instance=True)
        assert not unlisted.found and not vlm.answers
        assert all("every giraffe" in p and DETECTION_PROMPT not in p for p in vlm.prompts_seen[len(frames):])
        # listing=all: one object named by its category alone comes from the listing too; with a colour it is
        # asked by name (the temporal stage first), as the listing's labels carry no colour
        one = PipelineDetector(Pipeline(RecordedVLM(tiny, answers), build_tracker("geometric")),
                               GroundingSettings(listing="all", frames_every_instance=6))
        boxes = one.detect(scene, mention(f"the {first_cat}"), every_instance=False)
        assert boxes and {label_key(b.label) for b in boxes} == {first_cat} and not one.pipeline.vlm.answers
        one.pipeline.vlm.answers = [("<think>.</think><answer>0.0s to 1.0s</answer>", -0.1)] + [
            ("<think>.</think><answer>none</answer>", -0.1)] * one.pipeline.image.settings.num_candidates
        assert one.detect(scene, mention(f"the red {first_cat}"), every_instance=False) == []
        assert "red" in one.pipeline.vlm.prompts_seen[len(frames)] and not one.pipeline.vlm.answers
    assert all(d.detection.label.lower().rstrip("s") == first_cat for d in first.lifts)
    assert len(seen[first_cat]) >= 2 and len(first.instances) == len(seen[first_cat])
    assert len(second.instances) == len(seen[second_cat])
    with pytest.raises(Exception, match="unknown listing"):
        GroundingSettings(listing="ask nicely")
