"""End-to-end proof on the offline toy world: toy judge data -> converter -> shipped LLaMA-Factory
recipe -> checkpoint -> held-out accuracy read with reward_core's parsers.

Used by ``benchmarks/toy_reward_training.py`` (the full run) and ``tests/test_llamafactory_smoke.py``
(a few steps).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_converters import convert_preference, convert_toy_judge

from . import recipe_path, register_dataset
from .launch import CPU_OVERRIDES, OFFLINE_ENV, TrainRun, run_train

PAIR_TEMPLATE = "image_generation.pair_rank.v1"
POINT_TEMPLATE = "image_generation.point_score.v1"


@dataclass(frozen=True)
class ToyTrainingSetup:
    """Data and model size of the toy run, and the overrides applied to the shipped recipe."""

    train_pairs: int = 200  # distinct training pairs, each written in both orders
    train_points: int = 480  # exact 1-5 scores need more examples than pairs with a gap >= 2
    test_pairs: int = 80  # held out, one order each
    test_points: int = 80
    seed: int = 0
    hidden_size: int = 64
    num_layers: int = 3
    num_heads: int = 4
    vision_hidden_size: int = 64
    learning_rate: float = 2e-3
    epochs: float = 3.0
    batch_size: int = 8
    max_steps: int = -1  # > 0 caps the run (smoke test)


@dataclass
class ToyData:
    dataset_dir: str
    datasets: list[str]
    test_pairs: list[dict]
    test_points: list[dict]


def build_toy_reward_model(out_dir: Path, setup: ToyTrainingSetup) -> Path:
    """A randomly initialised Qwen2.5-VL sized for the toy task (toy world tokenizer and processor)."""
    from unifiedreward.toy.qwen import QwenSize, build_qwen2_5_vl
    from unifiedreward.toy.tokenization import train_qwen_tokenizer

    size = QwenSize(
        hidden_size=setup.hidden_size, num_layers=setup.num_layers, num_heads=setup.num_heads,
        num_kv_heads=max(1, setup.num_heads // 2), intermediate_size=2 * setup.hidden_size,
        vision_hidden_size=setup.vision_hidden_size, vision_depth=2, vision_heads=2,
        vision_intermediate_size=2 * setup.vision_hidden_size,
    )
    return build_qwen2_5_vl(out_dir, train_qwen_tokenizer(), seed=setup.seed, size=size)


def prepare_toy_data(data_dir: Path, setup: ToyTrainingSetup) -> ToyData:
    """Write the quality task's records and media, convert the train split, register both datasets."""
    from unifiedreward.toy.data import write_jsonl
    from unifiedreward.toy.tasks import make_quality_pairs, make_quality_points

    data_dir = Path(data_dir)
    num_pairs, num_points = setup.train_pairs + setup.test_pairs, setup.train_points + setup.test_points
    sources = {
        "toy_quality_pairs": make_quality_pairs(
            data_dir, num_pairs, seed=setup.seed, held_out=setup.test_pairs / num_pairs),
        "toy_quality_points": make_quality_points(
            data_dir, num_points, seed=setup.seed, held_out=setup.test_points / num_points),
    }
    for name, records in sources.items():
        raw = write_jsonl(data_dir / f"{name}.raw.jsonl", records)
        output = data_dir / f"{name}.jsonl"
        report = convert_toy_judge(raw, output, media_dir=data_dir, split="train", strict=True)
        if report.rows_written == 0:
            raise RuntimeError(f"no training rows for {name}")
        register_dataset(data_dir, name, output, overwrite=True)
    return ToyData(
        dataset_dir=os.fspath(data_dir),
        datasets=list(sources),
        test_pairs=[r for r in sources["toy_quality_pairs"] if r["split"] == "test"],
        test_points=[r for r in sources["toy_quality_points"] if r["split"] == "test"],
    )


def prepare_toy_dpo_data(data_dir: Path, num_items: int = 8, seed: int = 0) -> ToyData:
    """Sift-format preference records for the DPO recipe, converted and registered as ``toy_sift_dpo``.

    The records have exactly the layout ``unifiedreward.sift.run_sift`` writes (kept items with a chosen
    and a rejected answer to a question about a toy image), but chosen/rejected come from the toy
    world's ground truth instead of a judge: the point is the data path and the ``stage: dpo`` run.
    """
    from unifiedreward.sift import PairOutcome, SiftRecord, SiftWriter
    from unifiedreward.toy.data import make_und_pairs

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    sift_path = data_dir / "sift.jsonl"
    sift_path.unlink(missing_ok=True)  # SiftWriter appends (resume); this is a fresh build
    with SiftWriter(sift_path) as writer:
        for order, row in enumerate(make_und_pairs(data_dir, num_items, seed=seed, held_out=0.0)):
            chosen, rejected = row["winner"] - 1, 2 - row["winner"]
            writer.append(SiftRecord(
                id=row["id"], order=order, status="kept", reason=None, chosen_index=chosen, rejected_index=rejected,
                chosen_score=5.0, rejected_score=1.0, candidates=[row["answer1"], row["answer2"]],
                scores=[5.0, 1.0] if chosen == 0 else [1.0, 5.0], pairs=[PairOutcome(0, 1, chosen, "decisive")],
                fields={"question": row["question"]}, meta={"images": [row["image"]]},
            ))
    output = data_dir / "toy_sift_dpo.jsonl"
    report = convert_preference(sift_path, output, media_dir=data_dir, strict=True)
    if report.rows_written == 0:
        raise RuntimeError("no DPO rows written")
    register_dataset(data_dir, "toy_sift_dpo", output, ranking=True, overwrite=True)
    return ToyData(dataset_dir=os.fspath(data_dir), datasets=["toy_sift_dpo"], test_pairs=[], test_points=[])


def toy_overrides(model_dir: Path, data: ToyData, output_dir: Path, setup: ToyTrainingSetup) -> dict[str, Any]:
    """CPU overrides plus the toy model, data and schedule; everything else comes from the recipe."""
    return {
        **CPU_OVERRIDES,
        "model_name_or_path": os.fspath(model_dir),
        "trust_remote_code": False,
        "dataset_dir": data.dataset_dir,
        "media_dir": data.dataset_dir,
        "dataset": ",".join(data.datasets),
        "output_dir": os.fspath(output_dir),
        "image_max_pixels": 56 * 56,
        "image_min_pixels": 56 * 56,
        "freeze_vision_tower": False,
        "freeze_multi_modal_projector": False,
        "cutoff_len": 512,
        "disable_gradient_checkpointing": True,  # a toy model needs no memory savings; checkpointing costs time
        "per_device_train_batch_size": setup.batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": setup.learning_rate,
        "num_train_epochs": setup.epochs,
        "max_steps": setup.max_steps,
        "warmup_ratio": 0.05,
        "logging_steps": 5,
        "save_steps": 1_000_000,  # no intermediate checkpoints (OmegaConf would read save_strategy=no as False)
        "plot_loss": False,
        "overwrite_cache": True,
        "seed": setup.seed,
    }


def train_toy_reward_model(
    work_dir: Path, setup: ToyTrainingSetup, recipe: str = "qwen2_5vl_full_sft", threads: int = 2,
    timeout: float | None = None,
) -> tuple[TrainRun, ToyData]:
    work_dir = Path(work_dir)
    model_dir = build_toy_reward_model(work_dir / "init-model", setup)
    data = prepare_toy_data(work_dir / "data", setup)
    overrides = toy_overrides(model_dir, data, work_dir / "trained", setup)
    run = run_train(recipe_path(recipe), overrides, env=OFFLINE_ENV, threads=threads, timeout=timeout)
    return run, data


@dataclass
class ToyAccuracy:
    """Held-out accuracy; pointwise counts an exact match of the parsed "Final Score" with the label."""

    pairwise_accuracy: float
    pointwise_accuracy: float
    pointwise_within_one_accuracy: float  # |score - label| <= 1; reported beside, never instead of, exact
    pairwise_failed: int  # unparseable / errored items (counted as wrong)
    pointwise_failed: int
    num_pairs: int
    num_points: int

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(checkpoint: str | os.PathLike[str], data: ToyData, batch_size: int = 16) -> ToyAccuracy:
    """Generate verdicts for the held-out items and score them against the labels (a failure is wrong)."""
    from reward_core.model import JudgeItem, UnifiedReward

    judge = UnifiedReward.from_pretrained(os.fspath(checkpoint), device="cpu", dtype="float32",
                                          batch_size=batch_size, max_new_tokens=12)
    root = Path(data.dataset_dir)
    pair_items = [JudgeItem([os.fspath(root / p) for p in r["images"]], {"prompt": r["prompt"]}, r["id"])
                  for r in data.test_pairs]
    point_items = [JudgeItem([os.fspath(root / r["image"])], {"prompt": r["prompt"]}, r["id"])
                   for r in data.test_points]
    pair_results = judge.judge_batch(PAIR_TEMPLATE, pair_items)
    point_results = judge.judge_batch(POINT_TEMPLATE, point_items)
    pair_hits = sum(res.ok and res.winner == r["winner"] for res, r in zip(pair_results, data.test_pairs))
    point_errors = [abs(res.score - r["score"]) if res.ok and res.score is not None else math.inf
                    for res, r in zip(point_results, data.test_points)]
    point_hits = sum(error == 0 for error in point_errors)
    point_near = sum(error <= 1 for error in point_errors)
    return ToyAccuracy(
        pairwise_accuracy=pair_hits / max(1, len(pair_items)),
        pointwise_accuracy=point_hits / max(1, len(point_items)),
        pointwise_within_one_accuracy=point_near / max(1, len(point_items)),
        pairwise_failed=sum(not res.ok for res in pair_results),
        pointwise_failed=sum(not res.ok for res in point_results),
        num_pairs=len(pair_items),
        num_points=len(point_items),
    )


def write_json(path: str | os.PathLike[str], value: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
