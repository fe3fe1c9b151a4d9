"""How every ``unifiedreward`` parser writes its ``--help``: defaults shown, text kept as written, examples."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; each option's default appended unless it is None or False, or the
    help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.option_strings
            and not any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))
            and action.default != []
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


class CommandParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` that always uses `HelpFormatter`; its subparsers inherit it."""

    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)


def examples(*commands: str) -> str:
    """An ``epilog`` listing example command lines."""
    return "examples:\n" + "\n".join(f"  {command}" for command in commands)
