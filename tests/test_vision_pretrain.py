"""Dense per-token targets from instance maps, and pretraining a tiny vision tower on them (resumable)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scener1.rl.datasets import ObjectInfo, SceneTruth, Visible
from scener1.rl.dense import CATEGORY_CLASSES, COLOR_CLASSES, cell_targets, frame_positions, mirror_targets


def toy_truth() -> SceneTruth:
    objects = {0: ObjectInfo(0, "chair", "red"), 1: ObjectInfo(1, "lamp", "blue")}
    frames = ((Visible(0, 1600, (0, 0, 40, 40)), Visible(1, 100, (100, 40, 110, 50))),)
    return SceneTruth(Path("toy"), "toy", (160, 120), 10.0, objects, frames, (), None)


def test_cells_take_the_object_covering_enough_of_them_through_the_resize():
    truth = toy_truth()
    instance = np.zeros((120, 160), np.int64)
    instance[0:40, 0:40] = 1  # the chair fills the top-left cell (cells are 40 frame pixels: 128 px model / 4)
    instance[40:50, 100:110] = 2  # the lamp covers 100 / 1600 of the cell at row 1, column 2
    targets = cell_targets(instance, truth, 0, (128, 96), cell=32, min_share=0.05)
    assert targets.category.shape == (3, 4) and targets.box.shape == (3, 4, 4)
    assert CATEGORY_CLASSES[targets.category[0, 0]] == "chair" and COLOR_CLASSES[targets.color[0, 0]] == "red"
    assert CATEGORY_CLASSES[targets.category[1, 2]] == "lamp" and COLOR_CLASSES[targets.color[1, 2]] == "blue"
    np.testing.assert_allclose(targets.box[0, 0], [0, 0, 40 / 160, 40 / 120])
    np.testing.assert_allclose(targets.box[1, 2], [100 / 160, 40 / 120, 110 / 160, 50 / 120])
    assert targets.has_object.sum() == 2 and (targets.box[~targets.has_object] == 0).all()
    # a stricter share leaves the lamp's cell to the background
    strict = cell_targets(instance, truth, 0, (128, 96), cell=32, min_share=0.2)
    assert strict.category[1, 2] == 0 and strict.category[0, 0] > 0
    with pytest.raises(ValueError, match="smaller than one"):
        cell_targets(instance, truth, 0, (16, 16), cell=32)
    assert frame_positions([truth, truth], stride=1) == [(0, 0), (1, 0)]
    # mirroring the targets is the targets of the mirrored frame
    mirrored = mirror_targets(targets)
    direct = cell_targets(instance[:, ::-1], truth, 0, (128, 96), cell=32, min_share=0.05)
    np.testing.assert_array_equal(mirrored.category, direct.category)
    np.testing.assert_allclose(mirrored.box[0, 3], [1 - 40 / 160, 0, 1, 40 / 120])
    np.testing.assert_allclose(mirrored.box[1, 1], [1 - 110 / 160, 40 / 120, 1 - 100 / 160, 50 / 120])


def test_an_instance_no_object_owns_is_a_clear_error():
    from scener1.errors import SceneError

    instance = np.full((120, 160), 7, np.int64)
    with pytest.raises(SceneError, match="instance 7"):
        cell_targets(instance, toy_truth(), 0, (128, 96))


@pytest.mark.slow
def test_pretraining_teaches_the_tower_and_resumes_after_a_kill(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from scener1.errors import ConfigError
    from scener1.models import load_vlm
    from scener1.models import vision_pretrain as vp
    from scener1.models.scene_r1_tiny import TinyVLMSpec, build_scene_r1_tiny
    from scener1.synth import generate_scene

    torch.set_num_threads(1)
    scene = generate_scene(tmp_path / "scenes", seed=5, frames=8, size=(160, 120), fps=4.0)
    spec = TinyVLMSpec(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=128,
                       vision_hidden_size=32, vision_depth=2, vision_heads=2, max_integer=300, seed=2)
    init = build_scene_r1_tiny(tmp_path / "init", spec)
    config = vp.VisionPretrainConfig(steps=60, batch_size=4, learning_rate=1e-2, warmup_steps=2, frame_stride=1,
                                     log_every=5, save_every=5, eval_frames=4, precision="fp32", flip=True,
                                     video_share=0.5)

    real_batch, calls = vp.DenseBatches.batch, []

    def dies_at_step_32(self, step, size):
        calls.append(step)
        if step == 32:
            raise KeyboardInterrupt
        return real_batch(self, step, size)

    monkeypatch.setattr(vp.DenseBatches, "batch", dies_at_step_32)
    with pytest.raises(KeyboardInterrupt):
        vp.pretrain_vision(init, [scene], config, tmp_path / "vision", eval_scenes=[scene], progress=False)
    assert (tmp_path / "vision" / vp.STATE_FILE).is_file() and not (tmp_path / "vision" / vp.SUMMARY_FILE).exists()
    calls.clear()
    monkeypatch.setattr(vp.DenseBatches, "batch", lambda self, step, size: calls.append(step) or real_batch(self, step,
                                                                                                             size))
    out = vp.pretrain_vision(init, [scene], config, tmp_path / "vision", eval_scenes=[scene], progress=False)
    assert calls[0] == 30  # carried on from the step-30 save, not from 0
    summary = json.loads((out / vp.SUMMARY_FILE).read_text())
    steps = [h["step"] for h in summary["history"]]
    assert steps == list(range(5, 61, 5))  # one curve across the kill
    assert summary["history"][-1]["category"] < 0.5 * summary["history"][0]["category"]
    # measured on the training frames: the tower tells colours and (less well) categories apart
    assert summary["metrics"]["dense/color"] >= 0.7 and summary["metrics"]["dense/object"] > 0.15
    assert summary["metrics"]["dense_video/color"] >= 0.6  # and reads the same frames as videos
    assert summary["metrics"]["dense_train/object"] == summary["metrics"]["dense/object"]  # here the same scene
    assert not (out / vp.STATE_FILE).exists()

    before, after = load_file(init / "model.safetensors"), load_file(out / "model.safetensors")
    tower = [k for k in before if ".visual." in k or k.startswith("visual.")]
    assert tower and any(not torch.equal(before[k], after[k]) for k in tower)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in tower)  # the language model untouched
    assert load_vlm(out).model.config.model_type == "qwen3_vl"
    assert vp.pretrain_vision(init, [scene], config, out, progress=False) == out  # finished: not run again

    with pytest.raises(ConfigError):
        vp.VisionPretrainConfig(precision="fp8")
    with pytest.raises(ConfigError, match="video_share"):
        vp.VisionPretrainConfig(video_share=1.5)


def test_video_pairs_are_the_pixels_the_temporal_stage_gives_the_tower(tmp_path):
    """A batch's two-frame videos are processed exactly as the first frame pair of the temporal stage's
    video (same size, same normalisation), and their cell targets have that size."""
    import torch

    from scener1.models import load_vlm
    from scener1.models import vision_pretrain as vp
    from scener1.models.scene_r1_tiny import TinyVLMSpec, build_scene_r1_tiny
    from scener1.synth import generate_scene

    scene = generate_scene(tmp_path / "scenes", seed=6, frames=12, size=(160, 120), fps=4.0)
    spec = TinyVLMSpec(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=128,
                       vision_hidden_size=32, vision_depth=1, vision_heads=2, max_integer=300,
                       video_max_pixels=6 * 64 * 64)  # six frames of 64 x 64 (160 x 120 shrinks to 64 x 48)
    vlm = load_vlm(build_scene_r1_tiny(tmp_path / "init", spec))
    batches = vp.DenseBatches([scene], vlm.processor, 1, 0.2, 0, video_share=1.0, video_frames=6, video_gap_s=0.5)
    clip = np.stack([batches.frames.scene(str(scene)).frame(p).color for p in range(0, 12, 2)])  # 2 fps, as sampled
    video = vlm.processor.video_processor(videos=[clip], do_sample_frames=False, return_tensors="pt",
                                          cap_pixels_per_frame=False)
    assert batches.batch(0, 4)[0].images is None  # video_share 1: the whole batch is videos
    inputs, targets = batches.load([], videos=[(0, 0)])
    _, gh, gw = inputs.videos["video_grid_thw"][0].tolist()
    assert video["video_grid_thw"][0].tolist() == [3, gh, gw]
    n = inputs.videos["pixel_values_videos"].shape[0]
    assert torch.allclose(video["pixel_values_videos"][:n], inputs.videos["pixel_values_videos"], atol=1e-5)
    assert targets[0].category.shape == (gh // 2, gw // 2)
    assert vp.cell_features(vlm.model, inputs).shape[0] == (gh // 2) * (gw // 2)
