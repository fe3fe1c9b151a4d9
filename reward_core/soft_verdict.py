"""Soft verdicts of reasoning judges: P("1") vs P("2") at the verdict token of a generated answer.

A Think answer ends with ``<answer>Image 1 is better</answer>``, a Flex answer with ``"winner": "Image 1"``:
the digit there is the judge's decision, written after its chain of thought. A backend asked for a soft
verdict (``BackendRequest.soft_verdict``) hands back, with the generated text, each generated token's text
and log-probabilities of alternatives at that step (transformers: the candidate digits, read from the
generation's own logits; HTTP: vLLM's top-20 ``logprobs``). :func:`read_soft_verdict` finds the verdict
token (the digit right after ``<answer>`` + the subject word, or in the last top-level ``"winner"`` field)
and renormalises over the two candidates: ``probs = {"1": p, "2": 1 - p}``, logit mode's convention.

Alternatives are keyed by their text without a leading space (" 1" and "1" count as one answer, as the
parsers read both). Neither format has a tie token (Think's prompt allows exactly "Image 1 is better" or
"Image 2 is better"), so a tie text verdict gets no soft verdict. When a verdict cannot be read (no verdict
token, a candidate outside the top-k, a server that returned no log-probabilities) ``probs`` stays ``None``
and the reason goes to ``RewardResult.probs_error``: never an invented value.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reward_core.backends.base import Generation

CANDIDATES = ("1", "2")
SOFT_MODES = frozenset({"cot_pair_rank", "flex_pair_rank"})  # reasoning pair templates: Think and Flex
_SUBJECTS = {"Answer": "answer|response", "Edited image": r"(?:edited\s+)?image"}


@dataclass
class SoftVerdict:
    """``probs`` ({"1": p, "2": 1 - p}) or, when it cannot be read, ``error`` (why)."""

    probs: dict[str, float] | None = None
    error: str | None = None


def reads_soft_verdict(template: Any) -> bool:
    """Whether ``template`` writes its verdict after a chain of thought (Think, Flex)."""
    return template.mode in SOFT_MODES


def normalize_token(token: str) -> str:
    """A token's text without its leading space marker (" ", "Ġ" byte-level, "▁" sentencepiece)."""
    return token.lstrip(" Ġ▁")


def verdict_pattern(template: Any) -> re.Pattern[str]:
    """Where the verdict digit (group ``digit``) sits in ``template``'s answer."""
    label = template.label or "Image"
    subject = _SUBJECTS.get(label, re.escape(label))
    if template.mode == "flex_pair_rank":
        return re.compile(rf'"winner"\s*:\s*"?\s*(?:(?:{subject})\s*)?(?P<digit>[12])(?![\d.])', re.IGNORECASE)
    return re.compile(rf"<answer>\s*(?:{subject})\s*(?P<digit>[12])(?![\d.])", re.IGNORECASE)


def verdict_token(template: Any, tokens: Sequence[str]) -> tuple[int | None, str | None]:
    """Index of the verdict digit's token in ``tokens`` (the generated tokens' texts), or why there is none."""
    joined = "".join(tokens)
    matches = list(verdict_pattern(template).finditer(joined))
    if not matches:
        where = '"winner": "Image N"' if template.mode == "flex_pair_rank" else f"<answer>{template.label or 'Image'} N"
        return None, f"no verdict token: the output has no {where}"
    offset = matches[-1].start("digit")
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token)
    index = bisect.bisect_right(starts, offset) - 1
    while index > 0 and not tokens[index]:  # empty tokens (special ones) start where the next one does
        index -= 1
    if normalize_token(tokens[index]) != matches[-1].group("digit"):
        return None, f"the verdict digit shares its token {tokens[index]!r} with other text"
    return index, None


def candidate_probs(alternatives: Mapping[str, float]) -> SoftVerdict:
    """Renormalise the log-probabilities of "1" and "2" among ``alternatives`` ({token text: logprob})."""
    merged: dict[str, list[float]] = {}
    for token, logprob in alternatives.items():
        merged.setdefault(normalize_token(token), []).append(logprob)
    missing = [c for c in CANDIDATES if c not in merged]
    if missing:
        listed = len(alternatives)
        return SoftVerdict(error=f"{' and '.join(map(repr, missing))} not among the {listed} log-probabilities at the verdict token")
    values = [lp for c in CANDIDATES for lp in merged[c]]
    if not all(math.isfinite(lp) or lp == -math.inf for lp in values) or max(values) == -math.inf:
        return SoftVerdict(error=f"unusable log-probabilities at the verdict token: {dict(alternatives)}")
    top = max(values)
    weights = {c: sum(math.exp(lp - top) for lp in merged[c]) for c in CANDIDATES}
    total = sum(weights.values())
    return SoftVerdict(probs={c: w / total for c, w in weights.items()})


def read_soft_verdict(template: Any, winner: int | None, generation: Generation) -> SoftVerdict:
    """The soft verdict of one generated answer whose parsed text verdict is ``winner`` (1, 2 or 0 = tie)."""
    if winner == 0:
        return SoftVerdict(error="the text verdict is a tie: no '1'/'2' verdict token to read")
    tokens, alternatives = generation.tokens, generation.token_logprobs
    if tokens is None or alternatives is None:
        return SoftVerdict(error=generation.logprobs_error or "the backend returned no token log-probabilities")
    index, error = verdict_token(template, tokens)
    if index is None:
        return SoftVerdict(error=error)
    digit = normalize_token(tokens[index])
    if winner is not None and int(digit) != winner:
        return SoftVerdict(error=f"the verdict token says {digit}, the parsed verdict {winner}: not the same decision")
    return candidate_probs(alternatives[index])
