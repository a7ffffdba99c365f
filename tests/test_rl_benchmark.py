"""Scoring grounding answers and the held-out comparison of models."""

from __future__ import annotations

import json

import pytest

from scener1.rl.evaluate import score_image_answer, score_temporal_answer, summarise

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


@pytest.mark.slow
def test_models_are_compared_on_the_same_items_and_not_run_twice(tmp_path, monkeypatch):
    from scener1.models.tiny import build_tiny_vlm
    from scener1.rl import benchmark
    from scener1.synth import generate_scene

    scene = generate_scene(tmp_path / "scenes", seed=9, frames=24, size=(160, 120), fps=8.0)
    models = {"a": build_tiny_vlm(tmp_path / "a", "qwen3_vl", seed=1), "b": build_tiny_vlm(tmp_path / "b", "qwen3_vl",
                                                                                            seed=2)}
    settings = benchmark.HeldoutSettings(image_rows=3, temporal_rows=1, pipeline_queries=1, batch_size=4,
                                         max_new_tokens=8, pipeline_overrides=("lifting.max_frames=4",))
    report = benchmark.compare_models(models, [scene], settings, tmp_path / "eval", progress=False)
    assert set(report["results"]) == {"a", "b"} and report["counts"]["image rows"] == 3
    first = [json.loads(x) for x in (tmp_path / "eval" / "predictions_a.jsonl").read_text().splitlines()]
    second = [json.loads(x) for x in (tmp_path / "eval" / "predictions_b.jsonl").read_text().splitlines()]
    assert [p["query"] for p in first] == [p["query"] for p in second] and len(first) == 5
    assert first[-1]["task"] == "pipeline" and "iou" in first[-1]
    assert "| image/acc@0.5 | >= 0.5 |" in (tmp_path / "eval" / "report.md").read_text()

    monkeypatch.setattr(benchmark, "evaluate_model", lambda *a, **k: pytest.fail("a finished model was run again"))
    again = benchmark.compare_models(models, [scene], settings, tmp_path / "eval", progress=False)
    assert again["results"] == report["results"]
