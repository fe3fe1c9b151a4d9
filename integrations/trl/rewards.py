"""UnifiedReward reward functions for TRL's ``GRPOTrainer`` / ``RLOOTrainer``.

Each follows TRL's contract ``f(prompts, completions, completion_ids=None, **columns) -> list[float | None]``.
Media come from the dataset's ``images`` / ``image`` / ``video`` columns (or, failing that, the image parts
TRL put into the prompt). A group is the completions of one prompt *row* (its text and media), over the
batch of every process of an accelerate / torchrun run, so 1 or N processes give the same rewards.

A completion the judge could not score (bad media, unparseable output, server down) is logged and, by
default, given the mean of its group's successful scores for this reward: its advantage then does not
depend on this reward, in TRL 0.24 and 1.x, with one reward function or several (never 0, never the
worst). ``impute=None`` returns None instead (TRL: NaN).

Build them with the factories (or the classes, with your own ``UnifiedReward``)::

    reward = get_pointwise_reward(UnifiedReward.from_pretrained("CodeGoat24/UnifiedReward-qwen-7b"))
    GRPOTrainer(model, reward_funcs=[reward, get_winrate_reward(server="http://localhost:8080/v1")], ...)

or the module-level functions, configured by ``UNIFIEDREWARD_*`` env vars / a config file
(:mod:`integrations.trl.config`), e.g. ``trl grpo --reward_funcs integrations.trl.rewards.pointwise_reward``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reward_core import JudgeItem, RewardResult, VideoSpec, get_template
from reward_core.pairing import GroupScores, Pairing, plan_pairs, score_pairs, seed_from
from reward_core.parsers import MULTI_SCORE_DIMENSIONS, parse

from ..distributed import ProcessExchange, media_fingerprint
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


def as_media_list(entry: Any) -> list[Any]:
    """One row's ``images`` cell as a list: a list/tuple stays as is; one path (or image) becomes ``[entry]``."""
    return list(entry) if isinstance(entry, (list, tuple)) else [entry]


def row_media(columns: dict[str, Any], index: int, prompt: Any = None) -> list[Any]:
    """Media of row ``index``: ``images`` (a list, or one path), ``image`` (one), ``video`` (a path), else the
    prompt's images. A path string in ``images`` is one image, never a list of its characters."""
    images = columns.get("images")
    if images is not None and images[index] is not None:
        return as_media_list(images[index])
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


# --------------------------------------------------------------------------- groups and neutral failure


def row_key(prompt: Any, media: Sequence[Any]) -> str:
    """Identity of a prompt *row*: every text part of the prompt plus a fingerprint of each media entry.

    Two rows asking the same question about different images get different keys; the completions TRL
    generated for one row (wherever they sit in the batch, on whichever process) share one.
    """
    if isinstance(prompt, str):
        text = prompt
    else:
        text = "\x1f".join(f"{m.get('role')}:{_text_of(m.get('content'))}" for m in prompt)
    ident = text + "\x1e" + "\x1f".join(media_fingerprint(m) for m in media)
    return hashlib.blake2b(ident.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def group_members(keys: Sequence[Any], group_size: int | None = None) -> list[list[int]]:
    """Groups of indices: items with equal keys (first-seen order), or TRL's contiguous ``group_size`` blocks."""
    if group_size:
        if len(keys) % group_size:
            raise ValueError(f"batch of {len(keys)} is not a multiple of group_size={group_size}")
        return [list(range(s, s + group_size)) for s in range(0, len(keys), group_size)]
    groups: dict[Any, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def impute_group_mean(values: Sequence[float | None], groups: Sequence[Sequence[int]]) -> tuple[list[float | None], list[bool]]:
    """Each failed value (None) becomes the mean of its group's successful values, so it moves no advantage.

    GRPO centres every reward on its group mean; a failed completion holding exactly that mean contributes
    nothing to its own advantage (nor, in TRL's ``normalize_then_sum``, to any other). A group with no
    successful value stays None: TRL then gives the whole group the same value (0 via ``nansum``, or
    "unscorable" in TRL 1.x), which moves no advantage either. Returns the values and an "imputed" mask.
    """
    out, imputed = list(values), [False] * len(values)
    for members in groups:
        ok = [values[i] for i in members if values[i] is not None]
        if not ok or len(ok) == len(members):
            continue
        mean = sum(ok) / len(ok)
        for i in members:
            if values[i] is None:
                out[i], imputed[i] = mean, True
    return out, imputed


# --------------------------------------------------------------------------- base class


@dataclass
class Judged:
    """What :meth:`UnifiedRewardFunction.compute` found for this process's items."""

    values: list[float | None]
    statuses: list[str]
    texts: list[str | None]
    errors: list[str] = field(default_factory=list)


class UnifiedRewardFunction:
    """Common plumbing: lazy model, groups across processes, neutral failure, TRL logging, ``__name__``.

    ``impute="group_mean"`` (default) gives a completion the judge could not score the mean of its group's
    successful scores, so its advantage does not depend on this reward (``impute=None`` returns None).
    Groups are prompt rows (:func:`row_key`) over the whole batch of every process, or TRL's
    ``num_generations`` blocks of the gathered batch with ``group_size``.
    """

    section = ""
    default_templates: dict[str, str] = {}

    def __init__(
        self,
        reward_model: Any = None,
        template: str | None = None,
        mode: str = "generate",
        name: str | None = None,
        config: RewardConfig | None = None,
        group_size: int | None = None,
        impute: str | None = "group_mean",
    ):
        if impute not in ("group_mean", None):
            raise ValueError("impute must be 'group_mean' or None")
        self._reward_model = reward_model
        self._config = config
        self.template = template
        self.mode = mode
        self.group_size, self.impute = group_size, impute
        self.__name__ = name or f"unifiedreward_{self.section}"
        self.calls = self.items = self.failed = self.imputed = 0
        self.exchange = ProcessExchange()

    @property
    def reward_model(self) -> Any:
        if self._reward_model is None:
            self._reward_model = load_reward_model(self._config or RewardConfig.from_env())
        return self._reward_model

    def __getstate__(self) -> dict:
        """Picklable: a reward configured by a ``RewardConfig`` reloads its model where it is unpickled."""
        state = dict(self.__dict__)
        if self._config is not None:
            state["_reward_model"] = None
        return state

    def template_for(self, columns: dict[str, Any]) -> str:
        if self.template:
            return self.template
        return self.default_templates["video" if _has_video(columns) else "image"]

    def __call__(self, prompts: list, completions: list, completion_ids: list | None = None, **columns: Any) -> list[float | None]:
        log_metric, log_extra = columns.get("log_metric"), columns.get("log_extra")
        columns = {k: v for k, v in columns.items() if k not in TRAINER_KWARGS}
        keys = [row_key(p, row_media(columns, i, p)) for i, p in enumerate(prompts)]
        judged = self.compute(prompts, completions, columns, keys)
        rewards, imputed = self.neutralize(keys, judged.values)
        self.calls += 1
        self.items += len(rewards)
        failed = sum(v is None for v in judged.values)
        self.failed += failed
        self.imputed += sum(imputed)
        if failed:
            logger.warning("%s: judge failed on %d/%d items, %d given their group's mean (first error: %s)",
                           self.__name__, failed, len(rewards), sum(imputed), judged.errors[0] if judged.errors else "?")
        if callable(log_metric):
            log_metric(f"{self.__name__}/failed_fraction", failed / max(len(rewards), 1))
        if callable(log_extra):
            log_extra(f"{self.__name__}/status", [f"{s} (imputed)" if m else s for s, m in zip(judged.statuses, imputed)])
            log_extra(f"{self.__name__}/judge_text", judged.texts)
        return rewards

    def neutralize(self, keys: list[str], values: list[float | None]) -> tuple[list[float | None], list[bool]]:
        """Impute failed values from the groups of the whole (every process's) batch; this process's slice back."""
        if self.impute is None:
            return list(values), [False] * len(values)
        shards = self.exchange.gather((keys, values))
        offset = sum(len(k) for k, _ in shards[: self.exchange.rank])
        all_keys = [k for ks, _ in shards for k in ks]
        all_values = [v for _, vs in shards for v in vs]
        out, imputed = impute_group_mean(all_values, group_members(all_keys, self.group_size))
        local = slice(offset, offset + len(values))
        return out[local], imputed[local]

    def compute(self, prompts: list, completions: list, columns: dict[str, Any], keys: list[str]) -> Judged:
        raise NotImplementedError


class AsyncRewardMixin:
    """``async def __call__`` for TRL >= 0.27, which runs async reward functions concurrently (server judges).

    The judging runs in a worker thread; the process group is set up before the first ``await``, in the
    order TRL starts the coroutines, so that every process creates it in the same order.
    """

    async def __call__(self, prompts: list, completions: list, completion_ids: list | None = None, **columns: Any):
        self.exchange.gather(None)  # creates this function's process group in TRL's (deterministic) order
        call = super().__call__  # type: ignore[misc]
        return await asyncio.to_thread(call, prompts, completions, completion_ids, **columns)


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

    def compute(self, prompts, completions, columns, keys):
        template = get_template(self.template_for(columns))
        results = self.reward_model.score_batch(template, self.judge_items(template, prompts, completions, columns), mode=self.mode)
        values = [self.value(r, template) for r in results]
        statuses = ["ok" if v is not None else r.status.value if not r.ok else "no_score" for r, v in zip(results, values)]
        return Judged(values, statuses, [r.text for r in results], _errors(results))


class MultiDimensionReward(PointwiseReward):
    """Weighted mean of per-dimension scores (ACS for images, APS for videos), each mapped to [0, 1].

    ``weights`` maps dimension names (``alignment``, ``coherence``, ``style``, ``physics``) to weights;
    by default every dimension the template reports counts equally. A weight naming a dimension that no
    template this reward may use reports (a typo such as ``"alignmnet"``) is refused when the reward is
    built, and one the batch's template does not report (``physics`` on images) when that batch is scored:
    a ``ValueError`` instead of None for every item. A weighted dimension missing from one answer makes
    that item fail rather than silently re-weighting.
    """

    section = "multidim"
    default_templates = {"image": "image_generation.point_score_acs.v2", "video": "video_generation.point_score_aps.v2"}

    def __init__(self, reward_model: Any = None, template: str | None = None, mode: str = "generate",
                 weights: dict[str, float] | None = None, **kwargs: Any):
        super().__init__(reward_model, template, mode, **kwargs)
        self.weights = {k.lower(): float(v) for k, v in (weights or {}).items()}
        self.check_weights([self.template] if self.template else list(self.default_templates.values()))

    def check_weights(self, template_keys: Sequence[str]) -> None:
        """Refuse weights naming a dimension none of ``template_keys`` reports (custom parsers: not checked)."""
        reported = [MULTI_SCORE_DIMENSIONS.get(get_template(key).parser) for key in template_keys]
        if not self.weights or any(dimensions is None for dimensions in reported):
            return
        known = sorted({name for dimensions in reported for name in dimensions})
        unknown = sorted(set(self.weights) - set(known))
        if unknown:
            raise ValueError(f"{self.__name__}: unknown dimension(s) {unknown} in weights; "
                             f"{', '.join(template_keys)} report(s) {known}")

    def compute(self, prompts, completions, columns, keys):
        self.check_weights([self.template_for(columns)])
        return super().compute(prompts, completions, columns, keys)

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


class PairwiseWinRateReward(UnifiedRewardFunction):
    """Each completion's standing against the other completions of its prompt row (Pref-GRPO style).

    A group is every completion of one prompt row in the whole batch of every process (or a
    ``group_size`` block), so a process holding part of a group still compares with all of it; each
    ordered pair is judged once, by the process that holds its first completion. Which pairs, and how
    verdicts become rewards (:class:`reward_core.pairing.Pairing`, defaults by ``mode``):

    * ``mode="logit"`` (soft verdicts, P(first wins)): ``pairing="sparse"``, each completion meets ``k=4``
      others with the first slot balanced (2G calls a group), ``aggregate="bt"``: a Bradley-Terry fit with a
      position term; the reward is the completion's expected win rate against its group under the fit.
    * ``mode="generate"`` (text verdicts): ``pairing="round_robin"`` in both orders (``swap=True``, G(G-1)
      calls) and ``aggregate="win_rate"``, as before: sparse schedules lose accuracy on text verdicts.

    ``pairing="pref_grpo"`` is Pref-GRPO's every pair once, lower index first; ``swap`` judges a schedule's
    pairs in both orders; ``max_pairs`` keeps the schedule's first pairs (spread evenly over members). A tie
    gives each side half a win; a failed comparison counts for neither, and a completion with no successful
    comparison failed. The sparse schedule's seed comes from the group's key and texts, the same on every process.
    """

    section = "pairwise"
    default_templates = {"image": "image_understanding.pair_rank.v1", "video": "video_understanding.pair_rank.v1"}

    def __init__(self, reward_model: Any = None, template: str | None = None, mode: str = "generate",
                 swap: bool | None = None, max_pairs: int | None = None, pairing: str | None = None, k: int = 4,
                 aggregate: str | None = None, **kwargs: Any):
        super().__init__(reward_model, template, mode, **kwargs)
        self.pairing = Pairing.for_mode(mode, pairing, k, aggregate, swap, max_pairs, template=template)
        self.swap, self.max_pairs = self.pairing.both_orders, max_pairs

    def compute(self, prompts, completions, columns, keys):
        template = get_template(self.template_for(columns))
        if not {"answer1", "answer2"} <= set(template.fields):
            raise ValueError(f"{template.key}: the win-rate reward needs an answer-pair template (completions are texts)")
        texts = [completion_text(c) for c in completions]
        shards = self.exchange.gather((keys, texts))
        rank = self.exchange.rank
        owners = [r for r, (ks, _) in enumerate(shards) for _ in ks]
        offset = owners.index(rank) if rank in owners else 0
        all_keys = [k for ks, _ in shards for k in ks]
        all_texts = [t for _, ts in shards for t in ts]
        groups = group_members(all_keys, self.group_size)
        seeds = [seed_from(all_keys[members[0]], *(all_texts[i] for i in members)) for members in groups]
        pairs = plan_pairs(groups, self.pairing, seeds)
        mine = [n for n, (i, _) in enumerate(pairs) if owners[i] == rank]
        items = []
        for n in mine:
            i, j = pairs[n]
            local = i - offset
            fields = {"question": prompt_text(prompts[local]), "answer1": all_texts[i], "answer2": all_texts[j]}
            items.append(JudgeItem(media=row_media(columns, local, prompts[local]), fields=fields))
        results = self.reward_model.compare_batch(template, items, swap=False, mode=self.mode) if items else []
        shares: list[float | None] = [None] * len(pairs)
        for shard in self.exchange.gather([(n, r.first_share(use_probs=True)) for n, r in zip(mine, results)]):
            for n, share in shard:
                shares[n] = share
        rewards, scored = score_pairs(len(all_keys), groups, pairs, shares, self.pairing)
        standing = {i: (group.games[n], group) for members, group in zip(groups, scored) for n, i in enumerate(members)}
        local = range(offset, offset + len(prompts))
        values = [rewards[g] for g in local]
        statuses = ["ok" if standing[g][0] else "no_comparison" for g in local]
        texts_out = [describe(*standing[g]) for g in local]
        return Judged(values, statuses, texts_out, _errors(results))


def describe(games: int, group: GroupScores) -> str:
    """A completion's comparisons and its group's fitted position bias / consistency (Bradley-Terry)."""
    text = f"{games} comparisons"
    if group.position_bias is not None:
        text += f"; group position bias {group.position_bias:+.2f}"
    if group.consistency is not None:
        text += f", consistency {group.consistency:.2f}"
    return text


class AsyncPointwiseReward(AsyncRewardMixin, PointwiseReward):
    """:class:`PointwiseReward` as an async reward function."""


class AsyncPairwiseWinRateReward(AsyncRewardMixin, PairwiseWinRateReward):
    """:class:`PairwiseWinRateReward` as an async reward function."""


class AsyncMultiDimensionReward(AsyncRewardMixin, MultiDimensionReward):
    """:class:`MultiDimensionReward` as an async reward function."""


# --------------------------------------------------------------------------- Think (CoT) rewards

_THINK_FORMAT = re.compile(
    r"\s*<think>(?:(?!</?think>).)*</think>\s*<answer>(?:(?!</?answer>).)*</answer>\s*", re.DOTALL
)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def unifiedreward_think_format_reward(completions: list, **kwargs: Any) -> list[float]:
    """1.0 when the whole completion is ``<think>…</think><answer>…</answer>`` (anchored at both ends)."""
    return [1.0 if _THINK_FORMAT.fullmatch(completion_text(c)) else 0.0 for c in completions]


def _label_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(".").strip().casefold()


def unifiedreward_think_accuracy_reward(completions: list, solution: list[str] | None = None, **kwargs: Any) -> list[float | None]:
    """1.0 when the ``<answer>`` names the labelled winner (``solution`` column, e.g. "Image 1 is better").

    Verdicts are read with UnifiedReward's own parsers, so "Image 1 is better." (trailing period)
    matches "Image 1 is better" (upstream's exact-equality check scored it 0). No ``<answer>`` gives
    0.0; a row without a label gives None.
    """
    if solution is None:
        raise ValueError("unifiedreward_think_accuracy_reward needs a `solution` column (e.g. 'Image 1 is better')")
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


# --------------------------------------------------------------------------- factories (TRL style)

_CLASSES = {
    "pointwise": (PointwiseReward, AsyncPointwiseReward),
    "pairwise": (PairwiseWinRateReward, AsyncPairwiseWinRateReward),
    "multidim": (MultiDimensionReward, AsyncMultiDimensionReward),
}


def _make(section: str, reward_model: Any, use_async: bool, model: str | None, server: str | None,
          **kwargs: Any) -> UnifiedRewardFunction:
    sync_class, async_class = _CLASSES[section]
    config = None
    if reward_model is None:
        config = RewardConfig.from_env()
        config.model, config.server = model or config.model, server or config.server
        kwargs = {**config.section(section), **kwargs}
    return (async_class if use_async else sync_class)(reward_model, config=config, **kwargs)


def get_pointwise_reward(reward_model: Any = None, *, model: str | None = None, server: str | None = None,
                         use_async: bool = False, **kwargs: Any) -> PointwiseReward:
    """A :class:`PointwiseReward` for ``reward_funcs``: with ``reward_model``, or loaded (lazily, once per
    process) from ``model`` (checkpoint) / ``server`` (OpenAI-compatible URL) / the ``UNIFIEDREWARD_*`` config.
    ``use_async=True`` returns an async reward function (TRL >= 0.27 runs those concurrently)."""
    return _make("pointwise", reward_model, use_async, model, server, **kwargs)


def get_winrate_reward(reward_model: Any = None, *, model: str | None = None, server: str | None = None,
                       use_async: bool = False, **kwargs: Any) -> PairwiseWinRateReward:
    """A :class:`PairwiseWinRateReward` (arguments as :func:`get_pointwise_reward`; ``pairing``, ``k``,
    ``aggregate``, ``swap``, ``max_pairs``: defaults by ``mode``, see the class)."""
    return _make("pairwise", reward_model, use_async, model, server, **kwargs)


def get_multidim_reward(reward_model: Any = None, *, model: str | None = None, server: str | None = None,
                        use_async: bool = False, **kwargs: Any) -> MultiDimensionReward:
    """A :class:`MultiDimensionReward` (arguments as :func:`get_pointwise_reward`; ``weights``)."""
    return _make("multidim", reward_model, use_async, model, server, **kwargs)


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
