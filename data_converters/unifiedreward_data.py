"""Released UnifiedReward training data -> LLaMA-Factory multimodal sharegpt SFT records.

Accepted rows (LLaVA-NeXT ``train_data.json`` items, HF dataset rows with the same columns, Think
cold-start CoT items, Think GRPO items)::

    {"image" | "images" | "video": ..., "conversations": [{"from": "human", "value": "<image>\\n..."},
                                                           {"from": "gpt", "value": "Image 1 is better."}]}
    {"images": [...], "problem": "...", "solution": "<think>...</think><answer>...</answer>"}

LLaVA's ``<image>`` tokens are dropped from every turn and exactly one ``<image>`` (or ``<video>``)
per media item is put at the start of the first user turn. Frames given as a list are one video
(:func:`frames_as_video`), as upstream's loader trains them.
"""

from __future__ import annotations

from typing import Any

from .media_paths import MediaResolver
from .report import RowError
from .row_media import RowMedia, row_media
from .sharegpt import (
    IMAGE_PLACEHOLDER,
    VIDEO_PLACEHOLDER,
    sft_record,
    strip_placeholders,
    user_content,
)

_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def convert_unifiedreward_row(row: dict[str, Any], resolver: MediaResolver) -> dict[str, Any]:
    media = row_media(row, resolver)
    turns = _turns(row)
    if "conversations" in row and _given_as_frames(row, media):
        media = frames_as_video(media, _source_placeholders(turns))
    check_source_placeholders(turns, media)
    messages = []
    for role, text in turns:
        if role == "user" and not any(message["role"] == "user" for message in messages):
            text = user_content(text, len(media.images), len(media.videos))
        else:
            text = strip_placeholders(text)
        messages.append({"role": role, "content": text})
    return sft_record(messages, media.images, media.videos)


def _given_as_frames(row: dict[str, Any], media: RowMedia) -> bool:
    """Upstream's LLaVA loader (``llava/train/train.py``, ``_get_item``) reads an ``images`` list longer
    than 2 as the frames of one video; a ``video`` given as a list is its frames too. Think GRPO items
    (``problem``/``solution``, no ``conversations``) are not asked: upstream's Qwen GRPO trainer feeds
    their frames as separate images."""
    if "images" in row:
        return len(media.images) > 2
    return isinstance(row.get("video"), list) and len(media.images) > 1


def frames_as_video(media: RowMedia, placeholders: int) -> RowMedia:
    """Frames -> one video of all of them, in order (LLaMA-Factory's ``videos: [[frame, ...]]``), as
    upstream trains them: its loader strips the turn's placeholders and puts one in front for the video.
    A released VideoDPO pair (16 frames: 8 of video 1, then 8 of video 2) is one 16-frame video.

    A conversation with one placeholder per frame states that they are separate images (an edit
    triple: source, edited 1, edited 2); they stay images.
    """
    if placeholders == len(media.images):
        return media
    if placeholders > 1:
        raise RowError(f"{placeholders} <image>/<video> placeholder(s) in the conversation for {len(media.images)} "
                       "frames: one video takes 0 or 1, separate images one each")
    return RowMedia([], [media.images])


def _source_placeholders(turns: list[tuple[str, str]]) -> int:
    return sum(text.count(IMAGE_PLACEHOLDER) + text.count(VIDEO_PLACEHOLDER) for _, text in turns)


def check_source_placeholders(turns: list[tuple[str, str]], media: RowMedia) -> None:
    """The input's own ``<image>``/``<video>`` tokens must match its media: none at all (Think GRPO
    ``problem`` text) or one per media item (a video given as frames is one item, :func:`frames_as_video`).

    A mismatch (two ``<image>`` tags for one image) means the row and its media disagree; it is
    refused rather than silently re-tagged.
    """
    found = _source_placeholders(turns)
    if found not in {0, media.count}:
        raise RowError(f"{found} <image>/<video> placeholder(s) in the conversation for {media.count} media item(s)")


def _turns(row: dict[str, Any]) -> list[tuple[str, str]]:
    if "conversations" in row:
        conversations = row["conversations"]
        if not isinstance(conversations, list) or not conversations:
            raise RowError("'conversations' must be a non-empty list")
        turns = []
        for index, turn in enumerate(conversations):
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                raise RowError(f"conversations[{index}] must be {{'from': ..., 'value': str}}")
            role = _ROLES.get(turn.get("from"))
            if role is None:
                raise RowError(f"conversations[{index}] has unknown speaker {turn.get('from')!r}")
            turns.append((role, turn["value"]))
        return turns
    if isinstance(row.get("problem"), str) and isinstance(row.get("solution"), str):
        return [("user", row["problem"]), ("assistant", row["solution"])]
    raise RowError("row has neither 'conversations' nor 'problem'/'solution'")
