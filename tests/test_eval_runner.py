"""Runs: the resumable JSONL writer, shards and their merge, interruption (Ctrl-C, kill -9) and restart, and the
``scener1 eval`` entry point (add_arguments / run)."""

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_eval_benchmarks import SCANREFER, write_boxes, write_label_map, write_synth

from scener1.errors import ConfigError, ScenerError
from scener1.eval import evaluate, load_predictions, merge_predictions, open_benchmark, run_benchmark
from scener1.eval.cli import add_arguments, run
from scener1.eval.items import Item
from scener1.eval.runner import (
    PredictionWriter,
    attach_scenes,
    find_scene,
    parse_shard,
    select_shard,
    shard_from_env,
    shard_of,
)

REPO = Path(__file__).resolve().parents[1]

PREDICTOR_MODULE = '''
"""A predictor for the tests: the ground-truth box moved and resized by an amount fixed by the item id."""
import hashlib
import time

import numpy as np


def make(benchmark, fail_every="0", hold_after="0"):
    fail_every, hold_after = int(fail_every), int(hold_after)
    calls = []

    def predict(item):
        calls.append(item.id)
        held = time.monotonic()
        while hold_after and len(calls) > hold_after and time.monotonic() - held < 120:  # until interrupted or killed
            time.sleep(0.05)
        seed = int.from_bytes(hashlib.blake2b(item.id.encode(), digest_size=8).digest(), "big")
        if fail_every and seed % fail_every == 0:
            from scener1.errors import ScenerError
            raise ScenerError("no usable frames")
        rng = np.random.default_rng(seed)
        box = benchmark.oracle(item)["box_3d"]
        size = np.asarray(box["size"])
        return {"box_3d": {"center": (np.asarray(box["center"]) + rng.normal(0, 0.25, 3) * size).tolist(),
                           "size": (size * rng.uniform(0.6, 1.4, 3)).tolist()},
                "reasoning": "moved a little"}

    return predict
'''


def write_big_scanrefer(path: Path, anns_per_object: int = 30) -> Path:
    entries = [{"scene_id": s, "object_id": str(o), "object_name": name, "ann_id": str(a), "description": f"{name} {a}"}
               for s, o, name, _ in SCANREFER for a in range(anns_per_object)]
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture
def data(tmp_path):
    (tmp_path / "perturb_predictor.py").write_text(PREDICTOR_MODULE)
    return {
        "boxes": write_boxes(tmp_path / "boxes"),
        "tsv": write_label_map(tmp_path / "labels.tsv"),
        "scanrefer": write_big_scanrefer(tmp_path / "scanrefer.json"),
        "tmp": tmp_path,
    }


@pytest.fixture
def bench(data):
    return open_benchmark("scanrefer", [data["scanrefer"]], gt_boxes=data["boxes"], label_map=data["tsv"])


def parser():
    p = argparse.ArgumentParser(prog="scener1 eval")
    add_arguments(p)
    return p


def cli_args(data, *extra):
    return ["scanrefer", "--annotations", str(data["scanrefer"]), "--gt-boxes", str(data["boxes"]),
            "--label-map", str(data["tsv"]), *map(str, extra)]


def child_env(data):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(data["tmp"]), str(REPO), env.get("PYTHONPATH", "")])
    return env


def jsonl_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------- shards
def test_shards_partition_the_items_deterministically(bench):
    shards = [select_shard(bench.items, i, 4) for i in range(4)]
    ids = [it.id for shard in shards for it in shard]
    assert sorted(ids) == sorted(bench.ids) and len(set(ids)) == len(ids)  # disjoint and complete
    assert all(0.12 * len(bench) < len(s) < 0.38 * len(bench) for s in shards)  # roughly balanced
    # the hash is stable across processes (Python's own hash() is salted per process)
    code = "from scener1.eval.runner import shard_of; print([shard_of(f'scene0001_00/0/{a}', 4) for a in range(20)])"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert outs == {str([shard_of(f"scene0001_00/0/{a}", 4) for a in range(20)]) + "\n"}
    # by scene: each scene's items land in one shard, and a shard's items come grouped by scene
    by_scene = [select_shard(bench.items, i, 3, by="scene") for i in range(3)]
    for shard in by_scene:
        scenes = [it.scene_id for it in shard]
        assert scenes == sorted(scenes, key=scenes.index)  # contiguous groups
    owners = {it.scene_id: i for i, shard in enumerate(by_scene) for it in shard}
    assert all(owners[it.scene_id] == i for i, shard in enumerate(by_scene) for it in shard)


def test_parse_shard_and_launcher_environment(monkeypatch):
    assert parse_shard(None) == (0, 1) and parse_shard("2/4") == (2, 4) and parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("4/4", "1/0", "a/b", "-1/3", "1of4"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert parse_shard("auto") == (3, 8)
    assert shard_from_env({}) == (0, 1)
    with pytest.raises(ConfigError):
        shard_from_env({"RANK": "8", "WORLD_SIZE": "8"})


# ---------------------------------------------------------------------------------------------- writer
def test_writer_survives_a_torn_line_and_refuses_corruption_and_a_second_writer(tmp_path):
    path = tmp_path / "p.jsonl"
    with PredictionWriter(path) as w:
        w.write({"id": "a", "answer": "x"})
        w.write({"id": "b", "answer": "y"})
        with pytest.raises(ScenerError, match="another process is writing"):
            PredictionWriter(path)
    with open(path, "ab") as f:
        f.write(b'{"id": "c", "ans')  # what a kill in the middle of a write leaves
    with PredictionWriter(path) as w:
        assert set(w.records) == {"a", "b"} and w.torn_line_dropped
        w.write({"id": "c", "answer": "z"})
    assert jsonl_ids(path) == ["a", "b", "c"]
    assert path.read_bytes().endswith(b"\n")
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ScenerError, match=r"p.jsonl:2: not a JSON object"):
        PredictionWriter(path)
    path.write_text('{"id": "a", "answer": "x"}\n{"id": "a", "answer": "y"}\n')
    with pytest.raises(ScenerError, match="id a occurs twice"):
        PredictionWriter(path)


def test_run_resumes_records_item_errors_and_retries_them(bench, tmp_path):
    calls = []

    def predict(item):
        calls.append(item.id)
        if item.object_id == 3 and item.ann_id % 10 == 0:
            raise ScenerError("no usable frames")
        return bench.oracle(item)

    out = tmp_path / "run" / "predictions.jsonl"
    first = run_benchmark(bench.items[:50], predict, out, validate=bench.parse_prediction, progress=False)
    assert first.written == 50 and first.resumed == 0
    summary = run_benchmark(bench.items, predict, out, validate=bench.parse_prediction, progress=False)
    assert summary.resumed == 50 and summary.written == len(bench) - 50 and summary.failed == 3
    assert len(calls) == len(bench)  # nothing predicted twice
    result = evaluate(bench, load_predictions([out], bench))
    assert result.counts["failed"] == 3 and result.metrics["overall"]["acc@0.5"] == pytest.approx(
        100 * (len(bench) - 3) / len(bench))
    calls.clear()
    summary = run_benchmark(bench.items, lambda it: bench.oracle(it), out, retry_errors=True, progress=False)
    assert summary.written == 3 and summary.failed == 0
    assert evaluate(bench, load_predictions([out], bench)).metrics["overall"]["acc@0.5"] == 100.0


def test_run_stops_on_bugs_and_malformed_predictions_keeping_finished_work(bench, tmp_path):
    out = tmp_path / "p.jsonl"

    def crashing(item):
        if item.ann_id == 5:
            raise RuntimeError("a bug")
        return bench.oracle(item)

    with pytest.raises(RuntimeError):
        run_benchmark(bench.items, crashing, out, progress=False)
    assert len(jsonl_ids(out)) == 5  # ann 0..4 of the first object
    with pytest.raises(ScenerError, match="malformed prediction for scene0001_00/0/5: .*box"):
        run_benchmark(bench.items, lambda it: {"box_3d": {"center": [0, 0]}}, out,
                      validate=bench.parse_prediction, progress=False)
    with pytest.raises(ScenerError, match="outside shard 1/2"):
        run_benchmark(bench.items, bench.oracle, out, shard=(1, 2), progress=False)


def test_shards_merge_and_gaps_and_duplicates_are_reported(bench, tmp_path):
    paths = []
    for i in range(3):
        path = tmp_path / f"predictions.shard-{i}-of-3.jsonl"
        run_benchmark(bench.items, bench.oracle, path, shard=(i, 3), progress=False)
        paths.append(path)
    merged = merge_predictions(paths, bench.ids, tmp_path / "merged.jsonl")
    assert len(merged) == len(bench) and jsonl_ids(tmp_path / "merged.jsonl") == list(bench.ids)
    with pytest.raises(ScenerError, match=r"^merge: \d+ items missing \(first: "):
        merge_predictions(paths[:2], bench.ids)
    with pytest.raises(ScenerError, match=r"merge: 1 duplicated \(first: .* in .*shard-0.* and .*copy"):
        copy = tmp_path / "copy.jsonl"
        copy.write_text(paths[0].read_text().splitlines(keepends=True)[0])
        merge_predictions([*paths, copy], bench.ids)
    # scoring the shard files together is the same merge, with the same checks
    assert evaluate(bench, load_predictions(paths, bench)).metrics["overall"]["acc@0.5"] == 100.0
    with pytest.raises(ScenerError, match="have no prediction"):
        evaluate(bench, load_predictions(paths[:2], bench))


# ---------------------------------------------------------------------------------------------- interruption
def start_child(data, out_dir, hold_after=40):
    """A run in a child process that predicts ``hold_after`` items, then waits in the next prediction to be
    interrupted or killed (0: runs to the end), so that the test does not race the child on a busy machine."""
    cmd = [sys.executable, "-m", "scener1.eval.cli", *cli_args(data, "--run", "--predictor", "perturb_predictor:make",
                                                                  "--predictor-arg", f"hold_after={hold_after}",
                                                                  "--out", out_dir, "--quiet")]
    # Ctrl-C handling as in a terminal, also when the tests run in the background (where SIGINT is ignored
    # and children inherit that)
    return subprocess.Popen(cmd, env=child_env(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_lines(path: Path, n: int, proc, timeout=60.0):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError("the run wrote too little in time")


def test_interrupted_and_killed_runs_resume_to_identical_metrics(data, bench):
    out = data["tmp"] / "interrupted"
    preds = out / "predictions.jsonl"
    # Ctrl-C: the run stops cleanly, says so, and keeps what it finished
    proc = start_child(data, out)
    wait_for_lines(preds, 40, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    after_int = len(jsonl_ids(preds))
    assert 40 <= after_int < len(bench)
    # kill -9: no chance to clean up
    proc = start_child(data, out)
    wait_for_lines(preds, after_int + 40, proc)
    proc.kill()
    proc.wait(timeout=30)
    with open(preds, "ab") as f:  # as if the kill had landed in the middle of a write
        f.write(b'{"id": "scene0002_00/4/29", "box_3d": {"cen')
    after_kill = preds.read_bytes().count(b"\n")
    assert after_int + 40 <= after_kill < len(bench)
    # restart to the end
    proc = start_child(data, out, hold_after=0)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"{after_kill} already done" in err and f"{len(bench) - after_kill} predicted now" in err
    ids = jsonl_ids(preds)
    assert len(ids) == len(set(ids)) == len(bench) and set(ids) == set(bench.ids)
    # the same predictor in one uninterrupted run, through run(args) in this process
    sys.path.insert(0, str(data["tmp"]))
    try:
        args = parser().parse_args(cli_args(data, "--run", "--predictor", "perturb_predictor:make",
                                            "--out", data["tmp"] / "straight", "--quiet"))
        assert run(args) == 0
    finally:
        sys.path.remove(str(data["tmp"]))
    resumed = json.loads((out / "results.json").read_text())
    straight = json.loads((data["tmp"] / "straight" / "results.json").read_text())
    assert resumed["metrics"] == straight["metrics"] and resumed["counts"] == straight["counts"]
    assert 0 < straight["metrics"]["overall"]["acc@0.5"] < 100
    assert "| scener1 |" in stdout


# ---------------------------------------------------------------------------------------------- entry point
def test_cli_scores_files_runs_oracles_and_shards(data, bench, tmp_path, capsys):
    out = tmp_path / "oracle"
    assert run(parser().parse_args(cli_args(data, "--run", "--predictor", "oracle", "--out", out, "--quiet",
                                            "--name", "GT boxes"))) == 0
    printed = capsys.readouterr().out
    assert "| GT boxes |" in printed and "100.0" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["overall"]["acc@0.25"] == 100.0 and results["run"]["written"] == len(bench)
    assert (out / "results.md").read_text().startswith("### scanrefer")
    # two shards as under `accelerate launch` (RANK / WORLD_SIZE), then their files scored together
    sharded = tmp_path / "sharded"
    procs = [subprocess.Popen([sys.executable, "-m", "scener1.eval.cli",
                               *cli_args(data, "--run", "--predictor", "perturb_predictor:make", "--shard", "auto",
                                         "--out", sharded, "--quiet")],
                              env={**child_env(data), "RANK": str(r), "WORLD_SIZE": "2"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "when every shard is done" in err
    shard_files = sorted(sharded.glob("predictions.shard-*-of-2.jsonl"))
    assert len(shard_files) == 2 and not (sharded / "results.json").exists()
    merged = tmp_path / "merged.jsonl"
    assert run(parser().parse_args(cli_args(data, "--predictions", *shard_files, "--merged", merged,
                                            "--out", tmp_path / "scored"))) == 0
    assert jsonl_ids(merged) == list(bench.ids)
    sys.path.insert(0, str(data["tmp"]))
    try:
        assert run(parser().parse_args(cli_args(data, "--run", "--predictor", "perturb_predictor:make",
                                                "--out", tmp_path / "single", "--quiet"))) == 0
    finally:
        sys.path.remove(str(data["tmp"]))
    scored = json.loads((tmp_path / "scored" / "results.json").read_text())
    single = json.loads((tmp_path / "single" / "results.json").read_text())
    assert scored["metrics"] == single["metrics"]
    # --limit and --allow-missing
    assert run(parser().parse_args(cli_args(data, "--predictions", shard_files[0], "--allow-missing",
                                            "--out", tmp_path / "partial"))) == 0
    partial = json.loads((tmp_path / "partial" / "results.json").read_text())
    assert partial["counts"]["missing"] == len(bench) - len(jsonl_ids(shard_files[0]))
    assert run(parser().parse_args(cli_args(data, "--predictions", merged, "--limit", "7",
                                            "--out", tmp_path / "limited"))) == 0
    limited = json.loads((tmp_path / "limited" / "results.json").read_text())
    assert limited["counts"]["overall"] == 7 and limited["counts"]["extra"] == len(bench) - 7


def test_cli_bad_input_gives_one_line_errors(data, tmp_path):
    with pytest.raises(ConfigError, match="--run needs --out"):
        run(parser().parse_args(cli_args(data, "--run", "--predictor", "oracle")))
    with pytest.raises(ConfigError, match="needs --predictor"):
        run(parser().parse_args(cli_args(data, "--run", "--out", tmp_path)))
    with pytest.raises(ConfigError, match="cannot import no_such_module"):
        run(parser().parse_args(cli_args(data, "--run", "--predictor", "no_such_module:make", "--out", tmp_path)))
    with pytest.raises(ConfigError, match="unknown predictor"):
        run(parser().parse_args(cli_args(data, "--run", "--predictor", "magic", "--out", tmp_path)))
    with pytest.raises(ConfigError, match="--predictor, --shard only apply with --run"):
        run(parser().parse_args(cli_args(data, "--predictions", "p.jsonl", "--predictor", "oracle", "--shard", "0/2")))
    with pytest.raises(ConfigError, match="--merged goes with --predictions"):
        run(parser().parse_args(cli_args(data, "--run", "--predictor", "oracle", "--out", tmp_path, "--merged", "m")))
    with pytest.raises(SystemExit):  # argparse: one of --predictions / --run is required
        parser().parse_args(cli_args(data))
    for argv, match in [
        (["scanrefer", "--annotations", tmp_path / "nope.json", "--predictions", tmp_path / "p.jsonl"],
         "ScanRefer annotation file not found"),
        (cli_args(data, "--predictions", data["scanrefer"]), "prediction for scene0001_00/0/0: no box"),
        (cli_args(data, "--predictions", tmp_path / "missing.jsonl"), "predictions file not found"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "scener1.eval.cli", *map(str, argv)], capture_output=True,
                              text=True, env=child_env(data), timeout=60)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("scener1: error: "), proc.stderr
        assert match in lines[0]


def test_cli_module_imports_nothing_heavy():
    code = ("import argparse, sys, scener1.eval.cli as c\n"
            "c.add_arguments(argparse.ArgumentParser())\n"
            "print(','.join(m for m in ('numpy', 'pandas', 'scipy', 'torch', 'pycocoevalcap') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_run_attaches_scenes_from_any_layout(tmp_path):
    root = tmp_path / "scans"
    (root / "scene0001_00" / "color").mkdir(parents=True)
    (root / "scene0001_00" / "color" / "0.jpg").write_bytes(b"x")
    (root / "scene0002_00.sens").write_bytes(b"x")
    (root / "arkitscenes").mkdir()
    (root / "arkitscenes" / "41069025.mp4").write_bytes(b"x")
    assert find_scene(root, "scene0001_00") == root / "scene0001_00"
    assert find_scene(root, "scene0002_00") == root / "scene0002_00.sens"
    assert find_scene(root, "41069025", "arkitscenes") == root / "arkitscenes" / "41069025.mp4"
    assert find_scene(root, "scene0003_00") is None
    items = [Item(id="a", scene_id="scene0001_00", text=""), Item(id="b", scene_id="scene0002_00", text="")]
    attached = attach_scenes(items, root)
    assert [it.scene_path for it in attached] == [str(root / "scene0001_00"), str(root / "scene0002_00.sens")]
    with pytest.raises(ScenerError, match=r"1 of 2 scenes not found under .* \(first: scene0003_00\)"):
        attach_scenes([items[0], Item(id="c", scene_id="scene0003_00", text="")], root)


def test_synth_runs_end_to_end_with_scene_paths(tmp_path):
    root = write_synth(tmp_path / "synth")
    (tmp_path / "synth_predictor.py").write_text(textwrap.dedent('''
        def make(benchmark):
            def predict(item):
                assert item.scene_path is not None and item.scene_path.endswith(item.scene_id)
                as_json = item.to_dict()  # what a predictor may log or send on
                assert as_json["id"] == item.id and as_json["task"] in ("grounding", "qa", "vsibench")
                return benchmark.oracle(item)
            return predict
    '''))
    sys.path.insert(0, str(tmp_path))
    try:
        # the synthetic scenes are found in the data folder without --scans
        args = parser().parse_args(["synth", "--annotations", str(root), "--run", "--predictor", "synth_predictor:make",
                                    "--out", str(tmp_path / "out"), "--no-caption-metrics", "--quiet"])
        assert run(args) == 0
    finally:
        sys.path.remove(str(tmp_path))
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["parts"]["synth/scanrefer"]["metrics"]["overall"]["acc@0.5"] == 100.0
    assert results["parts"]["synth/vsibench"]["metrics"]["overall"]["score"] == 100.0
