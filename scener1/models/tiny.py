"""Tiny, randomly initialised Qwen-VL models with their own tokenizer, built offline in well under a second.

They exist so that tests (and smoke runs of training) exercise exactly the path real weights take:
:func:`build_tiny_vlm` writes a complete checkpoint directory (safetensors weights, config, tokenizer,
processor, chat template) and :func:`scener1.models.load_vlm` reads it back with ``from_pretrained``.
The architecture, processors and special tokens are those of the real families; only the sizes shrink.
Their answers are random text, which is what fallback paths need to be tested against.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..prompts import DEFAULT_PROMPT_VERSION, PROMPT_SETS, write_model_prompt_info

TINY_FAMILIES = ("qwen2_5_vl", "qwen3_vl", "qwen2_vl")

#: The Qwen special tokens the processors and chat template rely on (same strings as the real vocabulary).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: The Qwen2-VL conversation format: a default system turn, then <|im_start|>role ... <|im_end|> turns,
#: each image or video as <|vision_start|><|image_pad|/video_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def default_corpus() -> list[str]:
    """Text resembling what the stages read and write: the prompts, answers, numbers and JSON."""
    texts = []
    for prompts in PROMPT_SETS.values():
        texts.append(prompts.temporal.format(query="the brown chair next to the table", num_frames=8,
                                             timestamps="0.0, 2.0, 4.0, 6.0", duration="6.0"))
        for hint in prompts.coordinate_hints.values():
            texts.append(prompts.image.format(query="the lamp on the desk", coordinate_hint=hint))
    texts += [
        "<think>The chair is seen in the frames from 4.0 to 9.5 seconds.</think><answer>4.0s to 9.5s</answer>",
        '<think>It is left of the table.</think><answer>{"bbox_2d": [112, 56, 308, 252], "label": "chair"}</answer>',
        " ".join(str(i) for i in range(0, 1001, 7)),
        "table chair sofa bed door window lamp desk cabinet shelf picture sink toilet bathtub counter curtain",
    ]
    return texts


def train_tiny_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer (any text round-trips) with the Qwen special tokens, trained in ms."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus) if corpus is not None else default_corpus(), trainer)
    return qwen_tokenizer(tokenizer)


def qwen_tokenizer(tokenizer: Any) -> Any:
    """A ``tokenizers.Tokenizer`` wrapped for transformers with Qwen's special tokens and left padding."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        padding_side="left",
        model_max_length=32768,
    )


def _processor(family: str, tokenizer: Any, max_tokens_per_image: int) -> Any:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    patch = 16 if family == "qwen3_vl" else 14
    factor = patch * 2  # patch size x spatial merge size
    pixels = {"shortest_edge": factor * factor * 4, "longest_edge": factor * factor * max_tokens_per_image}
    image = Qwen2VLImageProcessor(size=dict(pixels), patch_size=patch, merge_size=2, temporal_patch_size=2)
    if family == "qwen3_vl":
        from transformers import Qwen3VLProcessor
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        # Qwen3-VL's video limit counts the pixels of all frames together
        video_pixels = {"shortest_edge": pixels["shortest_edge"], "longest_edge": pixels["longest_edge"] * 64}
        video = Qwen3VLVideoProcessor(size=video_pixels, patch_size=patch, merge_size=2, temporal_patch_size=2)
        return Qwen3VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                                chat_template=CHAT_TEMPLATE)
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    video = Qwen2VLVideoProcessor(size=dict(pixels), patch_size=patch, merge_size=2, temporal_patch_size=2)
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor as cls
    else:
        from transformers import Qwen2VLProcessor as cls
    return cls(image_processor=image, tokenizer=tokenizer, video_processor=video, chat_template=CHAT_TEMPLATE)


def _model(family: str, ids: dict[str, int], vocab: int, hidden: int, layers: int, heads: int, vision_depth: int,
           vision_hidden: int) -> Any:
    import transformers

    if hidden % heads or (hidden // heads) % 8:
        raise ConfigError("hidden_size / num_heads must be a multiple of 8 (M-RoPE splits it in three)")
    half = hidden // heads // 2  # rotary frequencies per head, shared out over time, height and width
    text: dict[str, Any] = dict(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=8192,
        pad_token_id=ids["<|endoftext|>"],
    )
    tokens = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    if family == "qwen3_vl":
        text.update(head_dim=hidden // heads, rope_parameters={
            "rope_type": "default", "rope_theta": 10000.0, "mrope_interleaved": True,
            "mrope_section": [half - 2 * (half // 4), half // 4, half // 4],
        })
        vision = dict(depth=vision_depth, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_heads=2,
                      out_hidden_size=hidden, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                      num_position_embeddings=64, deepstack_visual_indexes=[vision_depth - 1])
        config = transformers.Qwen3VLConfig(text_config=text, vision_config=vision, **tokens)
        return transformers.Qwen3VLForConditionalGeneration(config)
    third = half // 3
    text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [half - 2 * third, third, third],
    })
    if family == "qwen2_5_vl":
        vision = dict(depth=vision_depth, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_heads=2,
                      out_hidden_size=hidden, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                      window_size=56, fullatt_block_indexes=[vision_depth - 1])
        config = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)
        return transformers.Qwen2_5_VLForConditionalGeneration(config)
    vision = dict(depth=vision_depth, embed_dim=vision_hidden, hidden_size=hidden, mlp_ratio=2, num_heads=2,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    config = transformers.Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
    return transformers.Qwen2VLForConditionalGeneration(config)


def build_tiny_vlm(
    out_dir: str | Path,
    family: str = "qwen2_5_vl",
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_depth: int = 2,
    vision_hidden_size: int = 32,
    max_tokens_per_image: int = 16,
    vocab_size: int = 512,
    corpus: Iterable[str] | None = None,
    prompt_version: str | None = None,
    box_coordinates: str | None = None,
) -> Path:
    """Write a tiny random ``family`` checkpoint to ``out_dir`` and return the directory.

    Patch and merge sizes are the family's real ones (14 x 2 for Qwen2/2.5-VL, 16 x 2 for Qwen3-VL) so
    resize arithmetic is exercised as with real weights; images are capped at ``max_tokens_per_image``
    merged patches to keep the sequences short. With ``prompt_version`` a ``scener1_prompts.json`` is
    written as a fine-tuning run would.
    """
    if family not in TINY_FAMILIES:
        raise ConfigError(f"unknown tiny model family '{family}'; choose from {', '.join(TINY_FAMILIES)}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_tokenizer(corpus, vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays untouched
        torch.manual_seed(seed)
        model = _model(family, ids, len(tokenizer), hidden_size, num_layers, num_heads, vision_depth,
                       vision_hidden_size)
    model.eval()
    generation = model.generation_config
    generation.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    generation.pad_token_id = ids["<|endoftext|>"]
    generation.do_sample = False
    model.save_pretrained(out)  # safetensors
    _processor(family, tokenizer, max_tokens_per_image).save_pretrained(out)
    if prompt_version is not None or box_coordinates is not None:
        write_model_prompt_info(out, prompt_version or DEFAULT_PROMPT_VERSION, box_coordinates)
    return out
