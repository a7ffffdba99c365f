"""The command line as a user meets it: help, info, fuse, and one clear line for every bad input."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import distance_to_room, make_frames, write_scannet

from scener1.data import write_sens


def run(*args, timeout=120):
    proc = subprocess.run(
        [sys.executable, "-m", "scener1", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(args, match):
    code, out, err = run(*args)
    assert code == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("scener1: error: ") and "Traceback" not in err
    assert match in lines[0], lines[0]


@pytest.fixture
def scan(tmp_path):
    return write_scannet(tmp_path / "scan", make_frames(8, color_scale=2))


def test_help_is_instant_and_imports_nothing_heavy():
    code = (
        "import sys, scener1.cli as c\n"
        "c.build_parser()\n"
        "heavy = [m for m in ('numpy', 'cv2', 'open3d', 'torch', 'transformers', 'sam2') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "scener1", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "info" in proc.stdout and "fuse" in proc.stdout
    assert time.perf_counter() - start < 1.0


def test_info_table_and_json(scan):
    code, out, _ = run("info", "--scene", scan)
    assert code == 0
    assert "scannet" in out and "8 of 8" in out and "128x96" in out and "64x48" in out
    code, out, _ = run("info", "--scene", scan, "--json")
    info = json.loads(out)
    assert info["frames"] == 8 and info["valid_poses"] == 8 and info["format"] == "scannet"
    assert info["axis_alignment"] is not None
    assert info["duration_s"] == pytest.approx(8 / 30, abs=1e-3)


def test_fuse_writes_points_on_the_room_surfaces(scan, tmp_path):
    from scener1.lifting import read_ply

    out = tmp_path / "out" / "cloud.ply"
    code, stdout, err = run("fuse", "--scene", scan, "--out", out, "--voxel", "0.05", "--quiet")
    assert code == 0, err
    cloud = read_ply(out)
    assert len(cloud) > 500
    assert np.percentile(distance_to_room(cloud.points), 99) < 0.02  # voxel averaging only rounds corners
    assert cloud.colors.max() > 100  # colours came through
    # --aligned applies the scene's axisAlignment (a shift by (-2, -1.5, 0) in the toy scan)
    out2 = tmp_path / "aligned.ply"
    assert run("fuse", "--scene", scan, "--out", out2, "--voxel", "0.05", "--aligned", "--quiet")[0] == 0
    aligned = read_ply(out2)
    np.testing.assert_allclose(aligned.points.mean(0), cloud.points.mean(0) + [-2.0, -1.5, 0.0], atol=1e-3)


def test_fuse_skips_invalid_poses_and_reports_them(scan, tmp_path):
    (scan / "pose" / "3.txt").write_text("\n".join(["-inf -inf -inf -inf"] * 4))
    code, out, err = run("fuse", "--scene", scan, "--out", tmp_path / "c.ply", "--quiet")
    assert code == 0, err
    assert "fused 7 frames (1 with invalid poses skipped)" in out
    code, out, _ = run("info", "--scene", scan)
    assert "7 of 8" in out and "1 NaN/inf" in out


def test_bad_inputs_get_one_clear_line(tmp_path, scan):
    assert_one_line_error(["info", "--scene", tmp_path / "nope"], "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(["info", "--scene", tmp_path / "empty"], "empty")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "readme.md").write_text("hello")
    assert_one_line_error(["info", "--scene", tmp_path / "odd"], "cannot recognise the scene layout")
    assert_one_line_error(["info", "--scene", scan, "--meta", tmp_path / "nometa.txt"], "meta file does not exist")
    assert_one_line_error(["fuse", "--scene", scan, "--out", tmp_path / "c.ply", "--stride", "0"], "stride")
    assert_one_line_error(["info", "--scene", scan, "--fps", "-3"], "fps")


def test_truncated_sens(tmp_path):
    toy = make_frames(4)
    path = tmp_path / "scan.sens"
    write_sens(path, toy.frames)
    data = path.read_bytes()
    (tmp_path / "cut.sens").write_bytes(data[: len(data) - 500])
    assert_one_line_error(["info", "--scene", tmp_path / "cut.sens"], "truncated .sens")
    (tmp_path / "head.sens").write_bytes(data[:30])
    assert_one_line_error(["info", "--scene", tmp_path / "head.sens"], "truncated .sens")
    (tmp_path / "junk.sens").write_bytes(b"\x07" * 100)
    assert_one_line_error(["info", "--scene", tmp_path / "junk.sens"], "unsupported .sens version")


def test_unreadable_image(scan, tmp_path):
    """One unreadable frame is passed over and said; when none can be read, one line says why."""
    (scan / "color" / "5.png").write_bytes(b"not a png at all")
    code, out, err = run("fuse", "--scene", scan, "--out", tmp_path / "c.ply", "--quiet")
    assert code == 0 and "fused 7 frames (0 with invalid poses and 1 unreadable skipped)" in out, (out, err)
    assert "skipped: cannot decode colour image" in out and (tmp_path / "c.ply").is_file()
    (scan / "pose" / "0.txt").write_text("nan nan nan nan\n" * 4)  # frame 0 is not fused
    for p in range(1, 8):
        (scan / "color" / f"{p}.png").write_bytes(b"not a png at all")
    assert_one_line_error(["fuse", "--scene", scan, "--out", tmp_path / "d.ply", "--quiet"],
                          "none of the 7 chosen frames can be read (first: cannot decode colour image")


def test_corrupt_first_frame(scan, tmp_path):
    """The scene is sized from the first frame that decodes; a corrupt frame 0 is one unreadable frame."""
    (scan / "depth" / "0.png").write_bytes(b"")
    code, out, err = run("info", "--scene", scan)
    assert code == 0 and "depth image size taken from 1.png: 1 earlier frame(s) could not be decoded" in out, (out, err)
    code, out, err = run("fuse", "--scene", scan, "--out", tmp_path / "c.ply", "--quiet")
    assert code == 0 and "fused 7 frames (0 with invalid poses and 1 unreadable skipped)" in out, (out, err)
    for p in range(1, 8):
        (scan / "depth" / f"{p}.png").write_bytes(b"")
    assert_one_line_error(["info", "--scene", scan], "cannot decode image")
    assert_one_line_error(["info", "--scene", scan], "(and the next 7 frames)")


def test_colour_depth_count_mismatch(scan):
    (scan / "depth" / "4.png").unlink()
    assert_one_line_error(["info", "--scene", scan], "8 colour frames but 7 depth frames (frame 4 has no depth)")


def test_missing_intrinsics(scan):
    (scan / "intrinsic" / "intrinsic_color.txt").unlink()
    assert_one_line_error(["info", "--scene", scan], "missing intrinsics")


def test_malformed_pose_and_intrinsics(scan):
    (scan / "intrinsic" / "intrinsic_depth.txt").write_text("1 2 3")
    assert_one_line_error(["info", "--scene", scan], "expected a 3x3 or 4x4 camera matrix")


def test_malformed_pose(scan):
    (scan / "pose" / "2.txt").write_text("this is not a pose")
    assert_one_line_error(["info", "--scene", scan], "not a whitespace-separated list of numbers")


def test_aligned_without_alignment(tmp_path):
    scan = write_scannet(tmp_path / "scan", make_frames(3), meta=False)
    assert_one_line_error(["fuse", "--scene", scan, "--out", tmp_path / "c.ply", "--aligned"], "no axis alignment")


def test_depth_size_mismatch(scan):
    import cv2

    cv2.imwrite(str(scan / "depth" / "2.png"), np.zeros((10, 10), np.uint16))
    code, out, err = run("fuse", "--scene", scan, "--out", Path(scan).parent / "c.ply", "--quiet")
    assert code == 0 and "1 unreadable skipped" in out and "depth is 10x10, intrinsics say 64x48" in out, (out, err)
