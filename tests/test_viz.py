import json

import numpy as np
import pytest

from scener1.errors import ScenerError
from scener1.lifting import write_ply
from scener1.types import PointCloud
from scener1.viz import draw_overlay, load_result_view, render_png, vulkan_available
from scener1.viz.view import box_corners


@pytest.fixture
def result_dir(tmp_path):
    rng = np.random.default_rng(0)
    scene = rng.uniform([0, 0, 0], [4, 3, 0.05], (5000, 3)).astype(np.float32)  # a floor
    write_ply(PointCloud(scene, np.full((5000, 3), 120, np.uint8)), tmp_path / "scene.ply")
    obj = rng.uniform([1, 1, 0], [1.5, 1.6, 0.8], (800, 3)).astype(np.float32)
    write_ply(PointCloud(obj, np.zeros((800, 3), np.uint8)), tmp_path / "object.ply")
    (tmp_path / "result.json").write_text(json.dumps({
        "box_3d": {"center": [1.25, 1.3, 0.4], "size": [0.5, 0.6, 0.8]},
        "camera_path": [[0.5, 0.5, 1.4], [2.0, 0.5, 1.4], [3.5, 2.5, 1.4]],
    }))
    return tmp_path


def test_box_corners_span_the_box():
    c = box_corners([1, 2, 3], [2, 4, 6])
    np.testing.assert_allclose(c.min(0), [0, 0, 0])
    np.testing.assert_allclose(c.max(0), [2, 4, 6])
    R = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float)  # 90 degrees about z swaps the extents
    np.testing.assert_allclose(np.ptp(box_corners([0, 0, 0], [2, 4, 6], R), axis=0), [4, 2, 6])


def test_load_result_view_layers(result_dir):
    view = load_result_view(result_dir)
    names = [l.name for l in view.layers]
    assert names == ["scene", "object", "box_3d", "camera_path"]
    box = view.layers[2]
    assert box.kind == "lines" and len(box.points) == 24  # 12 edges
    assert len(view.layers[3].points) == 4  # two segments of the path


def test_load_result_view_errors(tmp_path):
    with pytest.raises(ScenerError, match="does not exist"):
        load_result_view(tmp_path / "missing")
    with pytest.raises(ScenerError, match="nothing to show"):
        load_result_view(tmp_path)
    (tmp_path / "result.json").write_text("{broken")
    with pytest.raises(ScenerError, match="not valid JSON"):
        load_result_view(tmp_path)


@pytest.mark.slow
def test_render_png(result_dir, tmp_path):
    ok, reason = vulkan_available()
    if not ok:
        pytest.skip(f"offscreen rendering unavailable here: {reason}")
    import cv2

    out = render_png(load_result_view(result_dir), tmp_path / "render.png", width=320, height=240)
    img = cv2.imread(str(out))[:, :, ::-1]
    assert img.shape == (240, 320, 3)
    white = (img > 245).all(-1).mean()
    assert 0.2 < white < 0.99  # something was drawn on the white background
    orange = ((img[..., 0] > 200) & (img[..., 1] > 100) & (img[..., 1] < 180) & (img[..., 2] < 60)).sum()
    assert orange > 50  # the object's points
    # the same through the command line
    import subprocess
    import sys

    png = tmp_path / "cli.png"
    proc = subprocess.run([sys.executable, "-m", "scener1", "viz", str(result_dir), "--png", str(png),
                           "--width", "200", "--height", "150"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(png)).shape == (150, 200, 3)


def test_render_png_refuses_without_vulkan(result_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("scener1.viz.view.vulkan_available", lambda: (False, "no Vulkan driver (test)"))
    with pytest.raises(ScenerError, match="needs Vulkan: no Vulkan driver"):
        render_png(load_result_view(result_dir), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_draw_overlay_marks_box_and_mask():
    img = np.zeros((60, 80, 3), np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:30, 30:40] = True
    out = draw_overlay(img, box=(10, 10, 50, 40), mask=mask)
    assert (out[25, 35] > 0).any() and (out[5, 5] == 0).all()
    assert tuple(out[10, 20]) == (255, 40, 40)  # top edge
    assert tuple(out[39, 20]) == (255, 40, 40)  # bottom edge at y2 - 1 (exclusive y2)
    assert (out[45, 20] == 0).all()
    assert img.sum() == 0  # input untouched


def test_camera_path_drops_zero_length_segments(tmp_path):
    """A camera turning on the spot gives zero-length segments, which crash Filament's line renderer."""
    from scener1.viz.view import path_layer

    layer = path_layer(np.array([[0, 0, 1.3], [0, 0, 1.3], [1, 0, 1.3], [1, 0, 1.3]], float))
    assert len(layer.points) == 2  # the one real segment
    (tmp_path / "result.json").write_text(json.dumps({"camera_path": [[0, 0, 1.3]] * 5,
                                                      "box_3d": {"center": [0, 0, 0], "size": [1, 1, 1]}}))
    assert [l.name for l in load_result_view(tmp_path).layers] == ["box_3d"]
