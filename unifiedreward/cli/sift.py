"""``unifiedreward sift``: build DPO preference pairs with pair-rank + point-sift.

Input: JSON / JSONL rows ``{"id", "question" | "prompt", "image" | "images" | "video", "candidates"?}``.
Without ``candidates`` a policy samples them (``--policy PATH`` or ``--policy-server URL``).
Output folder: ``sift*.jsonl`` (resumable per-item records), ``summary.json``, ``scores.png`` and, for text
candidates, the TRL preference dataset ``pairs.jsonl`` + ``dataset/`` (``datasets.load_dataset(path)``).

Shards: ``--num-shards/--shard-index``, or one shard per process under ``accelerate launch``; the main
process merges all shards (deterministically, by input order) once every process is done.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from reward_core.text_lines import iter_lines
from unifiedreward.cli.common import load_judge
from unifiedreward.cli.help import CommandParser, examples
from unifiedreward.dataset_folder import write_dataset_folder
from unifiedreward.report import try_report
from unifiedreward.report.sift_report import render_sift_records
from unifiedreward.sift import (
    RESULTS_GLOB,
    OpenAIPolicy,
    SiftItem,
    SiftLockedError,
    SiftSettings,
    SiftWriter,
    TransformersPolicy,
    atomic_write_text,
    candidates_are_text,
    missing_shards,
    read_records,
    run_sift,
    select_shard,
    shard_path,
    trl_preference_rows,
    write_summary,
)

logger = logging.getLogger(__name__)


EXAMPLE = examples(
    "unifiedreward sift --input prompts.jsonl --output-dir runs/sift --policy Qwen/Qwen2.5-VL-7B-Instruct "
    "--reward-model CodeGoat24/UnifiedReward-qwen-7b --num-candidates 10",
    "unifiedreward sift --input prompts.jsonl --output-dir runs/sift --merge-only",
)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", help="JSON or JSONL file of prompts")
    parser.add_argument("--output-dir", required=True, help="folder for the records, pairs, dataset and report")
    parser.add_argument("--media-dir", default=None, help="base folder for relative media paths (default: the input's)")
    reward = parser.add_mutually_exclusive_group()
    reward.add_argument("--reward-model", help="local UnifiedReward checkpoint")
    reward.add_argument("--reward-server", help="OpenAI-compatible base URL serving UnifiedReward")
    parser.add_argument("--reward-server-model", default=None, help="served model name (default: the server's first)")
    parser.add_argument("--policy", default=None, help="local policy checkpoint that samples the candidates")
    parser.add_argument("--policy-server", default=None, help="OpenAI-compatible base URL of the policy")
    parser.add_argument("--policy-model", default=None, help="served policy model name")
    parser.add_argument("--num-candidates", type=int, default=10, help="candidates the policy samples per prompt")
    parser.add_argument("--temperature", type=float, default=0.7, help="policy sampling temperature")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="policy sampling length")
    parser.add_argument("--seed", type=int, default=0, help="seed of the policy's sampling")
    parser.add_argument("--pair-template", default="image_understanding.pair_rank.v1",
                        help="template of the pair-rank stage (`unifiedreward prompt --list`)")
    parser.add_argument("--point-template", default="image_understanding.point_score.v1",
                        help="template of the point-sift stage")
    parser.add_argument("--mode", choices=["generate", "logit"], default="generate",
                        help="generate: parse the judge's answers; logit: read their probabilities")
    parser.add_argument("--swap", action="store_true", help="rank each pair in both orders; keep agreeing pairs only")
    parser.add_argument("--batch-size", type=int, default=8, help="reward-model batch size")
    parser.add_argument("--device", default=None, help="torch device of local models (default: cuda when available)")
    parser.add_argument("--num-shards", type=int, default=None,
                        help="split the prompts into N shards (default: one per process under accelerate launch)")
    parser.add_argument("--shard-index", type=int, default=None, help="which shard this run sifts (0-based)")
    parser.add_argument("--retry-failed", action="store_true", help="sift again the items recorded as failed")
    parser.add_argument("--no-merge", action="store_true", help="only write this shard's records")
    parser.add_argument("--merge-only", action="store_true", help="only merge existing records into the outputs")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_parser(subparsers: Any) -> None:
    """Add the ``sift`` subcommand to ``unifiedreward``'s subparsers."""
    parser = subparsers.add_parser(
        "sift", help="build DPO preference pairs (pair-rank + point-sift)", description=__doc__, epilog=EXAMPLE
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The input rows, and one reason per JSONL line that is not a JSON object (those lines are skipped)."""
    if path.suffix != ".jsonl":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of rows")
        rows = [row for row in data if isinstance(row, dict)]
        invalid = [f"{path}: row {i} is a {type(row).__name__}, not an object" for i, row in enumerate(data)
                   if not isinstance(row, dict)]
        return rows, invalid
    rows, invalid = [], []
    for line in iter_lines(path):
        if line.error is not None:
            invalid.append(f"{path}:{line.number}: {line.error}")
            continue
        try:
            row = json.loads(line.text)
        except json.JSONDecodeError as error:
            invalid.append(f"{path}:{line.number}: invalid JSON ({error})")
            continue
        if not isinstance(row, dict):
            invalid.append(f"{path}:{line.number}: a {type(row).__name__}, not a JSON object")
            continue
        rows.append(row)
    return rows, invalid


def _resolve(entry: Any, base: Path) -> Any:
    if isinstance(entry, str) and not os.path.isabs(entry) and "://" not in entry:
        return str(base / entry)
    return entry


def _entries(value: Any) -> list[Any]:
    """A row's media field: a list, or one path string (never its characters)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def items_from_rows(rows: list[dict[str, Any]], media_dir: Path, text_candidates: bool = True) -> list[SiftItem]:
    """Rows to :class:`SiftItem`; ``id`` defaults to the row position, and must be unique.

    ``text_candidates`` (from the templates, :func:`unifiedreward.sift.candidates_are_text`) says whether
    candidates are answers, kept verbatim, or media paths, resolved against ``media_dir``.
    """
    from reward_core.media import VideoSpec

    items, seen = [], set()
    for order, row in enumerate(rows):
        item_id = str(row.get("id", order))
        if item_id in seen:
            raise ValueError(f"duplicate id {item_id!r}: resume needs unique ids")
        seen.add(item_id)
        text = row.get("question", row.get("prompt"))
        if text is None:
            raise ValueError(f"row {item_id!r} has neither 'question' nor 'prompt'")
        images = _entries(row.get("images", row.get("image")))
        images = [_resolve(i, media_dir) for i in images]
        media: list[Any] = list(images)
        meta: dict[str, Any] = {"images": images} if images else {}
        if row.get("video") is not None:
            media.append(VideoSpec(_resolve(row["video"], media_dir)))
            meta["video"] = media[-1].path
        candidates = _entries(row.get("candidates"))
        if not text_candidates:
            candidates = [_resolve(c, media_dir) for c in candidates]
        items.append(
            SiftItem(item_id, {"question": text, "prompt": text}, candidates, media, meta=meta, order=order)
        )
    return items


def candidate_source(args: argparse.Namespace) -> Any:
    common = dict(
        num_candidates=args.num_candidates,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
    )
    if args.policy_server:
        if not args.policy_model:
            raise SystemExit("--policy-server needs --policy-model")
        return OpenAIPolicy(args.policy_server, args.policy_model, **common)
    if args.policy:
        return TransformersPolicy(args.policy, device=args.device, **common)
    return None


def shard_of(args: argparse.Namespace) -> tuple[int, int, Any]:
    """(shard index, shard count, accelerate state or None): explicit flags win over ``accelerate launch``."""
    if args.num_shards is not None:
        return (args.shard_index or 0), args.num_shards, None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        # ACCELERATE_USE_CPU as the Accelerator reads it: else a CPU multi-process launch sifts every prompt twice
        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
        return state.process_index, state.num_processes, state
    return 0, 1, None


def merge_outputs(out_dir: Path) -> dict[str, Any]:
    """Merge every shard's records into ``summary.json``, ``scores.png`` and the TRL dataset.

    Each output is written to a temporary name and renamed into place, so a reader (or a merge killed
    half-way) sees the previous complete output or the new one, never a mix.
    """
    records = read_records(sorted(out_dir.glob(RESULTS_GLOB)))
    summary = write_summary(records, out_dir)
    report: dict[str, Any] = {"summary": vars(summary), "output_dir": str(out_dir)}
    if missing := missing_shards(out_dir):
        logger.warning("merged without %d shard(s), their prompts are missing: %s", len(missing),
                       ", ".join(path.name for path in missing))
        report["missing_shards"] = [str(path) for path in missing]
    kept = [r for r in records if r.status == "kept"]
    if kept and all(isinstance(r.chosen, str) and isinstance(r.rejected, str) for r in kept):
        rows = trl_preference_rows(records)
        atomic_write_text(out_dir / "pairs.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        report["pairs"] = str(out_dir / "pairs.jsonl")
        report["dataset"] = save_hf_dataset(rows, out_dir / "dataset")
    html = try_report(render_sift_records, records, out_dir / "report", f"Sift: {out_dir.name}")
    report["report"] = None if html is None else str(html)
    return report


def save_hf_dataset(rows: list[dict[str, Any]], path: Path) -> str | None:
    """TRL preference rows as the ``train`` split of a folder ``datasets.load_dataset(path)`` reads (``images``
    embedded as ``Image`` features), swapped in whole (:func:`write_dataset_folder`)."""
    try:
        from datasets import Dataset, Image, Sequence
    except ImportError:
        logger.warning("`datasets` is not installed: wrote pairs.jsonl only")
        return None
    dataset = Dataset.from_list(rows)
    if any(row["images"] for row in rows):
        dataset = dataset.cast_column("images", Sequence(Image()))
    return str(write_dataset_folder({"train": dataset}, path))


def run(args: argparse.Namespace) -> int:
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.merge_only:
        if not args.input or not (args.reward_model or args.reward_server):
            raise SystemExit("sift needs --input and --reward-model or --reward-server (or --merge-only)")
        input_path = Path(args.input)
        settings = SiftSettings(args.pair_template, args.point_template, args.mode, args.swap)
        try:
            text_candidates = candidates_are_text(settings)
            rows, invalid = read_rows(input_path)
            items = items_from_rows(rows, Path(args.media_dir or input_path.parent), text_candidates)
        except (OSError, ValueError, KeyError) as error:
            print(f"unifiedreward sift: {error}", file=sys.stderr)
            return 2
        for reason in invalid:
            logger.error("skipped input line: %s", reason)
        shard_index, num_shards, state = shard_of(args)
        items = select_shard(items, shard_index, num_shards)
        results_path = shard_path(out_dir, shard_index, num_shards)
        try:
            SiftWriter(results_path).close()  # fail fast, before loading any model; run_sift holds the lock
            summary = run_sift(
                load_judge(args.reward_model, args.reward_server, args.reward_server_model, device=args.device,
                           batch_size=args.batch_size),
                items,
                settings,
                results_path,
                candidate_source=candidate_source(args),
                retry_failed=args.retry_failed,
                progress=not args.no_progress,
            )
        except SiftLockedError as error:
            print(f"unifiedreward sift: {error}", file=sys.stderr)
            return 2
        logger.info("shard %d/%d: %s", shard_index, num_shards, summary)
        if state is not None:
            state.wait_for_everyone()
            if not state.is_main_process:
                return exit_status(summary.failed, len(invalid))
        if args.no_merge:
            return exit_status(summary.failed, len(invalid))
    report = merge_outputs(out_dir)
    print(json.dumps(report, indent=2))
    if report.get("missing_shards"):
        return 1
    return exit_status(report["summary"]["failed"], len(invalid) if not args.merge_only else 0)


def exit_status(failed_items: int, invalid_rows: int) -> int:
    """0 when every item was sifted, 1 when some item failed or an input line was unreadable."""
    if failed_items or invalid_rows:
        logger.warning("%d item(s) failed, %d input line(s) unreadable: exit status 1", failed_items, invalid_rows)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="unifiedreward sift", description=__doc__, epilog=EXAMPLE)
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
