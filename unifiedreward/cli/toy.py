"""``unifiedreward toy build OUT_DIR [--seed N] [--num-items N]``: prints the manifest as JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``toy`` (with its ``build`` subcommand) on a parent CLI's subparsers."""
    parser = subparsers.add_parser("toy", help="offline toy world: tiny checkpoints and synthetic data")
    _add_arguments(parser)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="toy_command", required=True)
    build = commands.add_parser("build", help="build the toy world into OUT_DIR and print its manifest")
    build.add_argument("out_dir", metavar="OUT_DIR")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--num-items", type=int, default=None, help="records per data file (videos get a tenth; default 100)"
    )
    build.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unifiedreward.toy.world import build_world  # imported here so that `unifiedreward --help` stays fast

    sizes = {} if args.num_items is None else {"num_items": args.num_items}
    manifest = build_world(args.out_dir, seed=args.seed, **sizes)
    sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unifiedreward toy", description=__doc__)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)
