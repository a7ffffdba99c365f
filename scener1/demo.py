"""``scener1 demo``: the embedded default, end to end on the synthetic demo scene.

The demo scene is generated deterministically on first use (``assets/demo_scene``). The demo reads it,
fuses it, lifts objects from 2D boxes to 3D and checks them against the scene's ground truth, grounds
language queries when a grounding model is installed, answers a counting question from the lifted objects
(found by the grounding model, or without one by the scene's ground-truth 2D boxes, and says which), and
renders the result offscreen when a Vulkan driver is present. Everything it writes goes to one output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .config import CONFIG_DIR
from .synth.writer import read_objects

REPO = CONFIG_DIR.parent
DEMO_SCENE = REPO / "assets" / "demo_scene"
DEMO_MODEL = REPO / "assets" / "models" / "scene-r1-tiny"
# each names one object of the demo scene (the last two are its own ScanRefer-style descriptions), so that the
# demo can say how close each answer came
DEMO_QUERIES = ("the brown sofa", "the green chair nearest to the window.", "the yellow lamp")


def _say(text: str = "") -> None:
    print(text, flush=True)


def demo_objects(gt_dir: Path, size: tuple[int, int], count: int = 3) -> list[dict[str, Any]]:
    """The ``count`` largest-looking objects of different categories, each with the frame that shows the
    most of it without cutting it at the image border, and its box there."""
    objects = {o["object_id"]: o for o in read_objects(gt_dir.parent)}
    best: dict[int, tuple[int, int, list[int]]] = {}
    w, h = size
    for fr in json.loads((gt_dir / "frames.json").read_text())["frames"]:
        for ob in fr["objects"]:
            x1, y1, x2, y2 = ob["bbox"]
            if x1 <= 0 or y1 <= 0 or x2 >= w or y2 >= h:
                continue
            if ob["pixels"] > best.get(ob["object_id"], (0,))[0]:
                best[ob["object_id"]] = (ob["pixels"], fr["frame"], ob["bbox"])
    chosen, seen = [], set()
    for oid, (pixels, frame, bbox) in sorted(best.items(), key=lambda kv: -kv[1][0]):
        cat = objects[oid]["category"]
        if cat in seen:
            continue
        seen.add(cat)
        chosen.append({**objects[oid], "frame": frame, "bbox": bbox, "pixels": pixels})
        if len(chosen) == count:
            break
    return chosen


def truth_box(obj: dict[str, Any]) -> Any:
    """The ground-truth axis-aligned box of an ``objects.json`` entry, as a :class:`~scener1.lifting.Box3D`."""
    import numpy as np

    from .lifting import Box3D

    return Box3D.from_min_max(np.array(obj["aabb"]["min"]), np.array(obj["aabb"]["max"]))


def run_demo(out: str | Path = "outputs/demo", render: bool = True) -> dict[str, Any]:
    """Run the demo, print what each step found, and return (and write) a summary."""
    from .data import open_scene
    from .lifting import aabb_iou, lift, write_ply
    from .pipeline import write_scene_cloud
    from .synth import ensure_demo_scene

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _say(f"[1/5] demo scene: {DEMO_SCENE}" + ("" if (DEMO_SCENE / "gt").is_dir() else " (generating it once, ~15 s)"))
    ensure_demo_scene(DEMO_SCENE)
    summary: dict[str, Any] = {"scene": str(DEMO_SCENE), "objects": [], "queries": []}
    with open_scene(DEMO_SCENE) as scene:
        info = scene.summary()
        _say(f"      {info['format']} layout, {info['frames']} frames {info['color_size'][0]}x{info['color_size'][1]}, "
             f"{info['duration_s']:.1f} s at {info['fps']:g} fps, {info['valid_poses']} valid poses")

        _say("[2/5] fusing the scene's depth into a point cloud")
        cloud_path = write_scene_cloud(scene, out, voxel=0.03, max_frames=100)
        _say(f"      -> {cloud_path}")

        _say("[3/5] lifting objects from a 2D box on one frame to 3D (geometric tracker, no weights needed)")
        for obj in demo_objects(DEMO_SCENE / "gt", scene.color_intrinsics.size):
            res = lift(scene, obj["frame"], obj["bbox"])
            iou = aabb_iou(res.box_3d, truth_box(obj)) if res.box_3d is not None else 0.0
            obj_dir = out / f"object_{obj['object_id']:02d}_{obj['category']}"
            obj_dir.mkdir(exist_ok=True)
            (obj_dir / "result.json").write_text(json.dumps(res.to_json(), indent=2))
            if res.n_points:
                write_ply(res.cloud, obj_dir / "object.ply")
            c = res.box_3d.center if res.box_3d is not None else None
            name = f"{obj['color']} {obj['category']}"
            _say(f"      {name:<18} frame {obj['frame']:>3} box {obj['bbox']} -> "
                 + (f"centre ({c[0]:.2f}, {c[1]:.2f}, {c[2]:.2f}) m, 3D IoU with ground truth {iou:.2f}"
                    if c is not None else f"{res.status}: {res.reason}"))
            summary["objects"].append({"object_id": obj["object_id"], "category": obj["category"],
                                       "status": res.status, "iou": round(iou, 3), "dir": str(obj_dir)})

        summary["queries"] = _ground_queries(scene, out)

        _say("[4/5] 3D question answering from the lifted objects")
        summary["vqa"] = _answer_question(scene, out)

    _say("[5/5] rendering")
    summary["render"] = _render(out, summary) if render else None
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _say(f"done in {summary['seconds']} s; everything is in {out}")
    return summary


def _ground_queries(scene, out: Path) -> list[dict[str, Any]]:
    if not (DEMO_MODEL / "config.json").is_file():
        _say(f"      (no embedded grounding model at {DEMO_MODEL}: language queries skipped; "
             "run `scener1 ground --model DIR` with Qwen2.5-VL / Qwen3-VL weights)")
        return []
    from .lifting import aabb_iou
    from .pipeline import Pipeline, write_result

    _say(f"      grounding {len(DEMO_QUERIES)} queries with {DEMO_MODEL.name}")
    line = heldout_line(DEMO_MODEL)
    if line:
        _say(f"      ({line}; docs/training.md)")
    pipe = Pipeline.from_config(None, [f"model.path={DEMO_MODEL}"])
    rows = []
    for k, result in enumerate(pipe.ground_many(scene, list(DEMO_QUERIES))):
        d = write_result(result, scene, out / f"query_{k}")
        j = result.to_json()
        row = {"query": j["query"], "status": j["status"], "dir": str(d), "object_id": None, "iou": None}
        truth = described_object(DEMO_SCENE / "gt", DEMO_QUERIES[k])
        check = ""
        if truth is not None:
            box = result.lifted.box_3d if result.lifted is not None else None
            iou = aabb_iou(box, truth_box(truth)) if box is not None else 0.0
            row.update(object_id=truth["object_id"], iou=round(float(iou), 3))
            check = f"; 3D IoU with the described {truth['color']} {truth['category']}: {iou:.2f}"
        _say(f"      '{j['query']}': {j['status']}, window {j['window']} s, frame {j['frame']}, box {j['box_2d']}{check}")
        for what, why in (("window", temporal_why(result.temporal)), ("box", image_why(result.image))):
            if why:
                _say(f"        why this {what}: {why}")
        rows.append(row)
    return rows


def temporal_why(temporal: Any) -> str | None:
    """One line on where the temporal stage's span came from: the cell heads or the model's answer."""
    if temporal is None or temporal.span_source != "heads":
        return None
    heads = temporal.trace.parsed.get("heads") or {}
    target = heads.get("target") or {}
    named = " ".join(v for v in (target.get("colour"), target.get("category")) if v)
    answered = temporal.parsed.value
    said = f"{answered[0]:g}s to {answered[1]:g}s" if answered is not None else "nothing usable"
    return (f"the frames where the cell heads see a {named} most (best p={max(heads.get('presence') or [0]):.2f}); "
            f"the model itself answered {said}")


def image_why(image: Any) -> str | None:
    """One line on how the image stage chose its box: the frames' agreement and the cell heads' check."""
    import statistics

    if image is None or image.used_fallback:
        return None
    chosen = next((c for c in image.candidates if c.chosen), None)
    why = f"{image.agreement} of {len(image.candidates)} candidate frames agree on it in 3D"
    target = image.trace.inputs.get("verifier") or {}
    if chosen is not None and chosen.verify is not None:
        named = " ".join(v for v in (target.get("colour"), target.get("category")) if v)
        others = [c.verify for c in image.candidates if c.verify is not None and not c.chosen]
        why += (f"; the cell heads see a {named} in it with p={chosen.verify:.2f}"
                + (f" (other candidates' median {statistics.median(others):.2f})" if others else ""))
    return why


def described_object(gt_dir: Path, query: str) -> dict[str, Any] | None:
    """The ground-truth object ``query`` describes: one of the scene's ScanRefer descriptions word for word,
    or "the <colour> <category>" of the only object with that colour and category; ``None`` otherwise."""
    def norm(text: str) -> str:
        return " ".join(text.lower().strip().rstrip(".").split())

    objects = read_objects(gt_dir.parent)
    by_id = {o["object_id"]: o for o in objects}
    refs = gt_dir / "scanrefer.json"
    for d in json.loads(refs.read_text()) if refs.is_file() else []:
        if norm(d["description"]) == norm(query) and int(d["object_id"]) in by_id:
            return by_id[int(d["object_id"])]
    named = [o for o in objects if norm(f"the {o['color']} {o['category']}") == norm(query)]
    return named[0] if len(named) == 1 else None


def heldout_line(model_dir: Path) -> str | None:
    """What the shipped model scored on the held-out scenes it was evaluated on (its
    ``training_summary.json``), so the demo's answers come with how far to trust them."""
    path = model_dir / "training_summary.json"
    try:
        report = json.loads(path.read_text())["heldout"]
        name = "sft+grpo" if "sft+grpo" in report["results"] else next(iter(report["results"]))
        got, targets = report["results"][name], report["targets"]
    except (OSError, ValueError, KeyError, StopIteration):
        return None
    # the temporal stage's own figure: the cell heads' span when the model has them, else the model's answer
    temporal = "temporal+heads/miou" if "temporal+heads/miou" in got else "temporal/miou"
    shown = [("image Acc@0.5", "image/acc@0.5"), ("temporal mean IoU", temporal), ("3D Acc@0.25", "3d/acc@0.25")]
    parts = [f"{label} {got[key]:.2f} (target {targets[key]:g})" for label, key in shown if key in got and key in targets]
    return f"held-out scores of this model: {', '.join(parts)}" if parts else None


def demo_question(gt_dir: Path) -> tuple[str, int]:
    """A counting question about the demo scene's most repeated category, and the true count."""
    from collections import Counter

    counts = Counter(o["category"] for o in read_objects(gt_dir.parent))
    category, n = max(sorted(counts.items()), key=lambda kv: kv[1])
    return f"How many {category}(s) are in this room?", n


def _answer_question(scene, out: Path) -> dict[str, Any]:
    from .vqa import VQAEngine

    question, truth = demo_question(DEMO_SCENE / "gt")
    if (DEMO_MODEL / "config.json").is_file():
        grounder, how = "pipeline", f"objects found by {DEMO_MODEL.name}"
        engine = VQAEngine.build("pipeline", mode="geometry", model=str(DEMO_MODEL))
    else:  # no model: ground truth as prompts, the same lifting and heads (never the ground-truth 3D boxes)
        grounder, how = "oracle", "objects prompted by the scene's ground-truth 2D boxes (no grounding model)"
        engine = VQAEngine.build("oracle", mode="geometry")
    result = engine.answer(scene, question).to_json()
    (out / "vqa.json").write_text(json.dumps(result, indent=2))
    _say(f"      '{question}' -> {result['answer']} (ground truth {truth}; {how})")
    summary = (result.get("geometry") or {}).get("computation", {}).get("summary")
    if summary:
        _say(f"      why: {summary}")
    _say(f"      -> {out / 'vqa.json'}")
    return {"question": question, "answer": result["answer"], "truth": truth, "grounder": grounder}


def _render(out: Path, summary: dict[str, Any]) -> str | None:
    from .errors import ScenerError
    from .viz import load_result_view, render_png, vulkan_available

    ok, reason = vulkan_available()
    if not ok:
        _say(f"      skipped: {reason}")
        return None
    first = next((o for o in summary["objects"] if o["status"] == "ok"), None)
    if first is None:
        return None
    # the object folder's parent holds scene.ply, which the view picks up
    png = out / "render.png"
    try:
        render_png(load_result_view(first["dir"]), png)
    except ScenerError as exc:
        _say(f"      skipped: {exc}")
        return None
    _say(f"      -> {png}")
    return str(png)
