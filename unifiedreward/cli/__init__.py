"""The ``unifiedreward`` console command.

Each subcommand lives in its own module, listed once in `SUBCOMMANDS` as ``"module"`` (which
must define ``add_parser(subparsers)``) or ``"module:function"``. The registration function adds
one subparser and sets ``func=run`` where ``run(args) -> int | None`` (the exit status).
Only the module of the subcommand being run is imported, so ``prompt`` and ``parse`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from unifiedreward import __version__
from unifiedreward.cli.help import CommandParser

SUBCOMMANDS: dict[str, str] = {
    "prompt": "unifiedreward.cli.prompt",
    "parse": "unifiedreward.cli.parse",
    "score": "unifiedreward.cli.score",
    "compare": "unifiedreward.cli.compare",
    "sift": "unifiedreward.cli.sift",
    "bench": "unifiedreward.cli.bench",
    "convert": "unifiedreward.cli.convert",
    "toy": "unifiedreward.cli.toy",
    "serve": "unifiedreward.cli.serve",
    "serve-cmd": "unifiedreward.cli.serve_cmd",
    "report": "unifiedreward.cli.report",
}


def _register(subparsers: argparse._SubParsersAction, spec: str) -> None:
    module_name, _, function_name = spec.partition(":")
    module = importlib.import_module(module_name)
    getattr(module, function_name or "add_parser")(subparsers)


def build_parser(names: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser with the subcommands ``names`` (default: all of them)."""
    parser = CommandParser(
        prog="unifiedreward",
        description="UnifiedReward judges: prompts, parsing, scoring, a reward service, data, benchmarks, reports and toy models.",
        epilog="`unifiedreward COMMAND --help` describes each command, with an example.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS if names is None else names:
        _register(subparsers, SUBCOMMANDS[name])
    return parser


def _requested_command(argv: Sequence[str]) -> str | None:
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in SUBCOMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _requested_command(argv)
    parser = build_parser([command] if command else None)
    args = parser.parse_args(argv)
    status = args.func(args)
    return 0 if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())
