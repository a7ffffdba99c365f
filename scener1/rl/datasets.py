"""Training rows for the grounding stages, built from scenes with ground truth (the synthetic scenes).

A scene qualifies when it opens with :func:`scener1.data.open_scene` and carries the ground truth that
:mod:`scener1.synth` writes under ``gt/``: ``objects.json`` (category, colour, 3D box per object),
``frames.json`` (per frame: the visible objects with pixel counts and 2D boxes, x2/y2 exclusive),
``room.json`` (door and window) and optionally ``scanrefer.json`` (referring expressions). Any scene whose
annotations are written in that form can be used, synthetic or not: :mod:`scener1.data.annotations` writes them
for a real ScanNet scan from its ground-truth boxes and ScanRefer descriptions (no ``room.json``, no colours).

Four tasks, each row holding a prompt in the exact wording the pipeline uses (:mod:`scener1.prompts`):

- ``image``: one frame -> the box of the described object. Queries are the scene's referring expressions
  of an object visible in the frame, plus short frame-level ones ("the lamp", "the red chair") when they
  single the object out among everything visible in that frame (easy rows for a curriculum). With
  ``absent_share`` (prompt versions that ask for it), some queries are also asked on a frame that shows no
  object of the target's category, answered ``<answer>[]</answer>`` (``absent: True``, ``box: None``).
- ``temporal``: the frames the temporal stage shows (its own sampling, :class:`TemporalSettings`) -> the
  span in which the object is *clearly seen* (covering at least ``clear_fraction`` of the image; gaps
  shorter than one sampling interval bridged). An object may be clearly seen in several intervals; each
  is a right answer (:func:`scener1.rl.rewards.temporal_iou_reward` takes the best), the target written
  for supervised training is the one where it is seen most, from its first to its last frame shown.

- ``detect`` (supervised training only): one frame -> the boxes and labels of every object on it, with a
  prompt of its own (:data:`scener1.prompts.DETECTION_PROMPT`; the grounding stages never ask it, the VQA
  detector may). It gives a small model dense supervision of where things are (several boxes for the cost of
  one image) to build grounding on.

- ``vqa``: the video as the VQA head shows it -> the answer to one of the scene's VSI-Bench-style questions
  (``gt/vsibench.json``) or ScanQA-style ones (``gt/scanqa.json``, scored as free-form answers), with the
  columns the answer rewards of :mod:`scener1.rl.vqa_rewards` read (``question_type``, ``ground_truth``,
  ``answers``).

Rationales for supervised training (the ``<think>`` part) state only facts of the scene graph and the
ground truth: the object's relations to named anchors, and where it lies in the image or when it is seen.

Rows are plain dicts (JSON-serialisable), ready for ``datasets.Dataset.from_list``; the columns the reward
functions read are described in :mod:`scener1.rl.rewards`. Frames are not stored in rows: they are read
from the scene when a batch is built (:class:`FrameSource`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, SceneError
from ..prompts import DETECTION_PROMPT, detection_messages, image_messages, temporal_messages, vqa_messages
from ..synth.writer import read_gt

#: (width, height) of the original frame -> (width, height) the model's processor resizes it to.
ImageSizeFn = Callable[[int, int], tuple[int, int]]

TASKS = ("image", "temporal", "detect", "vqa")
VIDEO_TASKS = ("temporal", "vqa")  # rows shown a video (FrameSource.clip); the others one frame
REGIONS = (("top left", "top", "top right"), ("left", "centre", "right"), ("bottom left", "bottom", "bottom right"))


# --------------------------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class ObjectInfo:
    object_id: int
    category: str
    color: str

    @property
    def label(self) -> str:
        """The one-word label written in answers ("trash can" -> "trash_can")."""
        return self.category.replace(" ", "_")


@dataclass(frozen=True)
class Visible:
    """One object on one frame: its visible pixel count and the box of those pixels (x2/y2 exclusive)."""

    object_id: int
    pixels: int
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Description:
    object_id: int
    text: str
    relation: dict[str, Any]


@dataclass(frozen=True, eq=False)
class SceneTruth:
    """A scene's ground truth as the dataset builders need it."""

    path: Path
    name: str
    size: tuple[int, int]  # (W, H) of the colour frames
    fps: float
    objects: dict[int, ObjectInfo]
    frames: tuple[tuple[Visible, ...], ...]  # by frame position
    descriptions: tuple[Description, ...]
    graph: Any  # scener1.synth.language.SceneGraph

    @property
    def timestamps(self) -> np.ndarray:
        return np.arange(len(self.frames)) / self.fps


def load_scene_truth(scene_dir: str | Path) -> SceneTruth:
    """Read a scene's ``gt/`` files (see the module docstring) into a :class:`SceneTruth`."""
    from ..synth.language import Node, SceneGraph

    path = Path(scene_dir)
    gt = path / "gt"
    objects_json = read_gt(path, "objects.json")
    frames_json = read_gt(path, "frames.json")
    room = read_gt(path, "room.json") if (gt / "room.json").is_file() else {}  # a real scan's may not exist
    try:
        objects = {int(o["object_id"]): ObjectInfo(int(o["object_id"]), str(o["category"]), str(o["color"]))
                   for o in objects_json["objects"]}
        nodes = [Node(int(o["object_id"]), str(o["category"]), str(o["color"]), np.asarray(o["aabb"]["min"], float),
                      np.asarray(o["aabb"]["max"], float), np.asarray(o["obb"]["size"], float))
                 for o in sorted(objects_json["objects"], key=lambda o: int(o["object_id"]))]
        frames = tuple(
            tuple(Visible(int(v["object_id"]), int(v["pixels"]), tuple(int(c) for c in v["bbox"])) for v in f["objects"])
            for f in sorted(frames_json["frames"], key=lambda f: int(f["frame"]))
        )
        size = (int(frames_json["size"][0]), int(frames_json["size"][1]))
        fps = float(frames_json["fps"])
        door, window = (np.asarray(room[k]["center"], float) if k in room else None for k in ("door", "window"))
        graph = SceneGraph.build(nodes, door, window)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SceneError(f"{gt}: ground truth not in the expected form ({type(exc).__name__}: {exc})") from None
    if [n.object_id for n in nodes] != list(range(len(nodes))):
        raise SceneError(f"{gt / 'objects.json'}: object ids must be 0..{len(nodes) - 1}")
    descriptions: tuple[Description, ...] = ()
    if (gt / "scanrefer.json").is_file():
        descriptions = tuple(Description(int(r["object_id"]), str(r["description"]), dict(r.get("relation") or {}))
                             for r in read_gt(path, "scanrefer.json"))
    return SceneTruth(path, path.name, size, fps, objects, frames, descriptions, graph)


# --------------------------------------------------------------------------------------------- rationales
def region_name(box: Sequence[float], size: tuple[int, int]) -> str:
    """Where a box's centre lies in the image, in thirds: "top left", "centre", "bottom right", ..."""
    cx = 0.5 * (box[0] + box[2]) / size[0]
    cy = 0.5 * (box[1] + box[3]) / size[1]
    col = min(int(cx * 3), 2)
    row = min(int(cy * 3), 2)
    return REGIONS[max(row, 0)][max(col, 0)]


def relation_facts(truth: SceneTruth, object_id: int, first: dict[str, Any] | None = None,
                   limit: int = 2) -> list[str]:
    """True relation phrases about the object ("next to the desk", "near the window"), at most ``limit``.

    ``first`` (a referring expression's relation) goes first when it can be phrased; then the scene
    graph's on / under / next-to edges to anchors that can be named unambiguously, then nearness to the
    door or window. Phrases come from :mod:`scener1.synth.language`, so they mean what the expressions mean.
    """
    from ..synth.language import Logic, near, relation_phrase

    graph = truth.graph
    rng = np.random.default_rng(object_id)  # the phrasing varies by object but is reproducible
    logics: list[Any] = []
    if first and first.get("type") not in (None, "attribute", "largest", "smallest"):
        anchors = tuple(a if isinstance(a, str) else int(a) for a in first.get("anchors", ()))
        logics.append(Logic(str(first["type"]), anchors))
    for rel in ("on", "under", "next_to"):
        for anchor in sorted(graph.related(rel, object_id)):
            if graph.node(anchor).category != truth.objects[object_id].category:
                logics.append(Logic(rel, (anchor,)))
    node = graph.node(object_id)
    for name, landmark in (("door", graph.door), ("window", graph.window)):
        if landmark is not None and near(node, landmark):
            logics.append(Logic("near", (name,)))
    facts: list[str] = []
    seen: set[tuple] = set()
    for logic in logics:
        key = (logic.relation, logic.anchors)
        if key in seen:
            continue
        seen.add(key)
        phrase = relation_phrase(graph, logic, rng)
        if phrase and phrase not in facts:
            facts.append(phrase)
        if len(facts) == limit:
            break
    return facts


def _subject(obj: ObjectInfo) -> str:
    return f"The {obj.color} {obj.category}" if obj.color else f"The {obj.category}"  # real scans: no colour


def image_rationale(truth: SceneTruth, obj: ObjectInfo, box: Sequence[float], relation: dict | None = None,
                    region: bool = True) -> str:
    """True facts about the target; with ``region``, also the part of the image its box is in."""
    facts = relation_facts(truth, obj.object_id, relation)
    where = f"in the {region_name(box, truth.size)} of the image"
    if facts:
        return f"{_subject(obj)} is {', '.join(facts)}." + (f" It is {where}." if region else "")
    return f"{_subject(obj)} is {where}." if region else f"{_subject(obj)} is in the image."


def temporal_rationale(truth: SceneTruth, obj: ObjectInfo, span: tuple[float, float],
                       relation: dict | None = None) -> str:
    facts = relation_facts(truth, obj.object_id, relation, limit=1)
    seen = f"clearly seen from {span[0]:.1f} to {span[1]:.1f} seconds"
    if facts:
        return f"{_subject(obj)} is {facts[0]}. It is {seen}."
    return f"{_subject(obj)} is {seen}."


# --------------------------------------------------------------------------------------------- answers
def box_in_model_coordinates(box: Sequence[float], size: tuple[int, int], model_size: tuple[int, int] | None,
                             convention: str) -> list[int]:
    """The box as the model should write it: resized pixels, or 0-1000 of the width and height (the inverse
    of :func:`scener1.parsing.map_box`, rounded to integers)."""
    W, H = size
    if convention == "normalized_1000":
        sx, sy = 1000.0 / W, 1000.0 / H
    elif convention == "resized_pixels":
        if model_size is None:
            raise ConfigError("resized_pixels boxes need the model's image size")
        sx, sy = model_size[0] / W, model_size[1] / H
    else:
        raise ConfigError(f"unknown box convention '{convention}'")
    x1, y1, x2, y2 = box
    return [int(round(x1 * sx)), int(round(y1 * sy)), int(round(x2 * sx)), int(round(y2 * sy))]


def mirror_box(box: Sequence[float], width: float) -> tuple[float, ...]:
    """A box (x2 exclusive) on the frame mirrored left-right."""
    x1, y1, x2, y2 = box
    return (width - x2, y1, width - x1, y2)


def mirror_image(image: np.ndarray) -> np.ndarray:
    """An (H, W, ...) image mirrored left-right, contiguous (as the processors expect)."""
    return np.ascontiguousarray(image[:, ::-1])


def box_answer(think: str, box: Sequence[int], label: str) -> str:
    return f'<think>{think}</think><answer>{{"bbox_2d": [{box[0]}, {box[1]}, {box[2]}, {box[3]}], "label": "{label}"}}</answer>'


def span_answer(think: str, span: tuple[float, float]) -> str:
    return f"<think>{think}</think><answer>{span[0]:.1f}s to {span[1]:.1f}s</answer>"


# --------------------------------------------------------------------------------------------- image rows
@dataclass(frozen=True)
class ImageTaskSettings:
    """Which frames and objects become image-grounding rows.

    Every ``frame_stride``-th frame is used; an object counts when it covers at least ``min_fraction`` of
    the image and its box is at least ``min_box`` pixels on each side. ``frame_queries`` adds the short
    frame-level queries (difficulty 0); ``scene_queries`` the scene's referring expressions (difficulty 1).
    ``image_region`` ends the rationale with the part of the image the box is in ("It is in the bottom left
    of the image"). ``mirror`` adds each row again on the frame mirrored left-right (``mirrored: True``,
    read mirrored by :class:`FrameSource`): the synthetic queries never say left or right, so they stay
    true, while a box placed from the query alone is wrong on one of the two frames. ``absent_share``: that
    share of the rows (drawn at random, fixed per scene) is asked again on a frame of the same scene that
    shows no object of the target's category, answered "not in the image" (``<answer>[]</answer>``; needs a
    prompt version with ``absent_answer``), so the image stage learns to abstain on frames without it.
    """

    frame_stride: int = 3
    min_fraction: float = 0.004
    min_box: int = 8
    frame_queries: bool = True
    scene_queries: bool = True
    rationale: bool = True
    image_region: bool = True
    mirror: bool = False
    absent_share: float = 0.0

    def __post_init__(self) -> None:
        if self.frame_stride < 1:
            raise ConfigError("frame_stride must be >= 1")
        if not 0 <= self.min_fraction < 1:
            raise ConfigError("min_fraction must be in [0, 1)")
        if not 0 <= self.absent_share <= 1:
            raise ConfigError(f"absent_share must be in [0, 1], got {self.absent_share}")


def frame_level_queries(truth: SceneTruth, visible: Sequence[Visible], target: int) -> list[str]:
    """Short queries naming ``target`` unambiguously among the objects visible on this frame."""
    obj = truth.objects[target]
    cats = [truth.objects[v.object_id].category for v in visible]
    pairs = [(truth.objects[v.object_id].category, truth.objects[v.object_id].color) for v in visible]
    out = []
    if cats.count(obj.category) == 1:
        out.append(f"the {obj.category}")
    if obj.color and pairs.count((obj.category, obj.color)) == 1:
        out.append(f"the {obj.color} {obj.category}")
    return out


def _frame_row(task: str, truth: SceneTruth, position: int, query: str, prompt: list[dict[str, Any]], answer: str,
               object_id: int, difficulty: int, box: list[float] | None, model_size: tuple[int, int] | None,
               convention: str, mirrored: bool = False, absent: bool = False) -> dict[str, Any]:
    """A one-frame row (image grounding or detection) with every column the trainers read."""
    return {
        "task": task,
        "scene": str(truth.path),
        "positions": [position],
        "timestamps": [],
        "query": query,
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": answer}],
        "object_id": object_id,
        "difficulty": difficulty,
        "box": box,
        "image_size": list(truth.size),
        "model_image_size": None if model_size is None else list(model_size),
        "box_coordinates": convention,
        "spans": None,
        "duration": None,
        "mirrored": mirrored,  # the frame is shown mirrored left-right (boxes are the mirrored frame's)
        "absent": absent,  # image rows asked on a frame without the target (answer "[]", box None)
    }


def image_rows(truth: SceneTruth, convention: str, model_image_size: ImageSizeFn | None = None,
               settings: ImageTaskSettings | None = None, prompt_version: str | None = None) -> list[dict[str, Any]]:
    """Image-grounding rows of one scene (see the module docstring)."""
    from ..prompts import get_prompts

    s = settings or ImageTaskSettings()
    if s.absent_share > 0 and not get_prompts(prompt_version).absent_answer:
        raise ConfigError(f"image.absent_share needs a prompt version that asks for <answer>[]</answer> (v2); "
                          f"this model's is {prompt_version or 'the default'}")
    W, H = truth.size
    model_size = model_image_size(W, H) if model_image_size is not None else None
    min_pixels = s.min_fraction * W * H
    by_object: dict[int, list[Description]] = {}
    for d in truth.descriptions:
        by_object.setdefault(d.object_id, []).append(d)
    rows = []
    for position in range(0, len(truth.frames), s.frame_stride):
        visible = truth.frames[position]
        for v in visible:
            x1, y1, x2, y2 = v.box
            if v.pixels < min_pixels or x2 - x1 < s.min_box or y2 - y1 < s.min_box:
                continue
            obj = truth.objects[v.object_id]
            queries: list[tuple[str, int, dict | None]] = []
            if s.frame_queries:
                queries += [(q, 0, None) for q in frame_level_queries(truth, visible, v.object_id)]
            if s.scene_queries:
                queries += [(d.text, 1, d.relation) for d in by_object.get(v.object_id, [])]
            for mirrored in (False, True) if s.mirror else (False,):
                box = mirror_box(v.box, W) if mirrored else v.box
                target = box_in_model_coordinates(box, truth.size, model_size, convention)
                for query, difficulty, relation in queries:
                    think = image_rationale(truth, obj, box, relation, s.image_region) if s.rationale else ""
                    rows.append(_frame_row(
                        "image", truth, position, query, image_messages(query, convention, prompt_version),
                        box_answer(think, target, obj.label), obj.object_id, difficulty, [float(c) for c in box],
                        model_size, convention, mirrored))
    if s.absent_share > 0:
        rows += absent_rows(truth, [r for r in rows if not r["mirrored"]], s, prompt_version)
    return rows


def absent_rows(truth: SceneTruth, rows: Sequence[dict[str, Any]], settings: ImageTaskSettings,
                prompt_version: str | None = None) -> list[dict[str, Any]]:
    """``settings.absent_share`` of ``rows`` asked again on a frame showing no object of the target's
    category (so the answer "not in the image" is true whatever the query says), answered ``[]``."""
    import zlib

    grid = range(0, len(truth.frames), settings.frame_stride)
    categories = [{truth.objects[v.object_id].category for v in truth.frames[p]} for p in grid]
    rng = np.random.default_rng([zlib.crc32(truth.name.encode()), 11])  # fixed per scene
    out = []
    for row in rows:
        if rng.random() >= settings.absent_share:
            continue
        obj = truth.objects[int(row["object_id"])]
        empty = [p for p, cats in zip(grid, categories) if obj.category not in cats]
        if not empty:
            continue
        position = int(empty[int(rng.integers(len(empty)))])
        think = f"I see no {obj.category} in the image." if settings.rationale else ""
        absent = _frame_row("image", truth, position, row["query"], row["prompt"], f"<think>{think}</think><answer>[]</answer>",
                            obj.object_id, int(row["difficulty"]), None,
                            None if row["model_image_size"] is None else tuple(row["model_image_size"]),
                            row["box_coordinates"], absent=True)
        out.append(absent)
    return out


# --------------------------------------------------------------------------------------------- detection rows
def training_phrases(version: str | None = None) -> list[str]:
    """Fixed text of the training-only prompts (a tokenizer may hold each as one token)."""
    from ..prompts import get_prompts

    return [DETECTION_PROMPT] + [DETECTION_PROMPT + h for h in get_prompts(version).coordinate_hints.values()]


@dataclass(frozen=True)
class DetectionTaskSettings:
    """Which frames become detection rows: every ``frame_stride``-th frame with at least one object covering
    ``min_fraction`` of the image (boxes at least ``min_box`` pixels a side); at most ``max_objects`` objects,
    the largest, listed left to right; ``mirror`` adds each frame mirrored left-right too."""

    frame_stride: int = 3
    min_fraction: float = 0.004
    min_box: int = 8
    max_objects: int = 8
    mirror: bool = False


def detection_rows(truth: SceneTruth, convention: str, model_image_size: ImageSizeFn | None = None,
                   settings: DetectionTaskSettings | None = None,
                   prompt_version: str | None = None) -> list[dict[str, Any]]:
    s = settings or DetectionTaskSettings()
    W, H = truth.size
    model_size = model_image_size(W, H) if model_image_size is not None else None
    rows = []
    for position in range(0, len(truth.frames), s.frame_stride):
        shown = [v for v in truth.frames[position] if v.pixels >= s.min_fraction * W * H
                 and v.box[2] - v.box[0] >= s.min_box and v.box[3] - v.box[1] >= s.min_box]
        if not shown:
            continue
        shown = sorted(shown, key=lambda v: -v.pixels)[: s.max_objects]
        for mirrored in (False, True) if s.mirror else (False,):
            boxes = [(mirror_box(v.box, W) if mirrored else v.box, truth.objects[v.object_id].label) for v in shown]
            boxes.sort(key=lambda item: (item[0][0] + item[0][2], item[0][1]))
            items = []
            for box, label in boxes:
                b = box_in_model_coordinates(box, truth.size, model_size, convention)
                items.append(f'{{"bbox_2d": [{b[0]}, {b[1]}, {b[2]}, {b[3]}], "label": "{label}"}}')
            rows.append(_frame_row("detect", truth, position, "", detection_messages(convention, prompt_version),
                                   "<answer>[" + ", ".join(items) + "]</answer>", -1, 0, None, model_size, convention,
                                   mirrored))
    return rows


# --------------------------------------------------------------------------------------------- temporal rows
@dataclass(frozen=True)
class TemporalTaskSettings:
    """Which objects become temporal-grounding rows and what counts as clearly seen.

    ``clear_fraction`` of the image must be covered for a frame to show the object clearly; a target
    interval must contain at least ``min_shown`` of the frames shown to the model. ``span_target`` is the answer
    the rows teach: ``shown``, from the first to the last frame shown inside the interval (what runs 1-14 trained
    on); ``estimate``, the same widened by half the sampling interval on each side (within the video), where the
    interval's ends are expected to lie given the frames shown. Answered perfectly, ``shown`` scores a temporal
    mean IoU of 0.71 on the held-out rows (16 % of them under 0.5), ``estimate`` 0.83 (none under 0.5).
    """

    clear_fraction: float = 0.01
    min_shown: int = 2
    frame_queries: bool = True
    scene_queries: bool = True
    rationale: bool = True
    span_target: str = "shown"

    def __post_init__(self) -> None:
        if self.span_target not in ("shown", "estimate"):
            raise ConfigError(f"unknown temporal span_target '{self.span_target}'; choose shown or estimate")


def clear_intervals(truth: SceneTruth, object_id: int, clear_fraction: float, bridge_s: float,
                    origin_s: float = 0.0) -> list[tuple[float, float, float]]:
    """(start, end, pixel mass) of the runs of frames where the object covers ``clear_fraction`` of the
    image, gaps up to ``bridge_s`` seconds bridged; times are seconds from ``origin_s``."""
    W, H = truth.size
    need = clear_fraction * W * H
    pixels = np.array([next((v.pixels for v in f if v.object_id == object_id), 0) for f in truth.frames], float)
    clear = np.flatnonzero(pixels >= need)
    if len(clear) == 0:
        return []
    dt = 1.0 / truth.fps
    out = []
    start = prev = int(clear[0])
    for p in [*clear[1:].tolist(), None]:
        if p is not None and (p - prev - 1) * dt <= bridge_s + 1e-9:  # the unclear frames between
            prev = p
            continue
        out.append((start * dt - origin_s, (prev + 1) * dt - origin_s, float(pixels[start : prev + 1].sum())))
        if p is not None:
            start = prev = p
    return out


def temporal_rows(truth: SceneTruth, settings: TemporalTaskSettings | None = None, temporal: Any = None,
                  prompt_version: str | None = None) -> list[dict[str, Any]]:
    """Temporal-grounding rows of one scene, on the frames the temporal stage would show
    (``temporal``: its :class:`~scener1.temporal.TemporalSettings`, default if ``None``)."""
    from ..temporal.core import TemporalSettings, sample_video_positions, sampling_interval

    s = settings or TemporalTaskSettings()
    temporal = temporal or TemporalSettings()
    times = truth.timestamps
    positions = sample_video_positions(times, temporal)
    shown = times[positions]
    duration = float(shown[-1] - shown[0])
    step = sampling_interval(shown)
    bridge = max(step, 1.0 / truth.fps)
    queries: dict[int, list[tuple[str, int, dict | None]]] = {}
    if s.frame_queries:
        cats = [o.category for o in truth.objects.values()]
        for obj in truth.objects.values():
            if cats.count(obj.category) == 1:
                queries.setdefault(obj.object_id, []).append((f"the {obj.category}", 0, None))
    if s.scene_queries:
        for d in truth.descriptions:
            queries.setdefault(d.object_id, []).append((d.text, 1, d.relation))
    rows = []
    for object_id, items in sorted(queries.items()):
        intervals = clear_intervals(truth, object_id, s.clear_fraction, bridge, origin_s=float(shown[0]))
        scored = []
        for start, end, mass in intervals:
            inside = shown[(shown - shown[0] >= start - 1e-9) & (shown - shown[0] < end - 1e-9)] - shown[0]
            if len(inside) >= s.min_shown:
                scored.append((mass, (float(inside[0]), float(inside[-1]))))
        if not scored:
            continue
        target = max(scored)[1]
        if s.span_target == "estimate":
            target = (max(0.0, target[0] - step / 2), min(duration, target[1] + step / 2))
        spans = [[round(a, 4), round(b, 4)] for a, b, _ in intervals]
        obj = truth.objects[object_id]
        for query, difficulty, relation in items:
            think = temporal_rationale(truth, obj, target, relation) if s.rationale else ""
            rows.append({
                "task": "temporal",
                "scene": str(truth.path),
                "positions": [int(p) for p in positions],
                "timestamps": [round(float(t - shown[0]), 4) for t in shown],
                "query": query,
                "prompt": temporal_messages(query, shown - shown[0], prompt_version),
                "completion": [{"role": "assistant", "content": span_answer(think, target)}],
                "object_id": object_id,
                "difficulty": difficulty,
                "box": None,
                "image_size": list(truth.size),
                "model_image_size": None,
                "box_coordinates": None,
                "spans": spans,
                "duration": duration,
                "mirrored": False,
            })
    return rows


# --------------------------------------------------------------------------------------------- vqa rows
@dataclass(frozen=True)
class VQATaskSettings:
    """Which of a scene's questions become VQA rows; frames are shown as the VQA head shows them."""

    vsibench: bool = True
    scanqa: bool = True
    rationale: bool = True


def _names(truth: SceneTruth, ids: Iterable[Any]) -> list[str]:
    return [f"the {truth.objects[int(i)].category}" for i in ids]


def vqa_rationale(truth: SceneTruth, record: dict[str, Any], answer: str, option: str | None) -> str:
    """A true statement of what the answer rests on, from the question's program and the scene graph."""
    from ..synth.objects import plural

    qtype, program = record["question_type"], record.get("program") or {}
    ids = [int(i) for i in record.get("object_ids", ())]
    if qtype == "object_counting":
        colours = sorted(truth.objects[i].color for i in ids if truth.objects[i].color)
        return (f"There are {answer} {plural(program.get('category', 'object'))} in the room"
                + (f": {', '.join(colours)}." if colours else "."))
    if qtype == "object_abs_distance":
        a, b = _names(truth, program.get("objects", ids)[:2])
        return f"The closest points of {a} and {b} are {answer} m apart."
    if qtype == "object_size_estimation":
        (a,) = _names(truth, [program.get("object", ids[0])])
        return f"The longest side of {a} is {answer} cm."
    if qtype == "room_size_estimation":
        return f"The floor of the room covers {answer} square metres."
    if qtype == "free_form":
        target = program.get("target")
        if target is not None and int(target) in truth.objects:
            obj = truth.objects[int(target)]
            facts = relation_facts(truth, obj.object_id, program.get("logic"), limit=1)
            where = f" is {facts[0]}" if facts else " is in the room"
            return f"{_subject(obj)}{where}. The answer is {answer}."
        return f"The answer is {answer}."
    return f"The option that holds is {answer}: {option}." if option else f"The answer is {answer}."


def vqa_rows(truth: SceneTruth, settings: VQATaskSettings | None = None, vlm: Any = None,
             prompt_version: str | None = None) -> list[dict[str, Any]]:
    """VQA rows of one scene, on the frames the VQA head would show (``vlm``: its
    :class:`~scener1.vqa.vlm_head.VLMSettings`, default if ``None``), prompts worded as the head words them."""
    from ..temporal.core import sample_video_positions
    from ..vqa.router import route
    from ..vqa.vlm_head import VLMSettings, answer_kind

    s = settings or VQATaskSettings()
    vlm = vlm or VLMSettings()
    gt = truth.path / "gt"
    records: list[tuple[dict[str, Any], str, list[str] | None]] = []
    try:
        if s.vsibench and (gt / "vsibench.json").is_file():
            records += [(r, str(r["question_type"]), None) for r in read_gt(truth.path, "vsibench.json")
                        if str(r["ground_truth"]) and str(r["question"])]
        if s.scanqa and (gt / "scanqa.json").is_file():
            records += [(r, "free_form", [str(a) for a in r["answers"]]) for r in read_gt(truth.path, "scanqa.json")
                        if r["answers"] and str(r["question"])]
    except (KeyError, TypeError) as exc:
        raise SceneError(f"{gt}: questions not in the expected form ({type(exc).__name__}: {exc})") from None
    if not records:
        return []
    times = truth.timestamps
    positions = sample_video_positions(times, vlm.clip_settings())
    shown = times[positions] - times[positions][0]
    rows = []
    for record, qtype, answers in records:
        rq = route(str(record["question"]), list(record.get("options") or []) or None)
        truth_answer = answers[0] if answers else str(record["ground_truth"])
        option = next((o.text for o in rq.options if o.letter == truth_answer), None)
        think = vqa_rationale(truth, {**record, "question_type": qtype}, truth_answer, option) if s.rationale else ""
        options = [f"{o.letter}. {o.text}" for o in rq.options]
        rows.append({
            "task": "vqa",
            "scene": str(truth.path),
            "positions": [int(p) for p in positions],
            "timestamps": [round(float(t), 4) for t in shown],
            "query": rq.question,
            "prompt": vqa_messages(rq.question, shown, answer_kind(rq), options, version=prompt_version),
            "completion": [{"role": "assistant", "content": f"<think>{think}</think><answer>{truth_answer}</answer>"}],
            "object_id": None,
            "difficulty": 1,
            "question_type": qtype,
            "ground_truth": None if answers else truth_answer,
            "answers": answers,
            "options": options,
            "mirrored": False,
        })
    return rows


# --------------------------------------------------------------------------------------------- datasets
def scene_dirs(root: str | Path) -> list[Path]:
    """Scene folders under ``root`` (those with ``gt/frames.json``), sorted; ``root`` itself if it is one."""
    root = Path(root)
    if (root / "gt" / "frames.json").is_file():
        return [root]
    found = sorted(p.parent.parent for p in root.glob("*/gt/frames.json"))
    if not found:
        raise SceneError(f"{root}: no scenes with ground truth (expected */gt/frames.json)")
    return found


def build_rows(scenes: Iterable[str | Path], *, tasks: Sequence[str] = ("image", "temporal"),
               convention: str = "resized_pixels", model_image_size: ImageSizeFn | None = None,
               image: ImageTaskSettings | None = None, temporal: TemporalTaskSettings | None = None,
               detect: DetectionTaskSettings | None = None, vqa: VQATaskSettings | None = None,
               prompt_version: str | None = None, vqa_prompt_version: str | None = None,
               progress: bool = False) -> list[dict[str, Any]]:
    """Rows of every task (``image``, ``temporal``, ``detect``, ``vqa``) for every scene, in scene order."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ConfigError(f"unknown task(s) {', '.join(sorted(unknown))}; choose from {', '.join(TASKS)}")
    scenes = list(scenes)
    iterator: Iterable = scenes
    if progress:
        from tqdm import tqdm

        iterator = tqdm(scenes, desc="dataset", unit="scene")
    rows: list[dict[str, Any]] = []
    for scene in iterator:
        truth = load_scene_truth(scene)
        if "image" in tasks:
            rows += image_rows(truth, convention, model_image_size, image, prompt_version)
        if "temporal" in tasks:
            rows += temporal_rows(truth, temporal, prompt_version=prompt_version)
        if "detect" in tasks:
            rows += detection_rows(truth, convention, model_image_size, detect, prompt_version)
        if "vqa" in tasks:
            rows += vqa_rows(truth, vqa, prompt_version=vqa_prompt_version)
    return rows


@dataclass(frozen=True)
class Curriculum:
    """The order rows are trained in, batch by batch: the first ``easy_rows`` rows are drawn from the easy
    ones (image rows of difficulty 0), the rest from every row, each batch from one task chosen with
    ``task_weights`` (a batch of one task pads little); ``total`` rows in all, reproducible by ``seed``.
    A pool is reshuffled each time it is used up."""

    total: int
    batch_size: int = 8
    easy_rows: int = 0
    task_weights: dict[str, float] = field(default_factory=lambda: {"image": 0.8, "temporal": 0.2})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.total < 1 or self.batch_size < 1 or not 0 <= self.easy_rows <= self.total:
            raise ConfigError("a curriculum needs total >= 1, batch_size >= 1 and 0 <= easy_rows <= total")
        if any(w < 0 for w in self.task_weights.values()) or not sum(self.task_weights.values()) > 0:
            raise ConfigError("task weights must be >= 0 and not all 0")


def curriculum_order(rows: Sequence[dict[str, Any]], curriculum: Curriculum) -> list[int]:
    """Row indices in training order (see :class:`Curriculum`)."""
    c = curriculum
    rng = np.random.default_rng(c.seed)
    pools = {t: np.array([i for i, r in enumerate(rows) if r["task"] == t], dtype=np.int64) for t in c.task_weights}
    easy = np.array([i for i, r in enumerate(rows) if r["task"] == "image" and r["difficulty"] == 0], dtype=np.int64)
    tasks = [t for t, w in c.task_weights.items() if w > 0 and len(pools[t])]
    if not tasks:
        raise ConfigError("no rows for the curriculum's tasks")

    def cycle(pool: np.ndarray):
        while True:
            yield from rng.permutation(pool).tolist()

    streams = {t: cycle(pools[t]) for t in tasks}
    weights = np.array([c.task_weights[t] for t in tasks], float)
    order: list[int] = []
    if c.easy_rows:
        easy_stream = cycle(easy if len(easy) else pools[tasks[0]])
        order += [next(easy_stream) for _ in range(c.easy_rows)]
    while len(order) < c.total:
        task = tasks[int(rng.choice(len(tasks), p=weights / weights.sum()))]
        # fill up to the next batch boundary, so that every batch holds one task
        need = min(c.batch_size - len(order) % c.batch_size, c.total - len(order))
        order += [next(streams[task]) for _ in range(need)]
    return order


# --------------------------------------------------------------------------------------------- frames
class FrameSource:
    """Reads the frames rows refer to, through :func:`scener1.data.open_scene` (any supported layout).

    Keeps up to ``max_scenes`` scenes open and ``max_clips`` clips built (a scene's clip is the same for all
    its temporal rows). Opening a scene indexes its files (tens of milliseconds, far more on slow file
    systems) while an open frame-folder scene holds little more than that index, so the default keeps a
    whole training set open: batches mix scenes at random, and a smaller cache reopened a scene for most
    rows. Clips are built exactly as the temporal stage (temporal rows) or the VQA head (``vqa`` rows;
    ``vqa``: its :class:`~scener1.vqa.vlm_head.VLMSettings`) builds them.
    """

    def __init__(self, temporal: Any = None, max_scenes: int = 256, max_clips: int = 32, vqa: Any = None):
        from ..temporal.core import TemporalSettings
        from ..vqa.vlm_head import VLMSettings

        self.temporal = temporal or TemporalSettings()
        self.vqa = (vqa or VLMSettings()).clip_settings()
        self.max_scenes = max_scenes
        self.max_clips = max_clips
        self._scenes: OrderedDict[str, Any] = OrderedDict()
        self._clips: OrderedDict[tuple, Any] = OrderedDict()

    def scene(self, path: str) -> Any:
        from ..data import open_scene

        if path in self._scenes:
            self._scenes.move_to_end(path)
            return self._scenes[path]
        scene = open_scene(path)
        self._scenes[path] = scene
        while len(self._scenes) > self.max_scenes:
            _, old = self._scenes.popitem(last=False)
            old.close()
        return scene

    def image(self, row: dict[str, Any]) -> np.ndarray:
        """The colour frame of an image row, (H, W, 3) uint8 RGB (mirrored left-right for a mirrored row)."""
        color = self.scene(row["scene"]).color(int(row["positions"][0]))
        return mirror_image(color) if row.get("mirrored") else color

    def clip(self, row: dict[str, Any]) -> Any:
        """The video of a temporal or VQA row (a :class:`scener1.models.VideoClip`)."""
        from ..temporal.core import build_video_clip

        key = (row["task"], row["scene"], tuple(row["positions"]))
        if key in self._clips:
            self._clips.move_to_end(key)
            return self._clips[key]
        scene = self.scene(row["scene"])
        frames = [color for _, color in scene.colors(row["positions"])]
        settings = self.vqa if row["task"] == "vqa" else self.temporal
        clip = build_video_clip(frames, np.asarray(row["timestamps"], float), settings)
        self._clips[key] = clip
        while len(self._clips) > self.max_clips:
            self._clips.popitem(last=False)
        return clip

    def close(self) -> None:
        for scene in self._scenes.values():
            scene.close()
        self._scenes.clear()
        self._clips.clear()


def answer_text(row: dict[str, Any]) -> str:
    """The supervised answer of a row."""
    return str(row["completion"][-1]["content"])


def check_rows(rows: Sequence[dict[str, Any]]) -> None:
    """Refuse rows whose supervised answer the pipeline's parsers would not read back to the target."""
    from ..parsing import parse_box
    from .rewards import box_geometry, box_iou_reward, format_reward, temporal_iou_reward

    for i, row in enumerate(rows):
        if row["task"] == "detect":
            geometry = box_geometry(row["image_size"], row["model_image_size"], row["box_coordinates"])
            parsed = parse_box(answer_text(row), geometry)
            if parsed.value is None or len(parsed.boxes) != answer_text(row).count("bbox_2d"):
                raise ConfigError(f"detection row {i}: its answer does not read back to its boxes")
    vqa = [r for r in rows if r["task"] == "vqa"]
    if vqa:
        from .vqa_rewards import vqa_answer_reward

        columns = {k: [r.get(k) for r in vqa] for k in ("task", "question_type", "ground_truth", "answers")}
        for row, score in zip(vqa, vqa_answer_reward([answer_text(r) for r in vqa], **columns)):
            if score != 1.0:
                raise ConfigError(f"VQA row ({row['query']!r}): its answer scores {score} against its own target")
    rows = [r for r in rows if r["task"] not in ("detect", "vqa")]
    completions = [answer_text(r) for r in rows]
    columns = {k: [r.get(k) for r in rows] for k in ("task", "box", "absent", "image_size", "model_image_size",
                                                    "box_coordinates", "spans", "duration")}
    fmt = format_reward(completions, **columns)
    boxes = box_iou_reward(completions, **columns)
    spans = temporal_iou_reward(completions, **columns)
    for i, row in enumerate(rows):
        if fmt[i] != 1.0:
            raise ConfigError(f"row {i} ({row['query']!r}): its answer does not parse")
        score = boxes[i] if row["task"] == "image" else spans[i]
        floor = 0.5 if row["task"] == "image" else 0.3
        if score is None or not math.isfinite(score) or score < floor:
            raise ConfigError(f"row {i} ({row['query']!r}): its answer scores {score} against its own target")
