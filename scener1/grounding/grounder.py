"""The image stage with a model: ask for the object's box on several frames of the span, keep the one
the others agree with."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..data.scene import Scene
from ..errors import ConfigError, SceneError
from ..models.cell_verifier import CellVerifier, QueryTarget
from ..models.vlm import VLM, ChatRequest
from ..parsing import BoxGeometry, parse_box
from ..prompts import clean_query, image_messages, prompt_text
from ..types import Frame
from .core import (
    ImageCandidate,
    ImageResult,
    ImageSettings,
    box_centre_point,
    decide,
    depth_valid_fraction,
    shrink_to_pixels,
    spread,
)
from .snapping import SnapSettings, snap_box


class ImageGrounder:
    """Finds the described object's 2D box on the best of several frames, holding a :class:`VLM`."""

    def __init__(self, vlm: VLM, settings: ImageSettings | None = None, verifier: CellVerifier | None = None):
        """``verifier`` defaults to the model's own cell heads, when it ships them and ``verify_weight`` > 0."""
        self.vlm = vlm
        self.settings = settings or ImageSettings()
        if self.settings.verify_weight <= 0:
            verifier = None
        elif verifier is None:
            verifier = CellVerifier.for_model(vlm)
        self.verifier = verifier

    def ground(self, scene: Scene, query: str, positions: Sequence[int] | np.ndarray) -> ImageResult:
        """Ground ``query`` on frames chosen among scene ``positions`` (the temporal stage's span)."""
        return self.ground_many(scene, [(query, positions)])[0]

    def select_frames(self, scene: Scene, positions: np.ndarray, cache: dict[int, Frame | None],
                      count: int | None = None, target: QueryTarget | None = None) -> list[tuple[Frame, bool]]:
        """``count`` (default ``num_candidates``) candidate frames spread over ``positions``, preferring valid
        poses, then usable depth.

        Twice as many frames as needed are decoded so that frames with missing depth can be passed over; frames
        that cannot be read at all (``Scene.frame_or_none``) are left out. With ``seek_frames`` and a verifier
        that knows the query's ``target``, that many frames are decoded instead and the ``count`` on which the
        cell heads see the target most are kept (usable depth first).
        Returns (frame, depth_ok) pairs in recording order.
        """
        s = self.settings
        count = s.num_candidates if count is None else count
        if count <= 0 or len(positions) == 0:
            return []
        seek = s.seek_frames > 0 and self.verifier is not None and target is not None and target.category is not None
        pool = spread(positions, max(2 * count, s.seek_frames) if seek else 2 * count, scene.valid_poses[positions])
        for p in pool:
            if int(p) not in cache:
                cache[int(p)] = scene.frame_or_none(int(p))
        frames = [cache[int(p)] for p in pool if cache[int(p)] is not None]  # unreadable frames are passed over
        if not frames:
            return []
        depth_ok = np.array(
            [f.pose_valid and depth_valid_fraction(f.depth, s.min_depth, s.max_depth) >= s.min_depth_fraction
             for f in frames]
        )  # fmt: skip
        if seek:
            presence = np.array(self.verifier.presence(target, [(f.index, f.color) for f in frames]))
            # usable depth first, then where the target shows most, then the earlier frame
            keep = np.sort(np.lexsort((-np.arange(len(frames)), presence, depth_ok))[::-1][:count])
        else:
            keep = spread(np.arange(len(frames)), count, depth_ok)
        return [(frames[i], bool(depth_ok[i])) for i in keep]

    def outside_frames(self, scene: Scene, positions: np.ndarray, cache: dict[int, Frame | None],
                       target: QueryTarget | None = None) -> list[tuple[Frame, bool]]:
        """``video_candidates`` frames spread over the video outside the span ``positions`` (none when the
        span covers the whole video); sought out as in :meth:`select_frames` when ``target`` is given."""
        if self.settings.video_candidates <= 0:  # no need to list a long video's other frames
            return []
        outside = np.setdiff1d(np.arange(len(scene)), positions)
        return self.select_frames(scene, outside, cache, self.settings.video_candidates, target)

    def _heads_instead(self, target: QueryTarget, frame: Frame, parsed: Any) -> tuple[dict | None, Any]:
        """(record, parsed): the heads' own box in place of the model's when they doubt it, else (None, parsed)."""
        record, box = self.verifier.replacement(target, (frame.index, frame.color), parsed.value,
                                                self.settings.replace_below, self.settings.min_box_size)
        return record, parsed if record is None else replace(parsed, value=box)

    def ground_many(self, scene: Scene, items: Sequence[tuple[str, Sequence[int] | np.ndarray]]) -> list[ImageResult]:
        """Ground several (query, positions) pairs in one batch of model calls, decoding each frame once."""
        start = time.perf_counter()
        s = self.settings
        cache: dict[int, Frame | None] = {}
        if self.verifier is not None:
            self.verifier.forget()  # its cache is keyed by frame index: one scene at a time
        jobs = []
        for query, positions in items:
            query = clean_query(query)
            positions = np.asarray(positions, dtype=np.int64).ravel()
            if len(positions) == 0:
                raise ConfigError("the image stage needs at least one frame position")
            if positions.min() < 0 or positions.max() >= len(scene):
                raise ConfigError(f"frame positions must lie in 0..{len(scene) - 1}")
            messages = image_messages(query, self.vlm.box_coordinates, self.vlm.prompt_version)
            target = self.verifier.target(query) if self.verifier is not None else None
            inside = self.select_frames(scene, positions, cache, target=target)
            outside = self.outside_frames(scene, positions, cache, target)
            frames = [(f, ok, True) for f, ok in inside] + [(f, ok, False) for f, ok in outside]
            if not frames:
                why = scene.first_unreadable() or "no frames"
                raise SceneError(f"none of the image stage's candidate frames can be read ({why})")
            jobs.append((query, positions, messages, frames))
        requests = [
            ChatRequest(messages, images=(shrink_to_pixels(frame.color, s.image_max_pixels),))
            for _, _, messages, frames in jobs
            for frame, _, _ in frames
        ]
        answers = iter(self.vlm.generate(requests, s.generation, output_scores=True))
        seconds = (time.perf_counter() - start) / max(len(jobs), 1)  # the batch's time, shared out

        results = []
        for query, positions, messages, frames in jobs:
            target = self.verifier.target(query) if self.verifier is not None else None
            replacing = s.replace_below > 0 and target is not None and target.category is not None
            if replacing:
                self.verifier.read([(f.index, f.color) for f, _, _ in frames])  # one batch for the job's frames
            candidates = []
            for frame, depth_ok, in_span in frames:
                answer = next(answers)
                height, width = frame.color.shape[:2]
                geometry = BoxGeometry(self.vlm.box_coordinates, answer.image_sizes[0], (width, height))
                parsed = parse_box(answer.text, geometry, s.min_box_size)
                snap = None
                if s.snap and parsed.value is not None and depth_ok:
                    snapped = snap_box(parsed.value, frame, SnapSettings(min_iou=s.snap_min_iou,
                                                                         min_depth=s.min_depth, max_depth=s.max_depth))
                    snap = snapped.to_dict(parsed.value)
                    if snapped.changed:
                        parsed = replace(parsed, value=snapped.box)
                replaced = None
                if replacing and parsed.value is not None:
                    replaced, parsed = self._heads_instead(target, frame, parsed)
                point = None
                if parsed.value is not None and depth_ok:
                    lifted = box_centre_point(parsed.value, frame, s.centre_fraction, s.min_depth, s.max_depth)
                    point = None if lifted is None else tuple(float(v) for v in lifted)
                logprob = answer.mean_logprob
                candidates.append(
                    ImageCandidate(
                        position=scene.position(frame.index),
                        frame_index=frame.index,
                        raw_output=answer.text,
                        parsed=parsed,
                        mean_logprob=logprob,
                        confidence=math.exp(logprob) if logprob is not None else 0.0,
                        model_image_size=answer.image_sizes[0],
                        depth_ok=depth_ok,
                        point=point,
                        snap=snap,
                        in_span=in_span,
                        replaced=replaced,
                    )
                )
            inputs = {
                "query": query,
                "scene": str(scene.path),
                "span_positions": [int(positions[0]), int(positions[-1])],
                "num_span_positions": len(positions),
                "candidate_frames": [f.index for f, _, _ in frames],
                "video_candidates": sum(not in_span for _, _, in_span in frames),
                "box_coordinates": self.vlm.box_coordinates,
                "prompt_version": self.vlm.prompt_version,
                "batched_queries": len(jobs),
            }
            if target is not None:
                keyed = [(f.index, f.color) for f, _, _ in frames]
                scores = self.verifier.score(target, keyed, [c.box for c in candidates])
                presence = self.verifier.presence(target, keyed)
                candidates = [replace(c, verify=None if v is None else round(v, 6),
                                      presence=None if seen is None else round(seen, 6))
                              for c, v, seen in zip(candidates, scores, presence, strict=True)]
                inputs["verifier"] = {**target.to_dict(), "weight": s.verify_weight, "seek_frames": s.seek_frames,
                                      "replace_below": s.replace_below}
            results.append(decide(query, candidates, [f for f, _, _ in frames], s, prompt_text(messages), seconds, inputs))
        return results
