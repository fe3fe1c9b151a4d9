"""`unifiedreward convert <kind> INPUT OUTPUT`: data files -> LLaMA-Factory datasets.

Kinds:
  unifiedreward  released UnifiedReward data (LLaVA-NeXT items, HF parquet, Think CoT) -> sharegpt SFT
  preference     generic preference pairs or sift output -> sharegpt pairwise (ranking, DPO stage)
  toy            toy-world judge data (image_pairs.jsonl / image_points.jsonl) -> UnifiedReward SFT

With ``--dataset-info`` the output is also registered in a ``dataset_info.json`` (merged, other
entries kept; parallel runs on one file are serialised by a lock). Invalid rows are reported with
their line/row number and skipped; ``--strict`` stops at the first one and writes nothing.
Exit status: 0 when every row converted; 1 when some rows were rejected (the good rows are written
and registered), when ``--strict`` failed, or when no row survived (then no output file is written
and nothing is registered); 2 for bad arguments or an input file that cannot be read.
``--sampling`` takes upstream's strategies: all, random:N, N% (LLaMA-Factory ``num_samples`` in the
registration), first:N, end:N (applied while converting). A JSON summary is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from unifiedreward.cli.help import CommandParser, examples

# Imported lazily inside run(): data_converters is not needed by the other subcommands.

KINDS = ("unifiedreward", "preference", "toy")
EXAMPLE = examples(
    "unifiedreward convert toy toy-world/data/image_pairs.jsonl data/toy_pairs.jsonl --media-dir toy-world/data "
    "--dataset-info data/dataset_info.json --dataset-name toy_pairs",
    "unifiedreward convert preference runs/sift/sift.jsonl data/sift_dpo.jsonl --media-dir . "
    "--dataset-info data/dataset_info.json --dataset-name unifiedreward_dpo",
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``convert`` subcommand on the ``unifiedreward`` command's subparsers."""
    parser = subparsers.add_parser("convert", help="convert data files to LLaMA-Factory datasets", description=__doc__,
                                   epilog=EXAMPLE)
    _add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="what INPUT holds (see the kinds above)")
    parser.add_argument("input", help=".json (array), .jsonl or .parquet")
    parser.add_argument("output", help="output .jsonl file")
    parser.add_argument("--media-dir", help="LLaMA-Factory media_dir that output media paths are relative to "
                        "(default: the output file's folder)")
    parser.add_argument("--source-root", help="folder the input's relative media paths are relative to "
                        "(LLaVA's image_folder; default: --media-dir)")
    parser.add_argument("--no-verify-media", action="store_true", help="do not check that media files exist")
    parser.add_argument("--strict", action="store_true", help="fail on the first invalid row, write nothing")
    parser.add_argument("--dataset-info", help="dataset_info.json to register the output in")
    parser.add_argument("--dataset-name", help="entry name in dataset_info.json (default: output file stem)")
    parser.add_argument("--overwrite-entry", action="store_true", help="replace an existing, different entry")
    parser.add_argument("--template-key", help="toy kind: override the reward_core template key")
    parser.add_argument("--split", default="train", help="toy kind: rows of this split only ('all' for every row)")
    parser.add_argument("--sampling", default="all", help="all | random:N | first:N | end:N | N%% (upstream's "
                        "train_data.yaml sampling_strategy)")
    parser.add_argument("--max-frames", type=int, default=32, help="frames kept per frame-folder video")
    parser.add_argument("--extract-frames", action="store_true", help="write video files' frames (as inference samples "
                        "them) and list them, so these videos can train together with frame-folder datasets")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")


def run(args: argparse.Namespace) -> int:
    import data_converters as dc
    from integrations.llamafactory import register_dataset

    media_dir = args.media_dir or os.path.dirname(os.path.abspath(args.output))
    common = dict(source_root=args.source_root, verify_media=not args.no_verify_media, strict=args.strict,
                  progress=args.progress, sampling=args.sampling, max_frames=args.max_frames,
                  extract_frames=args.extract_frames)
    try:
        dc.SamplingStrategy.parse(args.sampling)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not os.path.isfile(args.input) or not os.access(args.input, os.R_OK):
        print(f"error: cannot read input file {args.input!r} (missing, not a file, or not readable)", file=sys.stderr)
        return 2
    try:
        if args.kind == "unifiedreward":
            report = dc.convert_unifiedreward(args.input, args.output, media_dir, **common)
        elif args.kind == "preference":
            report = dc.convert_preference(args.input, args.output, media_dir, **common)
        else:
            report = dc.convert_toy_judge(args.input, args.output, media_dir, template_key=args.template_key,
                                          split=None if args.split == "all" else args.split, **common)
    except dc.NoRowsConverted as error:
        for problem in error.report.problems:
            print(f"skipped {problem}", file=sys.stderr)
        print(f"error: {error}; nothing written or registered", file=sys.stderr)
        return 1
    except dc.ConversionFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for problem in report.problems:
        print(f"skipped {problem}", file=sys.stderr)
    if report.problems_dropped:
        print(f"... and {report.problems_dropped} more skipped rows", file=sys.stderr)
    summary = report.to_dict()
    if args.dataset_info:
        name = args.dataset_name or os.path.splitext(os.path.basename(args.output))[0]
        register_dataset(args.dataset_info, name, args.output, ranking=args.kind == "preference",
                         num_samples=report.num_samples, overwrite=args.overwrite_entry)
        summary["dataset_info"] = {"path": args.dataset_info, "name": name}
    summary.pop("problems")
    print(json.dumps(summary))
    return 1 if report.rows_rejected else 0  # the good rows are written either way


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="unifiedreward convert", description=__doc__, epilog=EXAMPLE)
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
