"""Pairwise group rewards: which pairs of a group to judge, and how to turn the verdicts into rewards.

A *schedule* lists ordered pairs ``(first, second)`` over ``range(G)`` (``first`` is shown to the judge first):

* :func:`round_robin` - every pair, lower index first (Pref-GRPO's scheme, ``"pref_grpo"``: C(G,2) calls), or
  in both orders (G(G-1) calls, position-neutral);
* :func:`sparse` - each candidate meets ``k`` others and is shown first in half of its comparisons
  (G*k/2 calls): a circulant graph over a seeded relabelling of the group, the same on every process given
  the same seed.

A *verdict* is ``(first, second, share)``: the first candidate's share of the win, 1 / 0 / 0.5 (tie) for a
text verdict, P(first wins) for a soft (logit) one, None for a failed comparison (missing, never a loss).
*Aggregators* turn a group's verdicts into per-candidate rewards on [0, 1]:

* :func:`win_rate` - wins / successful comparisons;
* :func:`bradley_terry` - a Bradley-Terry fit with a first-slot (position) term, by Newton's method, soft
  verdicts as fractional wins and ties as half wins, a small ridge so that perfect separation stays finite.
  The reward is the candidate's *expected win rate against the rest of its group under the fit*, position
  removed: the same [0, 1] scale as the win rate (a drop-in when several rewards are weighted and summed),
  and unlike a raw win rate it does not depend on which opponents a sparse schedule happened to draw.

A candidate without a successful comparison gets None (the caller imputes; never the worst value).
:class:`Pairing` bundles a schedule and an aggregator for adapters that score many groups at once
(:func:`plan_pairs`, :func:`score_pairs`); ``benchmarks/pairwise_schedules.py`` measures the schedules.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from reward_core.prompts import get_template
from reward_core.soft_verdict import reads_soft_verdict

logger = logging.getLogger(__name__)

Pair = tuple[int, int]
SCHEDULES = ("round_robin", "pref_grpo", "sparse")
AGGREGATES = ("win_rate", "bt")
RIDGE = 0.01  # Gaussian prior on strengths (variance 1/RIDGE): finite under perfect separation
POSITION_RIDGE = 0.01


class Verdict(NamedTuple):
    """One judged ordered pair: the first candidate's share of the win (None: the comparison failed)."""

    first: int
    second: int
    share: float | None


# --------------------------------------------------------------------------- schedules


def _ring_pairs(size: int) -> list[Pair]:
    """Unordered pairs of ``range(size)`` (lower index first), nearest ring neighbours first, so that any
    prefix spreads the comparisons evenly over members."""
    pairs, seen = [], set()
    for distance in range(1, size // 2 + 1):
        for i in range(size):
            pair = (min(i, (i + distance) % size), max(i, (i + distance) % size))
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
    return pairs


def with_reverse(pairs: Sequence[Pair]) -> list[Pair]:
    """Each pair followed by the same pair in the other order."""
    return [ordered for a, b in pairs for ordered in ((a, b), (b, a))]


def round_robin(size: int, both_orders: bool = False) -> list[Pair]:
    """Every pair once, lower index first (Pref-GRPO), or in both orders; nearest ring neighbours first."""
    pairs = _ring_pairs(size)
    return with_reverse(pairs) if both_orders else pairs


def sparse(size: int, k: int, seed: int) -> list[Pair]:
    """Each candidate meets ``k`` others (all of them when ``k >= size - 1``) with the first slot balanced.

    A circulant graph (offsets 1 .. k/2, plus the diameter for an odd ``k`` on an even ``size``) over a
    seeded relabelling of ``range(size)``; pair ``(i, i + d)`` puts ``i`` first, so each candidate is first in
    exactly half of its comparisons (within one for an odd degree). An odd ``k`` on an odd ``size`` (no
    k-regular graph exists) becomes ``k + 1``. ``size * k / 2`` pairs; deterministic given ``seed``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if size < 2:
        return []
    k = min(k, size - 1)
    if k % 2 and size % 2:
        k += 1
    label = np.random.default_rng(seed).permutation(size).tolist()
    pairs = [(i, (i + d) % size) for d in range(1, k // 2 + 1) for i in range(size)]
    if k % 2:  # the diameter, first slot alternated
        half = size // 2
        pairs += [(i, i + half) if i % 2 == 0 else (i + half, i) for i in range(half)]
    return [(label[a], label[b]) for a, b in pairs]


def seed_from(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (their ``str``): the same on every process that sees the same group."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# --------------------------------------------------------------------------- aggregators


@dataclass
class GroupScores:
    """One group's aggregate: ``rewards`` on [0, 1] (None: no successful comparison), ``games`` (successful
    comparisons per candidate); for Bradley-Terry the centred ``strengths``, the fitted first-slot advantage
    ``position_bias`` (log-odds), ``consistency`` (share of non-tied verdicts on the side the fit predicts),
    ``components`` (connected parts of the comparison graph: strengths are comparable within one only) and the
    Newton ``iterations``."""

    rewards: list[float | None]
    games: list[int]
    failed: int
    strengths: list[float | None] | None = None
    position_bias: float | None = None
    consistency: float | None = None
    components: int | None = None
    iterations: int | None = None


def _successful(size: int, verdicts: Sequence[Verdict]) -> tuple[list[Verdict], list[int], int]:
    ok, games = [], [0] * size
    for verdict in verdicts:
        first, second, share = verdict
        if first == second or not (0 <= first < size and 0 <= second < size):
            raise ValueError(f"bad pair {first, second} for a group of {size}")
        if share is None:
            continue
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"a verdict's share must be in [0, 1], got {share}")
        ok.append(Verdict(first, second, float(share)))
        games[first] += 1
        games[second] += 1
    return ok, games, len(verdicts) - len(ok)


def win_rate(size: int, verdicts: Sequence[Verdict]) -> GroupScores:
    """Each candidate's share of wins over its successful comparisons (ties and soft verdicts fractional)."""
    ok, games, failed = _successful(size, verdicts)
    wins = [0.0] * size
    for first, second, share in ok:
        wins[first] += share
        wins[second] += 1.0 - share
    return GroupScores([wins[i] / games[i] if games[i] else None for i in range(size)], games, failed)


def _components(size: int, verdicts: Sequence[Verdict], active: Sequence[int]) -> int:
    parent = list(range(size))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for first, second, _ in verdicts:
        parent[root(first)] = root(second)
    return len({root(i) for i in active})


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def bradley_terry(size: int, verdicts: Sequence[Verdict], ridge: float = RIDGE, max_iter: int = 50,
                  tol: float = 1e-7) -> GroupScores:
    """Bradley-Terry with a first-slot term: P(first wins) = sigmoid(s_first - s_second + b).

    Maximises the fractional-win log-likelihood minus ``ridge/2 * sum(s^2)`` (and a weaker ridge on ``b``)
    by Newton's method with step halving; converges in a handful of iterations. The ridge centres each
    connected component's strengths on 0 (a disconnected group's components are not comparable: see
    ``components``). Rewards: expected win rate against the group's other scored candidates, without ``b``.
    """
    ok, games, failed = _successful(size, verdicts)
    active = [i for i in range(size) if games[i]]
    if not ok:
        return GroupScores([None] * size, games, failed, [None] * size)
    index = {c: n for n, c in enumerate(active)}
    m = len(active)
    first = np.array([index[v.first] for v in ok])
    second = np.array([index[v.second] for v in ok])
    share = np.array([v.share for v in ok])
    design = np.zeros((len(ok), m + 1))
    rows = np.arange(len(ok))
    design[rows, first] = 1.0
    design[rows, second] = -1.0
    design[:, m] = 1.0
    penalty = np.full(m + 1, ridge)
    penalty[m] = POSITION_RIDGE

    def objective(theta: np.ndarray) -> float:
        z = design @ theta
        return float(np.sum(np.logaddexp(0.0, z) - share * z) + 0.5 * np.sum(penalty * theta**2))

    theta = np.zeros(m + 1)
    current = objective(theta)
    for iteration in range(max_iter):
        p = _sigmoid(design @ theta)
        gradient = design.T @ (p - share) + penalty * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        if float(np.max(np.abs(step))) < tol:
            break
        scale = 1.0  # step halving: the objective never goes up
        while (value := objective(theta - scale * step)) > current and scale > 1e-6:
            scale /= 2
        if value > current:
            break
        theta, current = theta - scale * step, value
    logger.debug("bradley_terry: %d iterations, %d verdicts", iteration + 1, len(ok))
    strengths, bias = theta[:m], float(theta[m])
    predicted = _sigmoid(design @ theta)
    decided = share != 0.5
    agree = (share[decided] > 0.5) == (predicted[decided] > 0.5)
    rewards: list[float | None] = [None] * size
    scores: list[float | None] = [None] * size
    for c, n in index.items():
        others = np.delete(strengths, n)
        rewards[c] = float(np.mean(_sigmoid(strengths[n] - others)))
        scores[c] = float(strengths[n])
    return GroupScores(rewards, games, failed, scores, bias, float(np.mean(agree)) if decided.any() else None,
                       _components(size, ok, active), iteration + 1)


# --------------------------------------------------------------------------- adaptive schedule


class SwissRounds:
    """Adaptive schedule, round by round: round 1 is a seeded random matching; each later round fits
    :func:`bradley_terry` to the verdicts so far and pairs neighbours of that ranking who have not met yet,
    the one shown first less often going first. ``G // 2`` pairs a round (an odd group's last-ranked candidate
    sits out), so ``k`` rounds cost ``G * k / 2`` calls, as ``sparse(G, k)``. Needs the verdicts between rounds::

        rounds = SwissRounds(G, seed)
        for _ in range(k):
            pairs = rounds.next_pairs()
            rounds.record(pairs, judge(pairs))  # shares, None = failed
        scores = bradley_terry(G, rounds.verdicts)
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self.verdicts: list[Verdict] = []
        self._met: set[frozenset[int]] = set()
        self._firsts = [0] * size

    def next_pairs(self) -> list[Pair]:
        if not self.verdicts:
            order = np.random.default_rng(self.seed).permutation(self.size).tolist()
        else:
            strengths = bradley_terry(self.size, self.verdicts).strengths
            order = sorted(range(self.size), key=lambda i: -(strengths[i] if strengths[i] is not None else 0.0))
        pairs, free = [], list(order)
        while len(free) > 1:
            a = free.pop(0)
            n = next((n for n, b in enumerate(free) if frozenset((a, b)) not in self._met), 0)
            b = free.pop(n)
            pairs.append((a, b) if self._firsts[a] <= self._firsts[b] else (b, a))
        return pairs

    def record(self, pairs: Sequence[Pair], shares: Sequence[float | None]) -> None:
        """The judged round: ``shares[n]`` is the first candidate's share of ``pairs[n]`` (None: failed)."""
        for (a, b), share in zip(pairs, shares, strict=True):
            self._met.add(frozenset((a, b)))
            self._firsts[a] += 1
            self.verdicts.append(Verdict(a, b, share))


# --------------------------------------------------------------------------- many groups at once


@dataclass(frozen=True)
class Pairing:
    """A schedule and an aggregator for every group of a batch.

    ``schedule``: ``"round_robin"`` (``both_orders`` sets the orders), ``"pref_grpo"`` (round robin, lower
    index first, one order) or ``"sparse"`` (``k`` opponents each, first slot balanced; ``both_orders``
    doubles it); ``max_pairs`` keeps the schedule's first pairs (spread evenly) before the reverse orders are
    added; ``aggregate``: ``"win_rate"`` or ``"bt"`` (:func:`bradley_terry`). :meth:`for_mode` picks defaults.
    """

    schedule: str = "round_robin"
    k: int = 4
    both_orders: bool = True
    max_pairs: int | None = None
    aggregate: str = "win_rate"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"pairing must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if self.k < 1 or (self.max_pairs is not None and self.max_pairs < 1):
            raise ValueError("k and max_pairs must be >= 1")
        if self.schedule == "pref_grpo" and self.both_orders:
            raise ValueError("pref_grpo judges one order (swap=False); both orders is pairing='round_robin'")

    @classmethod
    def for_mode(cls, mode: str, schedule: str | None = None, k: int = 4, aggregate: str | None = None,
                 swap: bool | None = None, max_pairs: int | None = None, template: Any = None) -> Pairing:
        """Defaults by verdict kind (see ``benchmarks/pairwise_schedules.py``): soft verdicts (``mode="logit"``,
        or a reasoning ``template`` (Think, Flex) whose verdict's P("1") is read in generate mode) -> ``sparse``
        with ``k`` opponents and ``bt`` (G*k/2 calls); text verdicts -> every pair in both orders and the win
        rate (G(G-1) calls: sparse schedules lose accuracy on hard verdicts). ``swap`` (both orders) defaults to
        True for ``round_robin`` only."""
        soft = mode == "logit" or (template is not None and reads_soft_verdict(get_template(template)))
        schedule = schedule or ("sparse" if soft else "round_robin")
        aggregate = aggregate or ("bt" if soft else "win_rate")
        both_orders = schedule == "round_robin" if swap is None else swap
        return cls(schedule, k, both_orders, max_pairs, aggregate)

    def pairs(self, size: int, seed: int) -> list[Pair]:
        """The ordered pairs to judge in a group of ``size`` (``seed``: see :func:`seed_from`)."""
        pairs = sparse(size, self.k, seed) if self.schedule == "sparse" else round_robin(size)
        pairs = pairs[: self.max_pairs] if self.max_pairs else pairs
        return with_reverse(pairs) if self.both_orders else pairs

    def score(self, size: int, verdicts: Sequence[Verdict]) -> GroupScores:
        return bradley_terry(size, verdicts) if self.aggregate == "bt" else win_rate(size, verdicts)


def plan_pairs(groups: Sequence[Sequence[int]], pairing: Pairing, seeds: Sequence[int]) -> list[Pair]:
    """Every group's ordered pairs, as indices into the whole batch (``groups[g]`` lists group g's indices)."""
    return [(members[a], members[b]) for members, seed in zip(groups, seeds, strict=True)
            for a, b in pairing.pairs(len(members), seed)]


def score_pairs(size: int, groups: Sequence[Sequence[int]], pairs: Sequence[Pair], shares: Sequence[float | None],
                pairing: Pairing) -> tuple[list[float | None], list[GroupScores]]:
    """Batch-wide rewards (None: no successful comparison) and each group's :class:`GroupScores`, from the
    ``shares`` of ``pairs`` (as :func:`plan_pairs` made them; None = failed)."""
    where = {item: (g, n) for g, members in enumerate(groups) for n, item in enumerate(members)}
    verdicts: list[list[Verdict]] = [[] for _ in groups]
    for (a, b), share in zip(pairs, shares, strict=True):
        (g, first), (h, second) = where[a], where[b]
        if g != h:
            raise ValueError(f"pair {a, b} spans two groups")
        verdicts[g].append(Verdict(first, second, share))
    rewards: list[float | None] = [None] * size
    results = []
    for members, group_verdicts in zip(groups, verdicts):
        result = pairing.score(len(members), group_verdicts)
        results.append(result)
        for item, reward in zip(members, result.rewards):
            rewards[item] = reward
    return rewards, results

