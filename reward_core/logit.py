"""Logit scoring: read the verdict from next-token probabilities instead of generated text.

The assistant turn is prefilled with the template's ``answer_prefix`` ("Final Score:", "Image" ...),
and each candidate answer is the full string ``prefix + " " + answer`` ("Final Score: 7"), tokenized
as the model would emit it (never the bare digit: Qwen splits digits one per token and puts the space
in its own token). Tokens shared by every candidate become part of the context; what is left of
each candidate is a token path in a trie.

Exact trie method, in one batched forward pass: the probability of a candidate is the product of its
path's token probabilities, times the probability of *stopping* there when a longer candidate extends
it (``1 - sum(P(child))``: "1" on a 1-10 scale excludes "10"). Every distribution the trie needs is at a
node on some root-to-deepest-internal-node path, so the backend runs one sequence per such *branch*
(context + branch tokens) and reads the logits at every position of it. On a 1-5 scale or a pair
("1"/"2") that is the context alone; 1-10 needs one sequence ("1"); 0-100 needs nine ("10", "2".."9").

``transformers.decision.label_token_ids`` (transformers >= 5.23) reads single *bare* label tokens, which
misses the space token and multi-digit answers, so it is not used here.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reward_core.results import RewardResult, Status
from reward_core.score_trie import ScoreTrie, score_distribution, value_key

logger = logging.getLogger(__name__)

Node = tuple[int, ...]


def answer_text(prefix: str, answer: str) -> str:
    """The assistant text for one candidate: ``prefix``, a space unless it ends in whitespace, ``answer``."""
    separator = "" if not prefix or prefix[-1].isspace() else " "
    return f"{prefix}{separator}{answer}"


@dataclass(frozen=True)
class CandidatePaths:
    """Token layout of the candidates after an answer prefix.

    ``shared``: assistant-turn token ids common to every candidate (the prefix, plus e.g. the space);
    ``paths``: the remaining token ids of each candidate.
    """

    shared: tuple[int, ...]
    paths: dict[str, Node]

    def children(self, node: Node) -> list[int]:
        """Distinct next tokens of the candidates extending ``node``."""
        depth = len(node)
        return sorted({p[depth] for p in self.paths.values() if len(p) > depth and p[:depth] == node})

    def internal_nodes(self) -> list[Node]:
        """Nodes (the root included) whose next-token distribution the scores need."""
        nodes = {p[:depth] for p in self.paths.values() for depth in range(len(p))}
        return sorted(nodes, key=lambda node: (len(node), node))

    def branches(self) -> list[Node]:
        """Fewest token sequences whose forward passes expose every internal node's distribution."""
        internal = self.internal_nodes()
        deepest = [n for n in internal if not any(len(m) > len(n) and m[: len(n)] == n for m in internal)]
        return deepest or [()]


def candidate_paths(tokenizer: Any, prefix: str, candidates: Sequence[str]) -> CandidatePaths:
    """Tokenize ``prefix + answer`` for each candidate and split off the shared leading tokens."""
    if len(set(candidates)) != len(candidates) or len(candidates) < 2:
        raise ValueError(f"need at least two distinct candidates, got {list(candidates)}")
    ids = {c: tuple(tokenizer(answer_text(prefix, c), add_special_tokens=False)["input_ids"]) for c in candidates}
    sequences = list(ids.values())
    shared = 0
    while all(len(s) > shared for s in sequences) and len({s[shared] for s in sequences}) == 1:
        shared += 1
    paths = {c: s[shared:] for c, s in ids.items()}
    empty = [c for c, p in paths.items() if not p]
    if empty:
        raise ValueError(f"candidates {empty} are a token prefix of other candidates after {prefix!r}")
    return CandidatePaths(shared=sequences[0][:shared], paths=paths)


def candidate_logprobs(layout: CandidatePaths, node_logprobs: Mapping[Node, Mapping[int, float]]) -> dict[str, float]:
    """Log-probability of each candidate being the whole answer.

    ``node_logprobs[node][token]`` is log P(token | context + node) for every internal node and each of
    its children (see :meth:`CandidatePaths.children`).
    """
    logprobs = {}
    for candidate, path in layout.paths.items():
        total = sum(node_logprobs[path[:i]][token] for i, token in enumerate(path))
        continuing = layout.children(path)
        if continuing:  # a longer candidate extends this one: it must stop here
            p_continue = sum(math.exp(node_logprobs[path][t]) for t in continuing)
            total += math.log(max(1.0 - p_continue, 1e-30))
        logprobs[candidate] = total
    return logprobs


def normalize(logprobs: Mapping[str, float]) -> dict[str, float]:
    """Softmax over the candidates (probabilities renormalised to sum to 1)."""
    top = max(logprobs.values())
    weights = {k: math.exp(v - top) for k, v in logprobs.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def candidates_for(template: Any) -> list[str]:
    """The answers logit mode scores: "1"/"2" for pairwise templates, every integer of the scale otherwise."""
    if template.answer_prefix is None:
        raise ValueError(f"template {template.key!r} has no answer_prefix: logit mode is not available")
    if template.pairwise:
        return ["1", "2"]
    if template.scale is None:
        raise ValueError(f"template {template.key!r} has neither a pair nor a scale to score")
    low, high = template.scale
    if low != int(low) or high != int(high):
        raise ValueError(f"template {template.key!r}: logit mode needs an integer scale, got {template.scale}")
    return [str(v) for v in range(int(low), int(high) + 1)]


def trie_for(template: Any) -> ScoreTrie:
    """The decimal answer trie of a pointwise template's scale (see :mod:`reward_core.score_trie`)."""
    if template.answer_prefix is None:
        raise ValueError(f"template {template.key!r} has no answer_prefix: logit mode is not available")
    if template.pairwise or template.scale is None:
        raise ValueError(f"template {template.key!r} has no point scale to score")
    return ScoreTrie.for_scale(template.scale)


# a 1-5 trie formats its 401 values for every item: format each (value, decimals) once
_cached_value_key = functools.lru_cache(maxsize=8192)(value_key)


def result_from_node_probs(template: Any, trie: ScoreTrie, node_probs: Mapping[str, Mapping[str, float]]) -> RewardResult:
    """Expected score over the trie's in-scale answers; ``probs`` keyed by value ("3", "3.5", "2.33")."""
    try:
        distribution = score_distribution(trie, node_probs)
    except (KeyError, ValueError) as error:
        return RewardResult.failure(Status.BACKEND_ERROR, f"unusable answer probabilities: {error}")
    probs = {_cached_value_key(v, trie.decimals): p for v, p in distribution.probs.items()}
    if distribution.coverage < 0.5:
        logger.debug("%s: only %.3f of the answer mass is an in-scale number", template.key, distribution.coverage)
    return RewardResult(status=Status.OK, score=distribution.expected, probs=probs)


def expected_score(probs: Mapping[str, float]) -> float:
    """Expected value of a numeric answer distribution."""
    return sum(float(k) * p for k, p in probs.items())


def result_from_logprobs(template: Any, logprobs: Mapping[str, float]) -> RewardResult:
    """``probs`` plus ``winner`` (pairwise argmax) or ``score`` (expected value)."""
    values = list(logprobs.values())
    if not values or any(math.isnan(v) for v in values) or max(values) == -math.inf:
        return RewardResult.failure(Status.BACKEND_ERROR, f"unusable answer log-probabilities: {dict(logprobs)}")
    probs = normalize(logprobs)
    if template.pairwise:
        winner = 1 if probs["1"] > probs["2"] else 2 if probs["2"] > probs["1"] else 0
        return RewardResult(status=Status.OK, winner=winner, probs=probs)
    return RewardResult(status=Status.OK, score=expected_score(probs), probs=probs)
