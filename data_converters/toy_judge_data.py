"""Toy-world judge data -> UnifiedReward SFT records (the toy reward model's training set).

The prompt is the UnifiedReward template rendered by ``reward_core.prompts`` (the same text the
model sees at inference) and the target is UnifiedReward's answer format: ``"Image 1 is better."``,
``"Both images are equally good."``, ``"Final Score: 4"``. Which template a row uses follows from
its columns (``winner`` + ``images`` = image pair, ``score`` + ``image`` + ``prompt`` = image point,
...) unless a template key is given.
"""

from __future__ import annotations

from typing import Any

from reward_core.prompts import Template, get_template

from .media_paths import MediaResolver
from .report import RowError
from .row_media import row_media
from .sharegpt import sft_record, user_content

DEFAULT_TEMPLATES = {
    "image_pair": "image_generation.pair_rank.v1",
    "image_point": "image_generation.point_score.v1",
    "video_pair": "video_generation.pair_rank.v1",
    "video_point": "video_generation.point_score.v1",
    "answer_pair": "image_understanding.pair_rank.v1",
    "answer_point": "image_understanding.point_score.v1",
}


def row_kind(row: dict[str, Any]) -> str:
    """``image_pair`` | ``image_point`` | ``video_pair`` | ``video_point`` | ``answer_pair`` | ``answer_point``."""
    if "answer1" in row or "response" in row:
        subject = "answer"
    elif "videos" in row or "video" in row:
        subject = "video"
    else:
        subject = "image"
    if "winner" in row:
        return f"{subject}_pair"
    if "score" in row:
        return f"{subject}_point"
    raise RowError("row has neither 'winner' (pairwise) nor 'score' (pointwise)")


def judge_target(template: Template, row: dict[str, Any]) -> str:
    """The UnifiedReward answer for this row's label, in the template's output format."""
    if template.pairwise:
        winner = row.get("winner")
        if winner not in (0, 1, 2) or isinstance(winner, bool):
            raise RowError(f"'winner' must be 1, 2 or 0 (tie), got {winner!r}")
        if winner == 0:
            return f"Both {template.label.lower()}s are equally good."
        return f"{template.label} {winner} is better."
    score = row.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise RowError(f"'score' must be a number, got {score!r}")
    low, high = template.scale
    if not low <= score <= high:
        raise RowError(f"score {score} outside the template's scale {low:g}-{high:g}")
    return f"Final Score: {score:g}"


def convert_toy_judge_row(
    row: dict[str, Any], resolver: MediaResolver, template_key: str | None = None, split: str | None = None
) -> dict[str, Any] | None:
    """One SFT record, or ``None`` when ``split`` is set and the row belongs to another split."""
    if split is not None and row.get("split", split) != split:
        return None
    template = get_template(template_key or DEFAULT_TEMPLATES[row_kind(row)])
    media = row_media(row, resolver)
    if len(media.images) + len(media.videos) != template.media_count:
        raise RowError(
            f"template {template.key} takes {template.media_count} media item(s), "
            f"row has {len(media.images) + len(media.videos)}"
        )
    try:
        prompt = template.render(**row)
    except ValueError as error:
        raise RowError(str(error)) from error
    messages = [
        {"role": "user", "content": user_content(prompt, len(media.images), len(media.videos))},
        {"role": "assistant", "content": judge_target(template, row)},
    ]
    return sft_record(messages, media.images, media.videos)
