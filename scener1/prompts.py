"""The prompts of the VLM stages and the answer formats they ask for, in one versioned place.

Output contracts (as in Scene-R1):

- temporal stage: ``<think>...</think><answer>Xs to Ys</answer>``, seconds from the first frame shown;
- image stage: ``<think>...</think><answer>{"bbox_2d": [x1, y1, x2, y2], "label": "chair"}</answer>``; from
  version v2 also ``<think>...</think><answer>[]</answer>`` when the object is not in the image.

A model fine-tuned on these prompts must be run with the same wording, so each wording is frozen under a
version string and never edited: a change is a new version. A model directory may carry
``scener1_prompts.json`` (``{"prompt_version": "v1", "box_coordinates": "resized_pixels"}``) naming the
version it was trained with; :func:`resolve_prompt_version` holds a run to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .parsing import BOX_CONVENTIONS

DEFAULT_PROMPT_VERSION = "v1"
MODEL_PROMPTS_FILE = "scener1_prompts.json"
MAX_QUERY_CHARS = 1000


@dataclass(frozen=True)
class PromptSet:
    """The frozen wording of both stages under one version.

    ``temporal`` takes ``{query}``, ``{num_frames}``, ``{timestamps}`` and ``{duration}``; ``image`` takes
    ``{query}`` and ``{coordinate_hint}``, one of ``coordinate_hints`` chosen by the model's box convention.
    ``absent_answer``: the image prompt asks for ``<answer>[]</answer>`` when the object is not in the
    image (so training may show the model frames without it).
    """

    version: str
    temporal: str
    image: str
    coordinate_hints: Mapping[str, str]
    absent_answer: bool = False


_V1 = PromptSet(
    version="v1",
    temporal=(
        "The video shows an indoor scene in {num_frames} frames taken at {timestamps} seconds "
        "(it lasts {duration} seconds).\n"
        "Find the time span in which this object is clearly seen: {query}\n"
        "First reason about which frames show it inside <think> </think> tags, then give the span inside "
        "<answer> </answer> tags as start and end in seconds, for example <answer>2.0s to 6.5s</answer>."
    ),
    image=(
        "Find this object in the image: {query}\n"
        "First reason about where it is inside <think> </think> tags, then give its bounding box and a "
        "one-word label as JSON inside <answer> </answer> tags, for example "
        '<answer>{{"bbox_2d": [x1, y1, x2, y2], "label": "chair"}}</answer>.{coordinate_hint}'
    ),
    coordinate_hints={
        "resized_pixels": " Give the coordinates in pixels of the image.",
        "normalized_1000": " Give the coordinates on a 0 to 1000 scale of the image width and height.",
    },
)

_V2 = PromptSet(
    version="v2",
    temporal=_V1.temporal,
    image=_V1.image + " If it is not in the image, answer <answer>[]</answer>.",
    coordinate_hints=_V1.coordinate_hints,
    absent_answer=True,
)

#: Every released wording, by version. Never edit one: add a new version instead.
PROMPT_SETS: dict[str, PromptSet] = {p.version: p for p in (_V1, _V2)}


def get_prompts(version: str | None = None) -> PromptSet:
    """The prompt set named ``version`` (the default when ``None``)."""
    version = DEFAULT_PROMPT_VERSION if version is None else version
    try:
        return PROMPT_SETS[version]
    except KeyError:
        raise ConfigError(f"unknown prompt version '{version}'; known: {', '.join(PROMPT_SETS)}") from None


_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]{0,40}\|>")


def clean_query(query: str) -> str:
    """The query on one line, without chat-template control tokens (they would break the prompt's structure)."""
    if not isinstance(query, str):
        raise ConfigError(f"the query must be text, got {type(query).__name__}")
    text = " ".join(_SPECIAL_TOKEN.sub(" ", query).split())
    if not text:
        raise ConfigError("the query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise ConfigError(f"the query is {len(text)} characters long; at most {MAX_QUERY_CHARS} are accepted")
    return text


def _seconds(t: float) -> str:
    return f"{t:.1f}"


def temporal_messages(query: str, timestamps: Sequence[float], version: str | None = None) -> list[dict[str, Any]]:
    """Chat messages of the temporal stage: one video (its frames shown at ``timestamps``) and the question."""
    prompts = get_prompts(version)
    times = [float(t) for t in timestamps]
    if not times:
        raise ConfigError("the temporal prompt needs at least one frame")
    text = prompts.temporal.format(
        query=clean_query(query),
        num_frames=len(times),
        timestamps=", ".join(_seconds(t) for t in times),
        duration=_seconds(times[-1] - times[0]),
    )
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]


def image_messages(query: str, box_coordinates: str, version: str | None = None) -> list[dict[str, Any]]:
    """Chat messages of the image stage: one image and the question, hinting the model's box convention."""
    prompts = get_prompts(version)
    if box_coordinates not in BOX_CONVENTIONS:
        raise ConfigError(f"unknown box convention '{box_coordinates}'; choose from {', '.join(BOX_CONVENTIONS)}")
    text = prompts.image.format(query=clean_query(query), coordinate_hint=prompts.coordinate_hints[box_coordinates])
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


#: The prompt of the dense auxiliary task: every object of a frame with its box and label. Models are trained on it
#: (``detect`` rows of :mod:`scener1.rl.datasets`); the VQA detector asks it to find the objects a question names
#: by category (``vqa.grounding.listing``). Not versioned: a tokenizer may hold it as one token.
DETECTION_PROMPT = (
    "List every object in the image with its bounding box and a one-word label as JSON inside <answer> </answer> "
    'tags, for example <answer>[{"bbox_2d": [x1, y1, x2, y2], "label": "chair"}]</answer>.'
)


def detection_messages(box_coordinates: str, version: str | None = None) -> list[dict[str, Any]]:
    """Chat messages asking for every object of one image (:data:`DETECTION_PROMPT` and the box convention's hint)."""
    if box_coordinates not in BOX_CONVENTIONS:
        raise ConfigError(f"unknown box convention '{box_coordinates}'; choose from {', '.join(BOX_CONVENTIONS)}")
    hint = get_prompts(version).coordinate_hints[box_coordinates]
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DETECTION_PROMPT + hint}]}]


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """A readable rendering of chat messages for traces (media shown as ``<image>`` / ``<video>``)."""
    lines = []
    for message in messages:
        content = message.get("content", "")
        if isinstance(content, str):
            body = content
        else:
            body = "".join(
                item.get("text", "") if item.get("type") == "text" else f"<{item.get('type', '?')}>" for item in content
            )
        lines.append(f"{message.get('role', '?')}: {body}")
    return "\n".join(lines)


# --------------------------------------------------------------------- prompts a model was trained with
@dataclass(frozen=True)
class ModelPromptInfo:
    """What a model directory's ``scener1_prompts.json`` says about how the model was trained."""

    path: Path
    prompt_version: str
    box_coordinates: str | None = None


def read_model_prompt_info(model_dir: str | Path) -> ModelPromptInfo | None:
    """The model's ``scener1_prompts.json``, checked; ``None`` when the directory has none."""
    path = Path(model_dir) / MODEL_PROMPTS_FILE
    if not path.is_file():
        return None
    if path.stat().st_size > 65536:
        raise ConfigError(f"{path}: too large for a prompt-version file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("prompt_version"), str):
        raise ConfigError(f"{path}: expected an object with a string 'prompt_version'")
    version = data["prompt_version"]
    if version not in PROMPT_SETS:
        raise ConfigError(
            f"{path}: the model was trained with prompt version '{version}', which this scener1 does not have "
            f"(known: {', '.join(PROMPT_SETS)}); upgrade scener1"
        )
    coords = data.get("box_coordinates")
    if coords is not None and coords not in BOX_CONVENTIONS:
        raise ConfigError(f"{path}: unknown box_coordinates '{coords}'; expected one of {', '.join(BOX_CONVENTIONS)}")
    return ModelPromptInfo(path, version, coords)


def write_model_prompt_info(model_dir: str | Path, version: str, box_coordinates: str | None = None) -> Path:
    """Record in a model directory the prompt version (and box convention) it was trained with."""
    get_prompts(version)
    if box_coordinates is not None and box_coordinates not in BOX_CONVENTIONS:
        raise ConfigError(f"unknown box convention '{box_coordinates}'")
    data: dict[str, Any] = {"prompt_version": version}
    if box_coordinates is not None:
        data["box_coordinates"] = box_coordinates
    path = Path(model_dir) / MODEL_PROMPTS_FILE
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def resolve_prompt_version(info: ModelPromptInfo | None, requested: str | None = None) -> str:
    """The prompt version to run: the one the model was trained with, else ``requested``, else the default.

    Asking for another version than the model was trained with is refused: its answers would not follow
    the contract the parsers expect.
    """
    if requested is not None:
        get_prompts(requested)
    if info is None:
        return requested or DEFAULT_PROMPT_VERSION
    if requested is not None and requested != info.prompt_version:
        raise ConfigError(
            f"the model was trained with prompt version '{info.prompt_version}' ({info.path}) but "
            f"'{requested}' was asked for; drop the setting or use '{info.prompt_version}'"
        )
    return info.prompt_version


# --------------------------------------------------------------------- 3D visual question answering
@dataclass(frozen=True)
class VQAPromptSet:
    """The frozen wording of the VQA head under one version.

    ``question`` takes ``{num_frames}``, ``{timestamps}``, ``{situation}``, ``{facts}``, ``{question}``, ``{options}``
    and ``{answer_hint}``; the blocks (``situation``, ``facts``, ``options``) are empty or end with a newline.
    ``answer_hints`` is chosen by the kind of answer wanted.
    """

    version: str
    question: str
    situation: str
    facts: str
    options: str
    answer_hints: Mapping[str, str]


_VQA_V1 = VQAPromptSet(
    version="v1",
    question=(
        "The video shows an indoor scene in {num_frames} frames taken at {timestamps} seconds.\n"
        "{situation}{facts}Question: {question}\n{options}"
        "First reason about the scene inside <think> </think> tags, then give the final answer inside "
        "<answer> </answer> tags: {answer_hint}"
    ),
    situation="Situation: {situation}\n",
    facts=(
        "Measurements from the 3D reconstruction of the scene (metres, z is up):\n{facts}\n"
        "Use them where they answer the question.\n"
    ),
    options="Options:\n{options}\n",
    answer_hints={
        "number": "a single number without units, for example <answer>2.5</answer>.",
        "choice": "only the letter of the correct option, for example <answer>B</answer>.",
        "text": "a short phrase of a few words, for example <answer>brown wooden chair</answer>.",
    },
)

#: Every released VQA wording, by version (independent of the grounding prompts' versions). Never edit one.
VQA_PROMPT_SETS: dict[str, VQAPromptSet] = {_VQA_V1.version: _VQA_V1}
DEFAULT_VQA_PROMPT_VERSION = "v1"
MAX_FACT_LINES = 40


def get_vqa_prompts(version: str | None = None) -> VQAPromptSet:
    """The VQA prompt set named ``version`` (the default when ``None``)."""
    version = DEFAULT_VQA_PROMPT_VERSION if version is None else version
    try:
        return VQA_PROMPT_SETS[version]
    except KeyError:
        raise ConfigError(f"unknown VQA prompt version '{version}'; known: {', '.join(VQA_PROMPT_SETS)}") from None


def vqa_messages(
    question: str,
    timestamps: Sequence[float],
    answer_kind: str,
    options: Sequence[str] = (),
    facts: Sequence[str] = (),
    situation: str | None = None,
    version: str | None = None,
) -> list[dict[str, Any]]:
    """Chat messages of the VQA head: the video, the question (with options, the agent's situation and the
    measured 3D facts when given) and the answer format for ``answer_kind`` (number / choice / text)."""
    prompts = get_vqa_prompts(version)
    if answer_kind not in prompts.answer_hints:
        raise ConfigError(f"unknown answer kind '{answer_kind}'; choose from {', '.join(prompts.answer_hints)}")
    times = [float(t) for t in timestamps]
    if not times:
        raise ConfigError("the VQA prompt needs at least one frame")
    fact_lines = [clean_query(f) for f in facts if str(f).strip()][:MAX_FACT_LINES]
    text = prompts.question.format(
        num_frames=len(times),
        timestamps=", ".join(_seconds(t) for t in times),
        situation=prompts.situation.format(situation=clean_query(situation)) if situation else "",
        facts=prompts.facts.format(facts="\n".join(f"- {f}" for f in fact_lines)) if fact_lines else "",
        question=clean_query(question),
        options=prompts.options.format(options="\n".join(clean_query(o) for o in options)) if options else "",
        answer_hint=prompts.answer_hints[answer_kind],
    )
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
