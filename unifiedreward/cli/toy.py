"""``unifiedreward toy build OUT_DIR [--seed N] [--num-items N]``: prints the manifest as JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys

from unifiedreward.cli.help import CommandParser, examples

EXAMPLE = examples("unifiedreward toy build toy-world", "unifiedreward toy build toy-world --seed 1 --num-items 20")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``toy`` (with its ``build`` subcommand) on a parent CLI's subparsers."""
    parser = subparsers.add_parser(
        "toy", help="offline toy world: tiny checkpoints and synthetic data", description=__doc__, epilog=EXAMPLE
    )
    _add_arguments(parser)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="toy_command", metavar="COMMAND", required=True)
    build = commands.add_parser(
        "build", help="build the toy world into OUT_DIR and print its manifest",
        description="Build the toy world (a tiny Qwen2.5-VL judge and policy, a tiny Stable Diffusion pipeline and "
        "synthetic data with known answers) into OUT_DIR and print its manifest as JSON.", epilog=EXAMPLE,
    )
    build.add_argument("out_dir", metavar="OUT_DIR",
                       help="folder to build into; a complete world of the same --seed and --num-items is reused")
    build.add_argument("--seed", type=int, default=0, help="seed of the weights and the data")
    build.add_argument(
        "--num-items", type=int, default=None, help="records per data file (videos get a tenth; default 100)"
    )
    build.add_argument("--rebuild", action="store_true", help="build again even when OUT_DIR holds that world")
    build.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported here so that `unifiedreward --help` stays fast
    from unifiedreward.toy.world import DEFAULT_NUM_ITEMS, build_world, load_world

    num_items = DEFAULT_NUM_ITEMS if args.num_items is None else args.num_items
    manifest = None if args.rebuild else load_world(args.out_dir)
    if manifest is None or (manifest["seed"], manifest.get("num_items")) != (args.seed, num_items):
        manifest = build_world(args.out_dir, seed=args.seed, num_items=num_items)
    sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="unifiedreward toy", description=__doc__, epilog=EXAMPLE)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)
