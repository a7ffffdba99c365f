"""Argument groups shared by the command modules (``scener1 info/fuse/ground/lift/vqa``).

Standard library only: the parser is built before any command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

FORMATS = ("sens", "video", "scannet", "7scenes", "posed_images")  # keep in step with scener1.data.READERS


def add_scene_arguments(p: argparse.ArgumentParser) -> None:
    """``--scene PATH`` and the options that tell the readers how to read it."""
    g = p.add_argument_group("scene")
    g.add_argument("--scene", required=True, metavar="PATH", help="scene folder, .sens file or video file")
    g.add_argument("--format", choices=FORMATS, help="scene layout (detected when omitted)")
    g.add_argument("--meta", metavar="FILE", help="ScanNet scene<id>.txt (depth intrinsics, axisAlignment)")
    g.add_argument("--fps", type=float, metavar="R", help="capture rate for sources without timestamps (default 30)")
    g.add_argument("--depth-scale", type=float, metavar="S", help="raw depth units per metre (default 1000)")


def open_scene_from_args(args: argparse.Namespace):
    """The scene named by :func:`add_scene_arguments`' options."""
    from .data import open_scene

    return open_scene(args.scene, args.format, fps=args.fps, depth_scale=args.depth_scale, meta=args.meta)


def run_command(command: Callable[[], int | None], interrupted: str = "") -> int:
    """Run a command's body the way every ``scener1`` command ends: a :class:`~scener1.errors.ScenerError`
    (bad input) or a file-system error on a named path (an output folder that cannot be made) becomes one
    ``scener1: error:`` line and exit code 2, Ctrl-C exit code 130 with ``interrupted`` saying what was kept."""
    from .errors import ScenerError

    try:
        return int(command() or 0)
    except ScenerError as exc:
        print(f"scener1: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a bug, keep the traceback
            raise
        print(f"scener1: error: {exc.strerror or type(exc).__name__}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scener1: interrupted" + (f" ({interrupted})" if interrupted else ""), file=sys.stderr)
        return 130
