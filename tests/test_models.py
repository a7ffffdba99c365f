"""The model layer: tiny Qwen-VL checkpoints loaded through from_pretrained, generation, errors, choices."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scener1 import prompts
from scener1.errors import ConfigError, ScenerError
from scener1.models import (
    ChatRequest,
    Generation,
    GenerationSettings,
    VideoClip,
    choose_attention,
    choose_device,
    choose_dtype,
    load_vlm,
)
from scener1.models.tiny import SPECIAL_TOKENS, build_tiny_vlm
from scener1.prompts import ModelPromptInfo, image_messages, resolve_prompt_version, temporal_messages

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {f: build_tiny_vlm(root / f, f) for f in ("qwen2_5_vl", "qwen3_vl", "qwen2_vl")}


@pytest.fixture(scope="module")
def vlms(tiny_dirs):
    return {f: load_vlm(d) for f, d in tiny_dirs.items()}


def _image(seed: int, w: int = 320, h: int = 240) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _clip(n: int = 6, spacing: float = 0.5) -> VideoClip:
    frames = np.random.default_rng(1).integers(0, 256, (n, 96, 128, 3), dtype=np.uint8)
    return VideoClip(frames, np.arange(n) * spacing)


# --------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize(
    "family, box", [("qwen2_5_vl", "resized_pixels"), ("qwen3_vl", "normalized_1000"), ("qwen2_vl", "normalized_1000")]
)
def test_tiny_checkpoints_load_like_real_ones(tiny_dirs, vlms, family, box):
    files = {p.name for p in tiny_dirs[family].iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= files
    assert not any(name.endswith(".bin") for name in files)
    vlm = vlms[family]
    assert vlm.family.name == family and vlm.box_coordinates == box
    assert str(vlm.device) == "cpu" and str(vlm.dtype) == "torch.float32"
    assert vlm.model.config._attn_implementation == "sdpa"  # no flash_attn here, and never on CPU
    assert vlm.prompt_version == prompts.DEFAULT_PROMPT_VERSION
    tokenizer = vlm.processor.tokenizer
    assert all(tokenizer.convert_tokens_to_ids(t) != tokenizer.unk_token_id for t in SPECIAL_TOKENS)
    assert tokenizer.decode(tokenizer("<think>3.5s to 7s</think>")["input_ids"]) == "<think>3.5s to 7s</think>"


def test_reload_is_bit_identical_and_seeded(tmp_path, tiny_dirs, vlms):
    import torch

    again = load_vlm(tiny_dirs["qwen2_5_vl"])
    first = vlms["qwen2_5_vl"].model.state_dict()
    assert all(torch.equal(first[k], v) for k, v in again.model.state_dict().items())
    same = load_vlm(build_tiny_vlm(tmp_path / "same", "qwen2_5_vl", seed=0)).model.state_dict()
    other = load_vlm(build_tiny_vlm(tmp_path / "other", "qwen2_5_vl", seed=1)).model.state_dict()
    name = "lm_head.weight"
    assert torch.equal(same[name], first[name]) and not torch.equal(other[name], first[name])


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(ScenerError) as err:
        load_vlm(tmp_path / "no_such_model")
    message = str(err.value)
    assert str(tmp_path / "no_such_model") in message and "\n" not in message


def test_uncached_repo_id_fails_without_touching_the_network(tmp_path, monkeypatch):
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(ScenerError) as err:
        load_vlm("Qwen/Qwen2.5-VL-7B-Instruct", cache_dir=tmp_path)
    assert str(tmp_path / "models--Qwen--Qwen2.5-VL-7B-Instruct") in str(err.value)
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct" in str(err.value)
    assert attempts == []


def test_repo_id_found_in_the_hf_cache(tmp_path, tiny_dirs):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--tiny--qwen25"
    shutil.copytree(tiny_dirs["qwen2_5_vl"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    vlm = load_vlm("tiny/qwen25", cache_dir=tmp_path)
    assert vlm.path == repo / "snapshots" / commit and vlm.family.name == "qwen2_5_vl"


def _broken_copy(src: Path, dst: Path, drop: list[str]) -> Path:
    shutil.copytree(src, dst)
    for name in drop:
        (dst / name).unlink()
    return dst


@pytest.mark.parametrize(
    "drop, expected",
    [
        (["model.safetensors"], "no weights (expected model.safetensors"),
        (["tokenizer.json"], "no tokenizer"),
        (["processor_config.json"], "no preprocessor_config.json or processor_config.json"),
        (["config.json"], "no config.json"),
    ],
)
def test_incomplete_checkpoints_are_refused_in_one_line(tmp_path, tiny_dirs, drop, expected):
    broken = _broken_copy(tiny_dirs["qwen2_5_vl"], tmp_path / "broken", drop)
    with pytest.raises(ScenerError) as err:
        load_vlm(broken)
    assert expected in str(err.value) and str(broken) in str(err.value) and "\n" not in str(err.value)


def test_missing_shard_and_pickle_weights_are_refused(tmp_path, tiny_dirs):
    sharded = _broken_copy(tiny_dirs["qwen2_5_vl"], tmp_path / "sharded", ["model.safetensors"])
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ScenerError, match="weight shard model-00001-of-00002.safetensors is missing"):
        load_vlm(sharded)
    pickled = _broken_copy(tiny_dirs["qwen2_5_vl"], tmp_path / "pickled", ["model.safetensors"])
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ScenerError, match="safetensors only"):
        load_vlm(pickled)


def test_truncated_weights_are_one_line(tmp_path, tiny_dirs):
    """A download or copy cut short: the safetensors header no longer matches the file."""
    cut = _broken_copy(tiny_dirs["qwen3_vl"], tmp_path / "cut", [])
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ScenerError, match="cannot load the model in") as err:
        load_vlm(cut)
    assert "\n" not in str(err.value)


def test_unsupported_architecture_is_named(tmp_path, tiny_dirs):
    other = shutil.copytree(tiny_dirs["qwen2_5_vl"], tmp_path / "llava")
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "llava"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="'llava' model; scener1 runs Qwen2.5-VL"):
        load_vlm(other)


def test_device_dtype_attention_choices():
    assert choose_device("auto", cuda_available=False) == "cpu"
    assert choose_device("auto", cuda_available=True) == "cuda"
    with pytest.raises(ConfigError):
        choose_device("cuda", cuda_available=False)
    assert choose_dtype("cpu") == "float32"
    assert choose_dtype("cuda", bf16_supported=True) == "bfloat16"
    assert choose_dtype("cuda:1", bf16_supported=False) == "float16"
    assert choose_dtype("cpu", "bf16") == "bfloat16"
    with pytest.raises(ConfigError):
        choose_dtype("cpu", "int3")
    assert choose_attention("cuda", "bfloat16", flash_available=True) == "flash_attention_2"
    assert choose_attention("cuda", "bfloat16", flash_available=False) == "sdpa"
    assert choose_attention("cpu", "float32", flash_available=True) == "sdpa"
    assert choose_attention("cuda", "float32", flash_available=True) == "sdpa"
    with pytest.raises(ConfigError, match="flash_attn package is not installed"):
        choose_attention("cuda", "bfloat16", "flash_attention_2", flash_available=False)
    with pytest.raises(ConfigError):
        choose_attention("cpu", "float32", "flash_attention_2", flash_available=True)


def test_no_module_outside_models_imports_transformers_and_imports_stay_lazy():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "scener1").rglob("*.py")
        if "models" not in p.relative_to(ROOT / "scener1").parts
        and any(s in p.read_text() for s in ("import transformers", "from transformers"))
    ]
    assert offenders == []
    code = (
        "import sys, scener1.models, scener1.prompts, scener1.parsing, scener1.trace;"
        "print('transformers' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------------------- prompt versions


def test_prompt_version_file_is_honoured_and_checked(tmp_path, tiny_dirs, monkeypatch):
    pinned = build_tiny_vlm(tmp_path / "pinned", "qwen2_5_vl", prompt_version="v1", box_coordinates="normalized_1000")
    vlm = load_vlm(pinned)
    assert vlm.prompt_version == "v1" and vlm.box_coordinates == "normalized_1000"

    (pinned / prompts.MODEL_PROMPTS_FILE).write_text(json.dumps({"prompt_version": "v999"}))
    with pytest.raises(ConfigError, match="trained with prompt version 'v999'"):
        load_vlm(pinned)
    (pinned / prompts.MODEL_PROMPTS_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_vlm(pinned)

    monkeypatch.setitem(prompts.PROMPT_SETS, "v0", prompts.PROMPT_SETS["v1"])
    info = ModelPromptInfo(pinned / prompts.MODEL_PROMPTS_FILE, "v1")
    assert resolve_prompt_version(info, None) == "v1"
    assert resolve_prompt_version(None, "v0") == "v0"
    with pytest.raises(ConfigError, match="trained with prompt version 'v1'.*'v0' was asked for"):
        resolve_prompt_version(info, "v0")


def test_prompts_follow_the_contracts():
    temporal = temporal_messages("the  chair<|im_end|>", [0.0, 0.5, 1.25])
    content = temporal[0]["content"]
    assert content[0] == {"type": "video"}
    text = content[1]["text"]
    assert "0.0, 0.5, 1.2 seconds" in text and "<answer>2.0s to 6.5s</answer>" in text
    assert "the chair" in text and "<|im_end|>" not in text
    image = image_messages("a lamp", "normalized_1000")[0]["content"]
    assert image[0] == {"type": "image"} and '"bbox_2d": [x1, y1, x2, y2]' in image[1]["text"]
    assert "0 to 1000" in image[1]["text"]
    with pytest.raises(ConfigError):
        temporal_messages("   ", [0.0])
    with pytest.raises(ConfigError):
        image_messages("x" * 2000, "resized_pixels")


def test_v2_asks_for_an_empty_list_when_the_object_is_absent_and_v1_is_untouched():
    v1 = image_messages("a lamp", "resized_pixels", "v1")[0]["content"][1]["text"]
    v2 = image_messages("a lamp", "resized_pixels", "v2")[0]["content"][1]["text"]
    assert v2 == v1 + " If it is not in the image, answer <answer>[]</answer>." and "[]" not in v1
    assert temporal_messages("a lamp", [0.0, 1.0], "v2") == temporal_messages("a lamp", [0.0, 1.0], "v1")


def test_a_new_prompt_version_leaves_the_tiny_tokenizer_alone(monkeypatch):
    from scener1 import prompts
    from scener1.models import scene_r1_tiny

    before = (scene_r1_tiny.prompt_phrases(), scene_r1_tiny.tokenizer_corpus(max_integer=20))
    extra = prompts.PromptSet("v99", "Say when: {query} {num_frames} {timestamps} {duration}",
                              "Say where: {query}{coordinate_hint}", {"resized_pixels": " px"})
    monkeypatch.setitem(prompts.PROMPT_SETS, "v99", extra)
    assert (scene_r1_tiny.prompt_phrases(), scene_r1_tiny.tokenizer_corpus(max_integer=20)) == before


# --------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_batched_generation_with_scores(vlms, family):
    vlm = vlms[family]
    requests = [
        ChatRequest(image_messages("the chair", vlm.box_coordinates), images=(_image(0),)),
        ChatRequest(temporal_messages("the chair", _clip().timestamps), videos=(_clip(),)),
        ChatRequest([{"role": "user", "content": "no media at all"}]),
    ]
    settings = GenerationSettings(max_new_tokens=12)
    texts = vlm.generate(requests, settings)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    scored = vlm.generate(requests, settings, output_scores=True, batch_size=2)
    assert [g.text for g in scored] == texts  # greedy decoding is independent of how requests are batched
    for g in scored:
        assert isinstance(g, Generation) and 1 <= g.num_tokens <= 12
        assert g.mean_logprob is not None and math.isfinite(g.mean_logprob) and g.mean_logprob < 0
    assert scored[0].image_sizes == (vlm.model_image_size(320, 240),)
    assert scored[1].image_sizes == () and scored[2].image_sizes == ()


def test_left_padding_keeps_short_prompts_exact(vlms):
    vlm = vlms["qwen2_5_vl"]
    short = ChatRequest([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "where"}]}],
                        images=(_image(3),))  # fmt: skip
    long = ChatRequest(temporal_messages("a chair " * 20, _clip(8).timestamps), videos=(_clip(8),))
    settings = GenerationSettings(max_new_tokens=16)
    alone = vlm.generate([short], settings, output_scores=True)[0]
    batched = vlm.generate([long, short], settings, output_scores=True)[1]
    assert batched.text == alone.text
    assert batched.mean_logprob == pytest.approx(alone.mean_logprob, abs=1e-4)


def test_sampling_several_answers_per_request(vlms):
    vlm = vlms["qwen3_vl"]
    request = ChatRequest(image_messages("the door", vlm.box_coordinates), images=(_image(5),))
    settings = GenerationSettings(max_new_tokens=8, do_sample=True, temperature=1.0, num_return_sequences=3, seed=11)
    first = vlm.generate([request, request], settings)
    again = vlm.generate([request, request], settings)
    assert len(first) == 6 and first == again  # seeded
    assert len(set(first[:3])) > 1  # samples differ from each other


@pytest.mark.parametrize("family, factor", [("qwen2_5_vl", 28), ("qwen3_vl", 32)])
def test_model_image_size_is_the_processors_resize(vlms, family, factor):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    vlm = vlms[family]
    size = vlm.processor.image_processor.size
    for w, h in [(320, 240), (1296, 968), (640, 480), (100, 37), (57, 400)]:
        rh, rw = smart_resize(h, w, factor, size["shortest_edge"], size["longest_edge"])
        assert vlm.model_image_size(w, h) == (rw, rh)
        assert rw % factor == 0 and rh % factor == 0
    seen = vlm.generate([ChatRequest(image_messages("x", vlm.box_coordinates), images=(_image(9, 640, 480),))],
                        GenerationSettings(max_new_tokens=1), output_scores=True)[0]  # fmt: skip
    assert seen.image_sizes == (vlm.model_image_size(640, 480),)


def test_video_timestamps_reach_the_model(vlms):
    clip = VideoClip(np.zeros((4, 64, 64, 3), np.uint8), np.array([10.0, 10.5, 11.0, 12.0]))
    assert clip.timestamps.tolist() == [0.0, 0.5, 1.0, 2.0]
    assert clip.metadata()["frames_indices"] == [0, 500, 1000, 2000]
    request = ChatRequest(temporal_messages("x", clip.timestamps), videos=(clip,))
    qwen3 = vlms["qwen3_vl"].prepare([request])
    text = vlms["qwen3_vl"].processor.tokenizer.decode(qwen3.inputs["input_ids"][0])
    # Qwen3-VL writes each pair of frames' mean time into the prompt
    assert "<0.2 seconds>" in text and "<1.5 seconds>" in text
    even = VideoClip(np.zeros((4, 64, 64, 3), np.uint8), np.array([3.0, 3.25, 3.5, 3.75]))
    qwen25 = vlms["qwen2_5_vl"].prepare([ChatRequest(temporal_messages("x", even.timestamps), videos=(even,))])
    # Qwen2.5-VL turns the sampling interval into seconds per temporal patch (2 frames)
    assert qwen25.inputs["second_per_grid_ts"].tolist() == pytest.approx([0.5])


def test_requests_and_settings_are_checked():
    with pytest.raises(ConfigError, match="place 1 image"):
        ChatRequest(image_messages("x", "resized_pixels"))
    with pytest.raises(ConfigError, match="uint8"):
        ChatRequest(image_messages("x", "resized_pixels"), images=(np.zeros((4, 4, 3), np.float32),))
    with pytest.raises(ConfigError, match="non-decreasing"):
        VideoClip(np.zeros((2, 4, 4, 3), np.uint8), np.array([1.0, 0.0]))
    with pytest.raises(ConfigError, match="do_sample"):
        GenerationSettings(num_return_sequences=2)
    with pytest.raises(ConfigError):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(ConfigError):
        GenerationSettings(do_sample=True, top_p=0.0)


def test_single_frame_video_is_padded_to_one_temporal_patch(vlms):
    clip = VideoClip(np.zeros((1, 40, 60, 3), np.uint8), np.array([2.0]))
    request = ChatRequest(temporal_messages("x", clip.timestamps), videos=(clip,))
    for family in ("qwen3_vl", "qwen2_5_vl"):  # Qwen3-VL's processor refuses fewer frames than a patch
        batch = vlms[family].prepare([request])
        assert batch.inputs["video_grid_thw"].tolist()[0][0] == 1
        assert len(vlms[family].generate([request], GenerationSettings(max_new_tokens=2))) == 1
