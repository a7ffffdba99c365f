"""The vision-language model families scener1 runs, and what differs between them (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class ModelFamily:
    """One family of checkpoints sharing an architecture, a processor and a box convention.

    ``box_coordinates`` is what the family's released checkpoints write in boxes (see
    :mod:`scener1.parsing`); a fine-tuned model may declare its own in ``scener1_prompts.json``.
    """

    name: str
    display_name: str
    model_types: tuple[str, ...]  # config.json "model_type" values of the family
    box_coordinates: str
    example_repo: str


FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        # Qwen2.5-VL writes absolute pixels of the image as its processor resized it (multiples of 28)
        ModelFamily("qwen2_5_vl", "Qwen2.5-VL", ("qwen2_5_vl",), "resized_pixels", "Qwen/Qwen2.5-VL-7B-Instruct"),
        # Qwen2-VL was trained on 0-1000 coordinates
        ModelFamily("qwen2_vl", "Qwen2-VL", ("qwen2_vl",), "normalized_1000", "Qwen/Qwen2-VL-7B-Instruct"),
        # the Qwen team states Qwen3-VL went back to 0-1000 relative coordinates (QwenLM/Qwen3-VL#1427, #1741)
        ModelFamily(
            "qwen3_vl", "Qwen3-VL", ("qwen3_vl", "qwen3_vl_moe"), "normalized_1000", "Qwen/Qwen3-VL-8B-Instruct"
        ),
    )
}


def family_for_model_type(model_type: str, where: str = "the model") -> ModelFamily:
    """The family whose checkpoints have this ``model_type``."""
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = ", ".join(f"{f.display_name} ({'/'.join(f.model_types)})" for f in FAMILIES.values())
    raise ConfigError(f"{where} is a '{model_type}' model; scener1 runs {supported}")
