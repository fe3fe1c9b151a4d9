"""TRL ``DPOTrainer`` on sifted preference pairs (``unifiedreward sift`` -> ``pairs.jsonl``) for a VLM policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .collator import vision_dpo_trainer_class

SCORE_COLUMNS = ("chosen_score", "rejected_score")


def load_preference_pairs(path: str | Path) -> Any:
    """``pairs.jsonl`` rows (``images``, ``prompt``, ``chosen``, ``rejected``) as a ``datasets.Dataset``.

    ``images`` is cast to a sequence of ``Image`` features; the judge's scores are dropped. An empty file
    raises ``ValueError``: there is nothing to train on.
    """
    from datasets import Dataset, Image, Sequence

    path = Path(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path}: no kept pairs to train on (see summary.json next to it)")
    rows = [{key: value for key, value in row.items() if key not in SCORE_COLUMNS} for row in rows]
    return Dataset.from_list(rows).cast_column("images", Sequence(Image()))


def vision_dpo_trainer(policy: str, args: Any, train_dataset: Any, **kwargs: Any) -> Any:
    """A ``DPOTrainer`` for the VLM checkpoint ``policy`` that batches image preference rows right on this TRL.

    ``args`` is a ``DPOConfig``; its ``max_length`` cuts completions only, never image tokens, and on
    TRL < 0.29 the vision-safe values are set for you (:func:`vision_dpo_trainer_class`). The processor
    is the trainer's ``processing_class``.
    """
    return vision_dpo_trainer_class()(model=policy, args=args, train_dataset=train_dataset, **kwargs)
