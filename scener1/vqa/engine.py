"""The VQA engine: route a question, measure it with the geometric heads, ask the VLM head when needed.

>>> from scener1.data import open_scene
>>> from scener1.vqa import VQAEngine
>>> engine = VQAEngine.build(grounder="oracle")            # or "pipeline" (the grounding model), "none"
>>> with open_scene("outputs/synth/synth_s1000_000") as scene:
...     result = engine.answer(scene, "How many chairs are in this room?")
>>> result.answer, result.source

Answer modes (``mode``):

- ``auto``: the geometric head answers the VSI-Bench types; the VLM head answers free-form questions and any
  question the geometry could not answer (with the measured facts as context);
- ``geometry``: geometric heads only (no model needed);
- ``vlm``: the video-only VLM answer (the comparison baseline; no grounding at all);
- ``vlm_facts``: the VLM answers everything, with the 3D facts the heads measured in its prompt.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ScenerError
from .grounding import GroundingSettings, InstanceGrounder
from .heads import GeometricHeads, HeadAnswer, HeadSettings, SceneFacts
from .router import FREE_FORM, RoutedQuestion, route
from .vlm_head import VLMAnswer, VLMAnswerer, VLMSettings

if TYPE_CHECKING:
    from ..data.scene import Scene
    from ..lifting.object_lift import LiftConfig

MODES = ("auto", "geometry", "vlm", "vlm_facts")
GROUNDERS = ("oracle", "pipeline", "none")


def default_lift_config() -> LiftConfig:
    """The lifting settings the heads use: DBSCAN keeps every cluster of at least 5 % of the largest (thin parts
    such as a lamp's pole or a chair's back are separate clusters once eroded), light erosion, depth to 5 m
    (rooms are measured across)."""
    from ..lifting.object_lift import LiftConfig

    return LiftConfig(erosion_px=1, keep_cluster_ratio=0.05, max_depth=5.0)


@dataclass(frozen=True)
class VQASettings:
    """Every option of the VQA engine (``vqa.KEY=VALUE`` on the command line)."""

    mode: str = "auto"
    lifting: LiftConfig = field(default_factory=default_lift_config)
    grounding: GroundingSettings = field(default_factory=GroundingSettings)
    heads: HeadSettings = field(default_factory=HeadSettings)
    vlm: VLMSettings = field(default_factory=VLMSettings)
    facts_to_vlm: bool = True  # hand the measured facts to the VLM head when it answers

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown VQA mode '{self.mode}'; choose from {', '.join(MODES)}")


@dataclass(frozen=True)
class Question:
    """One question to answer; ``options`` as given ("A. left" or bare texts), ``situation`` for SQA3D."""

    question: str
    options: tuple[str, ...] = ()
    situation: str | None = None
    id: str | None = None


@dataclass(frozen=True, eq=False)
class VQAResult:
    """The answer to one question and how it was reached.

    ``status``: ``ok`` (answered as the mode intends), ``fallback`` (the geometric head failed and the VLM
    answered), ``unanswered`` (nothing usable: ``notes`` say why). ``source``: ``geometry``, ``vlm`` or ``None``.
    """

    question: Question
    routed: RoutedQuestion
    mode: str
    answer: str | None
    source: str | None
    status: str
    notes: tuple[str, ...]
    head: HeadAnswer | None
    vlm: VLMAnswer | None
    grounder: str
    coordinate_frame: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        from ..trace import to_jsonable
        from .vlm_head import to_dict as vlm_dict

        head = self.head
        out: dict[str, Any] = {
            "id": self.question.id,
            "question": self.question.question,
            "options": list(self.question.options),
            "type": self.routed.qtype,
            "answer": self.answer,
            "source": self.source,
            "status": self.status,
            "notes": list(self.notes),
            "mode": self.mode,
            "grounder": self.grounder,
            "coordinate_frame": self.coordinate_frame,
            "routing": self.routed.to_dict(),
            "geometry": None if head is None else {
                "answer": head.answer, "value": head.value, "reason": head.reason or None,
                "computation": head.computation, "seconds": round(head.seconds, 3),
                "objects": [g.to_dict() for g in head.grounded],
            },
            "vlm": None if self.vlm is None else vlm_dict(self.vlm),
            "seconds": round(self.seconds, 3),
        }
        if self.question.situation:
            out["situation"] = self.question.situation
        return to_jsonable(out)


class VQAEngine:
    """Routes questions to the geometric heads and the VLM head. ``grounder`` is an :class:`InstanceGrounder`, or
    a callable ``scene -> InstanceGrounder`` (oracles read each scene's ground truth), or ``None``."""

    def __init__(self, grounder=None, answerer: VLMAnswerer | None = None, settings: VQASettings | None = None):
        self.settings = settings or VQASettings()
        self._grounder = grounder
        self.answerer = answerer
        self.heads = GeometricHeads(self.settings.heads)
        self._facts: tuple[Any, SceneFacts] | None = None  # (scene, its measurements), reused across calls
        mode = self.settings.mode
        if mode in ("vlm", "vlm_facts") and answerer is None:
            raise ConfigError(f"mode {mode} needs a VLM (--model DIR, or the embedded default)")
        if mode == "geometry" and grounder is None:
            raise ConfigError("mode geometry needs a grounder (oracle or pipeline)")

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, grounder: str = "pipeline", *, mode: str | None = None, config: str | Path | None = None,
              overrides: Sequence[str] = (), model: str | None = None, vqa_overrides: Sequence[str] = (),
              oracle_files: dict[str, str] | None = None) -> VQAEngine:
        """An engine from names: ``grounder`` oracle / pipeline / none; the pipeline (and its VLM) built from
        ``config`` + ``overrides`` (as ``scener1 ground``), VQA options from ``vqa_overrides`` (``KEY=VALUE``)."""
        if grounder not in GROUNDERS:
            raise ConfigError(f"unknown grounder '{grounder}'; choose from {', '.join(GROUNDERS)}")
        settings = settings_from_overrides(vqa_overrides, mode)
        needs_vlm = grounder == "pipeline" or settings.mode in ("vlm", "vlm_facts") or (
            settings.mode == "auto" and model is not None)
        pipeline = None
        vlm = None
        if needs_vlm:
            from ..pipeline import Pipeline

            settings_list = list(overrides) + ([f"model.path={model}"] if model else [])
            pipeline = Pipeline.from_config(config, settings_list)
            vlm = pipeline.vlm
        answerer = VLMAnswerer(vlm, settings.vlm) if vlm is not None else None
        if grounder == "none" or settings.mode == "vlm":
            factory = None
        elif grounder == "pipeline":
            from .grounding import PipelineDetector

            detector = PipelineDetector(pipeline, settings.grounding)
            factory = InstanceGrounder(detector, settings.lifting, pipeline.tracker, settings.grounding)
        else:
            factory = oracle_factory(settings, oracle_files)
        return cls(factory, answerer, settings)

    def grounder_for(self, scene: Scene) -> InstanceGrounder | None:
        g = self._grounder
        if g is None or isinstance(g, InstanceGrounder):
            return g
        return g(scene)

    def facts_for(self, scene: Scene) -> SceneFacts | None:
        """The scene's measurement cache (groundings, fused cloud, visibility), kept while the same scene is asked."""
        if self._facts is not None and self._facts[0] is scene:
            return self._facts[1]
        grounder = self.grounder_for(scene)
        if grounder is None:
            return None
        facts = SceneFacts(scene, grounder, self.settings.heads)
        self._facts = (scene, facts)
        return facts

    # ------------------------------------------------------------------ answering
    def answer(self, scene: Scene, question: str | Question, options: Sequence[str] | None = None,
               situation: str | None = None) -> VQAResult:
        q = question if isinstance(question, Question) else Question(question, tuple(options or ()), situation)
        return self.answer_many(scene, [q])[0]

    def answer_many(self, scene: Scene, questions: Sequence[Question], progress: bool = False) -> list[VQAResult]:
        """Answer questions about one scene; groundings and the fused scene are shared between them and the VLM
        calls are batched."""
        mode = self.settings.mode
        routed = [route(q.question, q.options or None) for q in questions]
        facts = None if mode == "vlm" else self.facts_for(scene)
        grounder = None if facts is None else facts.grounder
        heads: list[HeadAnswer | None] = []
        seconds: list[float] = []
        items = list(zip(questions, routed))
        if progress:
            from tqdm import tqdm

            items = tqdm(items, desc="questions", unit="q")
        for q, rq in items:
            t = time.perf_counter()
            heads.append(self.heads.answer(facts, rq) if facts is not None and rq.qtype != FREE_FORM else None)
            seconds.append(time.perf_counter() - t)

        # the VLM head: which questions, with which facts
        ask: list[int] = []
        for k, (rq, head) in enumerate(zip(routed, heads)):
            if self.answerer is None or mode == "geometry":
                continue
            if mode in ("vlm", "vlm_facts") or head is None or not head.ok:
                ask.append(k)
        vlm_answers: dict[int, VLMAnswer] = {}
        if ask:
            use_facts = mode == "vlm_facts" or (mode == "auto" and self.settings.facts_to_vlm)
            batch = [(routed[k], heads[k].facts(facts.up) if (use_facts and heads[k] is not None) else [],
                      questions[k].situation) for k in ask]
            tv = time.perf_counter()
            for k, a in zip(ask, self.answerer.answer_many(scene, batch)):
                vlm_answers[k] = a
            share = (time.perf_counter() - tv) / len(ask)
            for k in ask:
                seconds[k] += share

        frame_name = "axis_aligned" if scene.axis_alignment is not None else "raw"
        results = []
        for k, (q, rq) in enumerate(zip(questions, routed)):
            head, vlm = heads[k], vlm_answers.get(k)
            notes = []
            if head is not None and not head.ok:
                notes.append(f"geometry: {head.reason}")
            if vlm is not None and vlm.answer is None:
                notes.append(f"vlm: {vlm.reason}")
            if mode in ("vlm", "vlm_facts"):
                answer, source = (vlm.answer, "vlm") if vlm is not None and vlm.answer is not None else (None, None)
                status = "ok" if answer is not None else "unanswered"
            elif head is not None and head.ok:
                answer, source, status = head.answer, "geometry", "ok"
            elif vlm is not None and vlm.answer is not None:
                answer, source = vlm.answer, "vlm"
                status = "ok" if rq.qtype == FREE_FORM else "fallback"
            else:
                answer, source, status = None, None, "unanswered"
                if head is None and vlm is None:
                    notes.append("no head can answer this question here (free-form questions need a VLM)"
                                 if rq.qtype == FREE_FORM else "no grounder and no VLM")
            results.append(VQAResult(q, rq, mode, answer, source, status, tuple(notes), head, vlm,
                                     grounder.name if grounder is not None else "none", frame_name, seconds[k]))
        return results


# ---------------------------------------------------------------------------------------------- helpers
def settings_from_overrides(overrides: Sequence[str] = (), mode: str | None = None) -> VQASettings:
    """:class:`VQASettings` from ``KEY=VALUE`` pairs (``heads.size_from_views=min``, ``lifting.max_depth=4``);
    values are read as YAML scalars (``yaml.safe_load``)."""
    import dataclasses

    import yaml

    from ..config import build_settings

    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        key = key.removeprefix("vqa.")
        if not sep or not key:
            raise ConfigError(f"VQA options must look like key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"cannot read the value of {key}: {raw!r}") from None
        node = tree
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"option {key} sets inside a value")
        node[parts[-1]] = value
    if mode is not None:
        tree["mode"] = mode
    # nested dataclasses without a dict keep their defaults
    base = VQASettings()
    values = {f.name: tree[f.name] for f in dataclasses.fields(VQASettings) if f.name in tree}
    unknown = sorted(set(tree) - {f.name for f in dataclasses.fields(VQASettings)})
    if unknown:
        raise ConfigError(f"unknown VQA option '{unknown[0]}'; options are: "
                          + ", ".join(f.name for f in dataclasses.fields(VQASettings)))
    for name in ("lifting", "grounding", "heads", "vlm"):
        if name in values:
            if not isinstance(values[name], dict):
                raise ConfigError(f"vqa.{name} is a section: set vqa.{name}.KEY=VALUE")
            current = dataclasses.asdict(getattr(base, name))
            if name == "vlm":
                current.pop("generation")
                gen = values[name].pop("generation", None)
                merged = build_settings(VLMSettings, {**current, **values[name]}, "vqa.vlm")
                if gen is not None:
                    from ..models.vlm import GenerationSettings

                    merged = dataclasses.replace(merged, generation=build_settings(
                        GenerationSettings, {**dataclasses.asdict(merged.generation), **gen}, "vqa.vlm.generation"))
                values[name] = merged
            else:
                cls = type(getattr(base, name))
                values[name] = build_settings(cls, {**current, **values[name]}, f"vqa.{name}")
    try:
        return dataclasses.replace(base, **values)
    except TypeError as exc:
        raise ConfigError(f"invalid VQA options: {exc}") from None


def oracle_factory(settings: VQASettings, files: dict[str, str] | None = None):
    """``scene -> InstanceGrounder`` with the oracle detector for that scene: a synthetic scene's own ground truth,
    or for a ScanNet scan the files in ``files`` (``points``: mmdet3d .bin, ``boxes``: *_aligned_bbox.npy,
    ``label_map``: scannetv2-labels.combined.tsv, optional)."""
    from .oracle import ScanNetOracleDetector, SynthOracleDetector

    files = dict(files or {})

    def make(scene: Scene) -> InstanceGrounder:
        if files.get("points") or files.get("boxes"):
            if not (files.get("points") and files.get("boxes")):
                raise ConfigError("the ScanNet oracle needs both the points (.bin) and the boxes (*_aligned_bbox.npy)")
            if scene.axis_alignment is None:
                raise ScenerError(f"{scene.path}: the ScanNet oracle needs the scan's axisAlignment (pass --meta)")
            detector = ScanNetOracleDetector.from_files(files["points"], files["boxes"], scene.axis_alignment,
                                                        files.get("label_map"))
        else:
            detector = SynthOracleDetector(scene.path)
        return InstanceGrounder(detector, settings.lifting, None, settings.grounding)

    return make
