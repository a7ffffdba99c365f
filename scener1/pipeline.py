"""The grounding pipeline: temporal -> image -> tracking -> lifting, composed from a config.

>>> from scener1.pipeline import Pipeline
>>> from scener1.data import open_scene
>>> pipe = Pipeline.from_config("default", ["tracker.name=geometric"])
>>> with open_scene("scans/scene0000_00") as scene:
...     result = pipe.ground(scene, "the brown chair to the right of the table")
>>> result.to_json()["box_3d"]

No stage knows about another: the pipeline hands the temporal stage's frames to the image stage and its
box to :func:`scener1.lifting.lift`. Each stage's fallbacks are kept, so a result always says honestly
how it was reached (``status`` and ``notes``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, ScenerError

if TYPE_CHECKING:
    from .data.scene import Scene
    from .grounding import ImageResult
    from .lifting.object_lift import LiftConfig, LiftResult
    from .models import VLM
    from .temporal import TemporalResult
    from .tracking.base import Tracker

#: What ``GroundingResult.status`` can be.
STATUSES = ("ok", "fallback", "no_points", "error")


@dataclass(frozen=True)
class ModelSettings:
    path: str = "assets/models/scene-r1-tiny"
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "auto"
    prompt_version: str | None = None
    batch_size: int = 8
    trust_remote_code: bool = False


@dataclass(frozen=True)
class OutputSettings:
    scene_cloud: bool = True
    scene_cloud_voxel: float = 0.03


@dataclass(frozen=True, eq=False)
class GroundingResult:
    """One query's answer: the span, the frame and 2D box, the 3D object, and how each was reached.

    ``status`` is ``ok`` (no stage fell back), ``fallback`` (a stage could not use the model's answer and
    took its documented fallback; ``notes`` say which), ``no_points`` (no 3D points for the box) or
    ``error`` (a stage rejected its input; ``notes`` hold the reason).
    """

    query: str
    status: str
    notes: tuple[str, ...]
    temporal: "TemporalResult | None"
    image: "ImageResult | None"
    lifted: "LiftResult | None"
    seconds: dict[str, float]
    camera_path: np.ndarray  # (N, 3) camera centres in the result's coordinate frame

    def to_json(self) -> dict[str, Any]:
        from .trace import to_jsonable

        t, im, lf = self.temporal, self.image, self.lifted
        out = {
            "query": self.query,
            "status": self.status,
            "notes": list(self.notes),
            "window": None if t is None else [round(float(t.span[0]), 3), round(float(t.span[1]), 3)],
            # "heads": the model's cell heads placed the window (its own answer is in think and the trace)
            "window_source": None if t is None else t.span_source,
            "frame": None if im is None else int(im.frame_index),
            "box_2d": None if im is None else [round(float(v), 1) for v in im.box],
            "label": None if im is None else im.label,
            # the cell heads' score of the chosen box (None: not checked)
            "box_check": next((c.verify for c in im.candidates if c.chosen), None) if im is not None else None,
            "think": {"temporal": None if t is None else t.think, "image": None if im is None else im.think},
            "coordinate_frame": None if lf is None else lf.coordinate_frame,
            "box_3d": None if lf is None or lf.box_3d is None else lf.box_3d.to_dict(),
            "obb": None if lf is None or lf.obb is None else lf.obb.to_dict(),
            "n_points": 0 if lf is None else lf.n_points,
            "frames_used": [] if lf is None else list(lf.frames_used),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "camera_path": np.round(self.camera_path, 3),
            "trace": {
                "temporal": None if t is None else t.trace.to_dict(),
                "image": None if im is None else im.trace.to_dict(),
                "lifting": None if lf is None else lf.trace,
            },
        }
        return to_jsonable(out)


class Pipeline:
    """Holds the loaded model and tracker; grounds queries on scenes."""

    def __init__(
        self,
        vlm: "VLM",
        tracker: "Tracker",
        temporal=None,
        image=None,
        lifting: "LiftConfig | None" = None,
        output: OutputSettings | None = None,
        config: dict[str, Any] | None = None,
    ):
        from .grounding import ImageGrounder
        from .lifting.object_lift import LiftConfig
        from .models.cell_verifier import CellVerifier
        from .temporal import TemporalGrounder

        self.vlm = vlm
        self.tracker = tracker
        verifier = CellVerifier.for_model(vlm)  # read once; each stage uses it as its settings say
        self.temporal = TemporalGrounder(vlm, temporal, verifier)
        self.image = ImageGrounder(vlm, image, verifier)
        self.lift_config = lifting or LiftConfig()
        self.output = output or OutputSettings()
        self.config = config or {}

    @classmethod
    def from_config(cls, config: str | Path | None = None, overrides: Sequence[str] = ()) -> "Pipeline":
        """Build every stage from ``configs/default.yaml`` + ``config`` + ``key=value`` overrides."""
        from .config import build_settings, load_config, to_plain
        from .grounding import ImageSettings
        from .lifting.object_lift import LiftConfig
        from .models import load_vlm
        from .temporal import TemporalSettings

        plain = to_plain(load_config(config, overrides))
        model = build_settings(ModelSettings, plain["model"], "model")
        settings = {
            "temporal": build_settings(TemporalSettings, plain["temporal"], "temporal"),
            "image": build_settings(ImageSettings, plain["image"], "image"),
            "lifting": build_settings(LiftConfig, plain["lifting"], "lifting"),
            "output": build_settings(OutputSettings, plain["output"], "output"),
        }
        tracker = build_tracker_from_config(plain["tracker"])
        vlm = load_vlm(
            resolve_model_path(model.path),
            device=model.device,
            dtype=model.dtype,
            attn_implementation=model.attn_implementation,
            trust_remote_code=model.trust_remote_code,
            prompt_version=model.prompt_version,
            batch_size=model.batch_size,
        )
        return cls(vlm, tracker, config=plain, **settings)

    def ground(self, scene: "Scene", query: str) -> GroundingResult:
        return self.ground_many(scene, [query])[0]

    def ground_many(self, scene: "Scene", queries: Sequence[str], progress: bool = False) -> list[GroundingResult]:
        """Ground several queries on one scene: frames are decoded and the model is called in batches."""
        from .lifting import lift

        if not queries:
            return []
        t0 = time.perf_counter()
        spans = self.temporal.ground_many(scene, queries)
        t1 = time.perf_counter()
        boxes = self.image.ground_many(scene, [(q, t.positions) for q, t in zip(queries, spans)])
        t2 = time.perf_counter()
        per_query_model = {"temporal": (t1 - t0) / len(queries), "image": (t2 - t1) / len(queries)}
        path = camera_path(scene)
        results = []
        items = zip(queries, spans, boxes)
        if progress:
            from tqdm import tqdm

            items = tqdm(list(items), desc="lifting", unit="query")
        for query, span, box in items:
            notes = [f"temporal: {span.fallback_reason}"] if span.fallback_reason else []
            if box.fallback_reason:
                notes.append(f"image: {box.fallback_reason}")
            t_lift = time.perf_counter()
            try:
                lifted = lift(scene, box.frame_index, box.box, tracker=self.tracker, config=self.lift_config)
            except ScenerError as exc:
                lifted, status = None, "error"
                notes.append(f"lifting: {exc}")
            else:
                if scene.unreadable:  # passed over by the image stage or the tracker (Scene.frame_or_none)
                    notes.append(f"scene: {len(scene.unreadable)} unreadable frame(s) passed over, first at position "
                                 f"{min(scene.unreadable)}: {scene.first_unreadable()}")
                if lifted.status != "ok":
                    status = lifted.status
                    notes.append(f"lifting: {lifted.reason}")
                else:
                    status = "fallback" if notes else "ok"
            seconds = {**per_query_model, "lifting": time.perf_counter() - t_lift}
            seconds["total"] = sum(seconds.values())
            results.append(GroundingResult(query, status, tuple(notes), span, box, lifted, seconds, path))
        return results


def resolve_model_path(path: str) -> str:
    """A relative model path is looked up from the working directory, then from the repository root
    (where the embedded model lives); anything else (a repo id in the HF cache) is passed on."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return str(p)
    from .config import CONFIG_DIR

    in_repo = CONFIG_DIR.parent / p
    return str(in_repo) if in_repo.exists() else path


def build_tracker_from_config(section: dict[str, Any]) -> "Tracker":
    """The tracker named by a config's ``tracker`` section."""
    from .config import build_settings
    from .tracking import TRACKERS, build_tracker

    name = section.get("name", "geometric")
    if name == "geometric":
        from .tracking.geometric import GeometricConfig

        return build_tracker("geometric", config=build_settings(GeometricConfig, section.get("geometric"), "tracker.geometric"))
    if name == "sam2":
        opts = dict(section.get("sam2") or {})
        if not opts.get("checkpoint"):
            raise ConfigError("tracker.name=sam2 needs tracker.sam2.checkpoint=FILE (a local SAM2 checkpoint)")
        return build_tracker("sam2", **opts)
    raise ConfigError(f"unknown tracker '{name}'; choose from {', '.join(TRACKERS)}")


def camera_path(scene: "Scene") -> np.ndarray:
    """Camera centres of the frames with valid poses, in the axis-aligned frame when the scene has one."""
    centres = scene.poses[scene.valid_poses][:, :3, 3]
    if scene.axis_alignment is not None:
        A = scene.axis_alignment
        centres = centres @ A[:3, :3].T + A[:3, 3]
    return centres


def write_result(result: GroundingResult, scene: "Scene", out_dir: str | Path) -> Path:
    """Write ``result.json``, ``overlay.png`` (chosen frame, box and mask) and ``object.ply`` to ``out_dir``."""
    import json

    from .lifting import write_ply
    from .viz.overlay import draw_overlay, save_rgb

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ScenerError(f"--out must be a folder, {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.to_json(), indent=2))
    if result.image is not None:
        frame = scene.frame(result.image.position)
        mask = None if result.lifted is None else result.lifted.key_mask
        save_rgb(out / "overlay.png", draw_overlay(frame.color, result.image.box, mask, result.image.label))
    if result.lifted is not None and result.lifted.n_points:
        write_ply(result.lifted.cloud, out / "object.ply")
    return out


def write_scene_cloud(scene: "Scene", out_dir: str | Path, voxel: float = 0.03, max_frames: int = 200) -> Path:
    """Fuse the scene (in the results' coordinate frame) to ``scene.ply`` for the viewer."""
    from .data.sampling import sample_frames
    from .lifting import fuse_frames, write_ply

    positions = sample_frames(scene.timestamps, scene.valid_poses, max_frames=max_frames)
    cloud = fuse_frames(scene.frames(positions, skip_unreadable=True), voxel_size=voxel)
    if scene.axis_alignment is not None:
        cloud = cloud.transformed(scene.axis_alignment)
    return write_ply(cloud, Path(out_dir) / "scene.ply")
