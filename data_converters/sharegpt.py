"""LLaMA-Factory multimodal sharegpt records (OpenAI-style ``role``/``content`` tags)."""

from __future__ import annotations

import re
from typing import Any

from .report import RowError

IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
_INLINE_PLACEHOLDER = re.compile(r" <(?:image|video)>(?= )")  # "rate <image> it" -> "rate it"
_PLACEHOLDER = re.compile(r"<(?:image|video)>\n?")


def strip_placeholders(text: str) -> str:
    """Remove every ``<image>``/``<video>`` token (and the newline LLaVA puts after it)."""
    return _PLACEHOLDER.sub("", _INLINE_PLACEHOLDER.sub("", text))


def user_content(text: str, num_images: int = 0, num_videos: int = 0) -> str:
    """User text with exactly one placeholder per media item, media first (the inference order)."""
    return IMAGE_PLACEHOLDER * num_images + VIDEO_PLACEHOLDER * num_videos + strip_placeholders(text)


def count_placeholders(messages: list[dict[str, str]]) -> tuple[int, int]:
    """Number of ``<image>`` and ``<video>`` placeholders across ``messages``."""
    text = "".join(message["content"] for message in messages)
    return text.count(IMAGE_PLACEHOLDER), text.count(VIDEO_PLACEHOLDER)


def sft_record(messages: list[dict[str, str]], images: list[str], videos: list[str]) -> dict[str, Any]:
    """A checked SFT record: user/assistant turns alternate and placeholders match the media.

    A leading ``{"role": "system"}`` message is LLaMA-Factory's per-row system prompt.
    """
    check_turns(messages, final_role="assistant")
    _check_counts(messages, images, videos)
    return {"messages": messages, "images": images, "videos": videos}


def pairwise_record(
    prompt: list[dict[str, str]], chosen: str, rejected: str, images: list[str], videos: list[str]
) -> dict[str, Any]:
    """A checked ``ranking: true`` record: the prompt ends with the user, media sit in the prompt."""
    check_turns(prompt, final_role="user")
    _check_counts(prompt, images, videos)
    for name, answer in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(answer, str) or not answer.strip():
            raise RowError(f"{name} must be a non-empty string")
        if IMAGE_PLACEHOLDER in answer or VIDEO_PLACEHOLDER in answer:
            raise RowError(f"{name} contains a media placeholder; media belong in the prompt")
    if chosen == rejected:
        raise RowError("chosen and rejected are identical")
    return {
        "messages": prompt,
        "chosen": {"role": "assistant", "content": chosen},
        "rejected": {"role": "assistant", "content": rejected},
        "images": images,
        "videos": videos,
    }


def check_turns(messages: list[dict[str, str]], final_role: str) -> None:
    """Optional system message, then user/assistant alternating, ending with ``final_role``."""
    offset = 1 if messages and messages[0]["role"] == "system" else 0
    if len(messages) == offset:
        raise RowError("no conversation turns")
    for index, message in enumerate(messages):
        expected = "system" if index < offset else ("user" if (index - offset) % 2 == 0 else "assistant")
        if message["role"] != expected:
            raise RowError(f"turn {index} has role {message['role']!r}, expected {expected!r}")
        if not isinstance(message["content"], str):
            raise RowError(f"turn {index} content must be a string")
    if messages[-1]["role"] != final_role:
        raise RowError(f"conversation must end with a {final_role} turn")


def _check_counts(messages: list[dict[str, str]], images: list[str], videos: list[str]) -> None:
    num_images, num_videos = count_placeholders(messages)
    if num_images != len(images) or num_videos != len(videos):
        raise RowError(
            f"{num_images} <image> / {num_videos} <video> placeholders for {len(images)} images / {len(videos)} videos"
        )
