"""`unifiedreward bench`: evaluate a UnifiedReward judge on a reward-model benchmark.

Benchmarks: genai-bench-image, genai-bench-video (TIGER-Lab GenAI-Bench; tau with ties + diff),
videogen-rewardbench (KwaiVGI/KlingTeam; tau + diff), vl-rewardbench (MMInstruction; overall + macro).
--data is a .json/.jsonl/.csv/.parquet file in the benchmark's own schema, a dataset folder written
by `save_to_disk`, or hf:<repo_id> (needs `datasets` and the Hub). Failed pairs are reported and
left out of the metrics. Writes OUT_DIR/metrics.json, report.md and predictions.jsonl.
"""

from __future__ import annotations

import argparse
import logging
import sys

from unifiedreward.bench.loaders import BENCHMARKS
from unifiedreward.cli.common import load_judge
from unifiedreward.cli.help import CommandParser, examples

EXAMPLE = examples(
    "unifiedreward bench --benchmark genai-bench-image --data genai_image.parquet "
    "--model CodeGoat24/UnifiedReward-qwen-7b --swap --output bench-out/genai-image",
    "unifiedreward bench --benchmark vl-rewardbench --data hf:MMInstruction/VL-RewardBench "
    "--server http://127.0.0.1:8080 --mode logit --output bench-out/vlrb",
)

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench`` on the ``unifiedreward`` command's subparsers."""
    parser = subparsers.add_parser(
        "bench",
        help="evaluate a judge on GenAI-Bench / VideoGen-RewardBench / VL-RewardBench",
        description=__doc__,
        epilog=EXAMPLE,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS), help="which benchmark --data holds")
    parser.add_argument("--data", required=True, help="benchmark file, saved dataset folder, or hf:<repo_id>")
    parser.add_argument("--media-root", help="folder relative media paths (and downloaded video URLs) resolve to "
                        "(default: the data file's folder)")
    parser.add_argument("--subset", help="HF dataset config (hf: sources; default: the benchmark's own)")
    parser.add_argument("--split", help="dataset split (default: the benchmark's own, or the only one)")
    judge = parser.add_mutually_exclusive_group(required=True)
    judge.add_argument("--model", help="local checkpoint folder (transformers backend)")
    judge.add_argument("--server", help="OpenAI-compatible server URL (vLLM, SGLang, transformers serve)")
    parser.add_argument("--served-model-name", help="model name on the server (default: the server's first model)")
    parser.add_argument("--template", help="template key (default: the benchmark's pair-rank template)")
    parser.add_argument("--mode", choices=("generate", "logit"), default="generate",
                        help="generate: parse the verdict; logit: P(winner) from the answer's first token")
    parser.add_argument("--swap", action="store_true", help="judge every pair in both orders (default: one seeded order)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-pair presentation order")
    parser.add_argument("--limit", type=int, help="only the first N rows")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per judge_batch call")
    parser.add_argument("--max-new-tokens", type=int, help="override the template's generation budget")
    parser.add_argument("--device", help="torch device for --model (default: auto)")
    parser.add_argument("--dtype", default="auto", help="torch dtype for --model")
    parser.add_argument("--nframes", type=int, help="frames sampled per video (default: qwen-vl-utils' fps rule)")
    parser.add_argument("--fps", type=float, help="video sampling rate (instead of --nframes)")
    parser.add_argument("--max-pixels", type=int, help="per-frame pixel budget for videos")
    parser.add_argument("--video-as-frames", action="store_true",
                        help="send videos as separate frame images (the upstream vLLM benchmark path)")
    parser.add_argument("--media-cache-size", type=int, default=256,
                        help="prepared media items kept in memory (shared media are read once while cached)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _video_options(args: argparse.Namespace) -> dict:
    options = {"nframes": args.nframes, "fps": args.fps, "max_pixels": args.max_pixels}
    options = {key: value for key, value in options.items() if value is not None}
    if args.video_as_frames:
        options["as_frames"] = True
    return options


def run(args: argparse.Namespace) -> int:
    from unifiedreward.bench import evaluate, load_benchmark, write_report
    from unifiedreward.bench.runner import check_template
    from unifiedreward.report import try_report
    from unifiedreward.report.bench_report import write_bench_report
    from reward_core.prompts import get_template

    try:
        loaded = load_benchmark(
            args.benchmark, args.data, media_root=args.media_root, subset=args.subset, split=args.split, limit=args.limit
        )
    except (OSError, ValueError, ImportError) as error:
        print(f"unifiedreward bench: cannot load {args.data}: {error}", file=sys.stderr)
        return 2
    try:
        check_template(loaded.spec, get_template(args.template or loaded.spec.template))
    except (KeyError, ValueError) as error:
        print(f"unifiedreward bench: {error}", file=sys.stderr)
        return 2
    if loaded.invalid:
        logger.warning("%d row(s) do not follow the %s schema; first: %s", len(loaded.invalid), args.benchmark,
                       loaded.invalid[0].error)
    model = load_judge(
        args.model, args.server, args.served_model_name, device=args.device, dtype=args.dtype,
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
    )
    report, outcomes = evaluate(
        model,
        loaded,
        template=args.template,
        mode=args.mode,
        swap=args.swap,
        seed=args.seed,
        batch_size=args.batch_size,
        video_options=_video_options(args),
        media_cache_size=args.media_cache_size,
        model_name=args.model or args.server,
        progress=not args.no_progress,
    )
    paths = write_report(report, outcomes, args.output)
    html = try_report(write_bench_report, outcomes, loaded.spec.candidate_kind, args.output)
    print(report.to_markdown())
    print(f"wrote {paths['metrics']}, {paths['report']}, {paths['predictions']}" + (f", {html}" if html else ""))
    if report.n_scored == 0:
        print(f"unifiedreward bench: no pair was judged successfully ({report.failures})", file=sys.stderr)
        return 1
    if report.failures or report.n_invalid_records:  # metrics are over the judged pairs; say that some were not
        print(f"unifiedreward bench: {sum(report.failures.values())} pair(s) failed {report.failures}, "
              f"{report.n_invalid_records} invalid record(s)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="unifiedreward bench", description=__doc__, epilog=EXAMPLE)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
