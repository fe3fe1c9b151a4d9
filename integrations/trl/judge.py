"""UnifiedReward as a TRL pairwise judge (``judge(prompts, completions, shuffle_order=True) -> list[int]``).

TRL's judges are text-only: ``OnlineDPOTrainer`` (0.24) passes prompts and completion pairs but never the
image column. :class:`PromptMediaLookup` finds each prompt's media from the dataset instead. Judges
were removed from TRL in 1.1; there the class is standalone (use the reward functions for training).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping
from typing import Any

from reward_core import JudgeItem, get_template

from . import _compat  # noqa: F401  (import-guard fix before trl is imported)
from .rewards import as_media_list, completion_text, prompt_text, row_media

logger = logging.getLogger(__name__)

NEUTRAL_SCORE = 0.5  # ``return_scores`` of a pair the judge could not rank: no preference

try:  # trl 0.24 - 1.0
    from trl import BasePairwiseJudge as _JudgeBase
except ImportError:  # trl >= 1.1 has no judges
    try:
        from trl.experimental.judges import BasePairwiseJudge as _JudgeBase
    except ImportError:
        _JudgeBase = object


class PromptMediaLookup:
    """Maps prompt text to its media; also finds a question inside a chat-rendered prompt.

    Build it from the training rows (``from_rows(dataset)``): each row's question (a plain
    ``prompt`` or the last user turn) keys its ``images`` / ``image`` / ``video``. A prompt the
    trainer rendered with a chat template (``"User: <question>\\n\\n"``) is matched by the longest
    known question it contains.
    """

    def __init__(self, mapping: Mapping[str, list[Any]] | None = None, ambiguous: Iterable[str] = ()):
        self._media: dict[str, list[Any]] = {k.strip(): list(v) for k, v in (mapping or {}).items()}
        self.ambiguous = {k.strip() for k in ambiguous}

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], prompt_column: str = "prompt") -> PromptMediaLookup:
        """One entry per prompt; a prompt seen with different media is ambiguous and finds nothing."""
        mapping: dict[str, list[Any]] = {}
        ambiguous = set()
        for row in rows:
            columns = {k: [row[k]] for k in ("images", "image", "video") if k in row}
            key, media = prompt_text(row[prompt_column]).strip(), row_media(columns, 0, row[prompt_column])
            if key in mapping and repr(mapping[key]) != repr(media):
                ambiguous.add(key)
            mapping.setdefault(key, media)
        if ambiguous:
            logger.warning("%d prompts appear with different media; the judge fails (-1) on them", len(ambiguous))
        return cls({k: v for k, v in mapping.items() if k not in ambiguous}, ambiguous)

    def __len__(self) -> int:
        return len(self._media)

    def get(self, prompt: Any) -> list[Any] | None:
        text = prompt_text(prompt).strip()
        if text in self.ambiguous:
            return None
        if text in self._media:
            return self._media[text]
        contained = [key for key in self._media if key and key in text]
        return self._media[max(contained, key=len)] if contained else None


class UnifiedRewardPairwiseJudge(_JudgeBase):
    """Ranks two completions per prompt with a UnifiedReward answer-pair template.

    Returns per prompt the index (0 or 1) of the better completion, or -1 when the judge failed or
    the prompt's media are unknown. A tie is broken at random (it carries no preference) unless
    ``tie_break="fail"``. ``shuffle_order=True`` shows the pair in a random order and maps the answer
    back (only valid answers are mapped, unlike TRL's remote judges, which turned -1 into 2).
    ``return_scores=True`` gives P(first completion is better): the logit-mode probability, else 1, 0
    or 0.5 from the verdict, and a neutral 0.5 on failure (never NaN: TRL's NashMD mixes these scores
    into its weights and ``WinRateCallback`` averages them); ``self.failed`` counts the failures.

    TRL 0.24 reads any rank but 0 as "second completion wins": in ``OnlineDPOTrainer`` the second of the
    pair, in ``XPOTrainer`` (pairs are policy, reference) the reference completion. ``self.unranked``
    counts every -1 returned (failures and, with ``tie_break="fail"``, ties), and each call that returns
    one logs a warning saying so.
    """

    def __init__(
        self,
        reward_model: Any = None,
        template: str = "image_understanding.pair_rank.v1",
        mode: str = "generate",
        media_lookup: PromptMediaLookup | Mapping[str, list[Any]] | None = None,
        tie_break: str = "random",
        seed: int | None = None,
    ):
        if tie_break not in ("random", "fail"):
            raise ValueError("tie_break must be 'random' or 'fail'")
        self._reward_model = reward_model
        self.template = get_template(template)
        if not {"answer1", "answer2"} <= set(self.template.fields):
            raise ValueError(f"{template}: the judge compares text completions; use an answer-pair template")
        self.mode, self.tie_break = mode, tie_break
        if media_lookup is not None and not isinstance(media_lookup, PromptMediaLookup):
            media_lookup = PromptMediaLookup(media_lookup)
        self.media_lookup = media_lookup
        self.rng = random.Random(seed)
        self.calls = self.failed = self.unranked = 0

    @property
    def reward_model(self) -> Any:
        if self._reward_model is None:
            from .config import RewardConfig, load_reward_model

            self._reward_model = load_reward_model(RewardConfig.from_env())
        return self._reward_model

    def _media(self, prompt: Any, images: list[Any] | None, index: int) -> list[Any] | None:
        if images is not None:
            return as_media_list(images[index])
        if self.media_lookup is not None:
            return self.media_lookup.get(prompt)
        return []

    def judge(
        self,
        prompts: list[Any],
        completions: list[list[Any]],
        shuffle_order: bool = True,
        return_scores: bool = False,
        images: list[Any] | None = None,
    ) -> list[int] | list[float]:
        flips = [shuffle_order and self.rng.random() < 0.5 for _ in prompts]
        items, positions, missing = [], [], 0
        for i, (prompt, pair) in enumerate(zip(prompts, completions)):
            if len(pair) != 2:
                raise ValueError(f"pairwise judge needs exactly 2 completions per prompt, got {len(pair)}")
            media = self._media(prompt, images, i)
            if media is None:
                missing += 1
                continue
            first, second = (pair[1], pair[0]) if flips[i] else (pair[0], pair[1])
            fields = {"question": prompt_text(prompt), "answer1": completion_text(first), "answer2": completion_text(second)}
            items.append(JudgeItem(media=media, fields=fields))
            positions.append(i)
        if missing:
            logger.warning("judge: no media found for %d/%d prompts (check the prompt->media lookup)", missing, len(prompts))
        results = self.reward_model.compare_batch(self.template, items, mode=self.mode) if items else []
        scores = [float("nan")] * len(prompts)
        for i, result in zip(positions, results):
            if not result.ok or result.winner is None:
                continue
            if result.probs:
                p_first = result.probs["1"]
            else:
                p_first = {1: 1.0, 2: 0.0, 0: 0.5}[result.winner]
            scores[i] = 1.0 - p_first if flips[i] else p_first
        failed = sum(s != s for s in scores)
        self.calls, self.failed = self.calls + 1, self.failed + failed
        if return_scores:
            if failed:
                logger.warning("judge: %d/%d pairs could not be judged (scored a neutral 0.5)", failed, len(prompts))
            return [NEUTRAL_SCORE if s != s else s for s in scores]
        ranks = [self._rank(score) for score in scores]
        unranked = ranks.count(-1)
        self.unranked += unranked
        if unranked:
            logger.warning("judge: -1 for %d/%d pairs (%d failed, %d so far); TRL 0.24 takes -1 as 'second completion "
                           "wins' (OnlineDPO: the second of the pair; XPO: the reference completion)",
                           unranked, len(ranks), failed, self.unranked)
        return ranks

    def _rank(self, p_first: float) -> int:
        if p_first != p_first:  # NaN: failed
            return -1
        if p_first == 0.5:
            return self.rng.randrange(2) if self.tie_break == "random" else -1
        return 0 if p_first > 0.5 else 1
