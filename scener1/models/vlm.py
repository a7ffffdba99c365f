"""A vision-language model held with its processor: chat requests with images or videos in, text out.

This module and :mod:`scener1.models.loading` are the only places that touch transformers; the stages
speak in :class:`ChatRequest`, :class:`Generation` and :class:`GenerationSettings`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from ..errors import ConfigError
from ..prompts import DEFAULT_PROMPT_VERSION
from .families import ModelFamily

#: Timestamps reach the video processors as frame indices on a clock of this rate (1 ms resolution):
#: Qwen3-VL writes them into the prompt, Qwen2.5-VL derives its absolute-time position ids from them.
VIDEO_CLOCK_HZ = 1000.0


def _check_image(image: Any, what: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ConfigError(f"{what} must be an (H, W, 3) uint8 RGB array")
    if min(image.shape[:2]) < 1:
        raise ConfigError(f"{what} is empty")
    return image


@dataclass(frozen=True, eq=False)
class VideoClip:
    """Frames shown to the model as one video, with the second at which each was taken.

    ``timestamps`` are seconds from the clip's first frame, increasing; frames need not be evenly spaced.
    """

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    timestamps: np.ndarray  # (T,) float seconds

    def __post_init__(self) -> None:
        frames, t = self.frames, np.asarray(self.timestamps, dtype=np.float64)
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ConfigError("video frames must be a (T, H, W, 3) uint8 RGB array")
        if len(frames) == 0 or t.shape != (len(frames),):
            raise ConfigError(f"a video needs one timestamp per frame ({len(frames)} frames, {t.size} timestamps)")
        if not np.isfinite(t).all() or (np.diff(t) < 0).any():
            raise ConfigError("video timestamps must be finite and non-decreasing")
        object.__setattr__(self, "timestamps", t - t[0])

    def metadata(self) -> dict[str, Any]:
        """The clip described the way transformers' video processors expect (``VideoMetadata`` fields)."""
        ticks = np.rint(self.timestamps * VIDEO_CLOCK_HZ).astype(np.int64)
        n = len(ticks)
        spacing = float(np.median(np.diff(self.timestamps))) if n > 1 else 1.0
        # sampled rate = n / total * fps must equal 1 / spacing for Qwen2.5-VL's seconds-per-patch
        total = max(int(ticks[-1]) + 1, int(round(n * max(spacing, 1.0 / VIDEO_CLOCK_HZ) * VIDEO_CLOCK_HZ)))
        return {
            "total_num_frames": total,
            "fps": VIDEO_CLOCK_HZ,
            "frames_indices": ticks.tolist(),
            "duration": total / VIDEO_CLOCK_HZ,
            "height": int(self.frames.shape[1]),
            "width": int(self.frames.shape[2]),
        }


def fixed_frame_options(processor: Any) -> dict[str, Any]:
    """Video processor options for frames the caller already chose, at known times, within its own pixel
    budget (no frame sampling, no per-frame cap where the processor has one)."""
    options: dict[str, Any] = {"do_sample_frames": False}
    if hasattr(type(processor.video_processor), "cap_pixels_per_frame"):
        options["cap_pixels_per_frame"] = False
    return options


def video_kwargs(processor: Any, clips: Sequence[VideoClip]) -> dict[str, Any]:
    """Processor arguments for ``clips``: frames and metadata, clips shorter than one temporal patch
    repeating their last frame (Qwen3-VL's resize refuses fewer frames than its temporal patch)."""
    patch = int(getattr(processor.video_processor, "temporal_patch_size", 1) or 1)
    videos, metadata = [], []
    for clip in clips:
        frames, meta = clip.frames, clip.metadata()
        missing = patch - len(frames)
        if missing > 0:
            frames = np.concatenate([frames, np.repeat(frames[-1:], missing, axis=0)])
            meta["frames_indices"] = meta["frames_indices"] + [meta["frames_indices"][-1]] * missing
        videos.append(frames)
        metadata.append(meta)
    return {"videos": videos, "video_metadata": metadata, **fixed_frame_options(processor)}


def _count_media(messages: Sequence[Mapping[str, Any]], kind: str) -> int:
    count = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, (list, tuple)):
            count += sum(1 for item in content if isinstance(item, Mapping) and item.get("type") == kind)
    return count


@dataclass(frozen=True, eq=False)
class ChatRequest:
    """One conversation for the model.

    ``messages`` follow the Hugging Face chat format; each ``{"type": "image"}`` / ``{"type": "video"}``
    content item takes the next of ``images`` / ``videos`` in order.
    """

    messages: tuple[Mapping[str, Any], ...]
    images: tuple[np.ndarray, ...] = ()
    videos: tuple[VideoClip, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "images", tuple(self.images))
        object.__setattr__(self, "videos", tuple(self.videos))
        for i, image in enumerate(self.images):
            _check_image(image, f"image {i}")
        for kind, given in (("image", len(self.images)), ("video", len(self.videos))):
            wanted = _count_media(self.messages, kind)
            if wanted != given:
                raise ConfigError(f"the messages place {wanted} {kind}(s) but {given} were given")


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode. ``None`` for ``repetition_penalty`` keeps the model's own default; ``seed`` seeds
    torch's global generator before each batch so sampled answers repeat."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    num_return_sequences: int = 1
    repetition_penalty: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1):
            raise ConfigError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens}")
        if not (isinstance(self.num_return_sequences, int) and self.num_return_sequences >= 1):
            raise ConfigError(f"num_return_sequences must be an integer >= 1, got {self.num_return_sequences}")
        if self.num_return_sequences > 1 and not self.do_sample:
            raise ConfigError("num_return_sequences > 1 needs do_sample=true (greedy decoding repeats itself)")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1 or unset, got {self.top_k}")
        if self.repetition_penalty is not None and not self.repetition_penalty > 0:
            raise ConfigError(f"repetition_penalty must be positive, got {self.repetition_penalty}")


@dataclass(frozen=True)
class Generation:
    """One answer: its text, the mean log-probability of its tokens and the image sizes the model saw.

    ``mean_logprob`` is over the generated tokens up to and including the end-of-turn token, from the
    model's raw logits (before temperature or top-p); ``None`` unless scores were asked for.
    ``image_sizes`` holds (width, height) of each image of the request after the processor's resize,
    which is the frame of absolute box coordinates.
    """

    text: str
    mean_logprob: float | None = None
    num_tokens: int = 0
    image_sizes: tuple[tuple[int, int], ...] = ()


@dataclass(eq=False)
class PreparedBatch:
    """Model inputs for a batch of requests (left-padded), with each request's image sizes as seen."""

    inputs: Any  # transformers BatchFeature on the model's device
    image_sizes: list[tuple[tuple[int, int], ...]]
    prompt_length: int
    texts: list[str] = field(default_factory=list)


class VLM:
    """A loaded vision-language model and its processor; see :func:`scener1.models.load_vlm`."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        family: ModelFamily,
        *,
        path: str | Path | None = None,
        prompt_version: str = DEFAULT_PROMPT_VERSION,
        box_coordinates: str | None = None,
        batch_size: int = 8,
    ):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.processor = processor
        self.family = family
        self.path = None if path is None else Path(path)
        self.prompt_version = prompt_version
        self.box_coordinates = box_coordinates or family.box_coordinates
        self.batch_size = batch_size
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = model.generation_config.eos_token_id
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        if tokenizer.eos_token_id is not None:
            eos.append(tokenizer.eos_token_id)
        self.eos_token_ids = tuple(sorted(set(eos)))
        self._image_size_cache: dict[tuple[int, int], tuple[int, int]] = {}

    def __repr__(self) -> str:
        return f"VLM({self.family.display_name}, path={str(self.path)!r}, device={self.device}, dtype={self.dtype})"

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> Any:
        return next(self.model.parameters()).dtype

    @property
    def patch_size(self) -> int:
        return int(self.processor.image_processor.patch_size)

    # ----------------------------------------------------------------- inputs
    def model_image_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the processor resizes a ``width x height`` image to, by running the processor."""
        key = (int(width), int(height))
        if key not in self._image_size_cache:
            out = self.processor.image_processor(images=[np.zeros((key[1], key[0], 3), np.uint8)], return_tensors="pt")
            _, gh, gw = (int(v) for v in out["image_grid_thw"][0])
            self._image_size_cache[key] = (gw * self.patch_size, gh * self.patch_size)
        return self._image_size_cache[key]

    def prepare(self, requests: Sequence[ChatRequest]) -> PreparedBatch:
        """Render the chat template, process images and videos and tokenise, left-padded."""
        import torch

        texts = [
            self.processor.apply_chat_template(list(r.messages), tokenize=False, add_generation_prompt=True)
            for r in requests
        ]
        images = [im for r in requests for im in r.images]
        videos = [v for r in requests for v in r.videos]
        kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
        if videos:
            kwargs.update(video_kwargs(self.processor, videos))
        inputs = self.processor(**kwargs)

        sizes: list[tuple[tuple[int, int], ...]] = []
        grids = inputs["image_grid_thw"].tolist() if images else []
        k = 0
        for r in requests:
            own = grids[k : k + len(r.images)]
            k += len(r.images)
            sizes.append(tuple((int(g[2]) * self.patch_size, int(g[1]) * self.patch_size) for g in own))

        device, dtype = self.device, self.dtype
        moved = {}
        for name, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(device, dtype) if torch.is_floating_point(value) else value.to(device)
            moved[name] = value
        inputs = type(inputs)(moved)
        return PreparedBatch(inputs, sizes, int(inputs["input_ids"].shape[1]), texts)

    # ----------------------------------------------------------------- generation
    @overload
    def generate(
        self,
        requests: Sequence[ChatRequest],
        settings: GenerationSettings | None = ...,
        *,
        output_scores: Literal[False] = ...,
        batch_size: int | None = ...,
    ) -> list[str]: ...

    @overload
    def generate(
        self,
        requests: Sequence[ChatRequest],
        settings: GenerationSettings | None = ...,
        *,
        output_scores: Literal[True],
        batch_size: int | None = ...,
    ) -> list[Generation]: ...

    def generate(self, requests, settings=None, *, output_scores=False, batch_size=None):
        """Answer each request; ``num_return_sequences`` answers per request, request after request.

        With ``output_scores`` the answers come as :class:`Generation` (text, mean token log-probability,
        image sizes as seen); without, as plain strings. Requests are run ``batch_size`` at a time.
        """
        settings = settings or GenerationSettings()
        step = batch_size or self.batch_size
        if step < 1:
            raise ConfigError(f"batch_size must be >= 1, got {step}")
        requests = list(requests)
        out: list[Generation] = []
        for start in range(0, len(requests), step):
            batch = self.prepare(requests[start : start + step])
            decoded = self._decode(batch, settings, output_scores)
            n = settings.num_return_sequences
            for i, (text, logprob, count) in enumerate(decoded):
                out.append(Generation(text, logprob, count, batch.image_sizes[i // n]))
        return out if output_scores else [g.text for g in out]

    def _generation_config(self, settings: GenerationSettings, output_scores: bool) -> Any:
        config = copy.deepcopy(self.model.generation_config)
        config.max_new_tokens = settings.max_new_tokens
        config.do_sample = settings.do_sample
        config.num_return_sequences = settings.num_return_sequences
        if settings.do_sample:
            config.temperature, config.top_p, config.top_k = settings.temperature, settings.top_p, settings.top_k
        else:  # a checkpoint's sampling defaults would only draw warnings under greedy decoding
            config.temperature = config.top_p = config.top_k = None
        if settings.repetition_penalty is not None:
            config.repetition_penalty = settings.repetition_penalty
        config.pad_token_id = self.pad_token_id
        config.return_dict_in_generate = True
        config.output_logits = output_scores
        return config

    def _decode(
        self, batch: PreparedBatch, settings: GenerationSettings, output_scores: bool
    ) -> list[tuple[str, float | None, int]]:
        """Run generation on a prepared batch: (text, mean log-prob or None, token count) per answer."""
        import torch

        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        with torch.inference_mode():
            out = self.model.generate(**batch.inputs, generation_config=self._generation_config(settings, output_scores))
        new = out.sequences[:, batch.prompt_length :]
        is_eos = torch.isin(new, torch.tensor(self.eos_token_ids, device=new.device))
        # keep tokens up to and including the first end token; what follows is padding
        keep = (torch.cumsum(is_eos.int(), dim=1) - is_eos.int()) == 0
        counts = keep.sum(dim=1)
        texts = self.processor.batch_decode(new, skip_special_tokens=True)
        if not output_scores:
            return [(t, None, int(c)) for t, c in zip(texts, counts, strict=True)]
        steps = []
        for t, logits in enumerate(out.logits):
            steps.append(torch.log_softmax(logits.float(), dim=-1).gather(1, new[:, t : t + 1]).squeeze(1))
        logprobs = torch.stack(steps, dim=1) if steps else torch.zeros(new.shape, device=new.device)
        sums = (logprobs * keep).sum(dim=1)
        means = (sums / counts.clamp(min=1)).tolist()
        return [(t, float(m) if int(c) else None, int(c)) for t, m, c in zip(texts, means, counts, strict=True)]


class RecordedVLM(VLM):
    """A VLM that answers with recorded texts instead of running the network.

    Inputs still go through the real processor, so image sizes and prompts are exactly those of a live
    run; use it to replay a trace's answers through changed parsers or to test the stages with known
    answers. ``answers`` are consumed in order, one per answer asked for: a string, or a
    (string, mean log-probability) pair.
    """

    def __init__(self, base: VLM, answers: Sequence[str | tuple[str, float]]):
        super().__init__(
            base.model,
            base.processor,
            base.family,
            path=base.path,
            prompt_version=base.prompt_version,
            box_coordinates=base.box_coordinates,
            batch_size=base.batch_size,
        )
        self.answers = [(a, -0.1) if isinstance(a, str) else (str(a[0]), float(a[1])) for a in answers]
        self.prompts_seen: list[str] = []

    def _decode(
        self, batch: PreparedBatch, settings: GenerationSettings, output_scores: bool
    ) -> list[tuple[str, float | None, int]]:
        wanted = len(batch.image_sizes) * settings.num_return_sequences
        if wanted > len(self.answers):
            raise ConfigError(f"{wanted} answers asked for but only {len(self.answers)} recorded ones are left")
        taken, self.answers = self.answers[:wanted], self.answers[wanted:]
        self.prompts_seen.extend(batch.texts)
        return [(text, logprob if output_scores else None, len(text)) for text, logprob in taken]
