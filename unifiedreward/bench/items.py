"""Typed benchmark items: one human-labelled pair, in the benchmark's own A/B orientation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CandidateKind = Literal["media", "answers"]

A_BETTER, B_BETTER, TIE = 1, -1, 0


@dataclass(frozen=True)
class PairItem:
    """One pair to judge.

    ``candidates`` are the two things being compared, A first: media references for generation
    benchmarks, answer texts for understanding benchmarks. ``human`` follows the VideoAlign
    convention: +1 = A preferred, -1 = B preferred, 0 = tie.
    """

    id: str
    human: int
    candidates: tuple[Any, Any]
    fields: dict[str, str] = field(default_factory=dict)  # shared template fields: prompt / question
    context_media: tuple[Any, ...] = ()  # media shown with both candidates (the VL-RewardBench image)
    category: str | None = None
    raw_label: str | None = None

    def __post_init__(self) -> None:
        if self.human not in (A_BETTER, B_BETTER, TIE):
            raise ValueError(f"human label must be 1, -1 or 0, got {self.human!r}")
        if len(self.candidates) != 2:
            raise ValueError(f"a pair needs exactly 2 candidates, got {len(self.candidates)}")


@dataclass(frozen=True)
class InvalidRecord:
    """A dataset row that could not become a :class:`PairItem` (reported, never judged)."""

    index: int
    id: str | None
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "error": self.error}
