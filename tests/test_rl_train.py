"""Training through TRL: two GRPO steps on CPU through the GPU recipe's entry point, a supervised run that
is killed and resumes from its checkpoint, the stage configs and the training curves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from scener1.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory):
    from scener1.synth import generate_scene

    root = tmp_path_factory.mktemp("rl_train_scenes")
    generate_scene(root, seed=7, frames=24, size=(160, 120), fps=8.0)
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from scener1.models.scene_r1_tiny import TinyVLMSpec, build_scene_r1_tiny

    spec = TinyVLMSpec(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=128,
                       vision_hidden_size=32, vision_depth=2, vision_heads=2, max_integer=200,
                       image_max_pixels=96 * 64, video_max_pixels=8 * 64 * 64)
    return build_scene_r1_tiny(tmp_path_factory.mktemp("rl_train_model") / "tiny", spec)


def test_two_grpo_steps_on_cpu_through_the_recipe_entry_point(tiny_model, scene_root, tmp_path):
    """The command the GPU recipe runs (``python -m scener1.rl.train configs/train/qwen3_vl.yaml``), with the
    tiny model, two GRPO steps on the CPU in bf16 autocast (as the tiny recipe trains)."""
    from scener1.models import load_vlm
    from scener1.rl.train import main

    out = tmp_path / "run"
    code = main([str(ROOT / "configs" / "train" / "qwen3_vl.yaml"), f"model={tiny_model}", f"output_dir={out}",
                 f"data.train=[{scene_root}]", f"data.eval=[{scene_root}]", "data.eval_image_rows=2",
                 "data.eval_temporal_rows=0", "data.image={frame_stride: 8}", "sft=null",
                 "grpo.max_steps=2", "grpo.prompts_per_step=1", "grpo.num_generations=2",
                 "grpo.gradient_accumulation_steps=1", "grpo.max_completion_length=12", "grpo.device=cpu",
                 "grpo.gradient_checkpointing=false", "grpo.precision=bf16", "grpo.save_steps=1", "grpo.eval_every=2",
                 "grpo.eval_max_new_tokens=8", "grpo.logging_steps=1"])
    assert code == 0
    final = out / "grpo" / "final"
    vlm = load_vlm(final)  # a complete checkpoint, read like real weights
    assert vlm.box_coordinates == "resized_pixels" and not (final / "training_args.bin").exists()
    state = json.loads((out / "grpo" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    logged = {k for entry in state["log_history"] for k in entry}
    assert {"rewards/format_reward/mean", "rewards/box_iou_reward/mean", "eval/image/miou"} <= logged
    assert (out / "grpo" / "curves.png").stat().st_size > 1000


def test_supervised_training_resumes_where_a_killed_run_stopped(tiny_model, scene_root, tmp_path, monkeypatch):
    from scener1.models import training
    from scener1.rl.datasets import build_rows, scene_dirs
    from scener1.rl.train import SFTStageConfig, last_checkpoint, run_sft

    rows = build_rows(scene_dirs(scene_root), tasks=("image",), model_image_size=training.processor_image_size(
        training.load_processor(tiny_model)))
    config = SFTStageConfig(output_dir=str(tmp_path / "sft"), total_rows=8, batch_size=2, save_steps=2,
                            logging_steps=1, eval_every=0, device="cpu")

    class Killed(Exception):
        pass

    def kill_after_two(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise Killed

    monkeypatch.setattr(training.CurvesCallback, "on_step_begin", kill_after_two, raising=False)
    with pytest.raises(Killed):
        run_sft(tiny_model, rows, config)
    assert last_checkpoint(tmp_path / "sft").name == "checkpoint-2"
    monkeypatch.undo()

    batches = []
    real_call = training.GroundingCollator.__call__
    monkeypatch.setattr(training.GroundingCollator, "__call__", lambda self, r: batches.append(len(r)) or real_call(self, r))
    final = run_sft(tiny_model, rows, config)
    assert batches == [2, 2]  # only the two steps the killed run had not done
    state = json.loads((tmp_path / "sft" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]
    assert (final / "model.safetensors").is_file() and (final / "scener1_prompts.json").is_file()
    assert run_sft(tiny_model, rows, config) == final  # a finished stage is not run again
    assert batches == [2, 2]


def test_a_frozen_vision_tower_keeps_its_weights_while_the_merger_and_language_model_learn(tiny_model, scene_root,
                                                                                           tmp_path):
    import torch
    from safetensors.torch import load_file

    from scener1.errors import ConfigError
    from scener1.models import training
    from scener1.rl.datasets import build_rows, scene_dirs
    from scener1.rl.train import SFTStageConfig, freeze_vision_tower, run_sft

    rows = build_rows(scene_dirs(scene_root), tasks=("image",), model_image_size=training.processor_image_size(
        training.load_processor(tiny_model)))
    final = run_sft(tiny_model, rows, SFTStageConfig(output_dir=str(tmp_path / "sft"), total_rows=6, batch_size=2,
                                                     learning_rate=1e-2, eval_every=0, device="cpu",
                                                     freeze_vision_tower=True))
    before, after = load_file(tiny_model / "model.safetensors"), load_file(final / "model.safetensors")
    tower = [k for k in before if ".visual." in k and "merger" not in k]
    rest = [k for k in before if k not in tower]
    assert tower and all(torch.equal(before[k], after[k]) for k in tower)
    assert any(not torch.equal(before[k], after[k]) for k in rest if "merger" in k)
    assert any(not torch.equal(before[k], after[k]) for k in rest if "language_model" in k)
    with pytest.raises(ConfigError, match="no vision tower"):
        freeze_vision_tower(torch.nn.Linear(2, 2))


def test_stage_configs_map_onto_trl_and_refuse_unknown_options(tmp_path):
    from scener1.rl.train import GRPOStageConfig, SFTStageConfig, load_recipe, stage_config

    grpo = GRPOStageConfig(output_dir=str(tmp_path), prompts_per_step=3, num_generations=4, device="cpu").to_trl()
    assert grpo.per_device_train_batch_size == 12 and grpo.num_generations == 4
    assert grpo.loss_type == "dapo" and grpo.beta == 0.0 and grpo.use_cpu
    sft = SFTStageConfig(output_dir=str(tmp_path), total_rows=100, batch_size=10, device="cpu").to_trl()
    assert sft.max_steps == 10 and not sft.remove_unused_columns and not sft.bf16
    # activation checkpointing follows the stage config both ways (TRL's own default is on)
    assert not sft.gradient_checkpointing and not grpo.gradient_checkpointing
    for stage in (SFTStageConfig, GRPOStageConfig):
        assert stage(output_dir=str(tmp_path), device="cpu", gradient_checkpointing=True).to_trl().gradient_checkpointing
    # bf16 autocast on CPU is opt-in (the tiny recipe uses it); unknown precisions are refused
    sft_bf16 = SFTStageConfig(output_dir=str(tmp_path), device="cpu", precision="bf16").to_trl()
    assert sft_bf16.bf16 and sft_bf16.use_cpu and not sft_bf16.fp16
    assert not GRPOStageConfig(output_dir=str(tmp_path), device="cpu", precision="fp32").to_trl().bf16
    with pytest.raises(ConfigError, match="unknown training precision 'half'"):
        SFTStageConfig(output_dir=str(tmp_path), device="cpu", precision="half").to_trl()
    with pytest.raises(ConfigError, match="unknown GRPOStageConfig option"):
        stage_config(GRPOStageConfig, {"output_dir": "x", "num_generation": 8})
    # PyYAML reads 5e-5 (no dot) as a string; numeric fields take it as the number it says
    loaded = yaml.safe_load("learning_rate: 5e-5\nmax_steps: 3e2\n")
    assert loaded["learning_rate"] == "5e-5"
    grpo_cfg = stage_config(GRPOStageConfig, {"output_dir": "x", **loaded})
    assert grpo_cfg.learning_rate == 5e-5 and grpo_cfg.max_steps == 300 and isinstance(grpo_cfg.max_steps, int)
    with pytest.raises(ConfigError, match="learning_rate must be a number"):
        stage_config(GRPOStageConfig, {"output_dir": "x", "learning_rate": "fast"})
    for name in ("qwen2_5_vl_7b", "qwen3_vl"):
        recipe = load_recipe(ROOT / "configs" / "train" / f"{name}.yaml")
        assert recipe.grpo is not None and recipe.grpo.tasks == ("image",)
        assert recipe.grpo.output_dir == str(Path(recipe.output_dir) / "grpo")
    with pytest.raises(ConfigError, match="unknown recipe section"):
        load_recipe(ROOT / "configs" / "train" / "qwen3_vl.yaml", ["rl.max_steps=3"])


def test_grpo_prompts_follow_the_task_weights(tmp_path):
    """Without weights GRPO takes the rows as they come (the rare task is barely trained); with them it draws as
    many prompts as the run takes, in those shares, the same every time (a resumed run sees the same prompts)."""
    from scener1.rl.train import GRPOStageConfig

    rows = ([{"task": "image", "difficulty": 1, "i": i} for i in range(350)] + [{"task": "temporal", "i": i} for i in range(10)]
            + [{"task": "detect", "i": i} for i in range(40)])
    plain = GRPOStageConfig(output_dir=str(tmp_path), tasks=("image", "temporal"))
    assert len(plain.prompt_rows(rows)) == 360  # detect rows have no reward
    weighted = GRPOStageConfig(output_dir=str(tmp_path), tasks=("image", "temporal"), max_steps=300, prompts_per_step=2,
                               task_weights={"image": 0.5, "temporal": 0.5})
    drawn = weighted.prompt_rows(rows)
    assert len(drawn) == 600 and len(weighted.prompt_rows(rows, world_size=2)) == 1200
    share = sum(r["task"] == "temporal" for r in drawn) / len(drawn)
    assert 0.42 < share < 0.58  # against 10 / 360 as they come
    assert {r["i"] for r in drawn if r["task"] == "temporal"} == set(range(10))  # every temporal row is used
    assert [r["i"] for r in drawn] == [r["i"] for r in weighted.prompt_rows(rows)]
    with pytest.raises(ConfigError, match="not among grpo.tasks"):
        GRPOStageConfig(output_dir="x", tasks=("image",), task_weights={"temporal": 1.0}).prompt_rows(rows)


def test_entry_point_reports_bad_configs_in_one_line(tmp_path, capsys):
    from scener1.rl.train import main

    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "training config not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\noutput_dir: y\ndata: {train: [z]}\ngrpo: {tasks: [temporal]}\n")
    assert main([str(bad)]) == 2


def test_curves_png_draws_logged_series(tmp_path):
    import cv2

    from scener1.rl.curves import plot_curves, series_points

    history = [{"step": s, "loss": 2.0 / s} for s in range(1, 41)] + [{"step": 40, "eval/image/miou": 0.3}]
    steps, values = series_points(history, "loss")
    assert len(steps) == 40 and values[0] == 2.0
    path = plot_curves(history, ["loss", "eval/image/miou", "reward"], tmp_path / "c.png", "test")
    image = cv2.imread(str(path))
    assert image.shape[0] > 400 and image.shape[1] > 1000
    # the loss panel holds a drawn curve (coloured pixels), the empty "reward" panel none
    coloured = (np.abs(image.astype(int) - image.mean(axis=2, keepdims=True)) > 40).any(axis=2)
    assert coloured[:, : image.shape[1] // 2].sum() > 100


@pytest.mark.slow
def test_supervised_training_learns_from_the_pixels(scene_root, tmp_path):
    """Rows whose prompts are word for word the same (detection) but whose images differ are learned apart:
    batches carry the images to the model and the trained model reads them at inference."""
    from scener1.models import GenerationSettings, load_vlm
    from scener1.models.scene_r1_tiny import TinyVLMSpec, build_scene_r1_tiny
    from scener1.models.training import load_processor, processor_image_size, row_request
    from scener1.parsing import BoxGeometry, parse_box
    from scener1.rl.datasets import DetectionTaskSettings, FrameSource, build_rows, scene_dirs, training_phrases
    from scener1.rl.rewards import box_iou
    from scener1.rl.train import SFTStageConfig, run_sft

    spec = TinyVLMSpec(hidden_size=96, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=256,
                       vision_hidden_size=64, vision_depth=2, vision_heads=2, max_integer=256,
                       image_max_pixels=128 * 96)
    model = build_scene_r1_tiny(tmp_path / "init", spec, phrases=training_phrases())
    rows = build_rows(scene_dirs(scene_root), tasks=("detect",), model_image_size=processor_image_size(
        load_processor(model)), detect=DetectionTaskSettings(frame_stride=1, max_objects=1))
    picked, seen = [], set()
    for row in rows:  # four frames with four different target boxes
        text = row["completion"][0]["content"]
        if text not in seen:
            seen.add(text)
            picked.append(row)
    picked = picked[:: max(1, len(picked) // 4)][:4]
    assert len({r["completion"][0]["content"] for r in picked}) == 4
    assert len({r["prompt"][0]["content"][1]["text"] for r in picked}) == 1
    final = run_sft(model, picked, SFTStageConfig(output_dir=str(tmp_path / "sft"), total_rows=4 * 150, batch_size=4,
                                                  learning_rate=2e-3, save_steps=10_000, eval_every=0,
                                                  logging_steps=50, device="cpu", task_weights={"detect": 1.0}))
    vlm = load_vlm(final)
    frames = FrameSource()
    answers = vlm.generate([row_request(r, frames) for r in picked], GenerationSettings(max_new_tokens=30))
    ious = []
    for row, text in zip(picked, answers):
        geometry = BoxGeometry("resized_pixels", tuple(row["model_image_size"]), tuple(row["image_size"]))
        target = parse_box(row["completion"][0]["content"], geometry).value
        got = parse_box(text, geometry).value
        ious.append(0.0 if got is None else box_iou(got, target))
    assert sum(i >= 0.8 for i in ious) >= 3, ious


def test_weights_stay_float32_under_gpu_autocast_and_follow_precision_elsewhere(tiny_model):
    """Mixed precision on a GPU keeps float32 master weights (bf16 weights would drop small updates); the CPU
    and DeepSpeed (which keeps its own float32 copy) load the training precision."""
    from types import SimpleNamespace

    import torch

    from scener1.rl.train import load_model_and_processor

    def dtype(**flags):
        args = SimpleNamespace(**{"bf16": False, "fp16": False, "use_cpu": True, "deepspeed": None, **flags})
        return load_model_and_processor(tiny_model, args)[0].dtype

    assert dtype(bf16=True, use_cpu=False) == torch.float32
    assert dtype(fp16=True, use_cpu=False) == torch.float32
    assert dtype(bf16=True) == torch.bfloat16
    assert dtype(bf16=True, use_cpu=False, deepspeed="zero3.json") == torch.bfloat16
    assert dtype() == torch.float32


def _lease_setup(tiny_model, scene_root, tmp_path):
    """tools/lease_sft.py as a module, and a recipe work folder with one training scene and the tiny model."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lease_sft", ROOT / "tools" / "lease_sft.py")
    lease = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lease)
    work = tmp_path / "work"
    scene = next(p for p in scene_root.iterdir() if p.is_dir())
    for split, names in (("train", [scene.name]), ("val", [])):
        (work / "data" / split).mkdir(parents=True)
        (work / "data" / split / "scenes.txt").write_text("".join(f"{n}\n" for n in names))
    (work / "data" / "train" / scene.name).symlink_to(scene)
    (work / "init").symlink_to(tiny_model)
    return lease, work, scene


def test_lease_pack_carries_only_the_frames_rows_read_and_unpacks_the_same_pixels(tiny_model, scene_root, tmp_path):
    """tools/lease_sft.py: rows built here train on a machine that cannot render, on exactly the same inputs."""
    from scener1.rl.datasets import FrameSource
    from scener1.rl.train import recipe_rows

    lease, work, scene = _lease_setup(tiny_model, scene_root, tmp_path)
    config = {"seed": 0, "sft": {}, "data": {"tasks": ["image", "temporal"], "image": {"frame_stride": 5},
                                            "temporal": {"clear_fraction": 0.01, "min_shown": 1}}}
    info = lease.pack(config, work, tmp_path / "pack")
    assert info["rows"] > 0 and info["scenes"] == 1
    packed = sorted((tmp_path / "pack" / "scenes" / scene.name / "color").glob("*.jpg"))
    assert len(packed) == info["frames"] < 24  # only the frames some row reads

    rows = lease.unpack(tmp_path / "pack", tmp_path / "there")
    original, _ = recipe_rows(lease.train_tiny.recipe(config, work, "sft"), work / "init")
    assert {r["task"] for r in rows} == {"image", "temporal"} and len(rows) == len(original)
    here, there = FrameSource(), FrameSource()
    for a, b in zip(original, rows):
        assert Path(b["scene"]).parent == tmp_path / "there"
        assert {**a, "scene": ""} == {**b, "scene": ""}
        if a["task"] == "image":
            assert np.array_equal(here.image(a), there.image(b))
        else:
            assert np.array_equal(here.clip(a).frames, there.clip(b).frames)
    with pytest.raises(ConfigError, match="exists"):
        lease.pack(config, work, tmp_path / "pack")

    # re-encoded frames: the same frames, smaller files, nearly the same pixels
    small = lease.pack(config, work, tmp_path / "pack_q60", jpeg_quality=60)
    assert small["frames"] == info["frames"] and small["mib"] < info["mib"] and small["jpeg_quality"] == 60
    for name in (p.name for p in packed):
        a = cv2.imread(str(tmp_path / "pack" / "scenes" / scene.name / "color" / name)).astype(float)
        b = cv2.imread(str(tmp_path / "pack_q60" / "scenes" / scene.name / "color" / name)).astype(float)
        assert 0 < np.abs(a - b).mean() < 8
    with pytest.raises(ConfigError, match="1-100"):
        lease.pack(config, work, tmp_path / "pack_q0", jpeg_quality=0)

    # as one archive (what a lease carries): the same rows and frames once extracted over there
    archived = lease.pack(config, work, tmp_path / "lease.tgz")
    assert (tmp_path / "lease.tgz").is_file() and not (tmp_path / "lease").exists()  # only the archive stays
    assert archived["rows"] == info["rows"] and archived["frames"] == info["frames"]
    opened = lease.open_pack(tmp_path / "lease.tgz", tmp_path / "there_tgz")
    assert opened == tmp_path / "there_tgz" / "pack"
    assert lease.unpack(opened, tmp_path / "there_tgz" / "scenes") == [
        {**r, "scene": str(tmp_path / "there_tgz" / "scenes" / Path(r["scene"]).name)} for r in rows]
    assert lease.open_pack(tmp_path / "pack", tmp_path / "x") == tmp_path / "pack"  # a folder is used as it is
    with pytest.raises(ConfigError, match="exists"):
        lease.pack(config, work, tmp_path / "lease.tgz")
    import tarfile

    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(tmp_path / "pack" / "pack.json", arcname="../escaped.json")
    with pytest.raises(ConfigError, match="not a readable pack archive"):
        lease.open_pack(evil, tmp_path / "there_evil")
    assert not (tmp_path / "escaped.json").exists()
    with pytest.raises(ConfigError, match="no such archive"):
        lease.open_pack(tmp_path / "missing.tgz", tmp_path / "there_evil")
    with pytest.raises(ConfigError, match="not a pack"):
        lease.unpack(tmp_path / "work", tmp_path / "elsewhere")
    assert lease.start_model(tmp_path / "pack", work / "init", tmp_path / "there_work") == work / "init"

    # with a vision stage in the recipe, its tower travels in the pack and SFT starts from it over there
    import torch
    from safetensors.torch import load_file, save_file

    vision = {"steps": 10}
    with pytest.raises(ConfigError, match="vision stage"):
        lease.pack({**config, "vision": vision}, work, tmp_path / "pack2")
    shutil.copytree(tiny_model, work / "vision")
    weights = load_file(work / "vision" / "model.safetensors")
    tower = [k for k in weights if ".visual." in k]
    save_file({k: v + 1.0 if k in tower else v for k, v in weights.items()}, work / "vision" / "model.safetensors")
    (work / "vision" / "vision_pretrain.json").write_text('{"done": true}')
    lease.pack({**config, "vision": vision}, work, tmp_path / "pack2")
    start = lease.start_model(tmp_path / "pack2", work / "init", tmp_path / "there_work")
    got = load_file(start / "model.safetensors")
    assert all(torch.equal(got[k], (weights[k] + 1.0).to(torch.bfloat16).float()) for k in tower)
    assert all(got[k].dtype == weights[k].dtype for k in weights)
    assert all(torch.equal(got[k], weights[k]) for k in weights if k not in tower)
    assert (start / "tokenizer.json").is_file()

    # or from a checkpoint that travels anyway (the shipped model), in its own dtype
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    save_file({k: v - 2.0 if k in tower else v for k, v in weights.items()}, other / "model.safetensors")
    got = load_file(lease.start_model(tmp_path / "pack2", work / "init", tmp_path / "there3", other)
                    / "model.safetensors")
    assert all(torch.equal(got[k], weights[k] - 2.0) for k in tower)
    assert all(torch.equal(got[k], weights[k]) for k in weights if k not in tower)
    with pytest.raises(ConfigError, match="no model.safetensors"):
        lease.start_model(tmp_path / "pack2", work / "init", tmp_path / "there3", tmp_path / "nowhere")

    # the bf16 copy that comes back from a lease: same tensors to bf16 rounding, processor files beside them
    small = lease.export_bf16(tiny_model, tmp_path / "bf16")
    halved = load_file(small / "model.safetensors")
    assert all(halved[k].dtype == torch.bfloat16 and torch.equal(halved[k], weights[k].to(torch.bfloat16))
               for k in weights if weights[k].is_floating_point())
    assert (small / "tokenizer.json").is_file() and (small / "config.json").is_file()


def test_lease_train_goes_on_from_a_given_checkpoint(tiny_model, scene_root, tmp_path, monkeypatch):
    """``lease_sft.py train --start DIR``: calibration and training both start from DIR (not the untrained
    model), and lease.json says so; a folder without a model is refused."""
    import json
    import time

    import scener1.rl.train as rl_train

    lease, work, scene = _lease_setup(tiny_model, scene_root, tmp_path)
    config = {"seed": 0, "sft": {"easy_rows": 0}, "data": {"tasks": ["image"], "image": {"frame_stride": 5}}}
    lease.pack(config, work, tmp_path / "pack")

    starts = []

    def fake_sft(start, rows, cfg, evaluation=None, callbacks=()):
        starts.append(Path(start))
        for callback in callbacks:  # the calibration's step clock
            for _ in range(30):
                callback.on_step_end(None, None, None)
                time.sleep(0.002)
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.output_dir) / "curves.jsonl").write_text(json.dumps({"train_runtime": 0.1}) + "\n")
        return Path(cfg.output_dir) / "final"

    monkeypatch.setattr(rl_train, "run_sft", fake_sft)
    with pytest.raises(ConfigError, match="not a model folder"):
        lease.train(config, tmp_path / "pack", tmp_path / "there", 1.0, 10, start_from=tmp_path / "pack")
    with pytest.raises(ConfigError, match="exclude each other"):
        lease.train(config, tmp_path / "pack", tmp_path / "there", 1.0, 10, start_from=tiny_model,
                    tower_from=tiny_model)
    lease.train(config, tmp_path / "pack", tmp_path / "there", 1.0, 10, start_from=tiny_model)
    assert starts == [tiny_model, tiny_model]
    assert json.loads((tmp_path / "there" / "lease.json").read_text())["start"] == str(tiny_model)


@pytest.mark.parametrize("family", ["scene_r1_tiny", "qwen2_5_vl"])
def test_grpo_scores_completions_with_each_samples_video_or_image(family, tiny_model, scene_root, tmp_path):
    """The GRPO trainer hands every sample its own video or image when it computes log-probabilities: equal to a
    plain forward of the prompt as inference builds it, chunked or not, and changed when the pixels change
    (Qwen3-VL's timestamps and Qwen2.5-VL's video clock alike)."""
    import torch

    from scener1.models.tiny import build_tiny_vlm

    if family != "scene_r1_tiny":
        tiny_model = build_tiny_vlm(tmp_path / family, family)

    from scener1.models.training import (
        join_vision_inputs,
        load_processor,
        processor_image_size,
        prompt_inputs,
        row_request,
        split_vision_inputs,
        vision_grpo_trainer_class,
    )
    from scener1.rl.datasets import FrameSource, TemporalTaskSettings, build_rows, scene_dirs
    from scener1.rl.rewards import format_reward
    from scener1.rl.train import GRPOStageConfig, grpo_dataset, load_model_and_processor

    processor = load_processor(tiny_model)
    pool = build_rows(scene_dirs(scene_root), tasks=("image", "temporal"),
                      model_image_size=processor_image_size(processor),
                      temporal=TemporalTaskSettings(min_shown=1))
    rows = [r for r in pool if r["task"] == "temporal"][:2] + [r for r in pool if r["task"] == "image"][:1]
    assert [r["task"] for r in rows] == ["temporal", "temporal", "image"]
    args = GRPOStageConfig(output_dir="unused", prompts_per_step=1, num_generations=2, device="cpu",
                           precision="fp32").to_trl()
    model, processor, _ = load_model_and_processor(tiny_model, args)
    frames = FrameSource()
    trainer = vision_grpo_trainer_class()(model=model, reward_funcs=[format_reward], args=args,
                                          train_dataset=grpo_dataset(rows), processing_class=processor, frames=frames)
    trainer._rows = rows
    prompt_ids, images, fields = trainer._tokenize_prompts([r["prompt"] for r in rows])
    assert images is None and {"pixel_values_videos", "video_grid_thw", "pixel_values"} <= set(fields)
    assert ("second_per_grid_ts" in fields) == (family == "qwen2_5_vl")

    answer = processor.tokenizer("<answer>1.0s to 2.0s</answer>", add_special_tokens=False)["input_ids"]
    width = max(len(p) for p in prompt_ids)
    pad = processor.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p + answer for p in prompt_ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * (len(p) + len(answer)) for p in prompt_ids])
    model.eval()
    with torch.no_grad():
        whole, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, len(answer))
        chunked, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, len(answer), batch_size=2)
        requests = [row_request(r, frames) for r in rows]
        batch = prompt_inputs(processor, requests)
        assert torch.equal(batch["input_ids"][batch["attention_mask"].bool()],
                           ids[:, :width][mask[:, :width].bool()])
        n = len(rows)
        types = torch.cat([batch["mm_token_type_ids"], torch.zeros(n, len(answer), dtype=torch.long)], 1)
        full = {**batch, "input_ids": ids, "attention_mask": mask, "mm_token_type_ids": types}
        logits = model(**full).logits[:, width - 1 : -1].float()
        reference = torch.log_softmax(logits, -1).gather(-1, torch.tensor([answer] * n)[..., None])[..., 0]
        assert torch.allclose(whole, reference, atol=1e-4) and torch.allclose(chunked, reference, atol=1e-4)

        shares = split_vision_inputs(batch, requests)
        video_keys = {"pixel_values_videos", "video_grid_thw"} | ({"second_per_grid_ts"} & set(batch))
        assert [set(s) for s in shares] == [video_keys] * 2 + [{"pixel_values", "image_grid_thw"}]
        for key, value in join_vision_inputs(shares).items():
            assert torch.equal(value, torch.as_tensor(batch[key]))
        trainer._vision = [{k: v * 0 if k.startswith("pixel") else v for k, v in s.items()} for s in shares]
        dark, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, len(answer))
        assert not torch.allclose(dark[0], whole[0], atol=1e-4) and not torch.allclose(dark[2], whole[2], atol=1e-4)


def test_two_grpo_steps_on_video_rows(tiny_model, scene_root, tmp_path):
    """Temporal grounding trains with GRPO too: two steps on video rows only, rewards logged."""
    from scener1.rl.train import main

    out = tmp_path / "run"
    code = main([str(ROOT / "configs" / "train" / "qwen3_vl.yaml"), f"model={tiny_model}", f"output_dir={out}",
                 f"data.train=[{scene_root}]", "data.eval=[]", "data.temporal={min_shown: 1}", "sft=null",
                 "grpo.tasks=[temporal]",
                 "grpo.max_steps=2", "grpo.prompts_per_step=2", "grpo.num_generations=2",
                 "grpo.gradient_accumulation_steps=1", "grpo.max_completion_length=12", "grpo.device=cpu",
                 "grpo.gradient_checkpointing=false", "grpo.save_steps=2", "grpo.eval_every=0",
                 "grpo.logging_steps=1", "grpo.temperature=1.5"])
    assert code == 0
    state = json.loads((out / "grpo" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    logged = [e for e in state["log_history"] if "rewards/temporal_iou_reward/mean" in e]
    assert len(logged) == 2 and all(e["num_tokens"] > 0 for e in logged)


def test_grpo_survives_a_policy_that_would_sample_media_tokens(tiny_model, scene_root, tmp_path):
    """A sampled video or image pad token used to break the forward pass that scores the completion (a real
    run crashed at its 281st GRPO step); generation now suppresses every media token."""
    import torch
    from safetensors.torch import load_file, save_file

    from scener1.models import load_vlm
    from scener1.models.training import media_token_ids
    from scener1.rl.train import main

    model = tmp_path / "media_loving"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    image_id, video_id = config["image_token_id"], config["video_token_id"]
    weights = load_file(model / "model.safetensors")
    head = next((k for k in weights if k.endswith("lm_head.weight")), None) or next(
        k for k in weights if k.endswith("embed_tokens.weight"))  # the tiny model ties its head to the embeddings
    u = torch.randn(weights[head].shape[1], generator=torch.Generator().manual_seed(0))
    weights[head][video_id], weights[head][image_id] = 1000 * u, -1000 * u  # one of the two wins every token
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    vlm = load_vlm(model)
    assert {image_id, video_id} <= set(media_token_ids(vlm.model.config))
    reply = vlm.processor.tokenizer.decode(vlm.model.generate(
        **vlm.processor.tokenizer("<|im_start|>user", return_tensors="pt"), max_new_tokens=4, do_sample=False)[0])
    assert "<|video_pad|>" in reply or "<|image_pad|>" in reply  # the policy does want them

    out = tmp_path / "run"
    code = main([str(ROOT / "configs" / "train" / "qwen3_vl.yaml"), f"model={model}", f"output_dir={out}",
                 f"data.train=[{scene_root}]", "data.eval=[]", "data.image={frame_stride: 8}", "sft=null",
                 "grpo.tasks=[image]", "grpo.max_steps=2", "grpo.prompts_per_step=1", "grpo.num_generations=2",
                 "grpo.gradient_accumulation_steps=1", "grpo.max_completion_length=8", "grpo.device=cpu",
                 "grpo.gradient_checkpointing=false", "grpo.save_steps=2", "grpo.eval_every=0",
                 "grpo.logging_steps=1"])
    assert code == 0
    state = json.loads((out / "grpo" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


def test_grpo_refuses_tasks_without_rewards_and_videos_under_vllm(tiny_model, tmp_path):
    from scener1.rl.train import GRPOStageConfig, run_grpo

    with pytest.raises(ConfigError, match="no reward for vqa"):
        run_grpo(tiny_model, [], GRPOStageConfig(output_dir=str(tmp_path / "a"), tasks=("image", "vqa")))
    with pytest.raises(ConfigError, match="vLLM generation takes image rows only"):
        run_grpo(tiny_model, [], GRPOStageConfig(output_dir=str(tmp_path / "b"), tasks=("image", "temporal"),
                                                 use_vllm=True))
