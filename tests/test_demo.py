import json

import pytest

from scener1.demo import (
    DEMO_MODEL,
    DEMO_QUERIES,
    DEMO_SCENE,
    demo_objects,
    demo_question,
    described_object,
    heldout_line,
    run_demo,
)


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    summary = run_demo(tmp_path / "demo", render=False)
    printed = capsys.readouterr().out
    assert "[5/5]" in printed and "3D IoU with ground truth" in printed
    assert (tmp_path / "demo" / "scene.ply").is_file()
    assert json.loads((tmp_path / "demo" / "summary.json").read_text()) == summary
    assert len(summary["objects"]) == 3
    assert len({o["category"] for o in summary["objects"]}) == 3
    # the demo's objects are big furniture seen whole: lifting them must come close to the truth
    assert all(o["status"] == "ok" and o["iou"] > 0.5 for o in summary["objects"]), summary["objects"]
    # the counting question is answered from the lifted objects, and says who found them
    vqa = summary["vqa"]
    assert vqa["grounder"] == ("pipeline" if (DEMO_MODEL / "config.json").is_file() else "oracle")
    assert (tmp_path / "demo" / "vqa.json").is_file() and vqa["question"] in printed
    if summary["queries"]:  # a shipped model: every query is checked against the object it describes
        assert [q["query"] for q in summary["queries"]] == list(DEMO_QUERIES)
        assert all(q["object_id"] is not None and 0 <= q["iou"] <= 1 for q in summary["queries"])
        assert "3D IoU with the described" in printed
        # each answer says why: where the window came from and how the box was chosen
        assert printed.count("why this box:") == len(DEMO_QUERIES) and "cell heads see a" in printed
    if vqa["grounder"] == "oracle":  # ground-truth 2D prompts: the lifted, de-duplicated count must be right
        assert int(vqa["answer"]) == vqa["truth"], vqa


def test_demo_question_asks_about_the_most_repeated_category(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "objects.json").write_text(json.dumps({"objects": [
        {"category": "lamp"}, {"category": "chair"}, {"category": "chair"}, {"category": "table"}]}))
    assert demo_question(tmp_path / "gt") == ("How many chair(s) are in this room?", 2)


def test_demo_objects_prefer_whole_views(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "objects.json").write_text(json.dumps({"objects": [
        {"object_id": 0, "category": "sofa", "color": "red"},
        {"object_id": 1, "category": "sofa", "color": "blue"},
        {"object_id": 2, "category": "lamp", "color": "white"},
    ]}))
    (gt / "frames.json").write_text(json.dumps({"frames": [
        {"frame": 0, "objects": [{"object_id": 0, "pixels": 900, "bbox": [0, 10, 50, 60]},  # cut by the border
                                 {"object_id": 2, "pixels": 50, "bbox": [60, 5, 70, 30]}]},
        {"frame": 1, "objects": [{"object_id": 0, "pixels": 400, "bbox": [5, 10, 50, 60]},
                                 {"object_id": 1, "pixels": 300, "bbox": [20, 20, 60, 70]}]},
    ]}))
    chosen = demo_objects(gt, (100, 80))
    assert [(o["object_id"], o["frame"]) for o in chosen] == [(0, 1), (2, 0)]  # one sofa only, whole view


def test_described_object_reads_descriptions_and_unique_names(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "objects.json").write_text(json.dumps({"objects": [
        {"object_id": 0, "category": "chair", "color": "red"},
        {"object_id": 1, "category": "chair", "color": "red"},
        {"object_id": 2, "category": "lamp", "color": "blue"},
    ]}))
    (gt / "scanrefer.json").write_text(json.dumps([
        {"object_id": "1", "description": "the red chair next to the lamp."}]))
    assert described_object(gt, "The red chair  next to the lamp")["object_id"] == 1
    assert described_object(gt, "the blue lamp")["object_id"] == 2
    assert described_object(gt, "the red chair") is None  # two of them: no single truth
    assert described_object(gt, "the sofa") is None


def test_demo_queries_each_name_one_object_of_the_demo_scene():
    from scener1.synth import ensure_demo_scene

    ensure_demo_scene(DEMO_SCENE)
    found = [described_object(DEMO_SCENE / "gt", q) for q in DEMO_QUERIES]
    assert all(found) and len({o["object_id"] for o in found}) == len(DEMO_QUERIES)


def test_heldout_line_reports_the_final_model_against_its_targets(tmp_path):
    report = {"results": {"sft": {"image/acc@0.5": 0.1}, "sft+grpo": {"image/acc@0.5": 0.25, "3d/acc@0.25": 0.125}},
              "targets": {"image/acc@0.5": 0.5, "3d/acc@0.25": 0.6, "temporal/miou": 0.5, "temporal+heads/miou": 0.5}}
    (tmp_path / "training_summary.json").write_text(json.dumps({"heldout": report}))
    assert heldout_line(tmp_path) == ("held-out scores of this model: image Acc@0.5 0.25 (target 0.5), "
                                      "3D Acc@0.25 0.12 (target 0.6)")
    report["results"]["sft+grpo"].update({"temporal/miou": 0.15, "temporal+heads/miou": 0.45})
    (tmp_path / "training_summary.json").write_text(json.dumps({"heldout": report}))
    assert "temporal mean IoU 0.45 (target 0.5)" in heldout_line(tmp_path)  # the temporal stage's, with the heads
    (tmp_path / "training_summary.json").write_text("{not json")
    assert heldout_line(tmp_path) is None  # the demo goes on without the line
    assert heldout_line(tmp_path / "missing") is None
