"""`unifiedreward report DIR`: (re)write DIR/report/index.html for a sift, sift_images or bench output folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unifiedreward.cli.help import examples


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``report``."""
    parser = subparsers.add_parser("report", help="HTML report (with the media) of a sift or bench output folder",
                                   description=__doc__,
                                   epilog=examples("unifiedreward report runs/sift", "unifiedreward report bench-out/genai-image"))
    parser.add_argument("dir", type=Path, metavar="DIR", help="output folder of sift, sift_images or bench")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from unifiedreward.report import render_report

    try:
        path = render_report(args.dir, progress=not args.no_progress)
    except (OSError, ValueError) as error:
        print(f"unifiedreward report: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0
