"""``scener1 lift``: a 2D box on one frame -> the 3D object (``result.json`` + ``object.ply``).

Only argparse here; numpy, Open3D, torch and sam2 are imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli_args import add_scene_arguments, open_scene_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``lift`` options (scene options included) to a (sub)parser."""
    add_scene_arguments(p)
    g = p.add_argument_group("prompt")
    g.add_argument("--frame", required=True, type=int, metavar="IDX",
                   help="key frame, as named by the scene's files (pose/17.txt -> 17)")
    g.add_argument("--box", required=True, type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                   help="object box in that frame's colour pixels (x2, y2 exclusive)")
    g = p.add_argument_group("tracking")
    g.add_argument("--tracker", choices=("geometric", "sam2"), default="geometric",
                   help="geometric (no weights; default) or sam2 (needs --sam2-checkpoint)")
    g.add_argument("--sam2-config", default="configs/sam2.1/sam2.1_hiera_t.yaml", metavar="NAME",
                   help="official SAM2 config name (default configs/sam2.1/sam2.1_hiera_t.yaml)")
    g.add_argument("--sam2-checkpoint", metavar="FILE", help="local SAM2 checkpoint (.pt) matching --sam2-config")
    g.add_argument("--sam2-image-size", type=int, metavar="N", help="SAM2 input size override (e.g. 512 on CPU)")
    g.add_argument("--device", default="auto", help="SAM2 device: auto, cpu or cuda[:N] (default auto)")
    g.add_argument("--max-frames", type=int, default=60, metavar="N",
                   help="frame budget around the key frame (default 60)")
    g.add_argument("--window", type=float, metavar="SECONDS", help="only frames within this many seconds of the key")
    g = p.add_argument_group("lifting")
    g.add_argument("--min-depth", type=float, default=0.1, metavar="M", help="ignore depth below M metres (default 0.1)")
    g.add_argument("--max-depth", type=float, default=3.0, metavar="M", help="ignore depth beyond M metres (default 3)")
    g.add_argument("--erosion", type=int, default=2, metavar="PX", help="mask erosion on the depth image (default 2)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for result.json and object.ply")


def run(args: argparse.Namespace) -> int:
    """Run ``scener1 lift``; bad input raises a one-line :class:`~scener1.errors.ScenerError`."""
    from ..errors import ConfigError
    from ..tracking import build_tracker
    from .fusion import write_ply
    from .object_lift import LiftConfig, lift

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out must be a folder, {out} is a file")
    config = LiftConfig(
        max_frames=args.max_frames,
        window_s=args.window,
        min_depth=args.min_depth,
        max_depth=args.max_depth,
        erosion_px=args.erosion,
    )
    if args.tracker == "sam2":
        if not args.sam2_checkpoint:
            raise ConfigError("--tracker sam2 needs --sam2-checkpoint FILE (no weights are downloaded)")
        tracker = build_tracker("sam2", config=args.sam2_config, checkpoint=args.sam2_checkpoint,
                                device=args.device, image_size=args.sam2_image_size)
    else:
        tracker = build_tracker("geometric")
    with open_scene_from_args(args) as scene:
        result = lift(scene, args.frame, args.box, tracker=tracker, config=config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if result.status == "ok":
        write_ply(result.cloud, out / "object.ply")
        b = result.box_3d
        print(f"lifted {result.n_points} points from {len(result.frames_used)} frames; box centre "
              f"{' '.join(f'{c:.3f}' for c in b.center)} size {' '.join(f'{s:.3f}' for s in b.size)} m "
              f"({result.coordinate_frame} frame) -> {out}")
    else:
        (out / "object.ply").unlink(missing_ok=True)  # no stale cloud from an earlier run
        print(f"no 3D object: {result.reason} -> {out / 'result.json'}")
    return 0
