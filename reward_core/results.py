"""Typed results returned by every judge call and every output parser."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Status(str, Enum):
    """Outcome of one judge call."""

    OK = "ok"
    PARSE_ERROR = "parse_error"
    MEDIA_ERROR = "media_error"
    BACKEND_ERROR = "backend_error"


def _json_number(value: float | None) -> float | None:
    """NaN / inf are not JSON: report them as missing (None)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class RewardResult:
    """The reward model's verdict on one item.

    A failed item carries ``status != ok`` and ``error``; it never gets an invented
    ``winner`` or ``score``.
    """

    status: Status
    winner: int | None = None  # 1, 2, 0 = tie; None = not pairwise or failed
    score: float | None = None  # pointwise, on the template's scale
    scores: dict[str, float] | None = None  # per dimension
    probs: dict[str, float] | None = None  # logit mode: {"1": p, "2": p} or {"1": p, ..., "5": p}
    text: str | None = None  # raw model output
    error: str | None = None  # human-readable reason when status != ok
    consistency: float | None = None  # swap mode: 1.0 when both orders agree, 0.0 when not

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def first_share(self, use_probs: bool = False) -> float | None:
        """A pairwise verdict as candidate 1's share of the win: 1 (win), 0.5 (tie), 0 (loss), or ``P(1)`` with
        ``use_probs`` when logit mode gave probabilities; ``None`` when the comparison failed."""
        if not self.ok or self.winner not in (0, 1, 2):
            return None
        if use_probs and self.probs:
            return float(self.probs["1"])
        return {1: 1.0, 2: 0.0, 0: 0.5}[self.winner]

    @classmethod
    def failure(cls, status: Status | str, error: str, text: str | None = None, **extra: Any) -> RewardResult:
        """A failed result: ``status`` must not be ``ok``."""
        status = Status(status)
        if status is Status.OK:
            raise ValueError("failure() needs a non-ok status")
        return cls(status=status, error=error, text=text, **extra)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: status as its string value, NaN/inf as None."""
        return {
            "status": self.status.value,
            "winner": self.winner,
            "score": _json_number(self.score),
            "scores": None if self.scores is None else {k: _json_number(v) for k, v in self.scores.items()},
            "probs": None if self.probs is None else {k: _json_number(v) for k, v in self.probs.items()},
            "text": self.text,
            "error": self.error,
            "consistency": _json_number(self.consistency),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardResult:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        fields = ("status", "winner", "score", "scores", "probs", "text", "error", "consistency")
        return cls(**{k: data[k] for k in fields if k in data})
