"""``scener1 synth``: argument definitions and the command body (wired into :mod:`scener1.cli`)."""

from __future__ import annotations

import argparse
import re

from ..errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``scener1 synth``."""
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one sub-folder per scene)")
    p.add_argument("--scenes", type=int, default=1, metavar="N", help="number of scenes (default 1)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed; same seed, same scenes (default 0)")
    p.add_argument("--frames", type=int, default=300, metavar="F", help="frames per scene (default 300)")
    p.add_argument("--size", default="320x240", metavar="WxH", help="image size (default 320x240)")
    p.add_argument("--fps", type=float, default=30.0, metavar="R", help="frame rate for timestamps (default 30)")
    p.add_argument("--depth-noise", action="store_true", help="add sensor-like depth noise and holes")
    p.add_argument("--pose-noise", action="store_true", help="write slightly drifting poses (true ones in gt/)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"--size must look like WIDTHxHEIGHT (e.g. 320x240), got '{text}'")
    return int(m.group(1)), int(m.group(2))


def run(args: argparse.Namespace) -> int:
    """Generate ``args.scenes`` scenes into ``args.out``; prints one line per scene and the annotation files."""
    from . import generate_dataset

    size = parse_size(getattr(args, "size", "320x240"))
    dirs = generate_dataset(
        args.out,
        scenes=args.scenes,
        seed=args.seed,
        frames=getattr(args, "frames", 300),
        size=size,
        fps=getattr(args, "fps", 30.0) if getattr(args, "fps", None) is not None else 30.0,
        depth_noise=bool(getattr(args, "depth_noise", False)),
        pose_noise=bool(getattr(args, "pose_noise", False)),
        progress=not getattr(args, "quiet", False),
    )
    for d in dirs:
        print(f"wrote {d}")
    print(f"annotations: {args.out}/ScanRefer_synth.json, ScanQA_synth.json, vsibench_synth.parquet")
    return 0
