"""Writing a generated scene in the ScanNet exported layout, with ground truth and annotation files.

Per scene ``DIR/<name>/``::

    color/<i>.jpg  depth/<i>.png (uint16 mm, 0 = hole)  pose/<i>.txt (4x4 camera-to-world)
    intrinsic/intrinsic_color.txt  intrinsic_depth.txt  extrinsic_color.txt  extrinsic_depth.txt
    <name>.txt                      ScanNet meta (sizes, focal lengths, axisAlignment, sceneType, fps)
    gt/objects.json  gt/frames.json  gt/room.json  gt/scene_graph.json  gt/instance/<i>.png
    gt/<name>_aligned_bbox.npy      (K, 8): cx cy cz dx dy dz nyu40_label object_id (ScanRefer/VoteNet)
    gt/camera_poses.npy             true poses (pose/ holds the noisy ones when pose noise is on)
    gt/scanrefer.json  gt/scanqa.json  gt/vsibench.json   this scene's annotations

and for a dataset ``DIR/ScanRefer_synth.json``, ``DIR/ScanQA_synth.json``, ``DIR/vsibench_synth.parquet``.
Object ids are 0-based as in ScanNet/ScanRefer; instance maps store ``object_id + 1`` (0 = no object).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SceneError
from ..types import Intrinsics
from .language import Expression, tokenize
from .objects import CATEGORIES
from .qa import Question


def _cv2():
    import cv2  # lazy

    return cv2


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def read_gt(scene_dir: str | Path, name: str) -> Any:
    """One ground-truth file of a scene (``gt/<name>``, JSON) with a one-line :class:`SceneError` when it is missing
    or unreadable."""
    path = Path(scene_dir) / "gt" / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SceneError(f"{scene_dir}: no ground truth gt/{name} (the gt/ files scener1.synth writes)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SceneError(f"{path}: not valid JSON ({exc})") from None


def read_objects(scene_dir: str | Path) -> list[dict[str, Any]]:
    """The entries of a scene's ``gt/objects.json`` (id, category, colour, 3D boxes per object)."""
    objects = read_gt(scene_dir, "objects.json")
    if not isinstance(objects, dict) or not isinstance(objects.get("objects"), list):
        raise SceneError(f"{Path(scene_dir) / 'gt' / 'objects.json'}: no 'objects' list")
    return objects["objects"]


def _matrix_text(M: np.ndarray) -> str:
    return "\n".join(" ".join(f"{v:.8f}" for v in row) for row in np.asarray(M)) + "\n"


def camera_matrix4(K: Intrinsics) -> np.ndarray:
    M = np.eye(4)
    M[:3, :3] = K.matrix
    return M


def prepare_scene_dir(scene_dir: Path) -> None:
    for sub in ("color", "depth", "pose", "intrinsic", "gt/instance"):
        (scene_dir / sub).mkdir(parents=True, exist_ok=True)


def write_frame(scene_dir: Path, i: int, color: np.ndarray, depth_m: np.ndarray, instance: np.ndarray,
                pose: np.ndarray, jpeg_quality: int = 92) -> None:
    """One frame's colour (JPEG), depth (16-bit mm PNG), instance map (16-bit PNG) and pose."""
    cv2 = _cv2()
    cv2.imwrite(str(scene_dir / "color" / f"{i}.jpg"), cv2.cvtColor(color, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    mm = np.clip(np.rint(depth_m * 1000.0), 0, 65535).astype(np.uint16)
    cv2.imwrite(str(scene_dir / "depth" / f"{i}.png"), mm, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    cv2.imwrite(str(scene_dir / "gt" / "instance" / f"{i}.png"), instance.astype(np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    (scene_dir / "pose" / f"{i}.txt").write_text(_matrix_text(pose))


def write_camera(scene_dir: Path, name: str, K: Intrinsics, frames: int, fps: float, scene_type: str) -> None:
    """Intrinsics/extrinsics files and the ScanNet meta file ``<name>.txt``."""
    intr = scene_dir / "intrinsic"
    for kind in ("color", "depth"):
        (intr / f"intrinsic_{kind}.txt").write_text(_matrix_text(camera_matrix4(K)))
        (intr / f"extrinsic_{kind}.txt").write_text(_matrix_text(np.eye(4)))
    ident = " ".join(f"{v:g}" for v in np.eye(4).ravel())
    meta = {
        "axisAlignment": ident,  # the synthetic world is already axis-aligned
        "colorHeight": K.height, "colorWidth": K.width, "depthHeight": K.height, "depthWidth": K.width,
        "fx_color": f"{K.fx:.6f}", "fy_color": f"{K.fy:.6f}", "mx_color": f"{K.cx:.6f}", "my_color": f"{K.cy:.6f}",
        "fx_depth": f"{K.fx:.6f}", "fy_depth": f"{K.fy:.6f}", "mx_depth": f"{K.cx:.6f}", "my_depth": f"{K.cy:.6f}",
        "colorToDepthExtrinsics": ident,
        "numColorFrames": frames, "numDepthFrames": frames, "numIMUmeasurements": 0,
        "sceneType": scene_type, "fps": f"{fps:g}",
    }
    (scene_dir / f"{name}.txt").write_text("".join(f"{k} = {v}\n" for k, v in meta.items()))


# ----------------------------------------------------------------------------------------- ground truth
def frame_objects(instance: np.ndarray) -> list[dict]:
    """Objects in one instance map: id, pixel count and the mask's box [x1, y1, x2, y2] (x2, y2 exclusive)."""
    counts = np.bincount(instance.ravel())
    out = []
    for inst in np.nonzero(counts)[0]:
        if inst == 0:
            continue
        mask = instance == inst  # one pass per visible object (at most 20), vectorised over pixels
        rows = np.nonzero(mask.any(axis=1))[0]
        cols = np.nonzero(mask.any(axis=0))[0]
        out.append({"object_id": int(inst) - 1, "pixels": int(counts[inst]),
                    "bbox": [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]})
    return out


def visible_intervals(frames: np.ndarray, fps: float) -> list[list[float]]:
    """Runs of consecutive frame indices as [start, end) seconds; a frame covers 1/fps from its timestamp."""
    if len(frames) == 0:
        return []
    frames = np.sort(frames)
    breaks = np.nonzero(np.diff(frames) > 1)[0]
    starts = np.concatenate([[frames[0]], frames[breaks + 1]])
    ends = np.concatenate([frames[breaks], [frames[-1]]])
    return [[round(float(s) / fps, 4), round(float(e + 1) / fps, 4)] for s, e in zip(starts, ends)]


def aabb_record(lo: np.ndarray, hi: np.ndarray) -> dict:
    """An axis-aligned box as ``gt/objects.json`` writes it."""
    return {"center": ((lo + hi) / 2).tolist(), "size": (hi - lo).tolist(), "min": lo.tolist(), "max": hi.tolist()}


def frames_seen(per_frame: list[list[dict]], min_pixels: int) -> dict[int, np.ndarray]:
    """For every object on some frame with at least ``min_pixels``, the frames (positions) where it is, in one pass."""
    seen: dict[int, list[int]] = {}
    for i, objs in enumerate(per_frame):
        for d in {d["object_id"] for d in objs if d["pixels"] >= min_pixels}:
            seen.setdefault(d, []).append(i)
    return {k: np.array(v, dtype=np.int64) for k, v in seen.items()}


def visibility_record(frames: np.ndarray, fps: float) -> dict:
    """When an object is seen (its :func:`frames_seen`), as ``gt/objects.json`` writes it."""
    return {"visible_intervals": visible_intervals(frames, fps), "visible_frames": int(len(frames)),
            "first_visible_frame": int(frames[0]) if len(frames) else None}


def objects_json(objects, per_frame: list[list[dict]], fps: float, min_pixels: int, name: str) -> dict:
    seen = frames_seen(per_frame, min_pixels)
    out = []
    for o in objects:
        lo, hi = o.aabb
        c, s, R = o.obb
        out.append({
            "object_id": o.object_id,
            "instance_id": o.instance_id,
            "category": o.category,
            "nyu40_id": CATEGORIES[o.category].nyu40_id,
            "color": o.color_name,
            "aabb": aabb_record(lo, hi),
            "obb": {"center": c.tolist(), "size": s.tolist(), "rotation": R.tolist()},
            "placement": o.placement,
            "support": o.support,
            **visibility_record(seen.get(o.object_id, np.zeros(0, np.int64)), fps),
        })
    return {"scene_id": name, "fps": fps, "num_frames": len(per_frame), "visibility_min_pixels": min_pixels,
            "id_convention": "object_id is 0-based (ScanNet/ScanRefer); instance maps store object_id + 1, 0 = none",
            "objects": out}


def aligned_bbox_array(objects) -> np.ndarray:
    """(K, 8) float64 rows cx, cy, cz, dx, dy, dz, nyu40 label, object id (ScanNet benchmark layout)."""
    rows = []
    for o in objects:
        lo, hi = o.aabb
        rows.append([*((lo + hi) / 2), *(hi - lo), CATEGORIES[o.category].nyu40_id, o.object_id])
    return np.array(rows, dtype=np.float64).reshape(-1, 8)


# ----------------------------------------------------------------------------------------- annotations
def scanrefer_records(name: str, expressions: list[Expression], objects_gt: dict) -> list[dict]:
    by_id = {o["object_id"]: o for o in objects_gt["objects"]}
    out, counter = [], {}
    for e in expressions:
        k = counter.get(e.target, 0)
        counter[e.target] = k + 1
        o = by_id[e.target]
        out.append({
            "scene_id": name,
            "object_id": str(e.target),
            "object_name": e.category.replace(" ", "_"),
            "ann_id": str(k),
            "description": e.description,
            "token": tokenize(e.description),
            "eval_type": e.eval_type,
            "distractor_ids": [str(d) for d in e.distractors],
            "relation": e.logic.to_dict(),
            "temporal_span": o["visible_intervals"],
            "first_visible": None if o["first_visible_frame"] is None else round(o["first_visible_frame"] / objects_gt["fps"], 4),
        })
    return out


def scanqa_records(name: str, questions: list[Question], objects) -> list[dict]:
    cats = {o.object_id: o.category for o in objects}
    return [{
        "scene_id": name,
        "question_id": f"synth-{name}-{k}",
        "question": q.question,
        "answers": list(q.answers),
        "object_ids": list(q.object_ids),
        "object_names": [cats[i].replace(" ", "_") for i in q.object_ids],
        "question_type": q.kind,
        "program": q.program,
    } for k, q in enumerate(questions)]


def vsi_records(name: str, questions: list[Question]) -> list[dict]:
    return [{
        "id": k,
        "dataset": "synth",
        "scene_name": name,
        "question_type": q.kind,
        "question": q.question,
        "ground_truth": q.answers[0],
        "options": list(q.options),
        "object_ids": list(q.object_ids),
        "program": q.program,
    } for k, q in enumerate(questions)]


VSI_COLUMNS = ["id", "dataset", "scene_name", "question_type", "question", "ground_truth", "options"]


def write_annotations(out_dir: str | Path, scene_dirs: list[Path]) -> dict[str, Path]:
    """Merge the scenes' ``gt/`` annotations into the dataset files (ScanRefer, ScanQA, VSI-Bench parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    refer, scanqa, vsi = [], [], []
    for d in scene_dirs:
        refer += json.loads((d / "gt" / "scanrefer.json").read_text())
        scanqa += json.loads((d / "gt" / "scanqa.json").read_text())
        vsi += json.loads((d / "gt" / "vsibench.json").read_text())
    paths = {
        "scanrefer": out_dir / "ScanRefer_synth.json",
        "scanqa": out_dir / "ScanQA_synth.json",
        "vsibench": out_dir / "vsibench_synth.parquet",
    }
    write_json(paths["scanrefer"], refer)
    write_json(paths["scanqa"], scanqa)
    rows = [{**{k: r[k] for k in VSI_COLUMNS}, "id": i} for i, r in enumerate(vsi)]
    schema = pa.schema([("id", pa.int64()), ("dataset", pa.string()), ("scene_name", pa.string()),
                        ("question_type", pa.string()), ("question", pa.string()), ("ground_truth", pa.string()),
                        ("options", pa.list_(pa.string()))])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), paths["vsibench"])
    return paths
