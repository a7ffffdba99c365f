"""Vision-language models: loading real or tiny Qwen-VL checkpoints and generating from them.

Everything that touches transformers lives in this package (imported lazily, so importing it is cheap).

>>> from scener1.models import load_vlm, ChatRequest
>>> vlm = load_vlm("Qwen/Qwen2.5-VL-7B-Instruct")   # a local directory or the local HF cache
>>> vlm.generate([ChatRequest(messages, images=(frame,))])
"""

from .families import FAMILIES, ModelFamily, family_for_model_type
from .loading import (
    check_model_files,
    choose_attention,
    choose_device,
    choose_dtype,
    hf_cache_dir,
    load_vlm,
    resolve_model_dir,
)
from .vlm import (
    VIDEO_CLOCK_HZ,
    VLM,
    ChatRequest,
    Generation,
    GenerationSettings,
    PreparedBatch,
    RecordedVLM,
    VideoClip,
)

__all__ = [
    "FAMILIES",
    "VIDEO_CLOCK_HZ",
    "VLM",
    "ChatRequest",
    "Generation",
    "GenerationSettings",
    "ModelFamily",
    "PreparedBatch",
    "RecordedVLM",
    "VideoClip",
    "check_model_files",
    "choose_attention",
    "choose_device",
    "choose_dtype",
    "family_for_model_type",
    "hf_cache_dir",
    "load_vlm",
    "resolve_model_dir",
]
