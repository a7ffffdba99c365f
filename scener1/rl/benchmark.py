"""Held-out evaluation of trained grounding models: the stages alone and the full pipeline in 3D.

For each model, on the same held-out scenes, the same rows and the same greedy decoding:

- image grounding (``image/acc@0.5``, ``image/pointing``, ``image/miou``) and temporal grounding
  (``temporal/miou``) on a fixed random subset of the scenes' rows (:mod:`scener1.rl.evaluate`);
- the object listing the VQA heads read (``detect/precision``, ``detect/recall``) on a fixed subset of the
  scenes' frames, every object covering 0.4 % of the frame counted;
- the full pipeline (temporal -> image -> geometric tracker -> lifting, :class:`scener1.pipeline.Pipeline`
  with its default settings) on a fixed subset of the scenes' referring expressions, scored like ScanRefer:
  ``3d/acc@0.25`` and ``3d/acc@0.5`` (IoU of the axis-aligned box with the object's true box; a query that
  gives no box scores 0), and where queries were lost (``3d/target_seen``, ``3d/pointing``) and what a
  better choice among the image stage's candidates could gain (``3d/candidates_seen``, ``3d/any_pointing``).

The subsets depend only on the scenes and the seed, so two models (SFT alone, SFT + GRPO) are compared on
exactly the same items. Results go to ``out_dir``: ``report.json``, ``report.md`` and one
``predictions_<model>.jsonl`` per model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

HEADLINE = ("image/acc@0.5", "image/pointing", "image/miou", "image+heads/acc@0.5", "image+heads/pointing",
            "temporal/miou", "temporal+heads/miou", "3d/acc@0.25", "3d/acc@0.5", "image/format", "temporal/format",
            "image+snap/acc@0.5", "image+snap/miou", "3d/fallback")
#: Shown when measured (``HeldoutSettings.reliance_rows``, :func:`scener1.rl.evaluate.image_reliance`).
RELIANCE = ("reliance/pointing", "reliance/mirror_pointing", "reliance/mirror_follow", "reliance/grey_pointing")
#: Shown when measured: where the pipeline lost its queries (:func:`evaluate_pipeline`) and the answers on frames
#: without the target (models whose prompts allow "not in the image").
DIAGNOSTICS = ("3d/target_seen", "3d/pointing", "3d/candidates_seen", "3d/any_pointing", "image/absent_acc",
               "image/said_absent", "detect/precision", "detect/recall")
#: The acceptance thresholds of issue 7 (held-out synthetic scenes).
TARGETS = {"image/acc@0.5": 0.5, "image/pointing": 0.8, "image+heads/acc@0.5": 0.5, "image+heads/pointing": 0.8,
           "temporal/miou": 0.5, "temporal+heads/miou": 0.5, "3d/acc@0.25": 0.6, "3d/acc@0.5": 0.4}


@dataclass(frozen=True)
class HeldoutSettings:
    image_rows: int = 400
    temporal_rows: int = 120
    pipeline_queries: int = 60
    batch_size: int = 16
    max_new_tokens: int = 96
    seed: int = 0
    pipeline_overrides: tuple[str, ...] = ()  # key=value settings of the pipeline (configs/default.yaml)
    reliance_rows: int = 0  # image rows also answered on mirrored and grey frames (0: not measured)
    absent_rows: int = 100  # image rows on frames without the target (models whose prompts allow "[]")
    detect_rows: int = 100  # frames whose every object the model is asked to list (the VQA heads' listing)
    detect_max_new_tokens: int = 320  # a listing is longer than one box
    # image+heads/*: the model's box on a given frame, or the cell heads' own where they doubt it, at this
    # image.replace_below (the 3D pipeline leaves it off: its coarser boxes lift worse; docs/training.md)
    heads_replace_below: float = 0.3

    def __post_init__(self) -> None:
        if min(self.image_rows, self.temporal_rows, self.pipeline_queries, self.reliance_rows, self.absent_rows,
               self.detect_rows) < 0:
            raise ConfigError("row and query counts must be >= 0")


def pick(items: Sequence[Any], count: int, seed: int) -> list[Any]:
    """A fixed random subset of ``count`` items, in their original order."""
    if count >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:count])
    return [items[int(i)] for i in keep]


def heldout_rows(scenes: Sequence[str | Path], model_dir: str | Path, settings: HeldoutSettings) -> list[dict]:
    """The rows a model is scored on: referring-expression rows (difficulty 1) of both tasks, and for a model
    whose prompts allow the answer "not in the image" also image rows on frames without the target, and detection
    rows (every object of a frame, not only the 8 largest that training rows list)."""
    from ..models.training import (
        load_processor,
        model_box_convention,
        processor_image_size,
    )
    from ..prompts import get_prompts
    from .datasets import DetectionTaskSettings, ImageTaskSettings, build_rows

    version, convention = model_box_convention(model_dir)
    # absent rows are appended after the others, which stay the same rows whether or not they are built
    absent_share = 0.25 if settings.absent_rows and get_prompts(version).absent_answer else 0.0
    tasks = ("image", "temporal", "detect") if settings.detect_rows else ("image", "temporal")
    rows = build_rows(scenes, tasks=tasks, convention=convention,
                      model_image_size=processor_image_size(load_processor(model_dir)),
                      image=ImageTaskSettings(absent_share=absent_share), detect=DetectionTaskSettings(max_objects=64),
                      prompt_version=version)
    ones = [r for r in rows if r["difficulty"] == 1]
    image = pick([r for r in ones if r["task"] == "image" and not r["absent"]], settings.image_rows, settings.seed)
    temporal = pick([r for r in ones if r["task"] == "temporal"], settings.temporal_rows, settings.seed + 1)
    absent = pick([r for r in ones if r["task"] == "image" and r["absent"]], settings.absent_rows, settings.seed + 3)
    detect = pick([r for r in rows if r["task"] == "detect"], settings.detect_rows, settings.seed + 4)
    return image + temporal + absent + detect


def pipeline_queries(scenes: Sequence[str | Path], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` referring expressions of the scenes (scene, query, target id, true box min/max)."""
    from ..synth.writer import read_gt, read_objects

    items = []
    for scene in scenes:
        objects = {int(o["object_id"]): o for o in read_objects(scene)}
        for record in read_gt(scene, "scanrefer.json"):
            o = objects[int(record["object_id"])]
            items.append({"scene": str(scene), "query": record["description"], "object_id": int(record["object_id"]),
                          "min": o["aabb"]["min"], "max": o["aabb"]["max"]})
    return pick(items, count, seed)


def chosen_frame_check(views: Sequence[Any], object_id: int, box: Sequence[float] | None) -> tuple[bool, bool]:
    """Where the pipeline lost a query, on the frame its image stage chose: (does that frame show the
    target at all, does the chosen box's centre lie inside the target's visible-pixel box there).

    ``views``: the frame's :class:`~scener1.rl.datasets.Visible` objects (the scene's ``gt/frames.json``).
    """
    target = next((v for v in views if v.object_id == object_id), None)
    if target is None or box is None:
        return target is not None, False
    from .rewards import centre_inside

    return True, centre_inside(box, target.box)


def candidate_checks(truth: Sequence[Sequence[Any]], object_id: int,
                     candidates: Sequence[tuple[int, Sequence[float] | None]]) -> tuple[float, bool]:
    """What the image stage had to choose from: (share of its candidate frames that show the target, does
    any candidate's box centre lie on the target). The second bounds what a better vote among the same
    answers could reach; when it is high and ``3d/pointing`` low, the choice is the loss, not the answers.

    ``truth``: per scene position, the frame's :class:`~scener1.rl.datasets.Visible` objects;
    ``candidates``: (scene position, box or None) pairs.
    """
    checks = [chosen_frame_check(truth[p], object_id, box) for p, box in candidates]
    if not checks:
        return 0.0, False
    return float(np.mean([seen for seen, _ in checks])), any(hit for _, hit in checks)


def evaluate_pipeline(model_dir: str | Path, queries: Sequence[Mapping[str, Any]],
                      overrides: Sequence[str] = (), progress: bool = True) -> tuple[dict[str, float], list[dict]]:
    """Ground each query with the full pipeline and score its 3D box against the true one.

    Where the scene has per-frame ground truth (``gt/frames.json``), two more figures say where a query
    was lost: ``3d/target_seen`` (the image stage's chosen frame shows the target; low means the
    temporal span, or the vote among frames, missed it) and ``3d/pointing`` (the chosen box's centre lies
    on the target there), and two more on all the frames the image stage asked (:func:`candidate_checks`):
    ``3d/candidates_seen`` and ``3d/any_pointing``.
    """
    from ..data import open_scene
    from ..errors import ScenerError
    from ..lifting import Box3D, aabb_iou
    from ..pipeline import Pipeline
    from .datasets import load_scene_truth

    pipe = Pipeline.from_config(None, [*overrides, f"model.path={model_dir}"])
    by_scene: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_scene.setdefault(q["scene"], []).append(i)
    results: dict[int, dict[str, Any]] = {}
    scenes = list(by_scene.items())
    if progress:
        from tqdm import tqdm

        scenes = tqdm(scenes, desc="pipeline", unit="scene")
    for scene_path, idx in scenes:
        with open_scene(scene_path) as scene:
            grounded = pipe.ground_many(scene, [queries[i]["query"] for i in idx])
        try:
            views = load_scene_truth(scene_path).frames
        except ScenerError:
            views = None  # no per-frame truth (not a generated scene): no target_seen / pointing
        for i, result in zip(idx, grounded, strict=True):
            q = queries[i]
            truth = Box3D.from_min_max(np.asarray(q["min"], float), np.asarray(q["max"], float))
            box = None if result.lifted is None else result.lifted.box_3d
            iou = 0.0 if box is None else float(aabb_iou(box, truth))
            results[i] = {"scene": Path(scene_path).name, "query": q["query"], "object_id": q["object_id"],
                          "status": result.status, "iou": round(iou, 4), "frame": None if result.image is None
                          else int(result.image.frame_index), "box_2d": None if result.image is None
                          else [round(float(v), 1) for v in result.image.box], "notes": list(result.notes)}
            if views is not None and result.image is not None and 0 <= result.image.position < len(views):
                seen, pointing = chosen_frame_check(views[result.image.position], q["object_id"],
                                                    None if result.image.used_fallback else result.image.box)
                shown, any_hit = candidate_checks(views, q["object_id"],
                                                  [(c.position, c.box) for c in result.image.candidates])
                results[i].update(target_seen=seen, pointing=pointing, candidates_seen=round(shown, 4),
                                  any_pointing=any_hit)
    ordered = [results[i] for i in range(len(queries))]
    ious = np.array([r["iou"] for r in ordered]) if ordered else np.zeros(0)
    metrics = {"3d/n": float(len(ordered))}
    if len(ious):
        metrics.update({"3d/acc@0.25": float((ious >= 0.25).mean()), "3d/acc@0.5": float((ious >= 0.5).mean()),
                        "3d/miou": float(ious.mean()),
                        "3d/fallback": float(np.mean([r["status"] != "ok" for r in ordered]))})
    checked = [r for r in ordered if "target_seen" in r]
    if checked:
        metrics.update({"3d/target_seen": float(np.mean([r["target_seen"] for r in checked])),
                        "3d/pointing": float(np.mean([r["pointing"] for r in checked])),
                        "3d/candidates_seen": float(np.mean([r["candidates_seen"] for r in checked])),
                        "3d/any_pointing": float(np.mean([r["any_pointing"] for r in checked]))})
    return metrics, ordered


def image_figures(prefix: str, boxes: Sequence[Sequence[float] | None], rows: Sequence[Mapping[str, Any]]
                  ) -> dict[str, float]:
    """``prefix/miou``, ``/acc@0.5`` and ``/pointing`` of ``boxes`` (None: no usable box) against the rows' boxes."""
    from .rewards import box_iou, centre_inside

    if not boxes:
        return {}
    iou = np.array([0.0 if b is None else box_iou(b, r["box"]) for b, r in zip(boxes, rows, strict=True)])
    hits = [b is not None and centre_inside(b, r["box"]) for b, r in zip(boxes, rows, strict=True)]
    return {f"{prefix}/miou": float(iou.mean()), f"{prefix}/acc@0.5": float((iou >= 0.5).mean()),
            f"{prefix}/pointing": float(np.mean(hits))}


def snapped_metrics(rows: Sequence[dict], results: Sequence[Any], frames: Any) -> dict[str, float]:
    """The image figures again after snapping each predicted box onto its frame's depth segments
    (:mod:`scener1.grounding.snapping`): does snapping help this model's boxes?"""
    from ..grounding.snapping import snap_box

    pairs = [(r, a) for r, a in zip(rows, results, strict=True) if r["task"] == "image" and not r.get("absent")]
    boxes, changed = [], 0
    for row, result in pairs:
        if result.prediction is None:
            boxes.append(None)
            continue
        snapped = snap_box(tuple(result.prediction), frames.scene(row["scene"]).frame(int(row["positions"][0])))
        changed += snapped.changed
        boxes.append(snapped.box)
    if not boxes:
        return {}
    return {**image_figures("image+snap", boxes, [r for r, _ in pairs]), "image+snap/changed": changed / len(boxes)}


def heads_span_metrics(vlm: Any, rows: Sequence[dict], results: Sequence[Any], frames: Any) -> dict[str, float]:
    """The temporal figures of the pipeline's temporal stage (``temporal.span_source: auto``): on each temporal
    row, the span where the model's cell heads see the target (:func:`scener1.temporal.presence_span` over the
    row's frames), or the model's own answer when the query names no category the heads know. Empty for a
    model without cell heads."""
    from ..models.cell_verifier import CellVerifier
    from ..temporal import TemporalSettings
    from ..temporal.grounder import heads_span
    from .rewards import best_span_iou

    verifier = CellVerifier.for_model(vlm)
    pairs = [(row, result) for row, result in zip(rows, results, strict=True) if row["task"] == "temporal"]
    if verifier is None or not pairs:
        return {}
    ratio = TemporalSettings().presence_ratio
    ious, by_heads = [], 0
    for row, result in pairs:
        scene = frames.scene(row["scene"])
        keyed = [((row["scene"], int(p)), scene.color(int(p))) for p in row["positions"]]
        heads = heads_span(verifier, row["query"], keyed, np.asarray(row["timestamps"], float), float(row["duration"]),
                           ratio)
        ious.append(result.score if heads is None else best_span_iou(heads["span"], row["spans"]))
        by_heads += heads is not None
    iou = np.array(ious)
    return {"temporal+heads/miou": float(iou.mean()), "temporal+heads/acc@0.5": float((iou >= 0.5).mean()),
            "temporal+heads/by_heads": by_heads / len(ious)}


def heads_image_metrics(vlm: Any, rows: Sequence[dict], results: Sequence[Any], frames: Any,
                        replace_below: float) -> dict[str, float]:
    """The image stage's figures on a given frame with ``image.replace_below``: the model's box, or the cell heads'
    own box where they doubt it (:meth:`scener1.models.cell_verifier.CellVerifier.replacement`). Empty for a model
    without cell heads (or without their box map) or with ``replace_below`` 0."""
    from ..models.cell_verifier import CellVerifier

    verifier = CellVerifier.for_model(vlm)
    pairs = [(r, a) for r, a in zip(rows, results, strict=True) if r["task"] == "image" and not r.get("absent")]
    if verifier is None or verifier.heads.box_weight is None or replace_below <= 0 or not pairs:
        return {}
    boxes, replaced = [], 0
    for row, result in pairs:
        box = result.prediction
        target = verifier.target(row["query"])
        if box is not None and target.category is not None:
            position = int(row["positions"][0])
            record, box = verifier.replacement(target, ((row["scene"], position), frames.scene(row["scene"]).color(
                position)), box, replace_below)
            replaced += record is not None
        boxes.append(box)
    return {**image_figures("image+heads", boxes, [r for r, _ in pairs]), "image+heads/replaced": replaced / len(boxes)}


def evaluate_model(model_dir: str | Path, rows: Sequence[dict], queries: Sequence[Mapping[str, Any]],
                   settings: HeldoutSettings, progress: bool = True) -> tuple[dict[str, float], list[dict]]:
    """Every held-out figure of one model, and its per-item predictions."""
    from ..models import load_vlm
    from .datasets import FrameSource
    from .evaluate import evaluate_rows, image_reliance

    vlm = load_vlm(model_dir, batch_size=settings.batch_size)
    frames = FrameSource()
    listings = [r for r in rows if r["task"] == "detect"]
    rows = [r for r in rows if r["task"] != "detect"]
    report = evaluate_rows(vlm, rows, frames, max_new_tokens=settings.max_new_tokens, progress=progress)
    metrics = dict(report.metrics)
    metrics.update(snapped_metrics(rows, report.results, frames))
    metrics.update(heads_span_metrics(vlm, rows, report.results, frames))
    metrics.update(heads_image_metrics(vlm, rows, report.results, frames, settings.heads_replace_below))
    listed = evaluate_rows(vlm, listings, frames, max_new_tokens=settings.detect_max_new_tokens,
                           progress=progress) if listings else None
    if listed is not None:
        metrics.update(listed.metrics)
    if settings.reliance_rows:  # the first image rows, whose answers on the real frames are already in
        image = [(r, a) for r, a in zip(rows, report.results, strict=True) if r["task"] == "image"
                 and not r.get("absent")]
        image = image[: settings.reliance_rows]
        metrics.update(image_reliance(vlm, [r for r, _ in image], frames, max_new_tokens=settings.max_new_tokens,
                                      progress=progress, plain=[a for _, a in image]))
    frames.close()
    predictions = [r.to_dict() for r in report.results + (listed.results if listed is not None else ())]
    if queries:
        pipeline_metrics, pipeline_items = evaluate_pipeline(model_dir, queries, settings.pipeline_overrides, progress)
        metrics.update(pipeline_metrics)
        predictions += [{"task": "pipeline", **item} for item in pipeline_items]
    return metrics, predictions


def blind_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """What answers that never look at the frames score on the same rows: the whole frame as every box, the
    whole video shown as every span. A model that does not beat these is not reading the pictures."""
    from .datasets import box_answer, span_answer
    from .evaluate import score_image_answer, score_temporal_answer, summarise

    whole_frame = box_answer("", [0, 0, 1000, 1000], "object")  # 0-1000 of the frame: no model size needed
    results = [score_image_answer(whole_frame, r, None, "normalized_1000") if r["task"] == "image"
               else score_temporal_answer(span_answer("", (0.0, float(r["duration"]))), r)
               for r in rows if r["task"] in ("image", "temporal")]
    return summarise(results)


def constant_span_metrics(rows: Sequence[Mapping[str, Any]], steps: int = 20) -> dict[str, float]:
    """The best answer that never looks at the video: the one span (in twentieths of each video's length) that
    scores highest on these very rows. It is fitted on the rows it is scored on, so it bounds every constant answer
    from above; a temporal model below it has learnt less than where objects tend to be seen."""
    from .rewards import best_span_iou

    temporal = [r for r in rows if r["task"] == "temporal"]
    if not temporal:
        return {}
    best: tuple[float, float, float, np.ndarray] | None = None
    for i in range(steps):
        for j in range(i + 1, steps + 1):
            a, b = i / steps, j / steps
            ious = np.array([best_span_iou((a * float(r["duration"]), b * float(r["duration"])), r["spans"])
                             for r in temporal])
            if best is None or ious.mean() > best[0] + 1e-12:
                best = (float(ious.mean()), a, b, ious)
    miou, a, b, ious = best
    return {"temporal/n": float(len(temporal)), "temporal/miou": miou, "temporal/acc@0.5": float((ious >= 0.5).mean()),
            "temporal/constant_start": a, "temporal/constant_end": b}


def markdown_report(results: Mapping[str, Mapping[str, float]], counts: Mapping[str, int],
                    baselines: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """The report table: one column per model, then the baselines' columns (named in italics)."""
    results = {**results, **{f"*{k}*": v for k, v in (baselines or {}).items()}}
    names = list(results)
    lines = ["| metric | target | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    shown = HEADLINE + tuple(m for m in DIAGNOSTICS + RELIANCE if any(m in results[n] for n in names))
    for metric in shown:
        target = TARGETS.get(metric)
        values = [results[n].get(metric) for n in names]
        cells = ["-" if v is None else f"{v:.3f}" for v in values]
        lines.append(f"| {metric} | {'' if target is None else f'>= {target}'} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Items: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines) + "\n"


def compare_models(models: Mapping[str, str | Path], scenes: Sequence[str | Path], settings: HeldoutSettings,
                   out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Score every model on the same held-out items; write and return the report.

    A model whose predictions file is complete is not run again (the evaluation is resumable per model).
    """
    if not models:
        raise ConfigError("no models to evaluate")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(models.values()))
    rows = heldout_rows(scenes, first, settings)
    queries = pipeline_queries(scenes, settings.pipeline_queries, settings.seed + 2)
    results: dict[str, dict[str, float]] = {}
    for name, model_dir in models.items():
        done = out / f"metrics_{name.replace('+', '_')}.json"
        if done.is_file() and json.loads(done.read_text()).get("model") == str(model_dir):
            results[name] = json.loads(done.read_text())["metrics"]
            continue
        metrics, predictions = evaluate_model(model_dir, rows, queries, settings, progress)
        with open(out / f"predictions_{name.replace('+', '_')}.jsonl", "w", encoding="utf-8") as f:
            for p in predictions:
                f.write(json.dumps(p) + "\n")
        done.write_text(json.dumps({"model": str(model_dir), "metrics": metrics}, indent=2) + "\n")
        results[name] = metrics
    counts = {"image rows": sum(r["task"] == "image" and not r.get("absent") for r in rows),
              "temporal rows": sum(r["task"] == "temporal" for r in rows),
              "pipeline queries": len(queries), "scenes": len(scenes)}
    if any(r.get("absent") for r in rows):
        counts["absent rows"] = sum(bool(r.get("absent")) for r in rows)
    if any(r["task"] == "detect" for r in rows):
        counts["detection rows"] = sum(r["task"] == "detect" for r in rows)
    baselines = {"blind": blind_metrics(rows), "best constant span": constant_span_metrics(rows)}
    report = {"settings": asdict(settings), "scenes": [Path(s).name for s in scenes], "counts": counts,
              "models": {k: str(v) for k, v in models.items()}, "results": results, "baselines": baselines,
              "targets": TARGETS}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown_report(results, counts, baselines))
    return report
