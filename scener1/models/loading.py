"""Finding and loading vision-language weights from disk, never from the network.

A model is named by a local directory or by a Hugging Face repo id already in the local HF cache.
Device, dtype and attention kernel are chosen for the machine unless set: bf16 on CUDA (fp16 where the
GPU lacks bf16), float32 on CPU, FlashAttention-2 only on CUDA with the ``flash_attn`` package, else SDPA.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ScenerError
from ..prompts import read_model_prompt_info, resolve_prompt_version
from .families import family_for_model_type
from .vlm import VLM

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}")
_DTYPES = {
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "float32": "float32", "fp32": "float32", "float": "float32",
}  # fmt: skip
_ATTENTION = ("flash_attention_2", "sdpa", "eager")
EXPECTED_FILES = "config.json, model*.safetensors, tokenizer.json and preprocessor_config.json"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def hf_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The Hugging Face hub cache searched for repo ids (``HF_HUB_CACHE`` / ``HF_HOME`` respected)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_model_dir(model: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The directory holding the model's files: ``model`` itself, or its snapshot in the local HF cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ScenerError(f"model path {path} is a file; pass the model's directory ({EXPECTED_FILES})")
    name = str(model)
    if _REPO_ID.fullmatch(name) and not name.startswith("."):
        from huggingface_hub import snapshot_download

        cache = hf_cache_dir(cache_dir)
        try:
            return Path(snapshot_download(name, local_files_only=True, cache_dir=cache))
        except Exception:  # huggingface_hub's "not cached" errors differ between versions
            org, repo = name.split("/")
            raise ScenerError(
                f"model '{name}' is neither a local directory nor in the Hugging Face cache "
                f"(looked for {cache / f'models--{org}--{repo}'}); fetch it where there is network "
                f"(`hf download {name}`) or pass the model's directory"
            ) from None
    raise ScenerError(f"model directory not found: {path} (expected {EXPECTED_FILES} there)")


def check_model_files(path: Path) -> dict[str, Any]:
    """Check that ``path`` holds a complete safetensors checkpoint; return its ``config.json``."""
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ScenerError(f"{path} is not a model directory: no config.json (expected {EXPECTED_FILES})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScenerError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ScenerError(f"{config_path}: no 'model_type'")

    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise ScenerError(f"{index}: not a valid safetensors index") from None
        missing = [s for s in shards if Path(s).name != s or not (path / s).is_file()]
        if missing:
            raise ScenerError(
                f"{path}: weight shard {missing[0]} is missing ({len(missing)} of {len(shards)} absent; "
                "an interrupted download?)"
            )
    elif not (path / "model.safetensors").is_file():
        if any(path.glob("*.bin")):
            raise ScenerError(
                f"{path} holds only PyTorch .bin weights; scener1 loads safetensors only (they cannot run code)"
            )
        raise ScenerError(f"{path}: no weights (expected model.safetensors or model.safetensors.index.json)")

    if not any((path / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")):
        raise ScenerError(f"{path}: no preprocessor_config.json or processor_config.json (the image processor)")
    if not ((path / "tokenizer.json").is_file() or ((path / "vocab.json").is_file() and (path / "merges.txt").is_file())):
        raise ScenerError(f"{path}: no tokenizer (expected tokenizer.json, or vocab.json and merges.txt)")
    return config


def choose_device(requested: str | None = "auto", cuda_available: bool | None = None) -> str:
    """``"cuda"`` when a GPU is visible and nothing else was asked for, else ``"cpu"``."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested.startswith("cuda"):
        if not cuda_available:
            raise ConfigError(f"device '{requested}' asked for but no CUDA GPU is visible")
        return requested
    if requested in ("cpu", "mps"):
        return requested
    raise ConfigError(f"unknown device '{requested}'; use auto, cpu, cuda or cuda:N")


def choose_dtype(device: str, requested: str | None = "auto", bf16_supported: bool | None = None) -> str:
    """The weights' dtype name: bfloat16 on CUDA (float16 on GPUs without bf16), float32 elsewhere."""
    requested = (requested or "auto").strip().lower()
    if requested != "auto":
        if requested not in _DTYPES:
            raise ConfigError(f"unknown dtype '{requested}'; use auto, bfloat16, float16 or float32")
        return _DTYPES[requested]
    if not device.startswith("cuda"):
        return "float32"  # half precision on CPU is slow and loses accuracy for no gain in memory that matters
    if bf16_supported is None:
        import torch

        bf16_supported = torch.cuda.is_bf16_supported()
    return "bfloat16" if bf16_supported else "float16"


def choose_attention(
    device: str, dtype: str, requested: str | None = "auto", flash_available: bool | None = None
) -> str:
    """FlashAttention-2 on CUDA in half precision when ``flash_attn`` is installed, else PyTorch SDPA."""
    if flash_available is None:
        flash_available = importlib.util.find_spec("flash_attn") is not None
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        usable = flash_available and device.startswith("cuda") and dtype in ("bfloat16", "float16")
        return "flash_attention_2" if usable else "sdpa"
    if requested not in _ATTENTION:
        raise ConfigError(f"unknown attention '{requested}'; use auto, {', '.join(_ATTENTION)}")
    if requested == "flash_attention_2":
        if not flash_available:
            raise ConfigError("attention flash_attention_2 asked for but the flash_attn package is not installed")
        if not device.startswith("cuda") or dtype not in ("bfloat16", "float16"):
            raise ConfigError("flash_attention_2 needs a CUDA device and bfloat16 or float16 weights")
    return requested


def load_vlm(
    model: str | Path,
    *,
    device: str | None = "auto",
    dtype: str | None = "auto",
    attn_implementation: str | None = "auto",
    trust_remote_code: bool = False,
    prompt_version: str | None = None,
    batch_size: int = 8,
    cache_dir: str | Path | None = None,
) -> VLM:
    """Load a Qwen2.5-VL, Qwen2-VL or Qwen3-VL checkpoint from a directory or the local HF cache.

    Nothing is downloaded. Missing or partial weights raise a one-line :class:`ScenerError` naming the
    path looked at; a ``scener1_prompts.json`` in the directory pins the prompt version (and box
    convention) the model was trained with.
    """
    path = resolve_model_dir(model, cache_dir)
    config = check_model_files(path)
    family = family_for_model_type(config["model_type"], where=str(path))
    info = read_model_prompt_info(path)
    version = resolve_prompt_version(info, prompt_version)
    box = info.box_coordinates if info is not None and info.box_coordinates else family.box_coordinates
    dev = choose_device(device)
    dt = choose_dtype(dev, dtype)
    attn = choose_attention(dev, dt, attn_implementation)

    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
        net = AutoModelForImageTextToText.from_pretrained(
            path,
            local_files_only=True,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            dtype=getattr(torch, dt),
            attn_implementation=attn,
            device_map=None if dev == "cpu" else {"": dev},
        )
    except (OSError, ValueError, KeyError, ImportError, SafetensorError) as exc:  # the last: truncated weights
        raise ScenerError(f"cannot load the model in {path}: {_first_line(exc)}") from None
    net.eval()
    return VLM(net, processor, family, path=path, prompt_version=version, box_coordinates=box, batch_size=batch_size)
