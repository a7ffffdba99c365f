"""Every reader on a scene the test writes itself: frames, poses, intrinsics and timestamps read back."""

import numpy as np
import pytest
from helpers import make_frames, write_7scenes, write_posed_images, write_scannet, write_video

from scener1.data import READERS, detect_format, open_scene, write_sens
from scener1.errors import SceneError


def assert_same_frames(scene, toy, color_atol=0):
    assert len(scene) == len(toy.frames)
    for pos, want in enumerate(toy.frames):
        got = scene.frame(pos)
        np.testing.assert_allclose(got.pose, want.pose, atol=1e-6)
        np.testing.assert_array_equal(got.depth, want.depth)
        assert got.color.dtype == np.uint8 and got.color.shape == want.color.shape
        assert np.abs(got.color.astype(int) - want.color).mean() <= color_atol + 1e-9
        assert got.pose_valid


def test_scannet_exported(tmp_path):
    toy = make_frames(6, color_scale=2, first_index=0, step=10)
    root = write_scannet(tmp_path / "scan0", toy)
    assert detect_format(root) == "scannet"
    with open_scene(root) as scene:
        assert scene.format_name == "scannet"
        assert_same_frames(scene, toy)  # PNG colour: lossless
        assert scene.frame_ids.tolist() == [0, 10, 20, 30, 40, 50]
        np.testing.assert_allclose(scene.timestamps, np.arange(6) * 10 / 30)
        assert scene.color_intrinsics.size == (128, 96) and scene.depth_intrinsics.size == (64, 48)
        assert scene.color_intrinsics.fx == pytest.approx(toy.K_color.fx)
        assert scene.axis_alignment is not None and scene.axis_alignment[0, 3] == -2.0
        assert scene.position(30) == 3


def test_posed_images_with_meta_file(tmp_path):
    toy = make_frames(5, color_scale=2, step=5)
    meta = tmp_path / "elsewhere.txt"
    root = write_posed_images(tmp_path / "scene0001_00", toy, meta_path=meta)
    assert detect_format(root) == "posed_images"
    with open_scene(root, meta=meta) as scene:
        assert_same_frames(scene, toy, color_atol=10)  # JPEG colour (a channel swap would differ by ~90)
        assert scene.depth_intrinsics == toy.K_depth
        assert scene.notes == []
        assert scene.axis_alignment is not None
    with open_scene(root) as scene:  # without the meta file: rescaled colour intrinsics, and a note
        assert scene.depth_intrinsics.fx == pytest.approx(toy.K_depth.fx)
        assert scene.axis_alignment is None
        assert any("scaled from the colour camera" in n for n in scene.notes)


def test_7scenes_intrinsics_in_parent_or_folder(tmp_path):
    toy = make_frames(4, first_index=150)
    frames_dir = write_7scenes(tmp_path / "seq", toy)
    for path in (tmp_path / "seq", frames_dir):
        assert detect_format(path) == "7scenes"
        with open_scene(path) as scene:
            assert_same_frames(scene, toy)
            assert scene.frame_ids.tolist() == [150, 151, 152, 153]
            assert scene.timestamps[0] == 0.0
    frames_dir2 = write_7scenes(tmp_path / "seq2", toy, intrinsics_in_parent=False)
    with open_scene(frames_dir2) as scene:
        assert scene.depth_intrinsics.fx == pytest.approx(toy.K_depth.fx)


def test_7scenes_invalid_depth_code_is_zero(tmp_path):
    import cv2

    toy = make_frames(2)
    frames_dir = write_7scenes(tmp_path / "seq", toy)
    raw = cv2.imread(str(frames_dir / "frame-000000.depth.png"), cv2.IMREAD_UNCHANGED)
    raw[:5] = 65535  # Kinect's "no measurement"
    cv2.imwrite(str(frames_dir / "frame-000000.depth.png"), raw)
    with open_scene(frames_dir) as scene:
        depth = scene.frame(0).depth
    assert (depth[:5] == 0).all() and (depth[5:] > 0).all()


@pytest.mark.parametrize("single_pose_file", [False, True])
def test_video_with_depth_folder(tmp_path, single_pose_file):
    toy = make_frames(6, color_scale=2)
    root = write_video(tmp_path / "clip", toy, fps=10.0, single_pose_file=single_pose_file)
    assert detect_format(root) == "video"
    with open_scene(root) as scene:
        assert scene.format_name == "video"
        assert scene.fps == pytest.approx(10.0)
        np.testing.assert_allclose(scene.timestamps, np.arange(6) / 10.0, atol=1e-3)
        assert_same_frames(scene, toy, color_atol=10)  # MJPG colour
        assert scene.depth_intrinsics == toy.K_depth
        streamed = list(scene.frames([5, 0, 3]))  # batched decoding, any order
        assert [f.index for f in streamed] == [5, 0, 3]
        for f in streamed:
            np.testing.assert_array_equal(f.color, scene.frame(f.index).color)
    with open_scene(root / "color.avi") as scene:  # the video file itself also opens
        assert len(scene) == 6



def test_video_with_a_corrupt_first_depth_map(tmp_path):
    toy = make_frames(4, color_scale=2)
    root = write_video(tmp_path / "clip", toy, fps=10.0)
    (root / "depth" / "0.png").write_bytes(b"truncated")
    with open_scene(root) as scene:  # sized from the next depth map; frame 0 is one unreadable frame
        assert scene.depth_intrinsics == toy.K_depth
        assert any("depth image size taken from 1.png" in n for n in scene.notes)
        assert scene.frame_or_none(0) is None and scene.frame_or_none(1) is not None


def test_sens_round_trip(tmp_path):
    toy = make_frames(5, color_scale=2)
    toy.frames[2] = type(toy.frames[2])(**{**toy.frames[2].__dict__, "pose": np.full((4, 4), -np.inf)})
    path = tmp_path / "scan.sens"
    write_sens(path, toy.frames, color_format="png")
    assert detect_format(path) == "sens"
    with open_scene(path) as scene:
        assert len(scene) == 5
        assert scene.valid_poses.tolist() == [True, True, False, True, True]
        assert scene.summary()["invalid_poses"] == 1
        for pos in (0, 4, 1):  # random access after the indexing pass
            got, want = scene.frame(pos), toy.frames[pos]
            np.testing.assert_array_equal(got.depth, want.depth)
            np.testing.assert_array_equal(got.color, want.color)
            np.testing.assert_array_equal(got.pose, want.pose.astype(np.float32))
        assert scene.frame(2).pose_valid is False
        np.testing.assert_allclose(scene.timestamps, np.arange(5) / 30.0, atol=1e-5)
        assert scene.fps == pytest.approx(30.0, rel=1e-3)


def test_colour_or_depth_alone_is_the_frames_and_checked_like_it(tmp_path):
    import cv2

    toy = make_frames(4)
    scan = write_scannet(tmp_path / "scan", toy)
    with open_scene(scan) as scene:
        depths, colors = list(scene.depths([3, 1])), list(scene.colors([3, 1]))
        assert [p for p, _ in depths] == [p for p, _ in colors] == [3, 1]
        for (position, depth), (_, color) in zip(depths, colors):
            frame = scene.frame(position)
            np.testing.assert_array_equal(depth, frame.depth)
            np.testing.assert_array_equal(color, frame.color)
        for read in (scene.depth, scene.color):
            with pytest.raises(SceneError, match="out of range"):
                read(4)
    cv2.imwrite(str(scan / "depth" / "2.png"), np.zeros((10, 10), np.uint16))
    cv2.imwrite(str(scan / "color" / "1.png"), np.zeros((12, 10, 3), np.uint8))
    with open_scene(scan) as scene:
        with pytest.raises(SceneError, match="depth is 10x10, intrinsics say 64x48"):
            scene.depth(2)
        with pytest.raises(SceneError, match="colour is 10x12, intrinsics say"):
            scene.color(1)
        assert scene.color(2).shape[:2] == (scene.color_intrinsics.height, scene.color_intrinsics.width)


def test_format_override_and_readers_registry(tmp_path):
    toy = make_frames(3)
    root = write_scannet(tmp_path / "scan", toy)
    assert set(READERS) == {"sens", "video", "scannet", "7scenes", "posed_images"}
    with pytest.raises(SceneError, match="no colour frames|intrinsics|no .* frames"):
        open_scene(root, format="7scenes")
    with pytest.raises(SceneError, match="unknown scene format"):
        open_scene(root, format="nope")


def test_nan_pose_marks_frame_invalid_not_an_error(tmp_path):
    toy = make_frames(4)
    root = write_scannet(tmp_path / "scan", toy)
    (root / "pose" / "1.txt").write_text("\n".join(["-inf -inf -inf -inf"] * 4))
    (root / "pose" / "2.txt").write_text("nan " * 16)
    with open_scene(root) as scene:
        assert scene.valid_poses.tolist() == [True, False, False, True]
        assert scene.summary()["invalid_poses"] == 2
        assert not scene.frame(1).pose_valid
