"""Every ``unifiedreward`` subcommand's ``--help``: a description, help for each option, defaults, examples."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

import pytest

from unifiedreward import __version__
from unifiedreward.cli import SUBCOMMANDS, build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{parser.prog.split()[-1]} {name}".strip()] = sub
                found.update(_subparsers(sub))
    return found


COMMANDS = {name.removeprefix("unifiedreward "): parser for name, parser in _subparsers(build_parser()).items()}


def test_every_subcommand_is_listed():
    assert set(SUBCOMMANDS) | {"toy build"} == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_describes_every_option(name):
    parser = COMMANDS[name]
    assert parser.description and parser.description.strip(), f"{name}: no description"
    undocumented = [
        action.dest for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and not (action.help or "").strip()
    ]
    assert not undocumented, f"{name}: options without help: {undocumented}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_defaults(name):
    parser = COMMANDS[name]
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        shown = isinstance(action.default, (int, float, str)) and not isinstance(action.default, bool)
        if action.option_strings and shown and action.default != argparse.SUPPRESS:
            assert f"default: {action.default}" in text or "default" in (action.help or ""), (name, action.dest)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_examples_parse(name):
    """Each subcommand's help ends with examples, and each example is accepted by the parser itself."""
    parser = COMMANDS[name]
    assert parser.epilog and parser.epilog.startswith("examples:"), f"{name}: no example"
    lines = [line.strip() for line in parser.epilog.splitlines()[1:]]
    assert lines
    for line in lines:
        argv = shlex.split(line.split("|")[-1])
        assert argv[0] == "unifiedreward"
        args = build_parser().parse_args(argv[1:])
        assert f"{args.command} {getattr(args, 'toy_command', '')}".startswith(name)


def test_version():
    result = subprocess.run([sys.executable, "-m", "unifiedreward.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"unifiedreward {__version__}"
