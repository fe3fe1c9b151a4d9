"""`unifiedreward prompt KEY [--set NAME=VALUE ...]`: print a rendered judge prompt.

The rendered text goes to stdout as UTF-8 exactly as `Template.render` returns it: nothing is
added, not even a trailing newline. ``--list [PREFIX]`` prints the template keys, one per line;
``--info`` prints the template's metadata as JSON instead of its text.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from unifiedreward.cli.common import parse_fields
from unifiedreward.cli.help import examples
from reward_core.prompts import get_template, list_templates


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prompt",
        help="print a rendered judge prompt (or --list the templates)",
        description=__doc__,
        epilog=examples(
            'unifiedreward prompt image_generation.point_score.v1 --set prompt="a red circle"',
            "unifiedreward prompt --list image_generation",
        ),
    )
    parser.add_argument("key", nargs="?", help="template key (with --list: an optional key prefix)")
    parser.add_argument(
        "--set", dest="values", action="append", default=[], metavar="NAME=VALUE", help="fill a placeholder (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list template keys")
    parser.add_argument("--info", action="store_true", help="print the template's metadata as JSON")
    parser.set_defaults(func=run)
    return parser


def _write(text: str) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()


def run(args: argparse.Namespace) -> int:
    if args.list:
        keys = list_templates(args.key or "")
        _write("".join(f"{key}\n" for key in keys))
        return 0
    if not args.key:
        print("unifiedreward prompt: give a template KEY or --list", file=sys.stderr)
        return 2
    try:
        template = get_template(args.key)
        if args.info:
            info = {k: v for k, v in dataclasses.asdict(template).items() if k != "text"}
            _write(json.dumps(info | {"media_count": template.media_count, "pairwise": template.pairwise}, indent=2) + "\n")
            return 0
        _write(template.render(**parse_fields(args.values)))
    except (KeyError, ValueError) as exc:
        print(f"unifiedreward prompt: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    return 0
