"""The pipeline from a config: temporal -> image -> tracking -> lifting, with tiny models the tests build."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import TARGET, gt_box_2d, object_scan

from scener1.config import build_settings, load_config, to_plain
from scener1.data import open_scene
from scener1.errors import ConfigError
from scener1.lifting.boxes import Box3D, aabb_iou
from scener1.lifting.object_lift import LiftConfig
from scener1.pipeline import STATUSES, Pipeline, build_tracker_from_config

SMALL = ["temporal.max_frames=8", "temporal.fps=30", "image.num_candidates=2", "lifting.max_frames=6",
         "temporal.generation.max_new_tokens=24", "image.generation.max_new_tokens=24"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from scener1.models.tiny import build_tiny_vlm

    path = tmp_path_factory.mktemp("models") / "tiny-qwen2_5_vl"
    build_tiny_vlm(path, "qwen2_5_vl")
    return path


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """A small generated dataset: one furnished room, 24 frames at 160x120, with its annotations."""
    from scener1.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 1, 5, frames=24, size=(160, 120), progress=False)
    return root


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    path, ids = object_scan(tmp_path_factory.mktemp("scan"), n=8)
    return path, ids


# ------------------------------------------------------------------------------------------------ config
def test_config_overrides_merge_and_unknown_keys_fail():
    cfg = to_plain(load_config(None, ["tracker.name=sam2", "lifting.max_depth=4.5", "tracker.geometric.max_depth=5"]))
    assert cfg["tracker"]["name"] == "sam2" and cfg["lifting"]["max_depth"] == 4.5
    assert cfg["tracker"]["geometric"] == {"max_depth": 5}
    with pytest.raises(ConfigError, match="unknown or invalid option 'lifting.max_dpth'"):
        load_config(None, ["lifting.max_dpth=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["lifting.max_depth"])
    with pytest.raises(ConfigError, match="config not found"):
        load_config("no_such_preset")


def test_config_preset_file(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("lifting:\n  voxel_size: 0.02\nimage:\n  num_candidates: 6\n")
    cfg = to_plain(load_config(preset, ["image.num_candidates=3"]))
    assert cfg["lifting"]["voxel_size"] == 0.02 and cfg["image"]["num_candidates"] == 3  # command line wins
    (tmp_path / "bad.yaml").write_text("lifting: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "bad.yaml")


def test_build_settings_types_and_errors():
    lift = build_settings(LiftConfig, {"statistical": [10, 1.5], "max_depth": 4.0}, "lifting")
    assert lift.statistical == (10, 1.5) and lift.max_depth == 4.0
    with pytest.raises(ConfigError, match="unknown option 'lifting.nope'"):
        build_settings(LiftConfig, {"nope": 1}, "lifting")
    with pytest.raises(ConfigError, match="max_frames"):
        build_settings(LiftConfig, {"max_frames": 0}, "lifting")
    with pytest.raises(ConfigError, match="unknown option 'tracker.geometric.bogus'"):
        build_tracker_from_config({"name": "geometric", "geometric": {"bogus": 1}})
    with pytest.raises(ConfigError, match="needs tracker.sam2.checkpoint"):
        build_tracker_from_config({"name": "sam2", "sam2": {"checkpoint": None}})


def test_build_settings_checks_scalar_types():
    """A wrong type is named with its key at build time, not met later as an obscure TypeError."""
    from scener1.grounding import ImageSettings
    from scener1.pipeline import ModelSettings

    for key, value, expected in (("num_candidates", "abc", "an integer"), ("num_candidates", True, "an integer"),
                                 ("num_candidates", 2.5, "an integer"), ("snap", "yes", "true or false"),
                                 ("video_weight", "heavy", "a number")):
        with pytest.raises(ConfigError, match=f"image.{key} must be {expected}, got"):
            build_settings(ImageSettings, {key: value}, "image")
    with pytest.raises(ConfigError, match="model.prompt_version must be a string or null, got 2"):
        build_settings(ModelSettings, {"prompt_version": 2}, "model")
    # numbers in the types a field wants: ints as floats, whole floats and numeric strings (PyYAML's "5e-5")
    image = build_settings(ImageSettings, {"video_weight": 1, "num_candidates": 6.0, "min_box_size": "5e0"}, "image")
    assert image.video_weight == 1.0 and isinstance(image.video_weight, float)
    assert image.num_candidates == 6 and isinstance(image.num_candidates, int) and image.min_box_size == 5.0
    assert build_settings(ModelSettings, {"prompt_version": None}, "model").prompt_version is None
    with pytest.raises(ConfigError, match="must be an integer"):
        Pipeline.from_config(None, ["image.num_candidates=abc"])


def test_every_default_section_builds():
    """default.yaml and the settings dataclasses must not drift apart."""
    from scener1.grounding import ImageSettings
    from scener1.pipeline import ModelSettings, OutputSettings
    from scener1.temporal import TemporalSettings

    cfg = to_plain(load_config())
    for cls, section in ((ModelSettings, "model"), (TemporalSettings, "temporal"), (ImageSettings, "image"),
                         (LiftConfig, "lifting"), (OutputSettings, "output")):
        build_settings(cls, cfg[section], section)
    build_tracker_from_config(cfg["tracker"])


# ---------------------------------------------------------------------------------------------- pipeline
def test_tiny_random_model_runs_the_whole_pipeline(tiny_model, synth_root):
    """Random weights answer garbage: the fallbacks must carry the run to a well-formed, honest result."""
    pipe = Pipeline.from_config(None, [f"model.path={tiny_model}", *SMALL])
    query = json.loads((synth_root / "ScanRefer_synth.json").read_text())[0]["description"]
    with open_scene(synth_root / "synth_s5_000") as scene:
        result = pipe.ground(scene, query)
    out = result.to_json()
    json.dumps(out)  # strictly serialisable
    assert out["status"] in STATUSES
    assert (out["status"] == "ok") == (not out["notes"])
    if out["status"] != "ok":
        assert all(n.split(":")[0] in ("temporal", "image", "lifting", "scene") for n in out["notes"])
    assert out["window"][0] <= out["window"][1]
    assert len(out["box_2d"]) == 4 and out["frame"] in range(24)
    assert out["window_source"] == "model" and out["box_check"] is None  # no cell heads: the model's answers only
    for stage in ("temporal", "image"):
        trace = out["trace"][stage]
        assert trace["prompt"] and "raw_output" in trace and trace["seconds"] >= 0
    assert set(out["seconds"]) == {"temporal", "image", "lifting", "total"}
    assert out["coordinate_frame"] == "axis_aligned"  # synthetic scenes carry an (identity) axisAlignment
    assert len(out["camera_path"]) == 24


def test_unreadable_frames_are_passed_over_and_said(tiny_model, synth_root, tmp_path):
    """Corrupt colour images are left out of the temporal stage's clip and skipped by the image stage and the
    tracker, and the result says so (status fallback, a scene note) instead of ending in an error."""
    import shutil

    from scener1.temporal.core import sample_video_positions

    pipe = Pipeline.from_config(None, [f"model.path={tiny_model}", *SMALL])
    scene_dir = shutil.copytree(synth_root / "synth_s5_000", tmp_path / "synth_s5_000")
    with open_scene(scene_dir) as scene:
        shown = set(sample_video_positions(scene.timestamps - scene.timestamps[0], pipe.temporal.settings).tolist())
        bad = [p for p in range(len(scene)) if p not in shown][::2] + [sorted(shown)[1]]  # frame 0 sizes the scene
    assert len(bad) > 1
    for p in bad:
        (scene_dir / "color" / f"{p}.jpg").write_bytes(b"\xff\xd8 truncated")
    query = json.loads((synth_root / "ScanRefer_synth.json").read_text())[0]["description"]
    with open_scene(scene_dir) as scene:
        out = pipe.ground(scene, query).to_json()
    assert out["status"] in ("fallback", "no_points")
    said = [n for n in out["notes"] if n.startswith("scene: ")]
    assert len(said) == 1 and "unreadable frame(s) passed over" in said[0] and "cannot decode" in said[0]
    assert not set(bad) & set(out["frames_used"])
    temporal = out["trace"]["temporal"]["inputs"]
    assert temporal["frames_unreadable"] == 1 and temporal["frames_shown"] == len(shown) - 1


def test_recorded_answers_give_the_right_span_frame_box_and_3d_object(tiny_model, scan):
    """Known model answers: the span selects the right frames, the box maps back from the model's
    resized image to original pixels, and the lifted object is the target."""
    from scener1.models import RecordedVLM, load_vlm
    from scener1.temporal import TemporalSettings
    from scener1.tracking import build_tracker

    path, ids = scan
    base = load_vlm(tiny_model)
    with open_scene(path) as scene:
        every_frame = TemporalSettings(fps=30.0, max_frames=8)  # the model sees all 8 frames, 1/30 s apart
        probe = Pipeline(RecordedVLM(base, ["<think>seen early</think><answer>0.05s to 0.12s</answer>"]),
                         build_tracker("geometric"), temporal=every_frame)
        span = probe.temporal.ground(scene, "the red box")
        assert span.fallback_reason is None
        assert span.positions.tolist() == [1, 2, 3, 4]  # 0.05-0.12 s at 30 fps, widened by half a sample
        frames = [f for f, _ in probe.image.select_frames(scene, span.positions, {})]
        answers = ["<think>seen early</think><answer>0.05s to 0.12s</answer>"]
        expected = {}
        for f in frames:
            box = gt_box_2d(ids[f.index])
            mw, mh = base.model_image_size(f.color.shape[1], f.color.shape[0])
            sx, sy = mw / f.color.shape[1], mh / f.color.shape[0]
            model_box = [round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)]
            answers.append(f'<think>the red box</think><answer>{{"bbox_2d": {model_box}, "label": "box"}}</answer>')
            expected[f.index] = box
        pipe = Pipeline(RecordedVLM(base, answers), build_tracker("geometric"), temporal=every_frame,
                        lifting=LiftConfig(max_frames=8))
        out = pipe.ground(scene, "the red box").to_json()
    assert out["status"] == "ok", out["notes"]
    assert out["label"] == "box" and out["think"]["image"] == "the red box"
    assert out["frame"] in expected
    sx = scene.color_intrinsics.width / base.model_image_size(scene.color_intrinsics.width, scene.color_intrinsics.height)[0]
    np.testing.assert_allclose(out["box_2d"], expected[out["frame"]], atol=sx + 1e-6)  # one model pixel
    truth = Box3D.from_min_max(TARGET[0] - [2.0, 1.5, 0.0], TARGET[1] - [2.0, 1.5, 0.0])  # toy axisAlignment
    pred = Box3D(np.array(out["box_3d"]["center"]), np.array(out["box_3d"]["size"]))
    assert aabb_iou(pred, truth) > 0.5


# ------------------------------------------------------------------------------------------------ CLI
def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "scener1", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.slow
def test_ground_cli_queries_file_resumes(tiny_model, scan, tmp_path):
    queries = tmp_path / "queries.txt"
    queries.write_text("# comments are skipped\nthe red box\n\nthe blue box\n")
    out = tmp_path / "out"
    code, stdout, err = run_cli("ground", "--scene", scan[0], "--queries", queries, "--model", tiny_model,
                                "--out", out, *SMALL)
    assert code == 0, err
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["query"] for r in lines] == ["the red box", "the blue box"]
    for d in ("q000", "q001"):
        assert (out / d / "result.json").is_file() and (out / d / "overlay.png").is_file()
    assert (out / "scene.ply").is_file()
    assert stdout.count("status   ") == 2
    code, stdout, _ = run_cli("ground", "--scene", scan[0], "--queries", queries, "--model", tiny_model,
                              "--out", out)
    assert code == 0 and "already have results" in stdout


def test_ground_cli_bad_input(tiny_model, scan, tmp_path):
    code, _, err = run_cli("ground", "--scene", scan[0], "--query", "x", "--model", tmp_path / "nowhere",
                           "--out", tmp_path / "o")
    assert code == 2 and err.startswith("scener1: error:") and len(err.strip().splitlines()) == 1
    # a wrong scene path is named before the (here also missing) model is looked for
    code, _, err = run_cli("ground", "--scene", tmp_path / "noscene", "--query", "x", "--model", tmp_path / "nowhere",
                           "--out", tmp_path / "o")
    assert code == 2 and "scene path does not exist" in err
    code, _, err = run_cli("ground", "--scene", scan[0], "--out", tmp_path / "o", "--model", tiny_model)
    assert code == 2 and "exactly one of --query TEXT or --queries FILE" in err
    code, _, err = run_cli("ground", "--scene", scan[0], "--query", "x", "--model", tiny_model,
                           "--out", tmp_path / "o", "lifting.bogus=1")
    assert code == 2 and "lifting.bogus" in err


@pytest.mark.slow
def test_eval_run_with_the_pipeline_predictor(tiny_model, synth_root, tmp_path):
    """scener1 eval --run drives the pipeline over a benchmark's scans and scores what it wrote."""
    out = tmp_path / "eval"
    args = ["eval", "synth", "--annotations", synth_root, "--run", "--predictor", "pipeline",
            "--predictor-arg", f"model={tiny_model}", "--scans", synth_root, "--limit", "2", "--out", out]
    for opt in SMALL:
        args += ["--predictor-arg", opt]
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["id"].startswith("scanrefer:")
        if "error" in row:  # no 3D box (the random model's box may hold no object): scored as wrong, reason kept
            assert row["error"].startswith("no 3D box: ") and row["error"].split()[3] in STATUSES, row
        else:
            assert row["status"] in STATUSES and len(row["box_3d"]["size"]) == 3
    results = json.loads((out / "results.json").read_text())
    assert "synth/scanrefer" in json.dumps(results)


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli("demo", "--out", blocker / "out", "--no-render")
    assert code == 2 and err.startswith("scener1: error:") and len(err.strip().splitlines()) == 1
    assert str(blocker / "out") in err


def test_os_errors_without_a_path_keep_their_traceback():
    from scener1.cli_args import run_command

    def broken():
        raise OSError("no path involved")

    with pytest.raises(OSError):
        run_command(broken)
