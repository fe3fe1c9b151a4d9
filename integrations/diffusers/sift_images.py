"""Sift generated candidates with a UnifiedReward judge into a Diffusion-DPO dataset (Pick-a-Pic layout).

    python -m integrations.diffusers.sift_images --candidates_dir candidates \\
        --reward_model CodeGoat24/UnifiedReward-qwen-7b --output_dir dpo_data

Uses the shared pair-rank + point-sift algorithm (:mod:`unifiedreward.sift`): candidates are ranked in disjoint pairs,
all are point-scored, and the best-scored winner vs the worst-scored loser is kept only when strictly better. Ties and
failed judgements never become preferences. Output (``load_from_disk``-able, so ``--dataset_name output_dir`` works
with ``train_diffusion_dpo.py``)::

    output_dir/dataset_dict.json, output_dir/<split>/...   # caption, jpg_0, jpg_1 (PNG bytes), label_0 (=1),
                                                          # chosen_score, rejected_score, id, jpg_0_path, jpg_1_path
    output_dir/images/<id>_chosen.png, <id>_rejected.png
    output_dir/sift.jsonl                                 # one record per prompt (resumable), summary.json

Splits come from each prompt's ``split`` metadata (``--split_key``), else everything is ``train``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from reward_core.text_lines import iter_lines
from unifiedreward.report import try_report
from unifiedreward.report.sift_report import render_sift_records
from unifiedreward.sift import (
    SiftItem, SiftRecord, SiftSettings, SiftSummary, read_records, run_sift, shard_path, write_summary,
)

from integrations.diffusers.generate_candidates import CANDIDATES_FILE

logger = logging.getLogger(__name__)

PAIR_TEMPLATE = "image_generation.pair_rank.v1"
POINT_TEMPLATE = "image_generation.point_score.v1"


def read_candidates(candidates_dir: str | Path, invalid: list[str] | None = None) -> list[SiftItem]:
    """Sift items (caption + candidate image or video paths) from a ``generate_candidates`` output folder.

    A line that is not a candidates record is skipped, logged and, when given, its reason appended to ``invalid``.
    """
    candidates_dir = Path(candidates_dir).resolve()
    items, seen = [], set()
    for line in iter_lines(candidates_dir / CANDIDATES_FILE):
        try:
            if line.error is not None:
                raise ValueError(line.error)
            record = json.loads(line.text)
            media_key = "images" if "images" in record else "videos"  # image or text-to-video pipelines
            item_id, prompt, images = str(record["id"]), record["prompt"], record[media_key]
            if not isinstance(prompt, str) or not isinstance(images, list):
                raise TypeError(f"'prompt' must be a string and '{media_key}' a list")
            if item_id in seen:
                raise ValueError(f"duplicate id {item_id!r}")
        except (ValueError, KeyError, TypeError) as error:
            reason = f"{CANDIDATES_FILE}:{line.number}: {type(error).__name__}: {error}"
            logger.error("skipped %s", reason)
            if invalid is not None:
                invalid.append(reason)
            continue
        seen.add(item_id)
        items.append(
            SiftItem(
                id=item_id,
                fields={"prompt": prompt},
                candidates=[str(candidates_dir / str(path)) for path in images],
                meta={**(record.get("meta") or {}), "seeds": record.get("seeds")},
                order=len(items),
            )
        )
    return items


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(item_id: str) -> str:
    """A file name for ``item_id`` that stays inside its folder: safe ids are kept as they are; anything
    else (``../x``, slashes, NUL, an empty or dot-only id) is replaced and tagged with a hash, so two ids
    never share a name."""
    cleaned = _UNSAFE.sub("_", item_id).strip(".")[:80]
    if cleaned == item_id and cleaned:
        return cleaned
    digest = hashlib.sha256(item_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{cleaned or 'id'}-{digest}"


def pair_rows(records: list[SiftRecord], output_dir: Path, split_key: str = "split") -> dict[str, list[dict]]:
    """Kept records -> Pick-a-Pic rows per split (chosen is ``jpg_0``, ``label_0 = 1``), images copied alongside."""
    image_dir = output_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict]] = {}
    for record in records:
        if record.status != "kept":
            continue
        copies = []
        for role, source in (("chosen", record.chosen), ("rejected", record.rejected)):
            target = image_dir / f"{file_stem(record.id)}_{role}{_UNSAFE.sub('', Path(source).suffix)}"
            shutil.copyfile(source, target)
            copies.append(target)
        row = {
            "id": record.id,
            "caption": record.fields["prompt"],
            "jpg_0": copies[0].read_bytes(),
            "jpg_1": copies[1].read_bytes(),
            "label_0": 1,
            "chosen_score": float(record.chosen_score),
            "rejected_score": float(record.rejected_score),
            "jpg_0_path": str(copies[0].relative_to(output_dir)),
            "jpg_1_path": str(copies[1].relative_to(output_dir)),
        }
        splits.setdefault(str(record.meta.get(split_key, "train")), []).append(row)
    return splits


def save_dataset(splits: dict[str, list[dict]], output_dir: Path) -> None:
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features(
        {
            "id": Value("string"),
            "caption": Value("string"),
            "jpg_0": Value("binary"),
            "jpg_1": Value("binary"),
            "label_0": Value("int32"),
            "chosen_score": Value("float64"),
            "rejected_score": Value("float64"),
            "jpg_0_path": Value("string"),
            "jpg_1_path": Value("string"),
        }
    )
    dataset = DatasetDict(
        {name: Dataset.from_list(rows, features=features) for name, rows in sorted(splits.items())}
    )
    dataset.save_to_disk(str(output_dir))


def sift_folder(
    reward_model: Any, candidates_dir: str | Path, output_dir: Path, settings: SiftSettings,
    retry_failed: bool = False, progress: bool = True,
) -> tuple[list[SiftRecord], SiftSummary, list[str], Path | None]:
    """Sift a candidates folder (resuming any earlier run in ``output_dir``), write ``summary.json`` and the report.

    Returns (this folder's records, their summary, unreadable candidates lines, report path or None).
    """
    invalid: list[str] = []
    items = read_candidates(candidates_dir, invalid)
    results_path = shard_path(output_dir)
    run_sift(reward_model, items, settings, results_path, retry_failed=retry_failed, progress=progress)
    wanted = {item.id for item in items}
    records = [record for record in read_records([results_path]) if record.id in wanted]
    summary = write_summary(records, output_dir)
    report = try_report(render_sift_records, records, output_dir / "report", f"Sift: {output_dir.name}")
    return records, summary, invalid, report


def result_of(summary: SiftSummary, invalid: list[str], splits: dict[str, int], report: Path | None) -> dict[str, Any]:
    """The JSON-able result both sift scripts return and log."""
    result = {
        "total": summary.total,
        "kept": summary.kept,
        "dropped": summary.dropped,
        "failed": summary.failed,
        "reasons": summary.reasons,
        "invalid_lines": invalid,
        "splits": splits,
        "report": None if report is None else str(report),
    }
    logger.info("Sifted %s", result)
    return result


def sift_candidates(
    reward_model: Any,
    candidates_dir: str | Path,
    output_dir: str | Path,
    settings: SiftSettings | None = None,
    split_key: str = "split",
    retry_failed: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Sift (resuming any earlier run in ``output_dir``) and write the dataset; returns the summary."""
    output_dir = Path(output_dir)
    settings = settings or SiftSettings(pair_template=PAIR_TEMPLATE, point_template=POINT_TEMPLATE)
    records, summary, invalid, report = sift_folder(
        reward_model, candidates_dir, output_dir, settings, retry_failed, progress
    )
    splits = pair_rows(records, output_dir, split_key)
    if not splits:
        raise RuntimeError(f"No pair was kept out of {summary.total} prompts; see {output_dir / 'summary.json'}.")
    save_dataset(splits, output_dir)
    return result_of(summary, invalid, {name: len(rows) for name, rows in splits.items()}, report)


def build_parser(description: str, kind: str = "images", pair_template: str = PAIR_TEMPLATE,
                 point_template: str = POINT_TEMPLATE, batch_size: int = 8) -> argparse.ArgumentParser:
    """The sift flags shared by ``sift_images`` and ``sift_videos``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--candidates_dir", required=True, help=f"Output folder of generate_candidates ({kind}).")
    parser.add_argument("--output_dir", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--reward_model", help="Local path or Hub id of a UnifiedReward checkpoint (in-process).")
    source.add_argument("--reward_server", help="OpenAI-compatible base URL (vLLM / SGLang), e.g. http://host:8000/v1")
    parser.add_argument("--served_model_name", default=None)
    parser.add_argument("--pair_template", default=pair_template)
    parser.add_argument("--point_template", default=point_template)
    parser.add_argument("--mode", default="generate", choices=["generate", "logit"])
    parser.add_argument("--swap", action="store_true", help="Rank each pair in both orders; disagreement = tie.")
    parser.add_argument("--split_key", default="split")
    parser.add_argument("--retry_failed", action="store_true")
    parser.add_argument("--batch_size", type=int, default=batch_size)
    parser.add_argument("--device", default=None)
    return parser


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    return build_parser(__doc__.split("\n")[0]).parse_args(input_args)


def judge_and_settings(args: argparse.Namespace) -> tuple[Any, SiftSettings]:
    """The reward model (in-process or server) and sift settings the parsed flags ask for."""
    from reward_core import UnifiedReward

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    if args.reward_model:
        reward_model = UnifiedReward.from_pretrained(args.reward_model, device=args.device, batch_size=args.batch_size)
    else:
        reward_model = UnifiedReward.from_server(args.reward_server, model=args.served_model_name)
    settings = SiftSettings(
        pair_template=args.pair_template, point_template=args.point_template, mode=args.mode, swap=args.swap
    )
    return reward_model, settings


def main(input_args: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(input_args)
    reward_model, settings = judge_and_settings(args)
    return sift_candidates(
        reward_model, args.candidates_dir, args.output_dir, settings, args.split_key, args.retry_failed
    )


def exit_status(result: dict[str, Any]) -> int:
    """0 when every prompt was sifted, 1 when a prompt failed or a candidates line was unreadable."""
    return 1 if result["failed"] or result["invalid_lines"] else 0


if __name__ == "__main__":
    raise SystemExit(exit_status(main()))
