"""Exact expected scores over the decimal answers a judge can write after "Final Score:".

UnifiedReward's point data are averages (EvalMuse "2.33", 1-10 "7.5"), so its judges write decimals. The
answer is read as a number grammar: an integer of the scale (no leading zeros), then optionally "." and up to
``decimals`` digits. Each node of the grammar's trie is an answer prefix ("", "3", "3.", "3.5"); the
backend gives the model's probability of each next symbol (a digit or ".") there, and the number ends at a
node with the probability of any *other* token (``1 - P(digits) - P(".")``). Continuations that leave the
scale ("55" on 1-5, "5.5", "05") carry their mass out of the distribution, which is then renormalised over
the in-scale answers. At the last decimal the number is cut (``3.537`` counts as ``3.53``): the score is
exact to ``decimals`` places. ``DECIMALS`` holds the precision per scale (the precision of the data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache

DIGITS = tuple("0123456789")
POINT = "."
SYMBOLS = (*DIGITS, POINT)
# Precision of each scale's training targets: EvalMuse 1-5 averages (2.33), 1-10 halves (7.5), 0-100 integers.
DECIMALS = {(1.0, 5.0): 2, (1.0, 10.0): 1, (0.0, 100.0): 0}


@dataclass(frozen=True)
class ScoreTrie:
    """The answer grammar of an integer scale ``[low, high]`` with ``decimals`` decimal places."""

    low: int
    high: int
    decimals: int

    @classmethod
    def for_scale(cls, scale: tuple[float, float], decimals: int | None = None) -> ScoreTrie:
        low, high = scale
        if low != int(low) or high != int(high) or low < 0 or high <= low:
            raise ValueError(f"logit scores need a non-negative integer scale, got {scale}")
        return cls(int(low), int(high), DECIMALS.get((float(low), float(high)), 0) if decimals is None else decimals)

    # --- grammar --------------------------------------------------------------------------------

    def _integer_prefix(self, text: str) -> bool:
        """Whether some integer of the scale is written starting with ``text``."""
        if len(text) > 1 and text[0] == "0":
            return False
        return any(str(v).startswith(text) for v in range(self.low, self.high + 1))

    @lru_cache(maxsize=4096)  # noqa: B019 (frozen, hashable self; the grammar is walked once per scored item)
    def _integer(self, text: str) -> bool:
        return self._integer_prefix(text) and text != "" and self.low <= int(text) <= self.high

    def _decimal_ok(self, text: str) -> bool:
        """``"s.d..."`` with an in-scale value."""
        whole, _, frac = text.partition(POINT)
        return self._integer(whole) and len(frac) <= self.decimals and float(f"{whole}.{frac or 0}") <= self.high

    @lru_cache(maxsize=4096)  # noqa: B019
    def children(self, node: str) -> tuple[tuple[str, str], ...]:
        """``(symbol, child)`` pairs of the in-grammar continuations of ``node``."""
        if POINT not in node:
            kids = [(d, node + d) for d in DIGITS if self._integer_prefix(node + d)]
            if self.decimals and self._integer(node) and self._decimal_ok(node + POINT):
                kids.append((POINT, node + POINT))
            return tuple(kids)
        return tuple((d, node + d) for d in DIGITS if self._decimal_ok(node + d))

    def is_leaf(self, node: str) -> bool:
        """A number at full precision: it ends here whatever follows."""
        return POINT in node and len(node.partition(POINT)[2]) == self.decimals

    def stop_symbols(self, node: str) -> tuple[str, ...]:
        """Symbols that continue the number at ``node`` (any other token ends it)."""
        return SYMBOLS if POINT not in node and self.decimals else DIGITS

    @cached_property
    def nodes(self) -> tuple[str, ...]:
        """Answer prefixes whose next-symbol distribution the score needs, root first, parents before children."""
        order, frontier = [], [""]
        while frontier:
            order += frontier
            frontier = [c for n in frontier for _, c in self.children(n) if not self.is_leaf(c)]
        return tuple(order)

    # --- scores ---------------------------------------------------------------------------------

    @cached_property
    def _plan(self) -> tuple[tuple[str, str | None, str | None, bool, float | None, tuple[str, ...]], ...]:
        """The grammar flattened once, parents first: ``(node, parent, symbol, leaf, value if it ends here, stop symbols)``."""
        plan, stack = [], [("", None, None)]
        while stack:
            node, parent, symbol = stack.pop()
            leaf = self.is_leaf(node)
            ends = leaf or self._integer(node.partition(POINT)[0])
            plan.append((node, parent, symbol, leaf, float(node.rstrip(POINT)) if ends else None, self.stop_symbols(node)))
            if not leaf:
                stack += [(child, node, s) for s, child in reversed(self.children(node))]
        return tuple(plan)

    def value_masses(self, next_probs: Mapping[str, Mapping[str, float]]) -> dict[float, float]:
        """Unnormalised probability of each in-scale value; ``next_probs[node][symbol]`` = P(symbol | node)
        for every node in :attr:`nodes` (missing symbols count as 0)."""
        masses: dict[float, float] = {}
        reach: dict[str, float] = {}
        for node, parent, symbol, leaf, value, stops in self._plan:
            mass = 1.0 if parent is None else reach[parent] * next_probs[parent].get(symbol, 0.0) if reach[parent] > 0.0 else 0.0
            reach[node] = mass
            if mass <= 0.0 or value is None:
                continue
            if not leaf:
                probs = next_probs[node]
                mass *= max(1.0 - sum(probs.get(s, 0.0) for s in stops), 0.0)
            if mass > 0.0:
                masses[value] = masses.get(value, 0.0) + mass
        return masses


@dataclass(frozen=True)
class ScoreDistribution:
    """Normalised value distribution and the share of probability it covers (well-formed, in-scale answers)."""

    probs: dict[float, float]
    coverage: float

    @property
    def expected(self) -> float:
        return sum(v * p for v, p in self.probs.items())


def score_distribution(trie: ScoreTrie, next_probs: Mapping[str, Mapping[str, float]]) -> ScoreDistribution:
    masses = trie.value_masses(next_probs)
    total = sum(masses.values())
    if not total > 0.0:
        raise ValueError("no probability on any in-scale answer")
    return ScoreDistribution({v: m / total for v, m in sorted(masses.items())}, total)


def value_key(value: float, decimals: int) -> str:
    """``3.0 -> "3"``, ``3.5 -> "3.5"``, ``2.33 -> "2.33"`` (the ``probs`` keys of a point score)."""
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if POINT in text else text
