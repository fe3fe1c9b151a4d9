"""Preference pairs -> LLaMA-Factory pairwise (``ranking: true``) records for the DPO stage.

Generic rows ``{prompt | question, image | images | video, chosen, rejected}`` (optionally with
``chosen_score``/``rejected_score``), and the records ``unifiedreward.sift.run_sift`` writes
(``{id, status, fields: {question}, candidates, chosen_index, rejected_index, meta: {images}}``;
only ``kept`` records are converted, the others are counted as filtered).
``chosen``/``rejected`` are answer strings (or ``{"content"|"value": str}`` messages).
"""

from __future__ import annotations

import math
from typing import Any

from .media_paths import MediaResolver
from .report import RowError
from .row_media import row_media
from .sharegpt import pairwise_record, user_content


def convert_preference_row(row: dict[str, Any], resolver: MediaResolver) -> dict[str, Any] | None:
    if _is_sift_record(row):
        if row["status"] != "kept":
            return None
        row = _flatten_sift_record(row)
    prompt = row.get("prompt", row.get("question"))
    if not isinstance(prompt, str) or not prompt.strip():
        raise RowError("missing 'prompt' (or 'question') string")
    _check_scores(row)
    media = row_media(row, resolver)
    messages = [{"role": "user", "content": user_content(prompt, len(media.images), len(media.videos))}]
    return pairwise_record(messages, _answer(row, "chosen"), _answer(row, "rejected"), media.images, media.videos)


def _answer(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, dict):
        value = value.get("content", value.get("value"))
    if not isinstance(value, str):
        raise RowError(f"{key!r} must be a string or a message with 'content'")
    return value


def _check_scores(row: dict[str, Any]) -> None:
    if "chosen_score" not in row and "rejected_score" not in row:
        return
    scores = []
    for key in ("chosen_score", "rejected_score"):
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RowError(f"{key!r} must be a finite number, got {value!r}")
        scores.append(value)
    if scores[0] < scores[1]:
        raise RowError(f"chosen_score {scores[0]} is below rejected_score {scores[1]}")


def _is_sift_record(row: dict[str, Any]) -> bool:
    return {"status", "candidates", "chosen_index", "rejected_index"} <= row.keys()


def _flatten_sift_record(record: dict[str, Any]) -> dict[str, Any]:
    """A kept sift record as a generic preference row (text candidates only: DPO of an understanding VLM)."""
    candidates, fields, meta = record["candidates"], record.get("fields") or {}, record.get("meta") or {}
    try:
        chosen, rejected = candidates[record["chosen_index"]], candidates[record["rejected_index"]]
    except (IndexError, KeyError, TypeError) as error:
        raise RowError(f"kept sift record with invalid chosen/rejected index: {error}") from error
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise RowError("sift record candidates are not texts (generation sift output is for Diffusion-DPO)")
    row = {"prompt": fields.get("question", fields.get("prompt")), "chosen": chosen, "rejected": rejected,
           "chosen_score": record.get("chosen_score"), "rejected_score": record.get("rejected_score")}
    for key in ("image", "images", "video", "videos"):
        if meta.get(key):
            row[key] = meta[key]
    return row
