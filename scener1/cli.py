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
from .cli_args import add_scene_arguments, open_scene_from_args, run_command
from .errors import ScenerError

def cmd_info(args: argparse.Namespace) -> int:
    with open_scene_from_args(args) as scene:
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
    with open_scene_from_args(args) as scene:
        if args.aligned and scene.axis_alignment is None:
            raise ConfigError(f"--aligned: {scene.path} has no axis alignment (pass the scan's meta file with --meta, e.g. scene0113_00.txt)")
        positions = sample_frames(scene.timestamps, scene.valid_poses, stride=args.stride, max_frames=args.max_frames)
        skipped = int((~scene.valid_poses).sum())
        if len(positions) == 0:
            raise ScenerError(f"{scene.path}: no frame has a valid pose; nothing to fuse")
        cloud = fuse_frames(
            scene.frames(positions, progress=None if args.quiet else "fusing", skip_unreadable=True),
            voxel_size=args.voxel,
            min_depth=args.min_depth,
            max_depth=args.max_depth,
        )
        if args.aligned:
            cloud = cloud.transformed(scene.axis_alignment)
    bad = len(scene.unreadable)  # frames passed over (corrupt, missing, wrong size)
    if bad == len(positions):
        raise ScenerError(f"none of the {len(positions)} chosen frames can be read (first: {scene.first_unreadable()})")
    if len(cloud) == 0:
        raise ScenerError("the fused cloud is empty: no valid depth in the chosen frames")
    write_ply(cloud, args.out)
    frame = "axis-aligned" if args.aligned else "raw scene"
    unreadable = f" and {bad} unreadable" if bad else ""
    print(f"fused {len(positions) - bad} frames ({skipped} with invalid poses{unreadable} skipped) into "
          f"{len(cloud)} points ({frame} frame) -> {args.out}")
    if bad:
        print(f"skipped: {scene.first_unreadable()}" + (f" (and {bad - 1} more)" if bad > 1 else ""))
    return 0


def _read_queries(path: str) -> list[str]:
    from pathlib import Path

    from .errors import ConfigError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"queries file does not exist: {p}")
    text = p.read_text()
    if p.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p} is not valid JSON: {exc}") from None
        if not isinstance(items, list):
            raise ConfigError(f"{p} must hold a JSON list of strings or of objects with a 'query'")
        queries = [it.get("query") if isinstance(it, dict) else it for it in items]
        if not all(isinstance(q, str) and q.strip() for q in queries):
            raise ConfigError(f"{p}: every entry must be a non-empty string or have a 'query' string")
    else:
        queries = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not queries:
        raise ConfigError(f"{p} holds no queries")
    return queries


def _print_result(res: dict) -> None:
    def short(text, n=160):
        text = " ".join((text or "").split())
        return text if len(text) <= n else text[: n - 1] + "…"

    print(f"query    {res['query']}")
    print(f"status   {res['status']}" + "".join(f"\n  note   {n}" for n in res["notes"]))
    if res["window"]:
        source = "   (where the cell heads see it; the model's own answer:)" if res.get("window_source") == "heads" else ""
        print(f"when     {res['window'][0]:.1f}s to {res['window'][1]:.1f}s{source}   "
              f"think: {short(res['think']['temporal'])}")
    if res["box_2d"]:
        check = f"   cell heads p={res['box_check']:.2f}" if res.get("box_check") is not None else ""
        print(f"where    frame {res['frame']} box {res['box_2d']} label {res['label']!r}{check}   "
              f"think: {short(res['think']['image'])}")
    if res["box_3d"]:
        c, z = res["box_3d"]["center"], res["box_3d"]["size"]
        print(f"3D       centre ({c[0]:.2f}, {c[1]:.2f}, {c[2]:.2f}) m  size ({z[0]:.2f}, {z[1]:.2f}, {z[2]:.2f}) m  "
              f"[{res['coordinate_frame']}] from {res['n_points']} points on {len(res['frames_used'])} frames")
    print("seconds  " + "  ".join(f"{k} {v:.2f}" for k, v in res["seconds"].items()))


def cmd_ground(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import ConfigError
    from .pipeline import Pipeline, write_result, write_scene_cloud

    if bool(args.query) == bool(args.queries):
        raise ConfigError("give exactly one of --query TEXT or --queries FILE")
    queries = [args.query] if args.query else _read_queries(args.queries)
    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"model.path={args.model}")
    if args.tracker:
        overrides.append(f"tracker.name={args.tracker}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out must be a folder, {out} is a file")
    # one folder per query with --queries; finished ones (result.json present) are skipped on a rerun
    dirs = [out] if args.query else [out / f"q{k:03d}" for k in range(len(queries))]
    todo = [k for k, d in enumerate(dirs) if args.overwrite or not (d / "result.json").is_file()]
    if not todo:
        print(f"all {len(queries)} queries already have results in {out} (use --overwrite to redo them)")
        return 0
    with open_scene_from_args(args) as scene:  # the scene first: a wrong path is reported before a model loads
        pipeline = Pipeline.from_config(args.config, overrides)
        results = pipeline.ground_many(scene, [queries[k] for k in todo], progress=len(todo) > 1)
        for k, result in zip(todo, results):
            write_result(result, scene, dirs[k])
            _print_result(result.to_json())
            print(f"wrote    {dirs[k]}\n")
        if pipeline.output.scene_cloud and not (out / "scene.ply").is_file():
            write_scene_cloud(scene, out, voxel=pipeline.output.scene_cloud_voxel)
    if args.queries:
        with open(out / "results.jsonl", "w") as f:
            for k, d in enumerate(dirs):
                res = json.loads((d / "result.json").read_text())
                res.pop("trace", None)
                f.write(json.dumps({"id": k, "dir": d.name, **res}) + "\n")
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    from .data.annotations import annotate_scannet

    with open_scene_from_args(args) as scene:
        gt, annotation = annotate_scannet(scene, args.boxes, args.label_map, args.scanrefer, args.scene_id,
                                          overwrite=args.overwrite, progress=None if args.quiet else "annotating")
    info = annotation.info
    print(f"{info['visible_objects']} of {info['objects']} objects seen on {len(annotation.frames['frames'])} frames, "
          f"{info['descriptions']} descriptions, floor at z = {info['floor_z']:.2f} m -> {gt}")
    for note in annotation.notes:
        print(f"note: {note}")
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


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, render=not args.no_render)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scener1",
        description="Ground language in 3D scenes from RGB-D video (Scene-R1 style).",
    )
    parser.add_argument("--version", action="version", version=f"scener1 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="run the embedded default end to end on the synthetic demo scene")
    p.add_argument("--out", default="outputs/demo", metavar="DIR", help="output folder (default outputs/demo)")
    p.add_argument("--no-render", action="store_true", help="skip the offscreen render")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("info", help="describe a scene: format, frames, resolutions, fps, poses, alignment")
    add_scene_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fuse", help="fuse a scene's posed depth frames into a coloured point cloud (.ply)")
    add_scene_arguments(p)
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

    p = sub.add_parser("ground", help="find the 3D object a query describes (temporal -> image -> track -> lift)")
    add_scene_arguments(p)
    q = p.add_mutually_exclusive_group()
    q.add_argument("--query", metavar="TEXT", help='e.g. "the brown chair to the right of the table"')
    q.add_argument("--queries", metavar="FILE", help="many queries on one scene: a text file (one per line) or a "
                   "JSON list; frames are decoded and the model loaded once")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (result.json, overlay.png, object.ply)")
    p.add_argument("--model", metavar="DIR", help="VLM weights (directory or HF-cache repo id); = model.path=DIR")
    p.add_argument("--tracker", choices=("geometric", "sam2"), help="= tracker.name=NAME")
    p.add_argument("--config", metavar="FILE", help="a YAML config or a preset name in configs/ (default: default)")
    p.add_argument("--overwrite", action="store_true", help="redo queries that already have a result")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any config option, e.g. lifting.max_depth=4")
    p.set_defaults(func=cmd_ground)

    p = sub.add_parser("annotate", help="write scener1's ground truth (gt/) for a ScanNet scan from its benchmark "
                       "boxes and ScanRefer descriptions, for training and evaluation")
    add_scene_arguments(p)
    p.add_argument("--boxes", required=True, metavar="NPY", help="the scan's <scene>_aligned_bbox.npy (ScanRefer/VoteNet)")
    p.add_argument("--label-map", required=True, metavar="TSV", help="scannetv2-labels.combined.tsv (class names)")
    p.add_argument("--scanrefer", metavar="JSON", help="ScanRefer descriptions (entries of other scenes are skipped)")
    p.add_argument("--scene-id", metavar="ID", help="the scan's id in the annotation files (default: the folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace ground truth the folder already holds")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("viz", help="show a result folder in 3D (scene cloud, object, boxes, camera path)")
    p.add_argument("result", metavar="DIR", help="a result folder (result.json, object.ply, scene.ply)")
    p.add_argument("--png", metavar="FILE", help="render offscreen to FILE instead of opening a window")
    p.add_argument("--width", type=int, default=960, help="render width in pixels (default 960)")
    p.add_argument("--height", type=int, default=720, help="render height in pixels (default 720)")
    p.set_defaults(func=cmd_viz)

    from .synth import cli as synth_cli  # cheap: heavy modules load in run()

    p = sub.add_parser("synth", help="generate synthetic RGB-D scenes with full ground truth and annotations")
    synth_cli.add_arguments(p)
    p.set_defaults(func=synth_cli.run)

    from .lifting import cli as lift_cli  # standard library only until run()

    p = sub.add_parser("lift", help="turn a 2D box on one frame into a 3D object (tracking + lifting)")
    lift_cli.add_arguments(p)
    p.set_defaults(func=lift_cli.run)

    from .vqa import cli as vqa_cli  # standard library only until run()

    p = sub.add_parser("vqa", help="answer questions about a scene from the video and the lifted 3D objects")
    vqa_cli.add_arguments(p)
    p.set_defaults(func=vqa_cli.run, interrupted_note="finished answers are saved; run again to resume")

    from .eval import cli as eval_cli  # standard library only until run()

    p = sub.add_parser("eval", help="score or run a 3D grounding / QA benchmark (ScanRefer, Nr3D, VSI-Bench ...)")
    eval_cli.add_arguments(p)
    p.set_defaults(func=eval_cli.run, interrupted_note="finished predictions are saved; run again to resume")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(lambda: args.func(args), getattr(args, "interrupted_note", ""))


if __name__ == "__main__":
    sys.exit(main())
