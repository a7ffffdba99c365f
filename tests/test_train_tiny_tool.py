"""tools/train_tiny.py end to end at toy sizes: scenes -> untrained model -> vision pretraining -> SFT -> GRPO
(images and videos) -> cell heads -> held-out evaluation -> export, then a second run that finds every stage done."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TOY = {
    "seed": 0,
    "torch_threads": 1,
    "model": {"hidden_size": 64, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 128,
              "vision_hidden_size": 32, "vision_depth": 2, "vision_heads": 2, "max_integer": 300},
    "scenes": {"train": {"seed": 11, "count": 1, "frames": 12, "fps": 6.0},
               "val": {"seed": 12, "count": 1, "frames": 12, "fps": 6.0},
               "heldout": {"seed": 13, "count": 1, "frames": 12, "fps": 6.0}},
    "vision": {"steps": 2, "batch_size": 2, "frame_stride": 4, "save_every": 1, "log_every": 1, "eval_frames": 2,
               "precision": "fp32", "video_share": 0.5},
    "data": {"tasks": ["image", "temporal"], "image": {"frame_stride": 4}, "temporal": {"min_shown": 1},
             "eval_image_rows": 1, "eval_temporal_rows": 1},
    "sft": {"total_rows": 8, "batch_size": 2, "save_steps": 2, "eval_every": 0, "logging_steps": 1,
            "device": "cpu", "task_weights": {"image": 0.5, "temporal": 0.5}},
    "grpo": {"tasks": ["image", "temporal"], "max_steps": 1, "prompts_per_step": 2, "num_generations": 2,
             "max_completion_length": 8, "save_steps": 1, "eval_every": 0, "logging_steps": 1, "device": "cpu"},
    "heads": {"frame_stride": 2, "steps": 40, "batch_size": 64},
    "evaluation": {"image_rows": 2, "temporal_rows": 1, "pipeline_queries": 1, "batch_size": 4},
}


@pytest.mark.slow
def test_recipe_runs_end_to_end_and_a_rerun_finds_every_stage_done(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_tiny", ROOT / "tools" / "train_tiny.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(TOY))
    work, out = tmp_path / "work", tmp_path / "model"
    args = ["--config", str(config), "--work", str(work), "--out", str(out)]

    assert tool.main(args) == 0
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "tokenizer.json", "config.json",
                                               "scener1_prompts.json", "training_summary.json", "curves_sft.png",
                                               "cell_heads.safetensors", "cell_heads.json"}
    heads = json.loads((out / "cell_heads.json").read_text())
    assert heads["train_scenes"] == 1 and {"object", "background", "colour", "box_l1"} <= set(heads["eval"])
    assert (work / "sft" / "final" / "cell_heads.safetensors").is_file()  # both models scored with their heads
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["source"] == "grpo/final" and set(summary["heldout"]["results"]) == {"sft", "sft+grpo"}
    report = summary["heldout"]["results"]["sft+grpo"]
    assert report["image/n"] == 2 and report["temporal/n"] == 1 and "3d/acc@0.25" in report
    assert 0 <= report["temporal+heads/miou"] <= 1  # the temporal stage's span from the model's cell heads
    assert 0 <= report["image+heads/pointing"] <= 1  # ... and the image stage's boxes, the heads' where they doubt
    vision = json.loads((work / "vision" / "vision_pretrain.json").read_text())
    assert vision["done"] and {"dense/object", "dense_video/object"} <= set(vision["metrics"])
    assert json.loads((work / "sft" / "stage_config.json").read_text())["model"] == str(work / "vision")
    grpo_state = json.loads(next((work / "grpo").glob("checkpoint-*/trainer_state.json")).read_text())
    assert any("rewards/temporal_iou_reward/mean" in e for e in grpo_state["log_history"])

    stamps = [(work / "sft" / "final" / name).stat().st_mtime_ns for name in ("model.safetensors", "cell_heads.json")]
    capsys.readouterr()
    assert tool.main([*args, "--stages", "data,vision,sft,grpo,heads"]) == 0  # finished stages are found, not redone
    assert [(work / "sft" / "final" / name).stat().st_mtime_ns
            for name in ("model.safetensors", "cell_heads.json")] == stamps
    assert "training rows" in capsys.readouterr().out

    assert tool.main([*args, "--stages", "sft,fly"]) == 2
    assert "unknown stage(s) fly" in capsys.readouterr().err
    # a recipe asking for another prompt version than the model was built with is refused, in one line
    assert tool.main([*args, "--stages", "sft", "--set", "prompt_version=v2"]) == 2
    assert "built for prompt version v1, the recipe asks for v2" in capsys.readouterr().err


def test_localisation_probe_draws_what_it_asks_and_reports_a_fit(tmp_path, capsys):
    import numpy as np

    from scener1.models.scene_r1_tiny import TinyVLMSpec, build_scene_r1_tiny

    spec = importlib.util.spec_from_file_location("probe_localisation", ROOT / "tools" / "probe_localisation.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    rng = np.random.default_rng(3)
    for _ in range(20):
        image, colour, (x1, y1, x2, y2) = probe.square_image(rng, 256, 192)
        assert (image[y1:y2, x1:x2] == probe.COLOURS[colour]).all()  # the asked-for square is whole
        assert (image[:, :x1] != probe.COLOURS[colour]).any(axis=2).all() or x1 == 0

    model = build_scene_r1_tiny(tmp_path / "m", TinyVLMSpec(**{**TOY["model"], "seed": 1}))
    out = tmp_path / "probe.json"
    assert probe.main(["--model", str(model), "--steps", "2", "--test-images", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["steps"] == 2 and 0 <= result["mean_iou"] <= 1 and result["final_loss"] > 0
    assert probe.main(["--model", str(tmp_path / "missing"), "--steps", "1"]) == 2
    assert "probe_localisation: error:" in capsys.readouterr().err
