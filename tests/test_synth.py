"""Tests of the synthetic scene generator (issue 3).

Everything is checked from the files a generated dataset holds, re-deriving geometry, relations and answers
here rather than calling the generator's own helpers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from scener1.data import open_scene
from scener1.data.camera import back_project
from scener1.errors import ConfigError
from scener1.synth import build_scene, generate_dataset, generate_scene

SEED = 11
SCENES = 2
FRAMES = 48
SIZE = (160, 120)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, SCENES, SEED, frames=FRAMES, size=SIZE, fps=10.0, progress=False)
    return out


def scene_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def load(scene: Path, name: str):
    return json.loads((scene / "gt" / name).read_text())


def boxes(scene: Path) -> dict[int, dict]:
    return {o["object_id"]: o for o in load(scene, "objects.json")["objects"]}


# ------------------------------------------------------------------------------------------ layout
def test_dataset_layout_and_reader(dataset):
    dirs = scene_dirs(dataset)
    assert [d.name for d in dirs] == [f"synth_s{SEED}_{k:03d}" for k in range(SCENES)]
    for d in dirs:
        assert (d / f"{d.name}.txt").is_file()
        meta = dict(line.split(" = ", 1) for line in (d / f"{d.name}.txt").read_text().splitlines())
        assert meta["fps"] == "10" and int(meta["numColorFrames"]) == FRAMES
        assert meta["axisAlignment"].split() == [f"{v:g}" for v in np.eye(4).ravel()]
        with open_scene(d) as scene:
            assert len(scene) == FRAMES
            # the reader takes fps and the (identity) axis alignment from the scene's own meta file
            assert scene.fps == 10.0 and np.isclose(scene.timestamps[1], 0.1)
            assert np.allclose(scene.axis_alignment, np.eye(4))
            assert scene.color_intrinsics.size == SIZE
            assert scene.color_intrinsics.cx == (SIZE[0] - 1) / 2
            f = scene.frame(FRAMES // 2)
            assert f.color.shape == (SIZE[1], SIZE[0], 3) and f.depth.dtype == np.float32
            assert np.allclose(scene.poses, np.load(d / "gt" / "camera_poses.npy"), atol=1e-6)
            assert 0.5 < float(np.median(f.depth[f.depth > 0])) < 10
        raw = cv2.imread(str(d / "depth" / "0.png"), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint16 and raw.shape == (SIZE[1], SIZE[0])
    for name in ("ScanRefer_synth.json", "ScanQA_synth.json", "vsibench_synth.parquet"):
        assert (dataset / name).is_file()


def test_rooms_and_objects_are_plausible(dataset):
    cats = set()
    for d in scene_dirs(dataset):
        room = load(d, "room.json")
        lo, hi = np.array(room["bounds"][0]), np.array(room["bounds"][1])
        assert np.all(hi - lo >= 3.0 - 1e-6) and np.all(hi - lo <= 8.0 + 1e-6)
        objs = load(d, "objects.json")["objects"]
        assert 6 <= len(objs) <= 20
        cats |= {o["category"] for o in objs}
        for o in objs:
            mn, mx = np.array(o["aabb"]["min"]), np.array(o["aabb"]["max"])
            assert mn[2] >= -1e-6 and mx[2] <= room["height"]
            # inside the room's bounding box, and every object was seen in some frame
            assert np.all(mn[:2] >= lo - 1e-6) and np.all(mx[:2] <= hi + 1e-6)
            assert o["visible_intervals"], f"{d.name}: object {o['object_id']} ({o['category']}) never visible"
            R = np.array(o["obb"]["rotation"])
            assert np.allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert len(cats) >= 6


def test_many_categories_and_repeated_ones():
    """Across seeds the generator uses at least 12 categories and most rooms repeat a category."""
    cats, repeated = set(), 0
    for seed in range(12):
        objs = build_scene(seed).objects
        names = [o.category for o in objs]
        cats |= set(names)
        repeated += len(names) > len(set(names))
        assert 6 <= len(objs) <= 20
    assert len(cats) >= 12
    assert repeated >= 9


def test_bbox_array_matches_objects(dataset):
    for d in scene_dirs(dataset):
        arr = np.load(d / "gt" / f"{d.name}_aligned_bbox.npy")
        objs = boxes(d)
        assert arr.shape == (len(objs), 8) and arr.dtype == np.float64
        for row in arr:
            o = objs[int(row[7])]
            assert np.allclose(row[:3], o["aabb"]["center"]) and np.allclose(row[3:6], o["aabb"]["size"])
            assert int(row[6]) == o["nyu40_id"]


# ------------------------------------------------------------------------------------------ images
def test_back_projected_instance_pixels_lie_in_their_boxes(dataset):
    inside = total = 0
    for d in scene_dirs(dataset):
        objs = boxes(d)
        with open_scene(d) as scene:
            for pos in range(0, len(scene), 3):
                f = scene.frame(pos)
                inst = cv2.imread(str(d / "gt" / "instance" / f"{f.index}.png"), cv2.IMREAD_UNCHANGED)
                for iid in np.unique(inst[inst > 0]):
                    o = objs[int(iid) - 1]
                    pts = back_project(f.depth, f.depth_intrinsics, f.pose, mask=inst == iid)
                    mn = np.array(o["aabb"]["min"]) - 0.02
                    mx = np.array(o["aabb"]["max"]) + 0.02
                    inside += int(np.all((pts >= mn) & (pts <= mx), axis=1).sum())
                    total += len(pts)
    assert total > 10_000
    assert inside / total >= 0.98


def test_2d_boxes_equal_mask_extents(dataset):
    for d in scene_dirs(dataset):
        frames = load(d, "frames.json")
        min_px = frames["visibility_min_pixels"]
        for fr in frames["frames"]:
            inst = cv2.imread(str(d / "gt" / "instance" / f"{fr['frame']}.png"), cv2.IMREAD_UNCHANGED)
            listed = {o["object_id"]: o for o in fr["objects"]}
            present = [int(i) for i in np.unique(inst) if i > 0]
            assert sorted(listed) == [i - 1 for i in present]
            for iid in present:
                ys, xs = np.nonzero(inst == iid)
                o = listed[iid - 1]
                assert o["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                assert o["pixels"] == len(xs)
        # visible intervals re-derived from the per-frame pixel counts
        fps = frames["fps"]
        for oid, o in boxes(d).items():
            vis = [fr["frame"] for fr in frames["frames"] if any(x["object_id"] == oid and x["pixels"] >= min_px for x in fr["objects"])]
            runs = []
            for i in vis:
                if runs and i == runs[-1][1] + 1:
                    runs[-1][1] = i
                else:
                    runs.append([i, i])
            assert o["visible_intervals"] == [[round(a / fps, 4), round((b + 1) / fps, 4)] for a, b in runs]


def test_colour_frames_look_like_rooms(dataset):
    """Colour frames are neither blank nor noise: walls, floor and objects give varied, mostly valid pixels."""
    for d in scene_dirs(dataset):
        with open_scene(d) as scene:
            f = scene.frame(len(scene) // 3)
        assert 40 < f.color.mean() < 230
        assert f.color.reshape(-1, 3).std(axis=0).min() > 10
        assert (f.depth > 0).mean() > 0.8


def test_camera_path_is_a_handheld_scan(dataset):
    for d in scene_dirs(dataset):
        poses = np.load(d / "gt" / "camera_poses.npy")
        z = poses[:, 2, 3]
        assert z.min() >= 1.2 - 1e-9 and z.max() <= 1.7 + 1e-9
        step = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
        assert step.max() < 3.0 * step.mean()  # a steady walk, no jumps
        turn = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", poses[1:, :3, 2], poses[:-1, :3, 2]), -1, 1)))
        assert np.median(turn) < 360 / FRAMES * 4
        for o in load(d, "objects.json")["objects"]:
            mn, mx = np.array(o["aabb"]["min"]), np.array(o["aabb"]["max"])
            inside = np.all((poses[:, :3, 3] > mn + 0.05) & (poses[:, :3, 3] < mx - 0.05), axis=1)
            assert not inside.any()


# ------------------------------------------------------------------------------------------ relations
def _center(o):
    return (np.array(o["aabb"]["min"]) + np.array(o["aabb"]["max"])) / 2


def _over(p, b):
    return b["aabb"]["min"][0] <= p[0] <= b["aabb"]["max"][0] and b["aabb"]["min"][1] <= p[1] <= b["aabb"]["max"][1]


def rel_on(a, b):
    return a is not b and _over(_center(a), b) and b["aabb"]["min"][2] + 0.05 < a["aabb"]["min"][2] <= b["aabb"]["max"][2] + 0.03


def rel_under(a, b):
    return (a is not b and b["category"] in ("table", "desk") and _over(_center(a), b)
            and a["aabb"]["min"][2] < 0.05 and a["aabb"]["max"][2] <= b["aabb"]["max"][2] - 0.05)


def rel_next_to(a, b):
    if a is b:
        return False
    amn, amx = np.array(a["aabb"]["min"]), np.array(a["aabb"]["max"])
    bmn, bmx = np.array(b["aabb"]["min"]), np.array(b["aabb"]["max"])
    gap = np.linalg.norm(np.maximum(0, np.maximum(amn[:2] - bmx[:2], bmn[:2] - amx[:2])))
    zover = min(amx[2], bmx[2]) - max(amn[2], bmn[2])
    return gap <= 0.3 and zover > 0 and not (rel_on(a, b) or rel_on(b, a) or rel_under(a, b) or rel_under(b, a))


def rel_between(a, b, c):
    pb, pc, pa = _center(b)[:2], _center(c)[:2], _center(a)[:2]
    L = np.linalg.norm(pc - pb)
    if len({a["object_id"], b["object_id"], c["object_id"]}) < 3 or not 0.5 <= L <= 4.0:
        return False
    t = (pa - pb) @ (pc - pb) / L**2
    perp = abs((pc - pb)[0] * (pa - pb)[1] - (pc - pb)[1] * (pa - pb)[0]) / L
    return 0.2 <= t <= 0.8 and perp <= min(0.5, 0.3 * L)


def rel_near(a, point):
    q = np.clip(point[:2], a["aabb"]["min"][:2], a["aabb"]["max"][:2])
    return np.linalg.norm(q - point[:2]) <= 1.0


def _anchor_point(anchor, objs, room):
    if anchor in ("door", "window"):
        return np.array(room[anchor]["center"])
    return _center(objs[anchor])


def satisfies(o, rel, objs, room):
    """Independent evaluation of an expression's logic for object ``o`` (category aside)."""
    if rel["color"] is not None and o["color"] != rel["color"]:
        return False
    kind, anchors = rel["type"], rel["anchors"]
    if kind == "attribute":
        return True
    if kind == "on":
        return rel_on(o, objs[anchors[0]])
    if kind == "under":
        return rel_under(o, objs[anchors[0]])
    if kind == "next_to":
        return rel_next_to(o, objs[anchors[0]])
    if kind == "between":
        return rel_between(o, objs[anchors[0]], objs[anchors[1]])
    if kind == "near":
        return rel_near(o, np.array(room[anchors[0]]["center"]))
    same = [m for m in objs.values() if m["category"] == o["category"] and (rel["color"] is None or m["color"] == rel["color"])]
    if kind in ("closest", "farthest"):
        p = _anchor_point(anchors[0], objs, room)
        d = sorted((np.linalg.norm(_center(m)[:2] - p[:2]) * (1 if kind == "closest" else -1), m["object_id"]) for m in same)
        return len(d) >= 2 and d[1][0] - d[0][0] >= 0.3 and d[0][1] == o["object_id"]
    if kind in ("largest", "smallest"):
        vol = sorted((np.prod(m["obb"]["size"]), m["object_id"]) for m in same)
        if kind == "largest":
            vol = vol[::-1]
        a, b = vol[0][0], vol[1][0] if len(vol) > 1 else None
        return b is not None and max(a, b) / min(a, b) >= 1.25 and vol[0][1] == o["object_id"]
    raise AssertionError(f"unknown relation {kind}")


def test_referring_expressions_hold_and_pick_one_object(dataset):
    refer = json.loads((dataset / "ScanRefer_synth.json").read_text())
    assert len(refer) >= 20
    kinds = set()
    for d in scene_dirs(dataset):
        objs, room = boxes(d), load(d, "room.json")
        mine = [r for r in refer if r["scene_id"] == d.name]
        assert mine == load(d, "scanrefer.json")
        for r in mine:
            target = objs[int(r["object_id"])]
            assert r["object_name"] == target["category"].replace(" ", "_")
            assert r["token"] and " ".join(r["token"]).replace(" .", ".").replace(" ,", ",") == r["description"]
            for word in target["category"].split():
                assert word in r["token"] or word + "s" in r["token"] or word + "es" in r["token"]
            same = [o for o in objs.values() if o["category"] == target["category"]]
            # unique <=> the only object of its category; distractors are the others of the category
            assert (r["eval_type"] == "unique") == (len(same) == 1)
            assert sorted(int(i) for i in r["distractor_ids"]) == sorted(o["object_id"] for o in same if o is not target)
            rel = r["relation"]
            kinds.add(rel["type"])
            assert satisfies(target, rel, objs, room), r
            assert [o["object_id"] for o in same if satisfies(o, rel, objs, room)] == [target["object_id"]], r
            if rel["color"]:
                assert rel["color"] in r["token"]
            for a in rel["anchors"]:
                name = a if isinstance(a, str) else objs[a]["category"]
                assert name.split()[0] in r["token"]
            assert r["temporal_span"] == target["visible_intervals"]
    assert len(kinds) >= 5
    assert {"multiple", "unique"} <= {r["eval_type"] for r in refer}


# ------------------------------------------------------------------------------------------ QA
def test_scanqa_answers_recomputed(dataset):
    qa = json.loads((dataset / "ScanQA_synth.json").read_text())
    assert qa and {"scene_id", "question_id", "question", "answers", "object_ids", "object_names"} <= set(qa[0])
    assert len({q["question_id"] for q in qa}) == len(qa)
    seen = set()
    for q in qa:
        d = dataset / q["scene_id"]
        objs, room = boxes(d), load(d, "room.json")
        kind, prog = q["question_type"], q["program"]
        seen.add(kind)
        assert q["object_names"] == [objs[i]["category"].replace(" ", "_") for i in q["object_ids"]]
        if kind == "color":
            t = objs[prog["target"]]
            assert q["answers"] == [t["color"]]
            same = [o for o in objs.values() if o["category"] == t["category"]]
            assert [o["object_id"] for o in same if satisfies(o, prog["logic"], objs, room)] == [t["object_id"]]
        elif kind in ("what_on", "what_under"):
            fn = rel_on if kind == "what_on" else rel_under
            hits = [o for o in objs.values() if fn(o, objs[prog["anchor"]])]
            assert sorted(o["object_id"] for o in hits) == sorted(q["object_ids"])
            assert {o["category"] for o in hits} == {prog["category"]} and prog["category"] in q["answers"]
        elif kind == "count_next_to":
            hits = [o for o in objs.values() if o["category"] == prog["category"] and rel_next_to(o, objs[prog["anchor"]])]
            assert q["answers"] == [str(len(hits))]
        elif kind == "count":
            assert q["answers"] == [str(sum(o["category"] == prog["category"] for o in objs.values()))]
        elif kind == "what_color_object":
            fn = {"on": rel_on, "under": rel_under, "next_to": rel_next_to}[prog["relation"]]
            hits = [o for o in objs.values() if o["color"] == prog["color"] and fn(o, objs[prog["anchor"]])]
            assert len(hits) == 1 and q["answers"] == [hits[0]["category"]]
        elif kind == "where":
            t = objs[prog["target"]]
            for ans in q["answers"]:
                if ans.startswith("near the "):
                    assert rel_near(t, np.array(room[ans.split()[-1]]["center"]))
                else:
                    rel = "next_to" if ans.startswith("next to") else ans.split()[0]
                    fn = {"on": rel_on, "under": rel_under, "next_to": rel_next_to}[rel]
                    assert any(fn(t, o) and o["category"] in ans for o in objs.values()), ans
        else:
            raise AssertionError(kind)
    assert {"color", "count"} <= seen and len(seen) >= 4


def _gap(a, b):
    amn, amx = np.array(a["aabb"]["min"]), np.array(a["aabb"]["max"])
    bmn, bmx = np.array(b["aabb"]["min"]), np.array(b["aabb"]["max"])
    return float(np.linalg.norm(np.maximum(0, np.maximum(amn - bmx, bmn - amx))))


def test_vsibench_answers_recomputed(dataset):
    import pandas as pd

    df = pd.read_parquet(dataset / "vsibench_synth.parquet")
    assert list(df.columns) == ["id", "dataset", "scene_name", "question_type", "question", "ground_truth", "options"]
    assert df["id"].tolist() == list(range(len(df)))
    rows = [r for d in scene_dirs(dataset) for r in load(d, "vsibench.json")]
    assert len(rows) == len(df)
    types = set()
    for r, (_, p) in zip(rows, df.iterrows()):
        assert (p["scene_name"], p["question"], p["ground_truth"], list(p["options"])) == (
            r["scene_name"], r["question"], r["ground_truth"], r["options"])
        d = dataset / r["scene_name"]
        objs, room = boxes(d), load(d, "room.json")
        kind, prog, gt = r["question_type"], r["program"], r["ground_truth"]
        types.add(kind)
        opts = r["options"]
        if opts:
            assert [o[:3] for o in opts] == [f"{L}. " for L in "ABCD"[: len(opts)]]
            chosen = opts["ABCD".index(gt)][3:]
        if kind == "object_counting":
            assert gt == str(sum(o["category"] == prog["category"] for o in objs.values())) and not opts
        elif kind == "object_abs_distance":
            a, b = (objs[i] for i in prog["objects"])
            assert abs(float(gt) - _gap(a, b)) <= 0.006
        elif kind == "object_size_estimation":
            assert int(gt) == round(max(objs[prog["object"]]["obb"]["size"]) * 100)
        elif kind == "room_size_estimation":
            poly = np.array(room["polygon"])
            area = 0.5 * abs(np.dot(poly[:, 0], np.roll(poly[:, 1], -1)) - np.dot(poly[:, 1], np.roll(poly[:, 0], -1)))
            assert abs(float(gt) - area) <= 0.051
        elif kind == "object_rel_distance":
            ref = objs[prog["reference"]]
            dists = {objs[i]["category"]: _gap(ref, objs[i]) for i in prog["choices"]}
            assert chosen == min(dists, key=dists.get)
        elif kind.startswith("object_rel_direction"):
            a, b, c = objs[prog["standing"]], objs[prog["facing"]], objs[prog["target"]]
            f, v = _center(b)[:2] - _center(a)[:2], _center(c)[:2] - _center(a)[:2]
            ang = np.degrees(np.arctan2(f[0] * v[1] - f[1] * v[0], f @ v))  # left positive
            side = "left" if ang > 0 else "right"
            if kind.endswith("easy"):
                assert chosen == side
            elif kind.endswith("medium"):
                assert chosen == ("back" if abs(ang) > 135 else side) and abs(ang) > 45
            else:
                assert chosen == ("front-" if abs(ang) < 90 else "back-") + side
            for name in (a["category"], b["category"], c["category"]):
                assert name in r["question"]
        elif kind == "obj_appearance_order":
            first = {}
            for o in objs.values():
                if o["first_visible_frame"] is not None:
                    first[o["category"]] = min(first.get(o["category"], 10**9), o["first_visible_frame"])
            assert chosen.split(", ") == sorted(prog["categories"], key=first.get)
        else:
            raise AssertionError(kind)
    assert {"object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation"} <= types
    assert any(t.startswith("object_rel_direction") for t in types)


def test_vsibench_types_all_appear_across_seeds(tmp_path):
    """Every VSI-Bench question type (route planning aside) is generated for some small scene."""
    types = set()
    for k in range(3):
        d = generate_scene(tmp_path, 40 + k, frames=24, size=(64, 48))
        types |= {r["question_type"] for r in load(d, "vsibench.json")}
    wanted = {"object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation",
              "object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium",
              "object_rel_direction_hard", "obj_appearance_order"}
    assert wanted <= types


# ------------------------------------------------------------------------------------------ options
def test_deterministic_per_seed(tmp_path):
    a = generate_scene(tmp_path / "a", 5, frames=4, size=(64, 48))
    b = generate_scene(tmp_path / "b", 5, frames=4, size=(64, 48), workers=1)  # threads do not change the output
    for rel in ("color/3.jpg", "depth/3.png", "gt/instance/2.png", "pose/1.txt", "gt/objects.json", "gt/scanrefer.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = generate_scene(tmp_path / "c", 6, frames=4, size=(64, 48))
    assert (a / "gt/objects.json").read_bytes() != (c / "gt/objects.json").read_bytes()


def test_sensor_noise_options(tmp_path):
    clean = generate_scene(tmp_path / "clean", 8, frames=6, size=(96, 72))
    noisy = generate_scene(tmp_path / "noisy", 8, frames=6, size=(96, 72), depth_noise=True, pose_noise=True)
    dc = cv2.imread(str(clean / "depth/3.png"), cv2.IMREAD_UNCHANGED).astype(float)
    dn = cv2.imread(str(noisy / "depth/3.png"), cv2.IMREAD_UNCHANGED).astype(float)
    both = (dc > 0) & (dn > 0)
    assert (dn == 0).mean() > (dc == 0).mean()  # holes
    err = np.abs(dn - dc)[both]
    assert 0 < np.median(err) < 30 and np.percentile(err, 99) < 200  # millimetres
    true = np.load(noisy / "gt/camera_poses.npy")
    with open_scene(noisy) as scene:
        drift = np.linalg.norm(scene.poses[:, :3, 3] - true[:, :3, 3], axis=1)
    assert 0 < drift.max() < 0.1
    assert np.allclose(true, np.load(clean / "gt/camera_poses.npy"))


@pytest.mark.parametrize("kwargs", [
    {"frames": 0}, {"frames": 2.5}, {"size": (10, 10)}, {"size": "big"}, {"fps": 0}, {"fps": float("nan")}, {"seed": -1},
])
def test_bad_arguments_raise_config_error(tmp_path, kwargs):
    args = {"seed": 1, "frames": 2, "size": (64, 48), "fps": 30.0, **kwargs}
    with pytest.raises(ConfigError):
        generate_scene(tmp_path, args.pop("seed"), **args)


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "synth_s1_000").mkdir()
    (tmp_path / "synth_s1_000" / "precious.txt").write_text("keep")
    with pytest.raises(ConfigError):
        generate_scene(tmp_path, 1, frames=2, size=(64, 48))
    assert (tmp_path / "synth_s1_000" / "precious.txt").is_file()


def test_cli_run_and_info_fuse(tmp_path, capsys):
    from scener1.cli import main
    from scener1.synth.cli import parse_size, run

    with pytest.raises(ConfigError):
        parse_size("320by240")
    ns = argparse.Namespace(out=str(tmp_path), scenes=1, seed=2, frames=6, size="80x60", fps=15.0, quiet=True)
    assert run(ns) == 0
    scene = tmp_path / "synth_s2_000"
    assert scene.is_dir() and (tmp_path / "vsibench_synth.parquet").is_file()
    assert main(["info", "--scene", str(scene)]) == 0
    assert "80x60" in capsys.readouterr().out
    assert main(["fuse", "--scene", str(scene), "--out", str(tmp_path / "cloud.ply"), "--quiet"]) == 0
    assert (tmp_path / "cloud.ply").stat().st_size > 1000
