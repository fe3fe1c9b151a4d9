"""The contract every backend (transformers, OpenAI-compatible HTTP) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class BackendRequest:
    """One rendered judge call: media items first, then the prompt text (upstream order)."""

    media: list[Any]
    text: str
    answer_prefix: str | None = None  # logit mode: assistant text prefilled before the answer
    soft_verdict: bool = False  # generate mode: also return each generated token's log-probabilities


@dataclass
class Generation:
    """Generated text for one request, or the reason it failed.

    For a ``soft_verdict`` request also ``tokens`` (each generated token's text) and ``token_logprobs`` (at
    each step, log-probabilities of alternatives keyed by token text: top-k, or at least "1" and "2"), or
    ``logprobs_error`` when they could not be had (see :mod:`reward_core.soft_verdict`).
    """

    text: str | None = None
    error: str | None = None
    media_error: bool = False  # the error is the item's media (it could not be decoded), not the backend
    tokens: list[str] | None = None
    token_logprobs: list[dict[str, float]] | None = None
    logprobs_error: str | None = None


@dataclass
class AnswerLogprobs:
    """Log-probabilities of each candidate answer after the answer prefix, or the reason it failed."""

    logprobs: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    media_error: bool = False  # the error is the item's media (it could not be decoded), not the backend


@dataclass
class NodeProbs:
    """Probability of each next symbol ("0".."9", ".") at each answer-trie node ("" = right after the
    answer prefix, "3", "3." ...), or the reason it failed (see :mod:`reward_core.score_trie`)."""

    probs: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None
    media_error: bool = False  # the error is the item's media (it could not be decoded), not the backend


class Backend(Protocol):
    """Runs judge calls. Never raises for a per-item failure: it returns the error in that item."""

    def generate(self, requests: list[BackendRequest], max_new_tokens: int) -> list[Generation]: ...

    def answer_logprobs(self, requests: list[BackendRequest], candidates: list[str]) -> list[AnswerLogprobs]: ...

    def answer_node_probs(self, requests: list[BackendRequest], nodes: tuple[str, ...]) -> list[NodeProbs]: ...
