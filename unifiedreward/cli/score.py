"""`unifiedreward score`: judge media from the command line (`unifiedreward compare` shares this code).

One item::

    unifiedreward score --model PATH --template image_generation.point_score.v1 --set prompt="a red circle" img.png
    unifiedreward compare --model PATH --template image_generation.pair_rank.v1 --set prompt=... --swap a.png b.png
    unifiedreward compare --model PATH --template image_understanding.pair_rank.v1 \\
        --set question=... --set answer1=... --set answer2=... img.png

A JSONL batch (rows ``{"id", "media": [...], "fields": {...}}``; relative media paths are resolved
against ``--media-root``, default the input file's folder)::

    unifiedreward score --model PATH --template KEY --input items.jsonl --output out.jsonl

Output rows are the input ``id`` plus the `RewardResult` fields; a summary goes to stderr.
``--server URL`` judges through an OpenAI-compatible server instead of loading ``--model``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from reward_core.atomic_files import atomic_write_text
from reward_core.text_lines import iter_lines
from unifiedreward.cli.common import load_judge, parse_fields
from unifiedreward.cli.help import examples

EXAMPLES = {
    "score": examples(
        "unifiedreward score --model toy-world/reward-qwen2_5_vl --template image_generation.point_score.v1 "
        '--set prompt="a red circle" --mode logit --json a.png',
        "unifiedreward score --server http://127.0.0.1:8080 --template image_generation.point_score.v1 "
        "--input items.jsonl --output out.jsonl",
    ),
    "compare": examples(
        "unifiedreward compare --model toy-world/reward-qwen2_5_vl --template image_generation.pair_rank.v1 "
        '--set prompt="a red circle" --mode logit --swap a.png b.png',
        "unifiedreward compare --server http://127.0.0.1:8080 --template image_generation.pair_rank.v1 "
        "--input items.jsonl --output out.jsonl",
    ),
}
DESCRIPTIONS = {
    "score": "pointwise verdict (score) for one item or a JSONL batch",
    "compare": "pairwise verdict (winner) for one pair or a JSONL batch",
}


TOP_PROBS = 5


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``score``."""
    return add_judge_parser(subparsers, "score")


def add_judge_parser(subparsers: argparse._SubParsersAction, command: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        command, help=DESCRIPTIONS[command], description=__doc__, epilog=EXAMPLES[command]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint path (or hub id) loaded with transformers")
    source.add_argument(
        "--server", metavar="URL[,URL...]", help="OpenAI-compatible server base URL(s) (vLLM, SGLang ...); replicas by comma"
    )
    parser.add_argument("--server-model", help="model name to request from --server")
    parser.add_argument("--api-key", help="bearer key for --server (default $UNIFIEDREWARD_API_KEY, $OPENAI_API_KEY)")
    parser.add_argument(
        "--logprob-tokens", choices=("auto", "exact", "top"), default="auto",
        help="--server logit mode: exact candidate token ids (vLLM), the top 20, or auto (exact when possible)",
    )
    parser.add_argument("--template", required=True, help="template key (see `unifiedreward prompt --list`)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="template field value")
    parser.add_argument(
        "--mode", choices=("generate", "logit"), default="generate",
        help="generate: parse the judge's answer; logit: read the answer's probabilities (scores any judge)",
    )
    parser.add_argument("--max-new-tokens", type=int, help="generation budget (default: the template's)")
    parser.add_argument("--json", action="store_true", help="print the single result as one JSON line")
    parser.add_argument("--input", type=Path, help="JSONL items: {id, media: [...], fields: {...}}")
    parser.add_argument("--output", type=Path, help="JSONL results (default: stdout)")
    parser.add_argument("--media-root", type=Path, help="folder for relative media paths (default: --input's folder)")
    parser.add_argument("--as-frames", action="store_true", help="feed each video as 8 frames (2.0 / vLLM protocol)")
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16, float32")
    parser.add_argument("--batch-size", type=int, default=8, help="items per judge batch")
    parser.add_argument("media", nargs="*", metavar="MEDIA", help="image / video paths, in template order")
    parser.set_defaults(func=run, command_name=command)
    return parser


def _media_entry(entry: Any, root: Path | None, video: bool, as_frames: bool) -> Any:
    from reward_core.media import VideoSpec

    if isinstance(entry, dict):  # {"path": ..., "fps"/"nframes"/"max_pixels"/"as_frames": ...}
        if not isinstance(entry.get("path"), str):
            raise ValueError(f"a media object needs a 'path' string, got {entry!r}")
        path = _resolve(entry["path"], root)
        if not video:
            return path
        options = {k: entry[k] for k in ("fps", "nframes", "max_pixels", "as_frames") if k in entry}
        return VideoSpec(path, **{"as_frames": as_frames, **options})
    if not isinstance(entry, str):
        raise ValueError(f"a media entry is a path string or an object with 'path', got {type(entry).__name__}")
    path = _resolve(entry, root)
    return VideoSpec(path, as_frames=as_frames) if video else path


def _resolve(path: str, root: Path | None) -> str:
    """``path`` under ``root`` when relative; URLs (``scheme://``) and absolute paths are kept as given."""
    if root is None or "://" in path or Path(path).is_absolute():
        return str(path)
    return str(root / path)


def read_items(path: Path, fields: dict[str, str], root: Path, video: bool, as_frames: bool) -> list[tuple[str, Any]]:
    """``(id, entry)`` per non-empty JSONL line: the entry is a ``JudgeItem``, or a failed ``RewardResult``
    saying why the line is not a usable item (not UTF-8, invalid JSON, not an object, media that are not
    paths)."""
    from reward_core.model import JudgeItem
    from reward_core.results import RewardResult, Status

    entries: list[tuple[str, Any]] = []
    for index, line in enumerate(iter_lines(path)):
        item_id = str(index)
        try:
            if line.error is not None:
                raise ValueError(line.error)
            try:
                row = json.loads(line.text)
            except json.JSONDecodeError as error:
                raise ValueError(f"invalid JSON ({error})") from None
            if not isinstance(row, dict):
                raise ValueError(f"expected a JSON object, got a {type(row).__name__}")
            item_id = str(row.get("id", index))
            media = row.get("media", [])
            media = media if isinstance(media, list) else [media]  # one path string is one item
            row_fields = row.get("fields") or {}
            if not isinstance(row_fields, dict):
                raise ValueError(f"'fields' must be an object, got a {type(row_fields).__name__}")
            item = JudgeItem([_media_entry(m, root, video, as_frames) for m in media], {**fields, **row_fields}, item_id)
            entries.append((item_id, item))
        except (ValueError, TypeError) as error:
            entries.append((item_id, RewardResult.failure(Status.MEDIA_ERROR, f"bad item: line {line.number}: {error}")))
    return entries


def run(args: argparse.Namespace) -> int:
    from reward_core.model import BatchResults, JudgeItem
    from reward_core.prompts import get_template

    prog = f"unifiedreward {args.command_name}"
    try:
        template = get_template(args.template)
        fields = parse_fields(args.set)
    except (KeyError, ValueError) as error:
        print(f"{prog}: {error.args[0]}", file=sys.stderr)
        return 2
    if template.pairwise != (args.command_name == "compare"):
        other = "compare" if template.pairwise else "score"
        kind = "pairwise" if template.pairwise else "pointwise"
        print(f"{prog}: template {template.key!r} is {kind}; use `{other}`", file=sys.stderr)
        return 2
    if bool(args.input) == bool(args.media):
        print(f"{prog}: give MEDIA paths or --input items.jsonl (not both)", file=sys.stderr)
        return 2
    video = template.media.startswith("video")
    if args.input:
        try:
            entries = read_items(args.input, fields, args.media_root or args.input.parent, video, args.as_frames)
        except OSError as error:
            print(f"{prog}: cannot read {args.input}: {error}", file=sys.stderr)
            return 2
    else:
        media = [_media_entry(m, args.media_root, video, args.as_frames) for m in args.media]
        entries = [("0", JudgeItem(media=media, fields=fields))]
    items = [entry for _, entry in entries if isinstance(entry, JudgeItem)]

    model = load_judge(
        args.model, args.server, args.server_model, device=args.device, dtype=args.dtype,
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, api_key=args.api_key,
        logprob_tokens=args.logprob_tokens,
    )
    started = time.perf_counter()
    if template.pairwise:
        judged = model.compare_batch(template, items, swap=args.swap, mode=args.mode, progress=bool(args.input))
    else:
        judged = model.score_batch(template, items, mode=args.mode, progress=bool(args.input))
    elapsed = time.perf_counter() - started
    verdicts = iter(judged)
    results = BatchResults(next(verdicts) if isinstance(entry, JudgeItem) else entry for _, entry in entries)
    results.position_consistency = getattr(judged, "position_consistency", None)

    if not args.input:
        result = results[0]
        print(json.dumps(result.to_dict(), ensure_ascii=False) if args.json else describe(result))
        return 0 if result.ok else 1
    lines = [json.dumps({"id": item_id, **result.to_dict()}, ensure_ascii=False)
             for (item_id, _), result in zip(entries, results)]
    if args.output:
        atomic_write_text(args.output, "".join(line + "\n" for line in lines))
    else:
        print("\n".join(lines))
    print(summary(results, elapsed), file=sys.stderr)
    return 0 if all(result.ok for result in results) else 1


def describe(result) -> str:
    """A short human-readable line for one result."""
    if not result.ok:
        return f"{result.status.value}: {result.error}"
    parts = []
    if result.winner is not None:
        parts.append("tie" if result.winner == 0 else f"winner: {result.winner}")
    if result.score is not None:
        parts.append(f"score: {result.score:.4g}")
    if result.scores:
        parts.append("scores: " + ", ".join(f"{k}={v:.4g}" for k, v in result.scores.items()))
    if result.probs:  # a decimal score distribution has hundreds of values: show the likeliest
        top = sorted(result.probs.items(), key=lambda kv: -kv[1])[:TOP_PROBS] if len(result.probs) > TOP_PROBS else result.probs.items()
        parts.append("probs: " + ", ".join(f"{k}={v:.3f}" for k, v in top))
    if result.consistency is not None:
        parts.append(f"consistency: {result.consistency:g}")
    return "; ".join(parts)


def summary(results, elapsed: float) -> str:
    counts = Counter(r.status.value for r in results)
    text = f"{len(results)} items in {elapsed:.1f}s ({len(results) / max(elapsed, 1e-9):.2f} items/s): "
    text += ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
    consistency = getattr(results, "position_consistency", None)
    if consistency is not None:
        text += f"; position consistency {consistency:.3f}"
    return text
