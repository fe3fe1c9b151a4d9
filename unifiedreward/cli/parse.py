"""`unifiedreward parse KEY < output.txt`: parse one model output and print the result as JSON.

Reads the whole of stdin as the model's output, parses it with the parser of template ``KEY``
(or ``--parser NAME``) and prints one JSON object (`RewardResult.to_dict`) on one line. The exit
status is 0 whenever a result was printed, failed parses included (see its ``status``), and 2
for an unknown template or parser.
"""

from __future__ import annotations

import argparse
import json
import sys

from unifiedreward.cli.help import examples
from reward_core.parsers import PARSERS, parse
from reward_core.prompts import get_template


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "parse",
        help="parse a model output read on stdin; print a JSON result",
        description=__doc__,
        epilog=examples('echo "... Final Score: 4" | unifiedreward parse image_generation.point_score.v1'),
    )
    parser.add_argument("key", nargs="?", help="template key whose parser to use")
    parser.add_argument("--parser", help=f"parser name instead of a template key ({', '.join(sorted(PARSERS))})")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if bool(args.key) == bool(args.parser):
        print("unifiedreward parse: give exactly one of KEY or --parser", file=sys.stderr)
        return 2
    try:
        parser_name = args.parser or get_template(args.key).parser
        if parser_name not in PARSERS:
            raise KeyError(f"unknown parser {parser_name!r}")
    except KeyError as exc:
        print(f"unifiedreward parse: {exc.args[0]}", file=sys.stderr)
        return 2
    text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    print(json.dumps(parse(parser_name, text).to_dict()))  # ASCII-escaped: safe in any locale
    return 0
