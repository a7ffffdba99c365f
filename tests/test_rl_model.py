"""Scene-R1-tiny's architecture and tokenizer, and (when it is installed) the shipped checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scener1.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "models" / "scene-r1-tiny"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from scener1.models.scene_r1_tiny import TinyVLMSpec, build_scene_r1_tiny

    spec = TinyVLMSpec(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=128,
                       vision_hidden_size=32, vision_depth=2, vision_heads=2, max_integer=300, seed=3)
    return build_scene_r1_tiny(tmp_path_factory.mktemp("tiny_arch") / "m", spec), spec


def test_integers_and_prompt_phrases_are_single_tokens(small):
    from scener1.models import load_vlm
    from scener1.models.scene_r1_tiny import prompt_phrases
    from scener1.prompts import image_messages, temporal_messages

    vlm = load_vlm(small[0])
    tok = vlm.processor.tokenizer
    for i in (0, 7, 10, 99, 100, 256, 300):
        assert len(tok(str(i), add_special_tokens=False)["input_ids"]) == 1
        assert len(tok(f" {i}", add_special_tokens=False)["input_ids"]) == 1
    answer = '<think>The red chair is left.</think><answer>{"bbox_2d": [112, 56, 208, 152], "label": "chair"}</answer>'
    assert tok.decode(tok(answer, add_special_tokens=False)["input_ids"]) == answer
    for phrase in prompt_phrases():
        assert len(tok(phrase, add_special_tokens=False)["input_ids"]) == 1
    # the exact v1 wording round-trips and costs few tokens besides the query
    text = image_messages("the red chair", "resized_pixels")[0]["content"][1]["text"]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and len(ids) <= 8
    text = temporal_messages("the lamp", [0.0, 0.5, 1.0])[0]["content"][1]["text"]
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_checkpoint_is_a_qwen3_vl_read_by_from_pretrained_with_its_box_convention(small):
    from scener1.models import ChatRequest, GenerationSettings, load_vlm
    from scener1.models.scene_r1_tiny import count_parameters
    from scener1.prompts import image_messages

    path, spec = small
    vlm = load_vlm(path)
    assert vlm.family.name == "qwen3_vl" and vlm.box_coordinates == "resized_pixels"
    assert json.loads((path / "scener1_prompts.json").read_text())["box_coordinates"] == "resized_pixels"
    assert vlm.model.config.vision_config.num_position_embeddings == spec.num_position_embeddings
    assert vlm.model.get_input_embeddings().weight.data_ptr() == vlm.model.get_output_embeddings().weight.data_ptr()
    embed = vlm.model.get_input_embeddings().weight
    stored = sum(t.numel() for t in vlm.model.state_dict().values())  # lists the tied matrix twice
    assert count_parameters(vlm.model) == stored - embed.numel()
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = vlm.generate([ChatRequest(image_messages("the lamp", "resized_pixels"), images=(image,))],
                       GenerationSettings(max_new_tokens=4), output_scores=True)
    assert out[0].image_sizes == ((256, 192),)  # the processor's budget: 320 x 240 -> 256 x 192


def test_integer_embeddings_start_ordered(small):
    import torch

    from scener1.models import load_vlm
    from scener1.models.scene_r1_tiny import integer_token_ids

    vlm = load_vlm(small[0])
    ids = integer_token_ids(vlm.processor.tokenizer, 300)
    emb = vlm.model.get_input_embeddings().weight.detach()
    e = torch.nn.functional.normalize(emb[[ids[i][0] for i in range(301)]], dim=1)
    near = float((e[100] * e[101]).sum())
    far = float((e[100] * e[250]).sum())
    assert near > far + 0.2  # neighbouring values start out alike, distant ones apart


def test_vision_position_grid_starts_as_2d_sinusoids_as_strong_as_the_patches(small):
    """Every patch's column and row can be read off its absolute position embedding linearly from the start,
    at the patch features' scale (the default initialiser makes it 40x weaker)."""
    import math

    import torch

    from scener1.models import load_vlm
    from scener1.models.scene_r1_tiny import TinyVLMSpec, build_model, train_tokenizer

    path, spec = small
    pos = load_vlm(path).model.model.visual.pos_embed.weight.detach().float()
    side = math.isqrt(spec.num_position_embeddings)
    assert abs(float(pos.pow(2).mean().sqrt()) - 1.0) < 0.05
    grid = torch.arange(side * side)
    for truth in (grid % side, grid // side):  # column, row
        fit = torch.linalg.lstsq(pos, truth[:, None].float()).solution
        assert float((pos @ fit - truth[:, None]).abs().max()) < 0.05
    weak = build_model(TinyVLMSpec(**{**spec.to_dict(), "vision_position_init": "random"}), train_tokenizer(300))
    assert float(weak.model.visual.pos_embed.weight.pow(2).mean().sqrt()) < 0.1
    with pytest.raises(ConfigError, match="vision_position_init"):
        TinyVLMSpec(vision_position_init="learned")


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped Scene-R1-tiny checkpoint")
def test_shipped_checkpoint_loads_and_fits_the_budget():
    from scener1.models import load_vlm

    files = {p.name for p in SHIPPED.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    assert sum(p.stat().st_size for p in SHIPPED.iterdir() if p.name != "training_summary.json"
               and not p.name.endswith(".png")) <= 25e6
    vlm = load_vlm(SHIPPED)
    assert vlm.family.name == "qwen3_vl" and vlm.box_coordinates == "resized_pixels"
    from scener1.models.cell_heads import load_cell_heads

    heads = load_cell_heads(SHIPPED)  # the image stage's check of its boxes
    assert heads is not None and heads.hidden_size == vlm.model.config.text_config.hidden_size
    assert "sofa" in heads.categories and "brown" in heads.colours
    summary = json.loads((SHIPPED / "training_summary.json").read_text())
    assert summary["trained_by"] == "tools/train_tiny.py"


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped Scene-R1-tiny checkpoint")
def test_shipped_checkpoint_grounds_a_demo_query():
    """The demo's first query on the demo scene (seed 1, never trained on), asked on the four frames that show
    the object best, as the image stage asks: the chosen box must point at the object."""
    from scener1.data import open_scene
    from scener1.demo import DEMO_QUERIES, DEMO_SCENE
    from scener1.grounding import ImageGrounder, ImageSettings
    from scener1.models import load_vlm
    from scener1.synth import ensure_demo_scene

    query = DEMO_QUERIES[0]  # "the brown sofa"
    ensure_demo_scene(DEMO_SCENE)
    gt = DEMO_SCENE / "gt"
    target = next(o["object_id"] for o in json.loads((gt / "objects.json").read_text())["objects"]
                  if f"the {o['color']} {o['category']}" == query)
    seen = sorted(((v["pixels"], f["frame"], v["bbox"]) for f in json.loads((gt / "frames.json").read_text())["frames"]
                   for v in f["objects"] if v["object_id"] == target), reverse=True)
    best = {frame: bbox for _, frame, bbox in seen[:4]}
    with open_scene(DEMO_SCENE) as scene:
        result = ImageGrounder(load_vlm(SHIPPED), ImageSettings(num_candidates=4)).ground(scene, query, sorted(best))
    assert result.fallback_reason is None
    assert result.trace.inputs["verifier"]["category"] == "sofa" and result.trace.inputs["verifier"]["colour"] == "brown"
    assert all(c.verify is not None for c in result.candidates if c.box is not None)
    x1, y1, x2, y2 = result.box
    bx1, by1, bx2, by2 = best[result.frame_index]
    assert bx1 <= (x1 + x2) / 2 < bx2 and by1 <= (y1 + y2) / 2 < by2, (result.box, best[result.frame_index])
