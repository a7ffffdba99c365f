"""3D visual question answering: VSI-Bench-type questions measured on the lifted 3D objects, free-form questions
answered by the VLM with the measurements as context (``scener1 vqa``).

>>> from scener1.vqa import VQAEngine, route
>>> route("How many chair(s) are in this room?").qtype
'object_counting'
>>> engine = VQAEngine.build(grounder="oracle", mode="geometry")   # doctest: +SKIP

Names load their module on first use, so the CLI parser stays light.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "route": "router",
    "mention": "router",
    "parse_options": "router",
    "Mention": "router",
    "Option": "router",
    "RoutedQuestion": "router",
    "QUESTION_TYPES": "router",
    "Detection": "grounding",
    "Detector": "grounding",
    "GroundingSettings": "grounding",
    "GroundedMention": "grounding",
    "Instance": "grounding",
    "InstanceGrounder": "grounding",
    "PipelineDetector": "grounding",
    "SynthOracleDetector": "oracle",
    "ScanNetOracleDetector": "oracle",
    "GeometricHeads": "heads",
    "HeadAnswer": "heads",
    "HeadSettings": "heads",
    "SceneFacts": "heads",
    "VLMAnswerer": "vlm_head",
    "VLMSettings": "vlm_head",
    "read_answer": "vlm_head",
    "MODES": "engine",
    "Question": "engine",
    "VQAEngine": "engine",
    "VQAResult": "engine",
    "VQASettings": "engine",
    "settings_from_overrides": "engine",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
