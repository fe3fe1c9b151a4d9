"""UnifiedReward reward functions for TRL's ``GRPOTrainer`` / ``RLOOTrainer``.

Each follows TRL's contract ``f(prompts, completions, completion_ids=None, **columns) -> list[float | None]``:
``None`` marks an item the judge could not score (bad media, unparseable output, server down); TRL
turns it into NaN and ``nansum`` ignores it. Media come from the dataset's ``images`` / ``image`` /
``video`` columns (or, failing that, the image parts TRL put into the prompt).

Use the classes with your own ``UnifiedReward``::

    reward = PointwiseReward(UnifiedReward.from_pretrained("CodeGoat24/UnifiedReward-qwen-7b"))
    GRPOTrainer(model, reward_funcs=[reward], ...)

or the module-level functions, configured by ``UNIFIEDREWARD_*`` env vars / a config file
(:mod:`integrations.trl.config`), e.g. ``trl grpo --reward_funcs integrations.trl.rewards.pointwise_reward``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from reward_core import JudgeItem, RewardResult, VideoSpec, get_template
from reward_core.parsers import parse

from .config import RewardConfig, load_reward_model

logger = logging.getLogger(__name__)

TRAINER_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments")


# --------------------------------------------------------------------------- reading TRL batches


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict) and part.get("type") == "text")
    return ""


def prompt_text(prompt: Any) -> str:
    """The question: a plain prompt, or the last user turn of a conversational one (text parts only)."""
    if isinstance(prompt, str):
        return prompt
    users = [m for m in prompt if m.get("role") == "user"]
    return _text_of(users[-1]["content"]).strip() if users else ""


def completion_text(completion: Any) -> str:
    """A plain completion, or the assistant turns of a conversational one."""
    if isinstance(completion, str):
        return completion
    return "".join(_text_of(m.get("content")) for m in completion if m.get("role", "assistant") == "assistant")


def _prompt_images(prompt: Any) -> list[Any]:
    if isinstance(prompt, str):
        return []
    return [
        part["image"]
        for message in prompt
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "image" and part.get("image") is not None
    ]


def row_media(columns: dict[str, Any], index: int, prompt: Any = None) -> list[Any]:
    """Media of row ``index``: ``images`` (a list), ``image`` (one), ``video`` (a path), else the prompt's images."""
    images = columns.get("images")
    if images is not None and images[index] is not None:
        return list(images[index])
    image = columns.get("image")
    if image is not None and image[index] is not None:
        return [image[index]]
    video = columns.get("video")
    if video is not None and video[index] is not None:
        entry = video[index]
        return [entry if isinstance(entry, VideoSpec) else VideoSpec(entry)]
    return _prompt_images(prompt)


def _has_video(columns: dict[str, Any]) -> bool:
    return columns.get("video") is not None and "images" not in columns and "image" not in columns


def normalized(value: float, scale: tuple[float, float] | None) -> float:
    """``value`` mapped from the template's scale to [0, 1] (unchanged without a scale)."""
    if scale is None:
        return value
    low, high = scale
    return (value - low) / (high - low)


# --------------------------------------------------------------------------- base class


class UnifiedRewardFunction:
    """Common plumbing: lazy model, failure accounting and logging, TRL's ``__name__``."""

    section = ""
    default_templates: dict[str, str] = {}

    def __init__(
        self,
        reward_model: Any = None,
        template: str | None = None,
        mode: str = "generate",
        name: str | None = None,
        config: RewardConfig | None = None,
    ):
        self._reward_model = reward_model
        self._config = config
        self.template = template
        self.mode = mode
        self.__name__ = name or f"unifiedreward_{self.section}"
        self.calls = self.items = self.failed = 0

    @property
    def reward_model(self) -> Any:
        if self._reward_model is None:
            self._reward_model = load_reward_model(self._config or RewardConfig.from_env())
        return self._reward_model

    def template_for(self, columns: dict[str, Any]) -> str:
        if self.template:
            return self.template
        return self.default_templates["video" if _has_video(columns) else "image"]

    def __call__(self, prompts: list, completions: list, completion_ids: list | None = None, **columns: Any) -> list[float | None]:
        log_metric = columns.get("log_metric")
        columns = {k: v for k, v in columns.items() if k not in TRAINER_KWARGS}
        rewards, errors = self.compute(prompts, completions, columns)
        self.calls += 1
        self.items += len(rewards)
        failed = sum(r is None for r in rewards)
        self.failed += failed
        if failed:
            logger.warning("%s: %d/%d items got no reward (first error: %s)", self.__name__, failed, len(rewards), errors[0] if errors else "?")
        if callable(log_metric):
            log_metric(f"{self.__name__}/failed_fraction", failed / max(len(rewards), 1))
        return rewards

    def compute(self, prompts: list, completions: list, columns: dict[str, Any]) -> tuple[list[float | None], list[str]]:
        raise NotImplementedError


def _errors(results: Sequence[RewardResult]) -> list[str]:
    return [f"{r.status.value}: {r.error}" for r in results if not r.ok]


# --------------------------------------------------------------------------- pointwise


class PointwiseReward(UnifiedRewardFunction):
    """The judge's point score of each completion, mapped to [0, 1] by the template's scale.

    Understanding templates (``question``/``response``) judge the completion as an answer about the
    row's image or video. Generation templates (``prompt``) judge the row's image against a caption:
    the completion (``caption_from="completion"``, e.g. a captioning policy) or the prompt.
    """

    section = "pointwise"
    default_templates = {"image": "image_understanding.point_score.v1", "video": "video_understanding.point_score.v1"}

    def __init__(self, reward_model: Any = None, template: str | None = None, mode: str = "generate",
                 normalize: bool = True, caption_from: str = "completion", **kwargs: Any):
        super().__init__(reward_model, template, mode, **kwargs)
        if caption_from not in ("completion", "prompt"):
            raise ValueError("caption_from must be 'completion' or 'prompt'")
        self.normalize, self.caption_from = normalize, caption_from

    def judge_items(self, template: Any, prompts: list, completions: list, columns: dict[str, Any]) -> list[JudgeItem]:
        items = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            media = row_media(columns, i, prompt)
            if "response" in template.fields:
                fields = {"question": prompt_text(prompt), "response": completion_text(completion)}
            else:
                caption = completion_text(completion) if self.caption_from == "completion" else prompt_text(prompt)
                fields = {"prompt": caption}
            items.append(JudgeItem(media=media, fields=fields))
        return items

    def value(self, result: RewardResult, template: Any) -> float | None:
        if not result.ok or result.score is None:
            return None
        return normalized(result.score, template.scale) if self.normalize else result.score

    def compute(self, prompts, completions, columns):
        template = get_template(self.template_for(columns))
        results = self.reward_model.score_batch(template, self.judge_items(template, prompts, completions, columns), mode=self.mode)
        return [self.value(r, template) for r in results], _errors(results)


class MultiDimensionReward(PointwiseReward):
    """Weighted mean of per-dimension scores (ACS for images, APS for videos), each mapped to [0, 1].

    ``weights`` maps dimension names (``alignment``, ``coherence``, ``style``, ``physics``) to weights;
    by default every dimension the template reports counts equally. A missing weighted dimension makes
    the item fail (None) rather than silently re-weighting.
    """

    section = "multidim"
    default_templates = {"image": "image_generation.point_score_acs.v2", "video": "video_generation.point_score_aps.v2"}

    def __init__(self, reward_model: Any = None, template: str | None = None, mode: str = "generate",
                 weights: dict[str, float] | None = None, **kwargs: Any):
        super().__init__(reward_model, template, mode, **kwargs)
        self.weights = {k.lower(): float(v) for k, v in (weights or {}).items()}

    def value(self, result: RewardResult, template: Any) -> float | None:
        if not result.ok or not result.scores:
            return None
        scores = {k.lower(): v for k, v in result.scores.items()}
        weights = self.weights or {k: 1.0 for k in scores}
        if any(k not in scores or scores[k] is None or math.isnan(scores[k]) for k in weights):
            return None
        scale = template.scale or (1.0, 5.0)
        total = sum(w * (normalized(scores[k], scale) if self.normalize else scores[k]) for k, w in weights.items())
        return total / sum(weights.values())


# --------------------------------------------------------------------------- pairwise win rate


def group_spans(keys: Sequence[Any], group_size: int | None = None) -> list[range]:
    """Contiguous groups: fixed ``group_size`` (TRL's ``num_generations``), else runs of equal keys."""
    if group_size:
        if len(keys) % group_size:
            raise ValueError(f"batch of {len(keys)} is not a multiple of group_size={group_size}")
        return [range(s, s + group_size) for s in range(0, len(keys), group_size)]
    spans, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            spans.append(range(start, i))
            start = i
    return spans


def balanced_pairs(size: int, max_pairs: int | None = None) -> list[tuple[int, int]]:
    """Unordered pairs of ``range(size)``, nearest ring neighbours first so that any prefix spreads the
    comparisons evenly over members; all ``size*(size-1)/2`` when ``max_pairs`` is None."""
    pairs, seen = [], set()
    for distance in range(1, size // 2 + 1):
        for i in range(size):
            pair = tuple(sorted((i, (i + distance) % size)))
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
    return pairs if max_pairs is None else pairs[:max_pairs]


class PairwiseWinRateReward(UnifiedRewardFunction):
    """Each completion's win rate against the other completions of its prompt (Pref-GRPO style).

    Pairs are ranked in both orders by default (``swap=True``): orders that disagree count as a tie.
    A tie gives each side half a win; a failed comparison counts for neither, and a completion with
    no successful comparison gets None. ``max_pairs`` caps the comparisons per group (pairs chosen
    evenly over members); in ``mode="logit"`` a win is the judge's probability instead of 0/1.
    """

    section = "pairwise"
    default_templates = {"image": "image_understanding.pair_rank.v1", "video": "video_understanding.pair_rank.v1"}

    def __init__(self, reward_model: Any = None, template: str | None = None, mode: str = "generate",
                 swap: bool = True, max_pairs: int | None = None, group_size: int | None = None, **kwargs: Any):
        super().__init__(reward_model, template, mode, **kwargs)
        self.swap, self.max_pairs, self.group_size = swap, max_pairs, group_size

    def compute(self, prompts, completions, columns):
        template = get_template(self.template_for(columns))
        if not {"answer1", "answer2"} <= set(template.fields):
            raise ValueError(f"{template.key}: the win-rate reward needs an answer-pair template (completions are texts)")
        texts = [completion_text(c) for c in completions]
        pairs, items = [], []
        for span in group_spans([prompt_text(p) for p in prompts], self.group_size):
            for a, b in balanced_pairs(len(span), self.max_pairs):
                i, j = span[a], span[b]
                fields = {"question": prompt_text(prompts[i]), "answer1": texts[i], "answer2": texts[j]}
                items.append(JudgeItem(media=row_media(columns, i, prompts[i]), fields=fields))
                pairs.append((i, j))
        results = self.reward_model.compare_batch(template, items, swap=self.swap, mode=self.mode) if items else []
        wins, counted = [0.0] * len(prompts), [0] * len(prompts)
        for (i, j), result in zip(pairs, results):
            if not result.ok or result.winner is None:
                continue
            if self.mode == "logit" and result.probs:
                share_i = result.probs["1"]
            else:
                share_i = {1: 1.0, 2: 0.0, 0: 0.5}[result.winner]
            wins[i] += share_i
            wins[j] += 1.0 - share_i
            counted[i] += 1
            counted[j] += 1
        rewards = [w / n if n else None for w, n in zip(wins, counted)]
        return rewards, _errors(results)


# --------------------------------------------------------------------------- Think (CoT) rewards

_THINK_FORMAT = re.compile(
    r"\s*<think>(?:(?!</?think>).)*</think>\s*<answer>(?:(?!</?answer>).)*</answer>\s*", re.DOTALL
)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def think_format_reward(completions: list, **kwargs: Any) -> list[float]:
    """1.0 when the whole completion is ``<think>…</think><answer>…</answer>`` (anchored at both ends)."""
    return [1.0 if _THINK_FORMAT.fullmatch(completion_text(c)) else 0.0 for c in completions]


def _label_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(".").strip().casefold()


def think_accuracy_reward(completions: list, solution: list[str] | None = None, **kwargs: Any) -> list[float | None]:
    """1.0 when the ``<answer>`` names the labelled winner (``solution`` column, e.g. "Image 1 is better").

    Verdicts are read with UnifiedReward's own parsers, so "Image 1 is better." (trailing period)
    matches "Image 1 is better" (upstream's exact-equality check scored it 0). No ``<answer>`` gives
    0.0; a row without a label gives None.
    """
    if solution is None:
        raise ValueError("think_accuracy_reward needs a `solution` column (e.g. 'Image 1 is better')")
    rewards: list[float | None] = []
    for completion, label in zip(completions, solution):
        if not label:
            rewards.append(None)
            continue
        match = _ANSWER.search(completion_text(completion))
        if match is None:
            rewards.append(0.0)
            continue
        answer, expected = parse("pair_rank", match.group(1)), parse("pair_rank", label)
        if expected.ok and expected.winner is not None:
            rewards.append(1.0 if answer.ok and answer.winner == expected.winner else 0.0)
        else:  # a label that names no winner: compare the texts
            rewards.append(1.0 if _label_text(match.group(1)) == _label_text(label) else 0.0)
    return rewards


# --------------------------------------------------------------------------- module-level functions

_DEFAULTS: dict[str, UnifiedRewardFunction] = {}


def _default(factory: Callable[..., UnifiedRewardFunction], name: str) -> UnifiedRewardFunction:
    if name not in _DEFAULTS:
        config = RewardConfig.from_env()
        _DEFAULTS[name] = factory(config=config, name=name, **config.section(factory.section))
    return _DEFAULTS[name]


def pointwise_reward(prompts: list, completions: list, completion_ids: list | None = None, **columns: Any) -> list[float | None]:
    """:class:`PointwiseReward` configured by ``UNIFIEDREWARD_*`` env vars / ``UNIFIEDREWARD_CONFIG``."""
    return _default(PointwiseReward, "pointwise_reward")(prompts, completions, completion_ids, **columns)


def pairwise_winrate_reward(prompts: list, completions: list, completion_ids: list | None = None, **columns: Any) -> list[float | None]:
    """:class:`PairwiseWinRateReward` configured by ``UNIFIEDREWARD_*`` env vars / ``UNIFIEDREWARD_CONFIG``."""
    return _default(PairwiseWinRateReward, "pairwise_winrate_reward")(prompts, completions, completion_ids, **columns)


def multidim_reward(prompts: list, completions: list, completion_ids: list | None = None, **columns: Any) -> list[float | None]:
    """:class:`MultiDimensionReward` configured by ``UNIFIEDREWARD_*`` env vars / ``UNIFIEDREWARD_CONFIG``."""
    return _default(MultiDimensionReward, "multidim_reward")(prompts, completions, completion_ids, **columns)
