"""Parse a command's arguments with its own argparse parser, then stop before it runs.

    python tests/scripts/check_args.py -m MODULE ARG...     # as `python -m MODULE ARG...`
    python tests/scripts/check_args.py SCRIPT.py ARG...     # as `python SCRIPT.py ARG...`
    python tests/scripts/check_args.py MODULE:FUNCTION ARG...   # a console script's entry point

Exit 0 at the first outermost ``parse_args`` that accepts the arguments, or ``parse_known_args`` that leaves none
over (TRL's and Hugging Face's dataclass parsers build on these; TRL's CLI parses its command first and the
training arguments next); 2 with argparse's own message when the arguments are refused. The dataclasses are not
built (their checks look at the hardware: bf16 without a GPU).
Used by tests/test_docs.py for documented commands that need a GPU or the hub.
"""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import sys

_parse_known_args = argparse.ArgumentParser.parse_known_args
_depth = 0


class ArgumentsParsed(BaseException):
    """Raised once the outermost parse succeeded: the command itself never runs."""


def _checked_parse_known_args(self, args=None, namespace=None):
    global _depth
    _depth += 1
    try:
        namespace, extras = _parse_known_args(self, args, namespace)
    finally:
        _depth -= 1
    if _depth == 0 and not extras and not getattr(self, "_called_from_parse_args", False):
        raise ArgumentsParsed
    return namespace, extras  # with arguments left over, the program parses them next (TRL's CLI does)


def _checked_parse_args(self, args=None, namespace=None):
    self._called_from_parse_args = True
    try:
        namespace, extras = self.parse_known_args(args, namespace)
    finally:
        self._called_from_parse_args = False
    if extras:
        self.error("unrecognized arguments: " + " ".join(extras))
    raise ArgumentsParsed


def main() -> int:
    argparse.ArgumentParser.parse_known_args = _checked_parse_known_args
    argparse.ArgumentParser.parse_args = _checked_parse_args
    target, *rest = sys.argv[1:]
    try:
        if target == "-m":
            module, *args = rest
            sys.argv = [module, *args]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        elif ":" in target:
            module, function = target.split(":")
            sys.argv = [module, *rest]
            getattr(importlib.import_module(module), function)()
        else:
            sys.argv = [target, *rest]
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))  # as `python SCRIPT.py` does
            runpy.run_path(target, run_name="__main__")
    except ArgumentsParsed:
        print(f"arguments parsed: {' '.join(sys.argv)}")
        return 0
    print(f"{target}: finished without parsing any arguments", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
