"""SAM2 video tracking of a box prompt, with masks of a lost object dropped by simple checks.

The requested frames (a short window, not the whole video) are written as ``0.jpg .. N-1.jpg`` to a
temporary folder, which is what ``SAM2VideoPredictor.init_state`` reads; the box goes on the key frame;
propagation runs forwards and then backwards from it. A mask is dropped when its area is implausible
(a lost object often comes back as a whole-image mask), when on the key frame it disagrees with the
prompt box, or when it disagrees with where the key-frame object's 3D points project (depth + poses).
"""

from __future__ import annotations

import tempfile
import time
from contextlib import nullcontext
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.camera import back_project, color_mask_to_depth, in_image, project, visible
from ..errors import ConfigError
from .base import FrameMask, TrackResult, box_mask, check_box, check_positions

if TYPE_CHECKING:
    from ..data.scene import Scene
    from ..types import Frame

DEFAULT_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def _sam2_config_path(name: str) -> Path:
    """The packaged config file of an official config name such as ``configs/sam2.1/sam2.1_hiera_t.yaml``."""
    import sam2  # lazy; initialises Hydra's global config search path

    root = Path(sam2.__file__).resolve().parent
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise ConfigError(f"SAM2 config must be an official config name inside the sam2 package, got {name}")
    path = (root / rel).resolve()
    if root not in path.parents or not path.is_file():
        known = sorted(str(p.relative_to(root)) for p in (root / "configs").rglob("*.yaml"))
        raise ConfigError(f"unknown SAM2 config '{name}'; official configs: {', '.join(known)}")
    return path


def _ensure_hydra() -> None:
    """SAM2 composes its configs through Hydra's global state, which ``import sam2`` sets up; put it back if
    something cleared it."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        initialize_config_module("sam2", version_base="1.2")


def box_agreement(mask: np.ndarray, box: Sequence[int]) -> float:
    """IoU between a mask's bounding box and a pixel box (x2/y2 exclusive); 0 for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return 0.0
    cols = np.flatnonzero(mask.any(axis=0))
    a = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    ix = max(0, min(a[2], box[2]) - max(a[0], box[0]))
    iy = max(0, min(a[3], box[3]) - max(a[1], box[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return inter / union if union > 0 else 0.0


def geometric_agreement(mask: np.ndarray, frame: "Frame", points: np.ndarray, dilate_px: int = 4) -> tuple[float, int, int]:
    """How well a colour-resolution mask agrees with world ``points`` of the object.

    Returns (share of the points visible in the frame that fall on the dilated mask, points in view,
    points visible). Visibility is the depth-consistency test of :func:`scener1.data.camera.visible`.
    """
    import cv2  # lazy

    ci = frame.color_intrinsics
    if len(points) == 0 or not frame.pose_valid:
        return 0.0, 0, 0
    uv_d, z = project(points, frame.depth_intrinsics, frame.pose)
    in_view = int(((z > 0) & in_image(uv_d, frame.depth_intrinsics.width, frame.depth_intrinsics.height)).sum())
    seen = visible(points, frame.depth, frame.depth_intrinsics, frame.pose)
    if not seen.any():
        return 0.0, in_view, 0
    uv, _ = project(points[seen], ci, frame.pose)
    ok = in_image(uv, ci.width, ci.height)
    cols = np.rint(uv[ok, 0]).astype(np.int64)
    rows = np.rint(uv[ok, 1]).astype(np.int64)
    grown = mask.astype(np.uint8)
    if dilate_px > 0:
        grown = cv2.dilate(grown, np.ones((2 * dilate_px + 1, 2 * dilate_px + 1), np.uint8))
    hit = grown[rows, cols].astype(bool)
    return float(hit.mean()) if len(hit) else 0.0, in_view, int(seen.sum())


class SAM2Tracker:
    """Holds one SAM2 video predictor; ``track`` runs one box query on a window of frames.

    ``config``: official SAM2 config name; ``checkpoint``: local ``.pt`` file (``None`` = random weights,
    for tests); ``image_size``: model input size override (512 or 256 make CPU runs practical and change no
    weight shapes); ``max_frames``: frame budget per query (the rest get empty masks); ``offload_video`` /
    ``offload_state``: keep frames / memory on the CPU for long videos on a GPU.
    """

    name = "sam2"

    def __init__(
        self,
        config: str = DEFAULT_CONFIG,
        checkpoint: str | Path | None = None,
        device: str = "auto",
        image_size: int | None = None,
        max_frames: int | None = None,
        offload_video: bool = False,
        offload_state: bool = False,
        min_area_px: int = 20,
        max_area_share: float = 0.8,
        min_box_iou: float = 0.3,
        min_geometry_agreement: float = 0.2,
        min_visible_points: int = 30,
        jpeg_quality: int = 95,
    ):
        self.config_name = config
        _sam2_config_path(config)  # fail early, with the list of valid names
        self.checkpoint = None if checkpoint is None else Path(checkpoint).expanduser()
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise ConfigError(f"SAM2 checkpoint not found: {self.checkpoint}")
        if image_size is not None and (image_size < 64 or image_size % 16):
            raise ConfigError(f"SAM2 image_size must be a multiple of 16 and >= 64, got {image_size}")
        if max_frames is not None and max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1, got {max_frames}")
        self.device = self._resolve_device(device)
        self.image_size = image_size
        self.max_frames = max_frames
        self.offload_video = offload_video
        self.offload_state = offload_state
        self.min_area_px = min_area_px
        self.max_area_share = max_area_share
        self.min_box_iou = min_box_iou
        self.min_geometry_agreement = min_geometry_agreement
        self.min_visible_points = min_visible_points
        self.jpeg_quality = jpeg_quality
        self._predictor = None

    @staticmethod
    def _resolve_device(device: str) -> str:
        import torch  # lazy

        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device '{device}' requested but CUDA is not available")
        if device != "cpu" and not device.startswith("cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda[:N], got '{device}'")
        return device

    @property
    def predictor(self):
        """The SAM2 video predictor, built on first use."""
        if self._predictor is None:
            self._predictor = self._build()
        return self._predictor

    def _build(self):
        from sam2.build_sam import build_sam2_video_predictor  # lazy: about 1 s

        _ensure_hydra()
        # the builder's own post-processing settings, less hole filling (it needs the optional CUDA
        # extension and warns without it)
        overrides = [
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
            "++model.binarize_mask_from_pts_for_mem_enc=true",
            "++model.fill_hole_area=0",
        ]
        if self.image_size is not None:
            overrides.append(f"++model.image_size={int(self.image_size)}")
        try:
            # the official loader reads the checkpoint with torch.load(weights_only=True)
            return build_sam2_video_predictor(
                self.config_name,
                ckpt_path=None if self.checkpoint is None else str(self.checkpoint),
                device=self.device,
                hydra_overrides_extra=overrides,
                apply_postprocessing=False,
            )
        except Exception as exc:  # torch.load / load_state_dict fail in many ways on a wrong or corrupt file
            if isinstance(exc, ConfigError):
                raise
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "missing or unexpected weights"
            raise ConfigError(
                f"cannot load SAM2 checkpoint {self.checkpoint} with config {self.config_name}: {detail[:200]}"
            ) from None

    # ------------------------------------------------------------------ tracking
    def track(self, scene: "Scene", positions: Sequence[int], key_position: int, box: Sequence[float]) -> TrackResult:
        import torch  # lazy

        start = time.perf_counter()
        positions = check_positions(scene, positions, key_position)
        ci = scene.color_intrinsics
        cbox = check_box(box, ci.width, ci.height)
        window = self._window(positions, key_position)
        key_idx = window.index(key_position)
        logits: dict[int, np.ndarray] = {}
        order: dict[str, list[int]] = {"forward": [], "backward": []}
        predictor = self.predictor
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.startswith("cuda") else nullcontext()
        with tempfile.TemporaryDirectory(prefix="scener1-sam2-") as tmp:
            self._write_window(scene, window, Path(tmp))
            with autocast:
                state = predictor.init_state(
                    tmp, offload_video_to_cpu=self.offload_video, offload_state_to_cpu=self.offload_state
                )
                try:
                    predictor.add_new_points_or_box(state, frame_idx=key_idx, obj_id=1, box=np.asarray(cbox, np.float32))
                    for reverse in (False, True):
                        for idx, _ids, out in predictor.propagate_in_video(
                            state, start_frame_idx=key_idx, max_frame_num_to_track=len(window), reverse=reverse
                        ):
                            logits[int(idx)] = out[0, 0].float().cpu().numpy()
                            order["backward" if reverse else "forward"].append(window[int(idx)])
                finally:
                    predictor.reset_state(state)  # nothing of this query leaks into the next
                    del state
        masks, info = self._filter(scene, positions, window, key_position, cbox, logits)
        info.update(window_frames=len(window), propagated=order)
        return TrackResult(key_position, cbox, masks, self.name, time.perf_counter() - start, info)

    def _window(self, positions: list[int], key_position: int) -> list[int]:
        """The frames SAM2 sees: all requested ones, or ``max_frames`` evenly spread, always with the key."""
        if self.max_frames is None or len(positions) <= self.max_frames:
            return list(positions)
        pick = np.unique(np.rint(np.linspace(0, len(positions) - 1, self.max_frames)).astype(int))
        chosen = {positions[i] for i in pick}
        if key_position not in chosen:
            chosen.remove(min(chosen, key=lambda p: abs(p - key_position)))
            chosen.add(key_position)
        return sorted(chosen)

    def _write_window(self, scene: "Scene", window: list[int], folder: Path) -> None:
        import cv2  # lazy

        for i, p in enumerate(window):
            rgb = scene.color(p)
            ok = cv2.imwrite(str(folder / f"{i}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise ConfigError(f"cannot write temporary frame to {folder}")

    def _filter(self, scene, positions, window, key_position, cbox, logits) -> tuple[tuple[FrameMask, ...], dict[str, Any]]:
        ci = scene.color_intrinsics
        image_px = ci.width * ci.height
        key_frame = scene.frame(key_position)
        out: dict[int, FrameMask] = {}
        dropped: dict[str, int] = {}

        def empty(p: int, why: str) -> FrameMask:
            dropped[why] = dropped.get(why, 0) + 1
            return FrameMask.from_dense(p, int(scene.frame_ids[p]), np.zeros((ci.height, ci.width), bool), 0.0, why)

        def score_of(lg: np.ndarray, m: np.ndarray) -> float:
            if not m.any():
                return 0.0
            return float(np.mean(1.0 / (1.0 + np.exp(-np.clip(lg[m], -30, 30)))))

        # key frame first: it is checked against the prompt box and gives the object's 3D points
        key_idx = window.index(key_position)
        key_logits = logits.get(key_idx)
        key_mask = None if key_logits is None else key_logits > 0
        key_points = np.empty((0, 3))
        if key_mask is None or key_mask.sum() < max(self.min_area_px, 1):
            out[key_position] = empty(key_position, "no mask on the key frame")
        elif box_agreement(key_mask, cbox) < self.min_box_iou:
            out[key_position] = empty(key_position, "key-frame mask disagrees with the prompt box")
        else:
            # the object lies in the prompt box on the key frame: cut what leaks out of it
            key_mask &= box_mask(cbox, ci.width, ci.height)
            out[key_position] = FrameMask.from_dense(key_position, key_frame.index, key_mask, score_of(key_logits, key_mask))
            if key_frame.pose_valid:
                dmask = color_mask_to_depth(key_mask, ci, key_frame.depth_intrinsics)
                key_points = back_project(key_frame.depth, key_frame.depth_intrinsics, key_frame.pose, mask=dmask,
                                          min_depth=0.1, max_depth=6.0)
                if len(key_points) > 4000:
                    key_points = key_points[np.random.default_rng(0).choice(len(key_points), 4000, replace=False)]
        key_ok = not out[key_position].empty
        for i, p in enumerate(window):
            if p == key_position:
                continue
            lg = logits.get(i)
            if not key_ok:
                out[p] = empty(p, "key-frame mask rejected")
                continue
            if lg is None:
                out[p] = empty(p, "not reached by propagation")
                continue
            m = lg > 0
            area = int(m.sum())
            if area < self.min_area_px:
                out[p] = empty(p, "object lost (mask too small)")
                continue
            if area > self.max_area_share * image_px:
                out[p] = empty(p, "object lost (mask covers the image)")
                continue
            if len(key_points):
                frame = scene.frame(p)
                agree, in_view, n_seen = geometric_agreement(m, frame, key_points)
                if in_view == 0:
                    out[p] = empty(p, "object out of view by the camera pose")
                    continue
                if n_seen >= self.min_visible_points and agree < self.min_geometry_agreement:
                    out[p] = empty(p, "mask disagrees with the object's geometry")
                    continue
            out[p] = FrameMask.from_dense(p, int(scene.frame_ids[p]), m, score_of(lg, m))
        for p in positions:
            if p not in out:
                out[p] = empty(p, "over the frame budget")
        return tuple(out[p] for p in positions), {"dropped": dropped}
