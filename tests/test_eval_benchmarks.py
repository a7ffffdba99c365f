"""Every benchmark on small files written here in the official layouts: loading, hand-computed scores, ground
truth scoring 100, perturbed predictions scoring what an independent implementation computes, and every
accepted prediction format. (Other eval test modules import the writers below.)"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scener1.errors import ScenerError
from scener1.eval import evaluate, load_predictions, open_benchmark
from scener1.eval.boxes import corners

TSV_HEADER = ("id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\teigen13class\t"
              "ModelNet40\tModelNet10\tShapeNetCore55\tsynsetoffset\twnsynsetid\twnsynsetkey\tmpcat40\tmpcat40index")
# raw_category -> (nyu40id, nyu40class)
LABELS = {"chair": (5, "chair"), "office chair": (5, "chair"), "table": (7, "table"), "door": (8, "door"),
          "kitchen cabinet": (3, "cabinet"), "refrigerator": (24, "refrigerator"), "lamp": (35, "lamp"),
          "picture": (11, "picture")}
# scene -> [(object_id, nyu40 id)]
SCENES = {
    "scene0001_00": [(0, 5), (1, 5), (2, 7), (3, 8), (4, 35), (5, 24)],
    "scene0002_00": [(0, 7), (1, 3), (2, 35), (3, 35), (4, 11)],
}
# (scene, object_id, object_name, ann_ids)
SCANREFER = [
    ("scene0001_00", 0, "chair", (0, 1)),
    ("scene0001_00", 1, "office_chair", (0,)),
    ("scene0001_00", 2, "table", (0, 1)),
    ("scene0001_00", 3, "door", (0,)),
    ("scene0002_00", 0, "table", (0,)),
    ("scene0002_00", 2, "lamp", (0, 1)),
    ("scene0002_00", 4, "picture", (0,)),
]


def write_label_map(path: Path) -> Path:
    rows = [TSV_HEADER]
    for i, (raw, (nyu_id, nyu_class)) in enumerate(LABELS.items(), start=1):
        rows.append("\t".join([str(i), raw, raw, "1", str(nyu_id), "0", nyu_class, nyu_class] + [""] * 9))
    path.write_text("\r\n".join(rows) + "\r\n")  # CRLF, as the official file
    return path


def scene_array(scene_id: str, seed: int = 0) -> np.ndarray:
    """(K, 8) boxes [cx,cy,cz,dx,dy,dz,label,object_id] placed at random (but reproducibly)."""
    rng = np.random.default_rng(int(scene_id[5:9]) * 7 + seed)
    rows = []
    for object_id, label in SCENES[scene_id]:
        center = rng.uniform(-3, 3, 3)
        size = rng.uniform(0.3, 1.5, 3)
        rows.append([*center, *size, label, object_id])
    return np.asarray(rows, dtype=np.float64)


def write_boxes(root: Path, layout: str = "flat") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for scene_id in SCENES:
        if layout == "flat":
            path = root / f"{scene_id}_aligned_bbox.npy"
        else:  # synthetic scenes: <root>/<scene>/gt/
            path = root / scene_id / "gt" / f"{scene_id}_aligned_bbox.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scene_array(scene_id))
    return root


def write_scanrefer(path: Path, eval_types: dict | None = None) -> Path:
    entries = []
    for scene_id, object_id, name, anns in SCANREFER:
        for ann in anns:
            entry = {"scene_id": scene_id, "object_id": str(object_id), "object_name": name, "ann_id": str(ann),
                     "description": f"the {name.replace('_', ' ')} number {object_id}", "token": ["the", name]}
            if eval_types is not None:
                entry["eval_type"] = eval_types[f"{scene_id}/{object_id}/{ann}"]
            entries.append(entry)
    path.write_text(json.dumps(entries, indent=4))
    return path


def gt_box(scene_id: str, object_id: int) -> tuple[np.ndarray, np.ndarray]:
    arr = scene_array(scene_id)
    row = arr[arr[:, 7] == object_id][0]
    return row[:3].copy(), row[3:6].copy()


def box_json(center, size) -> dict:
    return {"center": [float(v) for v in center], "size": [float(v) for v in size]}


@pytest.fixture
def toy(tmp_path):
    boxes = write_boxes(tmp_path / "boxes")
    return {"boxes": boxes, "tsv": write_label_map(tmp_path / "labels.tsv"),
            "scanrefer": write_scanrefer(tmp_path / "scanrefer.json"), "tmp": tmp_path}


def scanrefer_bench(toy, **kwargs):
    return open_benchmark("scanrefer", [toy["scanrefer"]], gt_boxes=toy["boxes"], label_map=toy["tsv"], **kwargs)


# ---------------------------------------------------------------------------------------------- ScanRefer
def hand_predictions() -> dict:
    """Predictions with known IoUs: exact (1), half-shifted (1/3), touching (0), nested (1/8), stretched (1/1.9)."""
    def shifted(scene, obj, frac):
        c, s = gt_box(scene, obj)
        c[0] += frac * s[0]
        return box_json(c, s)

    def scaled(scene, obj, factors):
        c, s = gt_box(scene, obj)
        return box_json(c, s * np.asarray(factors))

    boxes = {
        "scene0001_00/0/0": shifted("scene0001_00", 0, 0.0),  # IoU 1
        "scene0001_00/0/1": shifted("scene0001_00", 0, 0.5),  # IoU 1/3: a hit at 0.25 only
        "scene0001_00/1/0": shifted("scene0001_00", 1, 1.0),  # touching: IoU 0
        "scene0001_00/2/0": shifted("scene0001_00", 2, 0.0),
        "scene0001_00/2/1": scaled("scene0001_00", 2, (0.5, 0.5, 0.5)),  # nested: IoU 1/8
        # scene0001_00/3/0: no prediction
        "scene0002_00/0/0": shifted("scene0002_00", 0, 0.0),
        "scene0002_00/2/0": shifted("scene0002_00", 2, 0.5),
        "scene0002_00/2/1": shifted("scene0002_00", 2, 0.0),
        "scene0002_00/4/0": scaled("scene0002_00", 4, (1.9, 1.0, 1.0)),  # contains the GT: IoU 1/1.9
    }
    return {key: {"box_3d": value} for key, value in boxes.items()}


def test_scanrefer_loads_and_splits_unique_multiple_by_each_population(toy):
    bench = scanrefer_bench(toy)
    assert len(bench) == 10 and bench.items[0].id == "scene0001_00/0/0"
    assert bench.resolved_population() == "boxes"  # 10 descriptions of 7 objects: a sampled file
    multiple = {k for k, v in bench.splits().items() if v == "multiple"}
    # chairs 0 and 1 ("office_chair" is a chair too) share a class; lamp 2 shares "others" with lamp 3
    assert multiple == {"scene0001_00/0/0", "scene0001_00/0/1", "scene0001_00/1/0",
                        "scene0002_00/2/0", "scene0002_00/2/1"}
    official = scanrefer_bench(toy, unique_multiple="annotations")
    multiple = {k for k, v in official.splits().items() if v == "multiple"}
    # among the described objects lamp 3 is absent: lamp 2 is the only "others" object of its scene
    assert multiple == {"scene0001_00/0/0", "scene0001_00/0/1", "scene0001_00/1/0"}


def test_scanrefer_population_auto_follows_the_file(toy, tmp_path):
    labels = {it: ("unique" if it.endswith("/0") else "multiple")
              for it in (f"{s}/{o}/{a}" for s, o, _, anns in SCANREFER for a in anns)}
    bench = open_benchmark("scanrefer", [write_scanrefer(tmp_path / "typed.json", labels)], gt_boxes=toy["boxes"])
    assert bench.resolved_population() == "file" and bench.splits() == labels
    # a complete-looking file (every object described several times) uses ScanRefer's own rule
    entries = json.loads(toy["scanrefer"].read_text())
    full = [dict(e, ann_id=str(k)) for e in entries for k in range(5)]
    seen, unique_entries = set(), []
    for e in full:
        if (e["scene_id"], e["object_id"], e["ann_id"]) not in seen:
            seen.add((e["scene_id"], e["object_id"], e["ann_id"]))
            unique_entries.append(e)
    (tmp_path / "full.json").write_text(json.dumps(unique_entries))
    bench = open_benchmark("scanrefer", [tmp_path / "full.json"], gt_boxes=toy["boxes"], label_map=toy["tsv"])
    assert bench.resolved_population() == "annotations"
    # without a label map the split is skipped with a note, and overall scores are still given
    bench = open_benchmark("scanrefer", [toy["scanrefer"]], gt_boxes=toy["boxes"])
    result = evaluate(bench, {it.id: bench.oracle(it) for it in bench})
    assert result.metrics["overall"]["acc@0.5"] == 100.0 and "unique" not in result.metrics
    assert any("--label-map" in n for n in result.notes)


def test_scanrefer_hand_computed_scores(toy):
    result = evaluate(scanrefer_bench(toy), hand_predictions(), allow_missing=True)
    m = result.metrics
    assert m["unique"]["acc@0.25"] == pytest.approx(60.0) and m["unique"]["acc@0.5"] == pytest.approx(60.0)
    assert m["multiple"]["acc@0.25"] == pytest.approx(80.0) and m["multiple"]["acc@0.5"] == pytest.approx(40.0)
    assert m["overall"]["acc@0.25"] == pytest.approx(70.0) and m["overall"]["acc@0.5"] == pytest.approx(50.0)
    assert result.counts["unique"] == 5 and result.counts["missing"] == 1 and result.counts["predicted"] == 9
    assert "| scener1 | 60.0" in result.table.replace("  ", " ")
    # the same predictions under ScanRefer's own population (lamp 2 becomes unique)
    result = evaluate(scanrefer_bench(toy, unique_multiple="annotations"), hand_predictions(), allow_missing=True)
    assert result.metrics["unique"]["acc@0.25"] == pytest.approx(100 * 5 / 7)
    assert result.metrics["unique"]["acc@0.5"] == pytest.approx(100 * 4 / 7)
    assert result.metrics["multiple"]["acc@0.5"] == pytest.approx(100 / 3)


def independent_acc(gt_rows, preds, threshold):
    """IoU >= threshold share, from centre/size with plain Python loops."""
    hits = 0
    for (gc, gs), (pc, ps) in zip(gt_rows, preds):
        inter = 1.0
        for k in range(3):
            lo = max(gc[k] - gs[k] / 2, pc[k] - ps[k] / 2)
            hi = min(gc[k] + gs[k] / 2, pc[k] + ps[k] / 2)
            inter *= max(0.0, hi - lo)
        union = gs[0] * gs[1] * gs[2] + ps[0] * ps[1] * ps[2] - inter
        hits += inter / union >= threshold
    return 100.0 * hits / len(preds)


def test_scanrefer_ground_truth_scores_100_and_perturbed_boxes_match_an_independent_count(toy):
    bench = scanrefer_bench(toy)
    oracle = evaluate(bench, {it.id: bench.oracle(it) for it in bench})
    assert all(v == 100.0 for split in oracle.metrics.values() for k, v in split.items() if k.startswith("acc"))
    rng = np.random.default_rng(3)
    preds, gt_rows, records = [], [], {}
    for it in bench:
        c, s = gt_box(it.scene_id, it.object_id)
        pc, ps = c + rng.normal(0, 0.15, 3), s * rng.uniform(0.7, 1.3, 3)
        gt_rows.append((c, s))
        preds.append((pc, ps))
        records[it.id] = {"box_3d": box_json(pc, ps)}
    result = evaluate(bench, records)
    for k in (0.25, 0.5):
        assert result.metrics["overall"][f"acc@{k}"] == pytest.approx(independent_acc(gt_rows, preds, k))
    assert 0 < result.metrics["overall"]["acc@0.25"] < 100  # the perturbation is neither nothing nor everything


def test_scanrefer_submission_format_scores_like_jsonl(toy, tmp_path):
    bench = scanrefer_bench(toy)
    hand = hand_predictions()
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps({"id": k, **v}) + "\n" for k, v in hand.items()))
    submission = []
    for key, value in hand.items():
        scene, obj, ann = key.split("/")
        lo = np.asarray(value["box_3d"]["center"]) - np.asarray(value["box_3d"]["size"]) / 2
        hi = np.asarray(value["box_3d"]["center"]) + np.asarray(value["box_3d"]["size"]) / 2
        submission.append({"scene_id": scene, "object_id": obj, "ann_id": ann,
                           "bbox": corners(np.concatenate([lo, hi])).tolist(), "unique_multiple": 0, "others": 0})
    sub = tmp_path / "pred.json"
    sub.write_text(json.dumps(submission))
    a = evaluate(bench, load_predictions([jsonl], bench), allow_missing=True)
    b = evaluate(bench, load_predictions([sub], bench), allow_missing=True)
    assert a.metrics == b.metrics


def test_scanrefer_bad_input_gets_one_clear_error(toy, tmp_path):
    bench = scanrefer_bench(toy)
    with pytest.raises(ScenerError, match="have no prediction"):
        evaluate(bench, hand_predictions())
    with pytest.raises(ScenerError, match=r"prediction for scene0001_00/0/0: .*box"):
        evaluate(bench, {"scene0001_00/0/0": {"answer": "x"}}, allow_missing=True)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"scene_id": "../etc", "object_id": 1, "ann_id": 0, "description": "x"}]))
    with pytest.raises(ScenerError, match="invalid scene id"):
        open_benchmark("scanrefer", [bad])
    bad.write_text(json.dumps([{"scene_id": "scene0001_00", "object_id": "x", "ann_id": 0, "description": "x"}]))
    with pytest.raises(ScenerError, match="entry 0.*not an integer"):
        open_benchmark("scanrefer", [bad])
    missing_obj = tmp_path / "missing.json"
    missing_obj.write_text(json.dumps([{"scene_id": "scene0001_00", "object_id": 9, "ann_id": 0, "description": "x"}]))
    b = open_benchmark("scanrefer", [missing_obj], gt_boxes=toy["boxes"])
    with pytest.raises(ScenerError, match="object 9 is not among"):
        evaluate(b, {"scene0001_00/9/0": {"box_3d": box_json([0, 0, 0], [1, 1, 1])}})
    with pytest.raises(ScenerError, match="needs the ground-truth boxes"):
        b = open_benchmark("scanrefer", [toy["scanrefer"]])
        evaluate(b, hand_predictions(), allow_missing=True)


def test_prediction_files_errors_and_extras(toy, tmp_path):
    bench = scanrefer_bench(toy)
    records = dict(hand_predictions())
    records["scene0001_00/3/0"] = {"error": "depth missing"}
    records["scene0099_00/0/0"] = {"box_3d": box_json([0, 0, 0], [1, 1, 1])}
    result = evaluate(bench, records)
    assert result.counts["failed"] == 1 and result.counts["extra"] == 1 and result.counts["missing"] == 0
    assert result.metrics["overall"]["acc@0.25"] == pytest.approx(70.0)  # the failed item is wrong
    # a duplicate across two files (two shards that overlap) is refused with both places named
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"id": "scene0001_00/0/0", "box_3d": box_json([0, 0, 0], [1, 1, 1])}) + "\n")
    b.write_text(a.read_text())
    with pytest.raises(ScenerError, match="duplicate prediction for scene0001_00/0/0"):
        load_predictions([a, b], bench)
    # a record naming its item by neither id nor the benchmark's keys
    c = tmp_path / "c.json"
    c.write_text(json.dumps([{"box_3d": box_json([0, 0, 0], [1, 1, 1])}]))
    with pytest.raises(ScenerError, match="no \"id\""):
        load_predictions([c], bench)
    # a torn last line (a killed run) is skipped; a corrupt line in the middle is not
    torn = tmp_path / "torn.jsonl"
    torn.write_text(a.read_text() + '{"id": "scene0001_00/0/1", "box')
    assert list(load_predictions([torn], bench)) == ["scene0001_00/0/0"]
    torn.write_text('{"id": "x", "box\n' + a.read_text())
    with pytest.raises(ScenerError, match=r"torn.jsonl:1: not a JSON object"):
        load_predictions([torn], bench)


# ---------------------------------------------------------------------------------------------- Nr3D / Sr3D
def write_nr3d(path: Path) -> Path:
    rows = [
        ("scene0001_00-chair-2-0-1", "the chair on the left", "['the', 'chair', 'on', 'the', 'left']"),
        ("scene0001_00-chair-2-1-0", "the chair near the door", "['the', 'chair', 'near', 'the', 'door']"),
        ("scene0002_00-lamp-3-2-3-9", "the lamp facing the bed", "['the', 'lamp', 'facing', 'the', 'bed']"),
        ("scene0002_00-lamp-3-3-2-9", "the tall lamp", "['the', 'tall', 'lamp']"),
        ("scene0002_00-lamp-3-3-2-9", "the tall lamp", "['the', 'tall', 'lamp']"),  # a repeated utterance
        ("scene0001_00-table-1-2", "the table", "['the', 'Left', 'table']"),  # capitalised: not view-dependent
    ]
    df = pd.DataFrame({
        "stimulus_id": [r[0] for r in rows], "utterance": [r[1] for r in rows],
        "correct_guess": True, "speaker_id": 1, "listener_id": 2,
        "scan_id": [r[0].split("-")[0] for r in rows], "instance_type": [r[0].split("-")[1] for r in rows],
        "target_id": [int(r[0].split("-")[3]) for r in rows], "tokens": [r[2] for r in rows], "dataset": "nr3d",
    })
    df.to_csv(path, index=False)
    return path


def test_referit3d_labels_and_scores(toy, tmp_path):
    bench = open_benchmark("nr3d", [write_nr3d(tmp_path / "nr3d.csv")], gt_boxes=toy["boxes"])
    items = bench.items
    assert [it.hard for it in items] == [False, False, True, True, True, False]
    assert [it.view_dependent for it in items] == [True, False, True, False, False, False]
    assert items[2].distractor_ids == (3, 9) and items[2].n_objects == 3
    assert items[3].id != items[4].id  # identical stimulus and utterance: told apart by the row
    c2, s2 = gt_box("scene0002_00", 2)
    records = {
        items[0].id: {"object_id": 0},  # right
        items[1].id: {"object_id": 0},  # wrong (target 1)
        items[2].id: {"box_3d": box_json(c2 + [0.05 * s2[0], 0, 0], s2)},  # a box on the target
        items[3].id: {"box_3d": box_json(c2, s2)},  # a box on the distractor (object 2): wrong
        items[4].id: {"object_id": "3"},  # right
        items[5].id: {"box_3d": box_json([40, 40, 40], [1, 1, 1])},  # overlaps nothing: wrong
    }
    result = evaluate(bench, records)
    m = result.metrics
    assert m["overall"]["acc"] == pytest.approx(50.0)
    assert m["easy"]["acc"] == pytest.approx(100 / 3) and m["hard"]["acc"] == pytest.approx(200 / 3)
    assert m["view_dep"]["acc"] == pytest.approx(100.0) and m["view_indep"]["acc"] == pytest.approx(25.0)
    assert evaluate(bench, {it.id: bench.oracle(it) for it in bench}).metrics["overall"]["acc"] == 100.0
    assert evaluate(bench, {it.id: bench.box_oracle(it) for it in bench}).metrics["overall"]["acc"] == 100.0
    # records may name their item by (stimulus_id, utterance) when that pair is unique in the file
    assert bench.key_of({"stimulus_id": "scene0001_00-chair-2-0-1", "utterance": "the chair on the left"}) == items[0].id
    assert bench.key_of({"stimulus_id": "scene0002_00-lamp-3-3-2-9", "utterance": "the tall lamp"}) is None


def test_referit3d_rejects_inconsistent_rows(tmp_path):
    path = write_nr3d(tmp_path / "nr3d.csv")
    df = pd.read_csv(path)
    df.loc[0, "stimulus_id"] = "scene0001_00-chair-3-0-1"  # 3 objects but one distractor
    df.to_csv(path, index=False)
    with pytest.raises(ScenerError, match="3 objects but 1 distractors"):
        open_benchmark("sr3d", [path])
    df.loc[0, "stimulus_id"], df.loc[0, "tokens"] = "scene0001_00-chair-2-0-1", "__import__('os')"
    df.to_csv(path, index=False)
    with pytest.raises(ScenerError, match="not a list literal"):
        open_benchmark("nr3d", [path])


# ---------------------------------------------------------------------------------------------- Multi3DRefer
def write_multi3drefer(path: Path) -> Path:
    entries = [
        {"scene_id": "scene0001_00", "ann_id": 0, "object_ids": [], "eval_type": "zt_wo_d"},
        {"scene_id": "scene0001_00", "ann_id": 1, "object_ids": [], "eval_type": "zt_w_d"},
        {"scene_id": "scene0001_00", "ann_id": 2, "object_ids": [2], "eval_type": "st_wo_d"},
        {"scene_id": "scene0001_00", "ann_id": 3, "object_ids": [0], "eval_type": "st_w_d"},
        {"scene_id": "scene0002_00", "ann_id": 0, "object_ids": [2, 3], "eval_type": "mt"},
    ]
    for e in entries:
        e.update(description=f"query {e['ann_id']}", object_name="thing")
    path.write_text(json.dumps(entries))
    return path


def test_multi3drefer_hand_computed_scores(toy, tmp_path):
    bench = open_benchmark("multi3drefer", [write_multi3drefer(tmp_path / "m.json")], gt_boxes=toy["boxes"])
    assert [it.id for it in bench][:2] == ["scene0001_00/0", "scene0001_00/1"]
    c2, s2 = gt_box("scene0002_00", 2)
    c3, s3 = gt_box("scene0002_00", 3)
    shifted = box_json(c3 + [0.5 * s3[0], 0, 0], s3)  # IoU 1/3 with lamp 3
    records = {
        "scene0001_00/0": {"boxes_3d": []},  # zero target, nothing predicted: 1
        "scene0001_00/1": {"boxes_3d": [box_json([0, 0, 0], [1, 1, 1])]},  # zero target, a box: 0
        "scene0001_00/2": {"boxes_3d": [box_json(*gt_box("scene0001_00", 2))]},  # 1
        "scene0001_00/3": {"boxes_3d": [box_json([30, 0, 0], [1, 1, 1])]},  # a box on nothing: 0
        "scene0002_00/0": {"boxes_3d": [box_json(c2, s2), shifted, box_json([50, 50, 50], [1, 1, 1])]},
    }
    result = evaluate(bench, records)
    m = result.metrics
    assert m["zt_wo_d"]["f1@0.25"] == 100.0 and m["zt_w_d"]["f1@0.25"] == 0.0
    assert m["st_wo_d"]["f1@0.5"] == 100.0 and m["st_w_d"]["f1@0.25"] == 0.0
    # mt: 3 predictions, 2 targets; TP@0.25 = 2 (exact + 1/3), TP@0.5 = 1 -> F1 = 4/5 and 2/5
    assert m["mt"]["f1@0.25"] == pytest.approx(80.0) and m["mt"]["f1@0.5"] == pytest.approx(40.0)
    assert m["overall"]["f1@0.25"] == pytest.approx(100 * (1 + 0 + 1 + 0 + 0.8) / 5)
    assert m["overall"]["f1@0.5"] == pytest.approx(100 * (1 + 0 + 1 + 0 + 0.4) / 5)
    assert "ZT w/o D" in result.table
    # a missing prediction for a zero-target query is wrong, not "nothing predicted"
    partial = dict(records)
    del partial["scene0001_00/0"]
    assert evaluate(bench, partial, allow_missing=True).metrics["zt_wo_d"]["f1@0.25"] == 0.0
    assert all(v == 100.0 for s in evaluate(bench, {it.id: bench.oracle(it) for it in bench}).metrics.values()
               for v in s.values() if v is not None)


def test_multi3drefer_parquet_release_and_folder_predictions(toy, tmp_path):
    entries = json.loads(write_multi3drefer(tmp_path / "m.json").read_text())
    for e in entries:
        boxes = [np.concatenate([c - s / 2, c + s / 2]) for c, s in (gt_box(e["scene_id"], o) for o in e["object_ids"])]
        e["aabb_3d_min"] = [b[:3].tolist() for b in boxes]
        e["aabb_3d_max"] = [b[3:].tolist() for b in boxes]
        if e["eval_type"].startswith("zt"):
            e["eval_type"] = "zt"
    pd.DataFrame(entries).to_parquet(tmp_path / "validation.parquet")
    bench = open_benchmark("multi3drefer", [tmp_path / "validation.parquet"])  # boxes from the file itself
    assert bench.items[2].gt_aabbs is not None
    # M3DRef-CLIP's output layout: <scene>.json lists of {ann_id, aabb: [8 corners per box]}
    folder = tmp_path / "preds"
    folder.mkdir()
    for scene in ("scene0001_00", "scene0002_00"):
        rows = []
        for it in bench:
            if it.scene_id == scene:
                rows.append({"ann_id": it.ann_id, "aabb": [corners(np.asarray(b)).tolist() for b in it.gt_aabbs]})
        (folder / f"{scene}.json").write_text(json.dumps(rows))
    result = evaluate(bench, load_predictions([folder], bench))
    assert result.metrics["overall"]["f1@0.5"] == 100.0 and result.metrics["zt"]["f1@0.5"] == 100.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**entries[2], "eval_type": "mt"}]))
    with pytest.raises(ScenerError, match="eval_type mt with 1 target"):
        open_benchmark("multi3drefer", [bad])


# ---------------------------------------------------------------------------------------------- ScanQA / SQA3D
def write_scanqa(path: Path) -> Path:
    entries = [
        {"question_id": "val-scene0001-0", "scene_id": "scene0001_00", "question": "What color is the chair?",
         "answers": ["dark brown", "brown"], "object_ids": [0], "object_names": ["chair"]},
        {"question_id": "val-scene0001-1", "scene_id": "scene0001_00", "question": "Where is the lamp?",
         "answers": ["on table"], "object_ids": [4], "object_names": ["lamp"]},
        {"question_id": "val-scene0002-0", "scene_id": "scene0002_00", "question": "How many lamps are there?",
         "answers": ["2"], "object_ids": [2, 3], "object_names": ["lamp", "lamp"]},
        {"question_id": "val-scene0002-1", "scene_id": "scene0002_00", "question": "What is on the wall?",
         "answers": ["picture"], "object_ids": [4], "object_names": ["picture"]},
    ]
    path.write_text(json.dumps(entries))
    return path


def test_scanqa_exact_match_levels(tmp_path):
    bench = open_benchmark("scanqa", [write_scanqa(tmp_path / "qa.json")], caption_metrics=False)
    records = {
        "val-scene0001-0": {"answer": "Brown."},  # EM@1 after formatting
        "val-scene0001-1": {"answers_top10": ["on the desk", "on the table"]},  # refined hit at rank 2 only
        "val-scene0002-0": {"answer": "two"},  # a number word: refined only
        "val-scene0002-1": {"answer_top10": ["painting", "poster"]},  # nothing
    }
    m = evaluate(bench, records).metrics["overall"]
    assert m["EM@1"] == 25.0 and m["EM@10"] == 25.0
    assert m["EM-R@1"] == 50.0 and m["EM-R@10"] == 75.0
    assert m.get("BLEU-1") is None
    # the annotation file itself is not a prediction file (its "answers" are the references)
    with pytest.raises(ScenerError, match="expected answer"):
        evaluate(bench, load_predictions([tmp_path / "qa.json"], bench))


@pytest.mark.slow  # METEOR starts a Java process (about 10 s)
@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")
def test_scanqa_ground_truth_and_submission_format(tmp_path):
    bench = open_benchmark("scanqa", [write_scanqa(tmp_path / "qa.json")])
    submission = [{"scene_id": it.scene_id, "question_id": it.question_id, "answer_top10": list(it.answers),
                   "bbox": corners(np.arange(6.0)).tolist()} for it in bench]
    (tmp_path / "sub.json").write_text(json.dumps(submission))
    m = evaluate(bench, load_predictions([tmp_path / "sub.json"], bench)).metrics["overall"]
    for key in ("EM@1", "EM@10", "EM-R@1", "BLEU-1", "ROUGE-L"):
        assert m[key] == pytest.approx(100.0), key
    assert m["CIDEr"] > 100.0 and 0 < m["METEOR"] <= 100.0


def write_sqa3d(root: Path) -> list[Path]:
    questions = [("What is in front of me?", "table"), ("Is the door open?", "yes"),
                 ("How many chairs can I see?", "two"), ("Can I sit on the left?", "no"),
                 ("Which way is the exit?", "left"), ("If I turn around, what do I see?", "the window"),
                 ("Isn't the lamp on?", "yes")]
    q = {"info": {}, "questions": [{"scene_id": "scene0001_00", "situation": "I stand by the door.",
                                    "question": text, "question_id": 100 + i} for i, (text, _) in enumerate(questions)]}
    a = {"info": {}, "annotations": [{"scene_id": "scene0001_00", "question_id": 100 + i, "question_type": "N/A",
                                      "answers": [{"answer": ans, "answer_id": 1}]} for i, (_, ans) in enumerate(questions)]}
    qp, ap = root / "v1_balanced_questions_test_scannetv2.json", root / "v1_balanced_sqa_annotations_test_scannetv2.json"
    qp.write_text(json.dumps(q))
    ap.write_text(json.dumps(a))
    return [qp, ap]


def test_sqa3d_types_and_exact_match(tmp_path):
    qp, ap = write_sqa3d(tmp_path)
    bench = open_benchmark("sqa3d", [ap, qp])  # either order
    assert [it.question_type for it in bench] == ["what", "is", "how", "can", "which", "others", "is"]
    assert bench.items[0].situation == "I stand by the door."
    assert len(open_benchmark("sqa3d", [qp])) == 7  # the annotations file is found beside the questions
    records = {"100": {"answer": "The table"}, "101": {"answer": "Yes."}, "102": {"answer": "2"},
               "103": {"answer": "yes"}, "104": {"answer": "to the left"}, "105": {"answer": "window"},
               "106": {"answer": "no"}}
    result = evaluate(bench, records)
    m = result.metrics
    assert m["what"]["EM"] == 100.0 and m["is"]["EM"] == 50.0 and m["how"]["EM"] == 100.0
    assert m["can"]["EM"] == 0.0 and m["which"]["EM"] == 0.0 and m["which"]["EM-R"] == 100.0
    assert m["others"]["EM"] == 100.0
    assert m["overall"]["EM"] == pytest.approx(100 * 4 / 7) and result.counts["is"] == 2
    with pytest.raises(ScenerError, match="questions file and its sqa_annotations"):
        open_benchmark("sqa3d", [ap])


# ---------------------------------------------------------------------------------------------- VSI-Bench
def write_vsibench(path: Path, prefix_rows=()) -> Path:
    rows = [
        (0, "object_counting", "4", None), (1, "object_abs_distance", "2.0", None),
        (2, "object_size_estimation", "60", None), (3, "room_size_estimation", "20", None),
        (4, "object_rel_distance", "A", ["A. chair", "B. table"]),
        (5, "object_rel_direction_easy", "B", ["A. left", "B. right"]),
        (6, "object_rel_direction_medium", "C", ["A. back", "B. right", "C. left"]),
        (7, "object_rel_direction_hard", "A", ["A. front-left", "B. back-right"]),
        (8, "route_planning", "D", ["A. x", "B. y", "C. z", "D. w"]),
        (9, "obj_appearance_order", "B", ["A. a, b", "B. b, a"]),
        (10, "object_counting", "2", None),
    ]
    df = pd.DataFrame({"id": [r[0] for r in rows], "dataset": "scannet",
                       "scene_name": ["scene0001_00"] * len(rows), "question_type": [r[1] for r in rows],
                       "question": [f"q{r[0]}" for r in rows], "ground_truth": [r[2] for r in rows],
                       "options": [r[3] for r in rows]})
    df.to_parquet(path)
    return path


def test_vsibench_hand_computed_scores(tmp_path):
    bench = open_benchmark("vsibench", [write_vsibench(tmp_path / "vsi.parquet")])
    assert bench.items[4].options == ("A. chair", "B. table")
    preds = {"0": "4", "1": "3.0 meters", "2": "66.", "3": "twenty", "4": "a", "5": "B. right",
             "6": "A", "7": "A", "8": "D", "9": "B", "10": "3"}
    result = evaluate(bench, {k: {"prediction": v} for k, v in preds.items()})
    m = result.metrics
    # counting: (1 + MRA(3, 2) = 0.1 [rel. error 0.5]) / 2
    assert m["object_counting"]["MRA"] == pytest.approx(55.0)
    assert m["object_abs_distance"]["MRA"] == pytest.approx(10.0)  # 3.0 vs 2.0: rel. error 0.5
    assert m["object_size_estimation"]["MRA"] == pytest.approx(90.0)  # 66 vs 60: 0.1 passes theta 0.50..0.90
    assert m["room_size_estimation"]["MRA"] == 0.0  # "twenty" is not a number
    assert m["object_rel_distance"]["acc"] == 100.0  # case-insensitive letter
    assert m["object_rel_direction"]["acc"] == pytest.approx(200 / 3)  # (100 + 0 + 100) / 3
    expected = np.mean([55.0, 10.0, 90.0, 0.0, 100.0, 200 / 3, 100.0, 100.0])
    assert m["overall"]["score"] == pytest.approx(expected)
    assert result.counts["object_rel_direction"] == 3
    # rows with id + prediction, as a parquet table
    table = pd.DataFrame({"id": list(range(11)), "prediction": [preds[str(i)] for i in range(11)]})
    table.to_parquet(tmp_path / "p.parquet")
    again = evaluate(bench, load_predictions([tmp_path / "p.parquet"], bench))
    assert again.metrics == result.metrics
    (tmp_path / "vsi.csv").write_text("id,question_type\n0,object_counting\n")
    with pytest.raises(ScenerError, match="mangles options"):
        open_benchmark("vsibench", [tmp_path / "vsi.csv"])


# ---------------------------------------------------------------------------------------------- synth
def write_synth(root: Path) -> Path:
    write_boxes(root, layout="synth")
    labels = {f"{s}/{o}/{a}": ("unique" if o in (2, 3, 4) else "multiple") for s, o, _, anns in SCANREFER for a in anns}
    write_scanrefer(root / "ScanRefer_synth.json", labels)
    write_scanqa(root / "ScanQA_synth.json")
    write_vsibench(root / "vsibench_synth.parquet")
    return root


def test_synth_reads_its_layout_and_scores_each_part(tmp_path):
    root = write_synth(tmp_path / "synth")
    bench = open_benchmark("synth", [root], caption_metrics=False)
    assert len(bench) == 10 + 4 + 11
    assert {it.id.split(":")[0] for it in bench} == {"scanrefer", "scanqa", "vsibench"}
    result = evaluate(bench, {it.id: bench.oracle(it) for it in bench})
    parts = {p.benchmark: p for p in result.parts}
    assert parts["synth/scanrefer"].metrics["unique"]["acc@0.5"] == 100.0
    assert parts["synth/scanrefer"].counts["unique"] == 6  # from the file's eval_type
    assert parts["synth/scanqa"].metrics["overall"]["EM@1"] == 100.0
    assert parts["synth/vsibench"].metrics["overall"]["score"] == 100.0
    assert "synth/scanrefer" in result.markdown() and "Headline metric" in result.table
    # records may use the parts' own keys
    assert bench.key_of({"question_id": "val-scene0001-0"}) == "scanqa:val-scene0001-0"
    sub = bench.subset([it.id for it in bench.items[:3]])
    assert len(sub) == 3 and len(sub.parts) == 1
    with pytest.raises(ScenerError, match="no synthetic benchmark files"):
        open_benchmark("synth", [tmp_path])
