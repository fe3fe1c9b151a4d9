"""Run a pairwise benchmark through a :class:`~reward_core.model.UnifiedReward` (any backend).

Each pair is shown in one seeded random order (upstream's p = 0.5 swap, but reproducible per item
id) or, with ``swap=True``, in both orders. Media shared by several pairs are prepared once. A pair
whose media, backend call or parse fails is kept with its error and left out of every metric.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from reward_core.media import MediaError
from reward_core.prompts import Template, get_template
from reward_core.results import RewardResult, Status
from .items import PairItem
from .loaders import BenchmarkSpec
from .media_cache import MediaCache

logger = logging.getLogger(__name__)

A_FIRST, B_FIRST = "AB", "BA"
_GENERATION_FIELDS = ("prompt",)
_ANSWER_FIELDS = ("question", "answer1", "answer2")


@dataclass
class Presentation:
    """One judge call: the pair in one order, its result, and the A-minus-B margin read from it."""

    order: str  # "AB" = A shown first (slot 1), "BA" = B shown first
    result: RewardResult
    margin: float | None = None  # +: A preferred, -: B preferred, 0: tie; None when the call failed

    @property
    def ok(self) -> bool:
        return self.result.ok and self.margin is not None

    @property
    def verdict_slot(self) -> int | None:
        """The slot the model chose: 1, 2, or 0 for a tie."""
        if self.margin is None:
            return None
        slot_margin = self.margin if self.order == A_FIRST else -self.margin
        return 1 if slot_margin > 0 else 2 if slot_margin < 0 else 0

    def preferred_slot(self, human: int) -> int | None:
        """The slot holding the human-preferred candidate (None for a human tie)."""
        if human == 0:
            return None
        a_slot = 1 if self.order == A_FIRST else 2
        return a_slot if human > 0 else 3 - a_slot

    def to_dict(self) -> dict[str, Any]:
        return {"order": self.order, "margin": self.margin, **self.result.to_dict()}


@dataclass
class PairOutcome:
    """A benchmark pair with all its presentations."""

    item: PairItem
    presentations: list[Presentation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.presentations) and all(p.ok for p in self.presentations)

    @property
    def margin(self) -> float | None:
        """Mean A-minus-B margin over the presentations (both orders with ``swap``); None if any failed."""
        if not self.ok:
            return None
        return sum(p.margin for p in self.presentations) / len(self.presentations)

    @property
    def status(self) -> Status:
        for presentation in self.presentations:
            if not presentation.result.ok:
                return presentation.result.status
        return Status.OK if self.ok else Status.PARSE_ERROR

    @property
    def error(self) -> str | None:
        for presentation in self.presentations:
            if not presentation.ok:
                return f"order {presentation.order}: {presentation.result.error}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.item.id,
            "human": self.item.human,
            "raw_label": self.item.raw_label,
            "category": self.item.category,
            "status": self.status.value,
            "margin": self.margin,
            "error": self.error,
            "presentations": [p.to_dict() for p in self.presentations],
        }


def presentation_orders(item_id: str, seed: int, swap: bool) -> tuple[str, ...]:
    """Both orders with ``swap``; else one order drawn from a generator seeded by (seed, item id)."""
    if swap:
        return (A_FIRST, B_FIRST)
    return (B_FIRST,) if random.Random(f"{seed}:{item_id}").random() < 0.5 else (A_FIRST,)


def slot_margin(result: RewardResult) -> float | None:
    """Slot-1-minus-slot-2 preference: ``p(1) - p(2)`` (normalised) in logit mode, else +1 / -1 / 0."""
    probs = result.probs or {}
    if "1" in probs and "2" in probs and probs["1"] is not None and probs["2"] is not None:
        total = probs["1"] + probs["2"]
        return (probs["1"] - probs["2"]) / total if total > 0 else None
    return {1: 1.0, 2: -1.0, 0: 0.0}.get(result.winner)


def check_template(spec: BenchmarkSpec, template: Template) -> None:
    """Fail fast when a template cannot judge this benchmark's pairs."""
    if not template.pairwise:
        raise ValueError(f"template {template.key!r} is {template.mode}, not a pairwise template")
    if template.media != spec.media:
        raise ValueError(f"{spec.name} needs a template with media {spec.media!r}; {template.key!r} takes {template.media!r}")
    needed = _GENERATION_FIELDS if spec.candidate_kind == "media" else _ANSWER_FIELDS
    missing = [name for name in needed if name not in template.fields]
    if missing:
        raise ValueError(f"template {template.key!r} has no {missing} placeholder(s) for {spec.name} items")


def _failures(status: Status, error: str, count: int) -> list[RewardResult]:
    return [RewardResult.failure(status, error) for _ in range(count)]


class BenchmarkRunner:
    """Judges :class:`PairItem` s with ``model.judge_batch`` and returns a :class:`PairOutcome` per item."""

    def __init__(
        self,
        model: Any,
        spec: BenchmarkSpec,
        template: str | Template | None = None,
        *,
        mode: str = "generate",
        swap: bool = False,
        seed: int = 0,
        batch_size: int = 16,
        media_cache: MediaCache | None = None,
    ) -> None:
        self.model = model
        self.spec = spec
        self.template = get_template(template or spec.template)
        check_template(spec, self.template)
        self.mode = mode
        self.swap = swap
        self.seed = seed
        self.batch_size = max(1, batch_size)
        self.media_cache = media_cache or MediaCache()

    def run(self, items: Sequence[PairItem], progress: bool = True) -> list[PairOutcome]:
        outcomes: list[PairOutcome] = []
        with tqdm(total=len(items), desc=f"bench {self.spec.name}", unit="pair", disable=not progress) as bar:
            for start in range(0, len(items), self.batch_size):
                chunk = items[start : start + self.batch_size]
                outcomes.extend(self._run_chunk(chunk))
                bar.update(len(chunk))
                bar.set_postfix(failed=sum(not outcome.ok for outcome in outcomes))
        return outcomes

    def _run_chunk(self, chunk: Sequence[PairItem]) -> list[PairOutcome]:
        from reward_core.model import JudgeItem

        outcomes = [PairOutcome(item) for item in chunk]
        pending: list[tuple[PairOutcome, str]] = []
        requests: list[Any] = []
        for outcome in outcomes:
            orders = presentation_orders(outcome.item.id, self.seed, self.swap)
            try:
                media_a, media_b, context = self._prepare_media(outcome.item)
            except MediaError as error:
                failure = RewardResult.failure(Status.MEDIA_ERROR, str(error))
                outcome.presentations = [Presentation(order, failure) for order in orders]
                continue
            for order in orders:
                media, fields = self._present(outcome.item, order, media_a, media_b, context)
                requests.append(JudgeItem(media=media, fields=fields, id=f"{outcome.item.id}:{order}"))
                pending.append((outcome, order))
        for (outcome, order), result in zip(pending, self._judge(requests)):
            margin = slot_margin(result) if result.ok else None
            if result.ok and margin is None:
                result = RewardResult.failure(
                    Status.PARSE_ERROR, "result carries no pairwise verdict (winner/probs)", text=result.text
                )
            elif margin is not None and order == B_FIRST:
                margin = -margin
            outcome.presentations.append(Presentation(order, result, margin))
        return outcomes

    def _judge(self, requests: list[Any]) -> list[RewardResult]:
        if not requests:
            return []
        try:
            results = self.model.judge_batch(self.template, requests, mode=self.mode)
        except Exception as error:  # a dead server or a backend bug fails this chunk only
            logger.warning("judge_batch failed for %d requests: %s", len(requests), error)
            return _failures(Status.BACKEND_ERROR, f"judge_batch raised {error!r}", len(requests))
        if len(results) != len(requests):
            message = f"judge_batch returned {len(results)} results for {len(requests)} requests"
            return _failures(Status.BACKEND_ERROR, message, len(requests))
        return list(results)

    def _prepare_media(self, item: PairItem) -> tuple[Any, Any, list[Any]]:
        if self.spec.candidate_kind == "answers":
            context = [self._load(ref) for ref in item.context_media]
            return None, None, context
        return self._load(item.candidates[0]), self._load(item.candidates[1]), []

    def _load(self, ref: Any) -> Any:
        if self.template.media.startswith("video"):
            return self.media_cache.video(ref)
        return self.media_cache.image(ref)

    def _present(self, item: PairItem, order: str, media_a: Any, media_b: Any, context: list[Any]):
        first, second = (0, 1) if order == A_FIRST else (1, 0)
        if self.spec.candidate_kind == "media":
            pair = (media_a, media_b)
            return [pair[first], pair[second]], dict(item.fields)
        fields = {**item.fields, "answer1": item.candidates[first], "answer2": item.candidates[second]}
        return list(context), fields
