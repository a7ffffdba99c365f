"""The ``scener1`` command line: argument parsing only; the work is done by the library.

Heavy modules (numpy, OpenCV, Open3D, torch) are imported inside the command functions so that
``scener1 --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__
from .errors import ScenerError

FORMATS = ("sens", "video", "scannet", "7scenes", "posed_images")  # keep in step with scener1.data.READERS


def _scene_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scene")
    g.add_argument("--scene", required=True, metavar="PATH", help="scene folder, .sens file or video file")
    g.add_argument("--format", choices=FORMATS, help="scene layout (detected when omitted)")
    g.add_argument("--meta", metavar="FILE", help="ScanNet sceneXXXX_XX.txt (depth intrinsics, axisAlignment)")
    g.add_argument("--fps", type=float, metavar="R", help="capture rate for sources without timestamps (default 30)")
    g.add_argument("--depth-scale", type=float, metavar="S", help="raw depth units per metre (default 1000)")


def _open(args: argparse.Namespace):
    from .data import open_scene

    return open_scene(args.scene, args.format, fps=args.fps, depth_scale=args.depth_scale, meta=args.meta)


def cmd_info(args: argparse.Namespace) -> int:
    with _open(args) as scene:
        info = scene.summary()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    ci, di = info["color_intrinsics"], info["depth_intrinsics"]
    rows = [
        ("path", info["path"]),
        ("format", info["format"]),
        ("frames", f"{info['frames']} (named {info['first_frame']}..{info['last_frame']})"),
        ("valid poses", f"{info['valid_poses']} of {info['frames']}"
         + (f"  ({info['invalid_poses']} NaN/inf, skipped)" if info["invalid_poses"] else "")),
        ("fps", f"{info['fps']:g}"),
        ("duration", f"{info['duration_s']:.2f} s"),
        ("colour", f"{ci['width']}x{ci['height']}  fx={ci['fx']:.2f} fy={ci['fy']:.2f} cx={ci['cx']:.2f} cy={ci['cy']:.2f}"),
        ("depth", f"{di['width']}x{di['height']}  fx={di['fx']:.2f} fy={di['fy']:.2f} cx={di['cx']:.2f} cy={di['cy']:.2f}"),
        ("alignment", "axis-alignment matrix known" if info["axis_alignment"] else "none (raw frame)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for note in info["notes"]:
        print(f"{'note':<{width}}  {note}")
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from .data.sampling import sample_frames
    from .errors import ConfigError
    from .lifting import fuse_frames, write_ply

    if args.voxel < 0:
        raise ConfigError(f"--voxel must be >= 0, got {args.voxel}")
    if not 0 <= args.min_depth < args.max_depth:
        raise ConfigError("--min-depth must be >= 0 and below --max-depth")
    with _open(args) as scene:
        if args.aligned and scene.axis_alignment is None:
            raise ConfigError(f"--aligned: {scene.path} has no axis alignment (pass --meta sceneXXXX_XX.txt)")
        positions = sample_frames(scene.timestamps, scene.valid_poses, stride=args.stride, max_frames=args.max_frames)
        skipped = int((~scene.valid_poses).sum())
        if len(positions) == 0:
            raise ScenerError(f"{scene.path}: no frame has a valid pose; nothing to fuse")
        cloud = fuse_frames(
            scene.frames(positions, progress=None if args.quiet else "fusing"),
            voxel_size=args.voxel,
            min_depth=args.min_depth,
            max_depth=args.max_depth,
        )
        if args.aligned:
            cloud = cloud.transformed(scene.axis_alignment)
    if len(cloud) == 0:
        raise ScenerError("the fused cloud is empty: no valid depth in the chosen frames")
    write_ply(cloud, args.out)
    frame = "axis-aligned" if args.aligned else "raw scene"
    print(f"fused {len(positions)} frames ({skipped} with invalid poses skipped) into {len(cloud)} points "
          f"({frame} frame) -> {args.out}")
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    from .viz import load_result_view, render_png, show

    view = load_result_view(args.result)
    if args.png:
        render_png(view, args.png, width=args.width, height=args.height)
        print(f"rendered {args.result} -> {args.png}")
    else:
        show(view, title=f"scener1: {args.result}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scener1",
        description="Ground language in 3D scenes from RGB-D video (Scene-R1 style).",
    )
    parser.add_argument("--version", action="version", version=f"scener1 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="describe a scene: format, frames, resolutions, fps, poses, alignment")
    _scene_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fuse", help="fuse a scene's posed depth frames into a coloured point cloud (.ply)")
    _scene_args(p)
    p.add_argument("--out", required=True, metavar="FILE", help="output point cloud (.ply)")
    p.add_argument("--stride", type=int, default=1, metavar="N", help="use every N-th frame (default 1)")
    p.add_argument("--max-frames", type=int, metavar="N", help="use at most N frames, evenly spread")
    p.add_argument("--voxel", type=float, default=0.02, metavar="METRES",
                   help="voxel size for down-sampling, 0 keeps every point (default 0.02)")
    p.add_argument("--min-depth", type=float, default=0.1, metavar="M", help="ignore depth below M metres (default 0.1)")
    p.add_argument("--max-depth", type=float, default=3.0, metavar="M",
                   help="ignore depth beyond M metres (default 3: consumer depth sensors err by centimetres beyond)")
    p.add_argument("--aligned", action="store_true", help="write the cloud in the scene's axis-aligned frame")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("viz", help="show a result folder in 3D (scene cloud, object, boxes, camera path)")
    p.add_argument("result", metavar="DIR", help="a result folder (result.json, object.ply, scene.ply)")
    p.add_argument("--png", metavar="FILE", help="render offscreen to FILE instead of opening a window")
    p.add_argument("--width", type=int, default=960, help="render width in pixels (default 960)")
    p.add_argument("--height", type=int, default=720, help="render height in pixels (default 720)")
    p.set_defaults(func=cmd_viz)

    from .lifting import cli as lift_cli  # standard library only until run()

    p = sub.add_parser("lift", help="turn a 2D box on one frame into a 3D object (tracking + lifting)")
    lift_cli.add_arguments(p)
    p.set_defaults(func=lift_cli.run)

    from .eval import cli as eval_cli  # standard library only until run()

    p = sub.add_parser("eval", help="score or run a 3D grounding / QA benchmark (ScanRefer, Nr3D, VSI-Bench ...)")
    eval_cli.add_arguments(p)
    p.set_defaults(func=eval_cli.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ScenerError as exc:
        print(f"scener1: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scener1: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
