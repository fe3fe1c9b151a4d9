"""Sift generated candidate videos with a UnifiedReward judge into a video DPO dataset (upstream VideoDPO layout).

    python -m integrations.diffusers.sift_videos --candidates_dir candidates \\
        --reward_model CodeGoat24/UnifiedReward-qwen-7b --output_dir video_dpo_data

The shared pair-rank + point-sift (:mod:`unifiedreward.sift`) with the video templates (default
``video_generation.pair_rank.v1`` + ``video_generation.point_score.v1``, 1-10; ``--pair_template
dpo.video_generation.pair_rank --point_template dpo.video_generation.point_score`` is upstream's VideoDPO recipe).
Ties and failed judgements never become preferences. Output::

    output_dir/dpo_data.json          # [{id, caption, chosen, rejected, chosen_score, rejected_score, split}], as
                                      # upstream VideoDPO (paths relative to output_dir)
    output_dir/dataset_dict.json, output_dir/<split>/...   # the same rows as a `datasets` DatasetDict
    output_dir/videos/<id>_chosen.mp4, <id>_rejected.mp4
    output_dir/sift.jsonl, summary.json, report/index.html

``train_video_dpo.py --dataset_name output_dir`` reads either form.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from unifiedreward.sift import SiftRecord, SiftSettings

from integrations.diffusers.sift_images import build_parser, judge_and_settings, result_of, sift_folder

PAIR_TEMPLATE = "video_generation.pair_rank.v1"
POINT_TEMPLATE = "video_generation.point_score.v1"


def video_pair_rows(records: list[SiftRecord], output_dir: Path, split_key: str = "split") -> list[dict]:
    """Kept records -> ``dpo_data.json`` rows (chosen first), the two videos copied under ``output_dir/videos``."""
    video_dir = output_dir / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for record in records:
        if record.status != "kept":
            continue
        paths = {}
        for role, source in (("chosen", record.chosen), ("rejected", record.rejected)):
            target = video_dir / f"{record.id}_{role}{Path(source).suffix}"
            shutil.copyfile(source, target)
            paths[role] = str(target.relative_to(output_dir))
        rows.append({
            "id": record.id,
            "caption": record.fields["prompt"],
            "chosen": paths["chosen"],
            "rejected": paths["rejected"],
            "chosen_score": float(record.chosen_score),
            "rejected_score": float(record.rejected_score),
            "split": str(record.meta.get(split_key, "train")),
        })
    return rows


def save_video_dataset(rows: list[dict], output_dir: Path) -> dict[str, int]:
    """Write ``dpo_data.json`` and the ``DatasetDict`` (one split per ``split`` value); returns the split sizes."""
    from datasets import Dataset, DatasetDict

    (output_dir / "dpo_data.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    splits = sorted({row["split"] for row in rows})
    dataset = DatasetDict({name: Dataset.from_list([r for r in rows if r["split"] == name]) for name in splits})
    dataset.save_to_disk(str(output_dir))
    return {name: len(dataset[name]) for name in splits}


def sift_video_candidates(
    reward_model: Any,
    candidates_dir: str | Path,
    output_dir: str | Path,
    settings: SiftSettings | None = None,
    split_key: str = "split",
    retry_failed: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Sift (resuming any earlier run in ``output_dir``) and write the video dataset; returns the summary."""
    output_dir = Path(output_dir)
    settings = settings or SiftSettings(pair_template=PAIR_TEMPLATE, point_template=POINT_TEMPLATE)
    records, summary, invalid, report = sift_folder(
        reward_model, candidates_dir, output_dir, settings, retry_failed, progress
    )
    rows = video_pair_rows(records, output_dir, split_key)
    if not rows:
        raise RuntimeError(f"No pair was kept out of {summary.total} prompts; see {output_dir / 'summary.json'}.")
    return result_of(summary, invalid, save_video_dataset(rows, output_dir), report)


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser(__doc__.split("\n")[0], "videos", PAIR_TEMPLATE, POINT_TEMPLATE, batch_size=4)
    return parser.parse_args(input_args)


def main(input_args: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(input_args)
    reward_model, settings = judge_and_settings(args)
    summary = sift_video_candidates(
        reward_model, args.candidates_dir, args.output_dir, settings, args.split_key, args.retry_failed
    )
    if summary["failed"]:
        raise SystemExit(f"{summary['failed']} prompts failed to be judged; rerun with --retry_failed.")
    return summary


if __name__ == "__main__":
    main()
