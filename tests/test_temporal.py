"""The temporal stage: frame sampling and budgets, span -> frames, fallbacks, recorded and tiny-model runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_frames, write_scannet

from scener1.data import open_scene
from scener1.errors import ConfigError
from scener1.models import GenerationSettings, RecordedVLM, load_vlm
from scener1.models.tiny import build_tiny_vlm
from scener1.temporal import (
    TemporalGrounder,
    TemporalSettings,
    build_video_clip,
    frame_size_for_budget,
    resolve_answer,
    sample_video_positions,
    span_positions,
)
from scener1.trace import StageTrace


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    # 12 frames half a second apart (frame names 0, 15, ..., 165 at 30 Hz), colour 256x192
    root = write_scannet(tmp_path_factory.mktemp("scenes") / "scene0000_00", make_frames(12, step=15, color_scale=4))
    with open_scene(root) as s:
        yield s


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {f: load_vlm(build_tiny_vlm(root / f, f)) for f in ("qwen2_5_vl", "qwen3_vl")}


# --------------------------------------------------------------------------------------- pure core


def test_sampling_by_rate_and_count():
    times = np.arange(301) / 30.0  # 10 s at 30 Hz
    one_per_second = sample_video_positions(times, TemporalSettings(fps=1.0, max_frames=100))
    assert one_per_second.tolist() == list(range(0, 301, 30))
    capped = sample_video_positions(times, TemporalSettings(fps=1.0, max_frames=5))
    assert len(capped) == 5 and capped[0] == 0 and capped[-1] == 300


def test_frame_size_keeps_both_budgets_and_never_enlarges():
    s = TemporalSettings(frame_max_pixels=448 * 448, video_max_pixels=32 * 448 * 448)
    w, h = frame_size_for_budget(1296, 968, 32, s)
    assert w * h <= 448 * 448 and abs(w / h - 1296 / 968) < 0.01
    w64, h64 = frame_size_for_budget(1296, 968, 64, s)
    assert w64 * h64 <= 32 * 448 * 448 // 64 and w64 < w
    assert frame_size_for_budget(320, 240, 32, s) == (320, 240)


def test_video_clip_is_shrunk_and_starts_at_zero():
    frames = [np.full((240, 320, 3), k, np.uint8) for k in range(3)]
    clip = build_video_clip(frames, np.array([4.0, 5.0, 6.5]), TemporalSettings(frame_max_pixels=80 * 60))
    assert clip.frames.shape == (3, 60, 80, 3) and clip.frames.dtype == np.uint8
    assert clip.timestamps.tolist() == [0.0, 1.0, 2.5]
    assert clip.frames[2].min() == 2  # area averaging of a flat frame keeps its value


def test_span_selects_frames_around_the_answer():
    times = np.arange(12) * 0.5
    sampled = times[::2]  # shown once a second: an answer is good to half a second either side
    assert span_positions((2.0, 3.0), times, sampled).tolist() == [3, 4, 5, 6, 7]
    assert span_positions((4.0, 4.0), times, sampled).tolist() == [7, 8, 9]
    # a span between two frames, sampled densely: the frame nearest its middle
    assert span_positions((1.1, 1.2), times, times).tolist() == [2]


def test_unusable_answers_fall_back_to_the_whole_video():
    times = np.arange(12) * 0.5
    sampled = np.arange(0, 12, 2)
    parsed, span, positions, fallback = resolve_answer("the chair is there", times, sampled)
    assert parsed.value is None and span == (0.0, 5.5) and positions.tolist() == list(range(12))
    assert fallback.startswith("unusable answer (no time span in the answer)")
    parsed, span, positions, fallback = resolve_answer("<answer>20s to 30s</answer>", times, sampled)
    assert fallback is not None and "after the video ends" in fallback
    parsed, span, positions, fallback = resolve_answer("<answer>5s to 9s</answer>", times, sampled)
    assert fallback is None and span == (5.0, 5.5) and positions.tolist() == [9, 10, 11]


def test_settings_are_checked():
    with pytest.raises(ConfigError):
        TemporalSettings(fps=0)
    with pytest.raises(ConfigError):
        TemporalSettings(max_frames=0)
    with pytest.raises(ConfigError):
        TemporalSettings(generation=GenerationSettings(do_sample=True, num_return_sequences=2))


def test_trace_round_trips_through_strict_json():
    trace = StageTrace("temporal", {"times": np.array([0.0, 0.5]), "n": np.int64(3)}, "p", ("raw",),
                       {"span": (1.0, float("nan"))}, None, 0.25)  # fmt: skip
    text = trace.to_json()
    back = StageTrace.from_dict(json.loads(text))
    assert back.inputs == {"times": [0.0, 0.5], "n": 3}
    assert back.parsed == {"span": [1.0, None]} and back.raw_output == ("raw",) and back.seconds == 0.25


# --------------------------------------------------------------------------------------- recorded answers


def test_recorded_answer_selects_the_right_frames(scene, tiny):
    vlm = RecordedVLM(tiny["qwen2_5_vl"], ["<think>the red wall shows at 2 and 3 s</think><answer>2s to 3s</answer>"])
    result = TemporalGrounder(vlm, TemporalSettings(fps=1.0)).ground(scene, "the red wall")
    assert result.sampled_positions.tolist() == [0, 2, 4, 6, 8, 10]
    assert result.span == (2.0, 3.0) and result.fallback_reason is None
    assert result.positions.tolist() == [3, 4, 5, 6, 7]
    assert scene.frame_ids[result.positions].tolist() == [45, 60, 75, 90, 105]
    assert result.think == "the red wall shows at 2 and 3 s"
    assert "taken at 0.0, 1.0, 2.0, 3.0, 4.0, 5.0 seconds" in result.trace.prompt
    assert "<|video_pad|>" in vlm.prompts_seen[0]  # the clip went through the real processor
    assert result.trace.raw_output == (result.raw_output,) and result.trace.fallback is None
    json.dumps(result.trace.to_dict(), allow_nan=False)
    json.dumps(result.to_dict(), allow_nan=False)


def test_recorded_garbage_falls_back_honestly(scene, tiny):
    answers = ["<answer>3s to 4s</answer>", "I cannot tell", "<answer>1:00 to 1:30</answer>"]
    vlm = RecordedVLM(tiny["qwen3_vl"], answers)
    results = TemporalGrounder(vlm, TemporalSettings(fps=1.0)).ground_many(scene, ["a", "b", "c"])
    assert [r.query for r in results] == ["a", "b", "c"]
    assert results[0].fallback_reason is None and results[0].positions.tolist() == [5, 6, 7, 8, 9]
    for r in results[1:]:
        assert r.used_fallback and r.trace.fallback == r.fallback_reason
        assert r.span == (0.0, 5.5) and r.positions.tolist() == list(range(12))
    assert "after the video ends" in results[2].fallback_reason


# --------------------------------------------------------------------------------------- tiny models


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_tiny_model_runs_end_to_end(scene, tiny, family):
    settings = TemporalSettings(fps=1.0, generation=GenerationSettings(max_new_tokens=24))
    result = TemporalGrounder(tiny[family], settings).ground(scene, "the blue wall")
    start, end = result.span
    assert 0.0 <= start <= end <= 5.5
    assert len(result.positions) > 0 and np.all(np.diff(result.positions) > 0)
    assert 0 <= result.positions[0] and result.positions[-1] < len(scene)
    # random weights answer garbage: a fallback must be taken exactly when the answer was unusable
    assert (result.parsed.value is None) == result.used_fallback
    if result.used_fallback:
        assert result.positions.tolist() == list(range(len(scene)))
    assert result.seconds > 0 and isinstance(result.raw_output, str)
    trace = json.loads(result.trace.to_json())
    assert trace["stage"] == "temporal" and trace["inputs"]["frames_shown"] == 6
    assert trace["fallback"] == result.fallback_reason
