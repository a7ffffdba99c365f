"""The architecture of Scene-R1-tiny: a small Qwen3-VL trained from scratch on synthetic scenes.

Choices that made a model this small learn to point at things (measured while planning issue 7): the
Qwen3-VL vision tower, whose learned absolute position embeddings tell every patch where it is (the
Qwen2.5-VL tower has no absolute position signal), and whole integers as single tokens, so a coordinate
is one prediction instead of a chain of digits. Integer tokens start from embeddings that vary smoothly
with their value (sinusoids), which gives the tied output layer an ordinal prior: a logit for 112 is
close to the logits for 111 and 113. Images are small (the processor's budget, about 256 x 192) and boxes
are written in the resized image's pixels, declared in ``scener1_prompts.json``.

The checkpoint is an ordinary Qwen3-VL directory: ``load_vlm`` reads it with ``from_pretrained``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..prompts import DEFAULT_PROMPT_VERSION, PROMPT_SETS, write_model_prompt_info
from .tiny import CHAT_TEMPLATE, SPECIAL_TOKENS, qwen_tokenizer

PATCH = 16  # Qwen3-VL patch size; a merged token covers PATCH * MERGE pixels on a side
MERGE = 2


@dataclass(frozen=True)
class TinyVLMSpec:
    """Sizes of the model, its tokenizer and its processor's pixel budgets.

    ``image_max_pixels`` caps each image after the processor's resize (multiples of 32); a 320 x 240 frame
    becomes 256 x 192 (48 tokens). ``video_max_pixels`` caps a video's frames *together* (Qwen3-VL counts
    frames x height x width), so 20 frames of 320 x 240 become 128 x 96 each.
    """

    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 768
    vision_hidden_size: int = 128
    vision_depth: int = 4
    vision_heads: int = 4
    num_position_embeddings: int = 256  # a 16 x 16 grid of learned positions, interpolated to the image
    max_integer: int = 1000  # 0..max_integer are single tokens, with and without a leading space
    image_max_pixels: int = 256 * 192
    image_min_pixels: int = 64 * 64
    video_max_pixels: int = 20 * 128 * 96
    video_min_pixels: int = 2 * 64 * 64
    integer_init_share: float = 0.5  # share of an integer token's initial embedding that is sinusoidal
    vision_position_init: str = "sincos"  # sincos: 2D sinusoids as strong as the patch features; random
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 8:
            raise ConfigError("hidden_size / num_heads must be a multiple of 8 (M-RoPE splits it in three)")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError("num_heads must be a multiple of num_kv_heads")
        if self.vision_hidden_size % self.vision_heads:
            raise ConfigError("vision_hidden_size must be a multiple of vision_heads")
        if math.isqrt(self.num_position_embeddings) ** 2 != self.num_position_embeddings:
            raise ConfigError("num_position_embeddings must be a square (a grid of positions)")
        if not 0 <= self.integer_init_share <= 1:
            raise ConfigError("integer_init_share must be in [0, 1]")
        if self.max_integer < 1:
            raise ConfigError("max_integer must be >= 1")
        if self.vision_position_init not in ("sincos", "random"):
            raise ConfigError(f"vision_position_init must be sincos or random, got {self.vision_position_init!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The prompt versions whose wording the tokenizer is built from. Frozen: a later version must not change the
#: tokenizer (and so the initial weights) of a recipe that builds an earlier one; the wording it adds is read
#: through byte-level BPE, a few tokens longer.
TOKENIZER_PROMPT_VERSIONS = ("v1",)


def tokenizer_prompt_sets() -> list[Any]:
    return [PROMPT_SETS[v] for v in TOKENIZER_PROMPT_VERSIONS]


def tokenizer_corpus(extra: Iterable[str] = (), max_integer: int = 1000) -> list[str]:
    """Text the tokenizer is trained on: every prompt wording, the synthetic scenes' vocabulary, answers,
    and each integer 0..max_integer both after a space and after a bracket (so both forms become one token)."""
    from ..synth.objects import CATEGORIES, COLORS, plural

    texts: list[str] = []
    for prompts in tokenizer_prompt_sets():
        times = ", ".join(f"{t / 2:.1f}" for t in range(40))
        texts.append(prompts.temporal.format(query="the red chair next to the desk", num_frames=20, timestamps=times,
                                             duration="9.5"))
        for hint in prompts.coordinate_hints.values():
            texts.append(prompts.image.format(query="the lamp on the desk", coordinate_hint=hint))
    words = [*CATEGORIES, *(plural(c) for c in CATEGORIES), *COLORS, "door", "window", "room", "image", "frames"]
    texts += [" ".join(words)] * 4
    texts += [
        ("<think>The red chair is next to the desk, near the window. It is in the left part of the image.</think>"
         '<answer>{"bbox_2d": [112, 56, 208, 152], "label": "chair"}</answer>'),
        "<think>The lamp is seen from 2.0 to 4.5 seconds.</think><answer>2.0s to 4.5s</answer>",
        ("on top of under underneath below beside right next to between in between near close to by closest nearest "
         "farthest furthest away from largest biggest smallest the this is a there is it is among pick one find "
         "seconds seen clearly left right top bottom middle centre part of"),
    ]
    texts += list(extra)
    numbers = range(max_integer + 1)
    # repeated so that the integers win their merges before rarer text does
    texts += [" ".join(str(i) for i in numbers)] * 16 + [" ".join(f"[{i}]" for i in numbers)] * 16
    return texts


SYSTEM_PROMPT = "You are a helpful assistant."  # the default system turn of the chat template


def prompt_phrases(extra: Iterable[str] = ()) -> list[str]:
    """The fixed stretches of every prompt wording (the text between its fields) and the system prompt.

    They become single (non-special) tokens: the model still reads the exact wording, but a prompt costs a
    few tokens instead of a hundred, which is most of a training sample's length on a small image.
    """
    marker = "\x00"
    phrases: list[str] = [SYSTEM_PROMPT]
    for prompts in tokenizer_prompt_sets():
        temporal = prompts.temporal.format(query=marker, num_frames=marker, timestamps=marker, duration=marker)
        image = prompts.image.format(query=marker, coordinate_hint=marker)
        phrases += temporal.split(marker) + image.split(marker) + list(prompts.coordinate_hints.values())
    phrases += list(extra)
    return sorted({p for p in phrases if p.strip()}, key=lambda p: (-len(p), p))


def train_tokenizer(max_integer: int = 1000, extra: Iterable[str] = (), phrases: Iterable[str] = ()) -> Any:
    """Byte-level BPE (any text round-trips) with the Qwen special tokens; each integer up to
    ``max_integer`` is one token and each prompt phrase (:func:`prompt_phrases`, plus ``phrases``: the
    fixed text of training-only prompts) is one token.
    Raises ConfigError when an integer did not become one token."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8 * (max_integer + 1) + 2048,  # a ceiling: training stops when no pair is left to merge
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_corpus(extra, max_integer), trainer)
    split = [i for i in range(max_integer + 1) if len(tokenizer.encode(str(i)).ids) != 1
             or len(tokenizer.encode(f" {i}").ids) != 1]
    if split:
        raise ConfigError(f"{len(split)} integers are not single tokens (first: {split[0]})")
    tokenizer.add_tokens([AddedToken(p, normalized=False, special=False) for p in prompt_phrases(phrases)])
    return qwen_tokenizer(tokenizer)


def integer_token_ids(tokenizer: Any, max_integer: int) -> dict[int, tuple[int, int]]:
    """Value -> (token id without, with a leading space) for 0..max_integer."""
    out = {}
    for i in range(max_integer + 1):
        bare = tokenizer.convert_tokens_to_ids(str(i))
        spaced = tokenizer(f" {i}", add_special_tokens=False)["input_ids"]
        out[i] = (int(bare), int(spaced[0]))
    return out


def build_processor(tokenizer: Any, spec: TinyVLMSpec) -> Any:
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    image = Qwen2VLImageProcessor(
        size={"shortest_edge": spec.image_min_pixels, "longest_edge": spec.image_max_pixels},
        patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2,
    )
    video = Qwen3VLVideoProcessor(
        size={"shortest_edge": spec.video_min_pixels, "longest_edge": spec.video_max_pixels},
        patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2,
    )
    return Qwen3VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                            chat_template=CHAT_TEMPLATE)


def build_model(spec: TinyVLMSpec, tokenizer: Any) -> Any:
    """A randomly initialised Qwen3-VL of ``spec``'s sizes, integer tokens given their sinusoidal start."""
    import torch
    import transformers

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = spec.hidden_size // spec.num_heads
    half = head_dim // 2  # rotary frequencies per head, shared out over time, height and width (interleaved)
    text = dict(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        head_dim=head_dim, max_position_embeddings=8192, pad_token_id=ids["<|endoftext|>"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_interleaved": True,
                         "mrope_section": [half - 2 * (half // 4), half // 4, half // 4]},
        tie_word_embeddings=True,
    )
    vision = dict(
        depth=spec.vision_depth, hidden_size=spec.vision_hidden_size, intermediate_size=2 * spec.vision_hidden_size,
        num_heads=spec.vision_heads, out_hidden_size=spec.hidden_size, patch_size=PATCH, spatial_merge_size=MERGE,
        temporal_patch_size=2, num_position_embeddings=spec.num_position_embeddings,
        deepstack_visual_indexes=[spec.vision_depth // 2 - 1, spec.vision_depth - 1] if spec.vision_depth >= 2
        else [0],
    )
    config = transformers.Qwen3VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=True,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays untouched
        torch.manual_seed(spec.seed)
        model = transformers.Qwen3VLForConditionalGeneration(config)
        model.tie_weights()
        embed = model.get_input_embeddings().weight
        with torch.no_grad():
            table = integer_token_ids(tokenizer, spec.max_integer)
            values = torch.tensor(sorted(table), dtype=torch.float32)
            smooth = sinusoid_table(values, spec.hidden_size, spec.max_integer) * embed.std()
            for variant in range(2):
                rows = torch.tensor([table[int(v)][variant] for v in values.tolist()])
                embed[rows] = (1 - spec.integer_init_share) * embed[rows] + spec.integer_init_share * smooth
            if spec.vision_position_init == "sincos":
                model.model.visual.pos_embed.weight.copy_(position_grid_table(spec))
    generation = model.generation_config
    generation.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    generation.pad_token_id = ids["<|endoftext|>"]
    generation.do_sample = False
    return model


def sinusoid_table(values: Any, dim: int, max_value: int) -> Any:
    """(len(values), dim) unit-variance sinusoids of ``values``; wavelengths from 4 to 4 x max_value."""
    import torch

    k = torch.arange(dim // 2, dtype=torch.float32)
    wavelength = 4.0 * (max_value ** (k / max(dim // 2 - 1, 1)))
    angle = 2 * math.pi * values[:, None] / wavelength[None, :]
    table = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1) * math.sqrt(2.0)
    if table.shape[1] < dim:
        table = torch.cat([table, torch.zeros(len(values), dim - table.shape[1])], dim=1)
    return table


def position_grid_table(spec: TinyVLMSpec) -> Any:
    """(num_position_embeddings, vision_hidden_size) start of the vision tower's absolute position grid:
    sinusoids of the column in one half of the channels, of the row in the other (as MAE's 2D sin-cos),
    at unit RMS. The default initialiser (std 0.02) left the position signal 40x weaker than the patch
    features (RMS 0.8 on a synthetic frame), and six thousand steps only grew it to 0.03: the model had to
    learn where things are from relative rotary positions alone."""
    import torch

    side = math.isqrt(spec.num_position_embeddings)
    half = spec.vision_hidden_size // 2
    index = torch.arange(side, dtype=torch.float32)
    column = sinusoid_table(index, half, side - 1)  # (side, half)
    row = sinusoid_table(index, spec.vision_hidden_size - half, side - 1)
    return torch.cat([column.repeat(side, 1), row.repeat_interleave(side, dim=0)], dim=1)


def build_scene_r1_tiny(
    out_dir: str | Path,
    spec: TinyVLMSpec | None = None,
    *,
    prompt_version: str = DEFAULT_PROMPT_VERSION,
    box_coordinates: str = "resized_pixels",
    phrases: Iterable[str] = (),
) -> Path:
    """Write an untrained Scene-R1-tiny checkpoint (weights, tokenizer, processor, prompt info) to ``out_dir``;
    ``phrases`` are fixed prompt texts beyond the pipeline's (training-only prompts) made single tokens."""
    spec = spec or TinyVLMSpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(spec.max_integer, phrases=phrases)
    model = build_model(spec, tokenizer)
    model.eval()
    model.save_pretrained(out)
    build_processor(tokenizer, spec).save_pretrained(out)
    write_model_prompt_info(out, prompt_version, box_coordinates)
    return out


def count_parameters(model: Any) -> int:
    """Distinct parameters (tied weights counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
