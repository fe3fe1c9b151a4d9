"""Helpers shared by the ``unifiedreward`` subcommands: ``--set NAME=VALUE`` fields and judge loading."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reward_core.model import UnifiedReward


def parse_fields(pairs: list[str]) -> dict[str, str]:
    """``["name=value", ...]`` -> dict (the value may contain ``=``)."""
    fields = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set expects NAME=VALUE, got {pair!r}")
        fields[name] = value
    return fields


def load_judge(
    checkpoint: str | None,
    server: str | None = None,
    served_model: str | None = None,
    *,
    device: str | None = None,
    dtype: str = "auto",
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    api_key: str | None = None,
    logprob_tokens: str = "auto",
    family: str | None = None,
) -> UnifiedReward:
    """The judge served at ``server`` (OpenAI-compatible URL, or replicas "URL1,URL2") when given, else
    the local ``checkpoint``.

    ``device``, ``dtype`` and ``batch_size`` apply to a local checkpoint only; ``api_key`` (default
    ``$UNIFIEDREWARD_API_KEY`` / ``$OPENAI_API_KEY``) and ``logprob_tokens`` to a server only. ``family`` names the
    released checkpoint the judge is (its default templates and chat-template options: thinking off on Qwen3.5).
    """
    from reward_core.model import UnifiedReward

    if server:
        return UnifiedReward.from_server(
            server, model=served_model, max_new_tokens=max_new_tokens, api_key=api_key, logprob_tokens=logprob_tokens,
            checkpoint=family,
        )
    if not checkpoint:
        raise ValueError("give a reward model checkpoint or a server URL")
    return UnifiedReward.from_pretrained(
        checkpoint, device=device, dtype=dtype, batch_size=batch_size, max_new_tokens=max_new_tokens, checkpoint=family
    )
