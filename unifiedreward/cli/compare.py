"""`unifiedreward compare`: pairwise verdicts for one pair or a JSONL batch (options as `unifiedreward score`)."""

from __future__ import annotations

import argparse

from unifiedreward.cli.score import add_judge_parser


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``compare``."""
    parser = add_judge_parser(subparsers, "compare")
    parser.add_argument("--swap", action="store_true", help="judge both orders and combine (reports consistency)")
    return parser
