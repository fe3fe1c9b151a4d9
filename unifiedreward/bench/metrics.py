"""Benchmark metrics as pure functions.

Conventions (VideoAlign ``calc_accuracy.py``): ``human`` holds +1 (A preferred), -1 (B preferred) or
0 (tie); ``margins`` holds the model's A-minus-B preference (a score difference, ``p(1) - p(2)``, or the
verdict mapped to +1 / -1 / 0). A zero margin is a model tie. Functions return ``None`` when the
metric has nothing to average over, never a made-up number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby


@dataclass(frozen=True)
class TieCalibratedAccuracy:
    """Accuracy with ties at the best tie threshold ``epsilon`` (model ties: ``|margin| <= epsilon``)."""

    accuracy: float
    epsilon: float


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def _check_lengths(human: Sequence[int], margins: Sequence[float]) -> None:
    if len(human) != len(margins):
        raise ValueError(f"{len(human)} human labels but {len(margins)} margins")
    bad = [label for label in human if label not in (-1, 0, 1)]
    if bad:
        raise ValueError(f"human labels must be -1, 0 or 1, got {bad[0]!r}")


def tie_calibrated_accuracy(
    human: Sequence[int], margins: Sequence[float], *, per_pair_sweep: bool = False
) -> TieCalibratedAccuracy | None:
    """"tau" / accuracy with ties (Deutsch et al. 2023, "Ties Matter"), as reported for GenAI-Bench and
    VideoGen-RewardBench.

    A pair is a hit when model and human prefer the same side, or when both call it a tie; every
    pair counts in the denominator. The model calls a tie when ``|margin| <= epsilon``; the best
    ``epsilon`` over ``{0} ∪ {|margin|}`` is reported (the smallest one on equal accuracy).

    ``per_pair_sweep=True`` reproduces VideoAlign's ``calc_accuracy_with_ties``: it turns pairs into
    ties one at a time in ``|margin|`` order (input order among equal margins), scores the partial
    states inside a group of equal margins, and never scores the "no ties" start. With distinct
    continuous margins both rules agree (but for that start); with discrete verdicts (+1 / 0 / -1) the
    reference depends on row order and is optimistic, hence the threshold rule by default.
    """
    _check_lengths(human, margins)
    if not human:
        return None
    n = len(human)
    pairs = sorted(
        ((h, abs(float(m)), h * _sign(float(m)) > 0) for h, m in zip(human, margins)), key=lambda pair: pair[1]
    )
    hits = sum(agree for _, _, agree in pairs)  # no model ties yet
    best: TieCalibratedAccuracy | None = None
    if not per_pair_sweep and pairs[0][1] > 0:
        best = TieCalibratedAccuracy(hits / n, 0.0)  # epsilon = 0 and no zero margin: no model ties
    for epsilon, group in groupby(pairs, key=lambda pair: pair[1]):
        for h, _, agree in group:
            hits += (h == 0) - agree  # this pair becomes a model tie
            if per_pair_sweep:
                best = _keep_best(best, TieCalibratedAccuracy(hits / n, epsilon))
        if not per_pair_sweep:
            best = _keep_best(best, TieCalibratedAccuracy(hits / n, epsilon))
    return best


def _keep_best(current: TieCalibratedAccuracy | None, candidate: TieCalibratedAccuracy) -> TieCalibratedAccuracy:
    """Higher accuracy wins; on equal accuracy the earlier (smaller) epsilon stays."""
    if current is None or candidate.accuracy > current.accuracy:
        return candidate
    return current


def accuracy_without_ties(human: Sequence[int], margins: Sequence[float]) -> float | None:
    """"diff" accuracy: over pairs humans did not tie; a model tie (zero margin) is a miss."""
    _check_lengths(human, margins)
    decided = [(h, m) for h, m in zip(human, margins) if h != 0]
    if not decided:
        return None
    return sum(1 for h, m in decided if _sign(float(m)) == h) / len(decided)


def accuracy(correct: Sequence[bool]) -> float | None:
    """Fraction of hits; None for an empty list."""
    return sum(map(bool, correct)) / len(correct) if correct else None


def category_accuracies(categories: Sequence[str], correct: Sequence[bool]) -> dict[str, float]:
    """Accuracy per category (VL-RewardBench: general / hallucination / reasoning)."""
    if len(categories) != len(correct):
        raise ValueError(f"{len(categories)} categories but {len(correct)} results")
    grouped: dict[str, list[bool]] = {}
    for category, hit in zip(categories, correct):
        grouped.setdefault(category, []).append(bool(hit))
    return {category: sum(hits) / len(hits) for category, hits in sorted(grouped.items())}


def macro_accuracy(per_category: Mapping[str, float]) -> float | None:
    """Unweighted mean of the category accuracies (VL-RewardBench "macro")."""
    return sum(per_category.values()) / len(per_category) if per_category else None


@dataclass(frozen=True)
class PositionBias:
    """How the verdict depends on where the preferred candidate is shown.

    ``accuracy_preferred_first`` / ``_second``: accuracy over presentations whose human-preferred
    candidate sat in slot 1 / slot 2. ``first_slot_rate``: how often the model picks slot 1 among
    all presentations. ``consistency``: share of pairs judged in both orders whose two verdicts name
    the same candidate (or both a tie); None without swapped presentations.
    """

    accuracy_preferred_first: float | None
    accuracy_preferred_second: float | None
    n_preferred_first: int
    n_preferred_second: int
    first_slot_rate: float | None
    consistency: float | None
    n_swapped_pairs: int

    @property
    def gap(self) -> float | None:
        """``accuracy_preferred_first - accuracy_preferred_second`` (> 0: the judge favours slot 1)."""
        if self.accuracy_preferred_first is None or self.accuracy_preferred_second is None:
            return None
        return self.accuracy_preferred_first - self.accuracy_preferred_second


def position_bias(
    preferred_slots: Sequence[int | None], verdict_slots: Sequence[int], swapped_verdicts: Sequence[tuple[int, int]] = ()
) -> PositionBias:
    """Position-bias statistics.

    ``preferred_slots[i]``: the slot (1 or 2) holding the human-preferred candidate in presentation
    ``i``, None for a human tie. ``verdict_slots[i]``: the slot the model chose (1, 2, or 0 = tie).
    ``swapped_verdicts``: per pair judged in both orders, the A/B-oriented verdicts (+1 / -1 / 0) of
    the A-first and the B-first presentation.
    """
    if len(preferred_slots) != len(verdict_slots):
        raise ValueError(f"{len(preferred_slots)} preferred slots but {len(verdict_slots)} verdicts")
    first = [verdict == 1 for slot, verdict in zip(preferred_slots, verdict_slots) if slot == 1]
    second = [verdict == 2 for slot, verdict in zip(preferred_slots, verdict_slots) if slot == 2]
    agreements = [ab == ba for ab, ba in swapped_verdicts]
    return PositionBias(
        accuracy_preferred_first=accuracy(first),
        accuracy_preferred_second=accuracy(second),
        n_preferred_first=len(first),
        n_preferred_second=len(second),
        first_slot_rate=accuracy([verdict == 1 for verdict in verdict_slots]),
        consistency=accuracy(agreements),
        n_swapped_pairs=len(agreements),
    )
