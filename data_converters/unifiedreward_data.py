"""Released UnifiedReward training data -> LLaMA-Factory multimodal sharegpt SFT records.

Accepted rows (LLaVA-NeXT ``train_data.json`` items, HF dataset rows with the same columns, Think
cold-start CoT items, Think GRPO items)::

    {"image" | "images" | "video": ..., "conversations": [{"from": "human", "value": "<image>\\n..."},
                                                           {"from": "gpt", "value": "Image 1 is better."}]}
    {"images": [...], "problem": "...", "solution": "<think>...</think><answer>...</answer>"}

LLaVA's ``<image>`` tokens are dropped from every turn and exactly one ``<image>`` (or ``<video>``)
per media item is put at the start of the first user turn.
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
    check_source_placeholders(turns, media, video_as_frames=row.get("video") is not None and bool(media.images))
    messages = []
    for role, text in turns:
        if role == "user" and not any(message["role"] == "user" for message in messages):
            text = user_content(text, len(media.images), len(media.videos))
        else:
            text = strip_placeholders(text)
        messages.append({"role": role, "content": text})
    return sft_record(messages, media.images, media.videos)


def check_source_placeholders(turns: list[tuple[str, str]], media: RowMedia, video_as_frames: bool = False) -> None:
    """The input's own ``<image>``/``<video>`` tokens must match its media: none at all (Think GRPO
    ``problem`` text), one per media item, or one for a whole video given as frames (LLaVA-Video).

    A mismatch (two ``<image>`` tags for one image) means the row and its media disagree; it is
    refused rather than silently re-tagged.
    """
    found = sum(text.count(IMAGE_PLACEHOLDER) + text.count(VIDEO_PLACEHOLDER) for _, text in turns)
    allowed = {0, media.count} | ({1} if video_as_frames else set())
    if found not in allowed:
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
