"""UnifiedReward as a diffusion-RL reward in the Flow-GRPO / DanceGRPO calling convention.

Flow-GRPO (``flow_grpo/rewards.py``) builds each reward with ``factory(device)`` and calls
``fn(images, prompts, metadata) -> (scores, info)``, where ``images`` is an NCHW float tensor in [0, 1] or an NHWC
uint8 array, from ``ThreadPoolExecutor`` threads, on every GPU process. Upstream's ``unifiedreward_score_sglang``
needs an SGLang server and turns a parse failure into 0; here the judge runs in-process or against any
OpenAI-compatible server::

    # flow_grpo/rewards.py, inside multi_score(): new entries in score_functions
    from integrations.diffusers.flow_grpo_reward import unifiedreward_score, unifiedreward_winrate

    def unifiedreward(device):  # a def, not functools.partial: multi_score reads the factory's __code__
        return unifiedreward_score(device, mode="logit")  # judge: $UNIFIEDREWARD_MODEL or $UNIFIEDREWARD_BASE_URL

    score_functions["unifiedreward"] = unifiedreward
    score_functions["unifiedreward_winrate"] = unifiedreward_winrate

Groups: Flow-GRPO's ``DistributedKRepeatSampler`` spreads the k images of a prompt over all GPUs and its
``PerPromptStatTracker`` normalises per prompt text. Both scorers therefore gather (prompt, score) across processes
(:class:`integrations.distributed.ProcessExchange`): the win rate compares each image with every image of its prompt
on every GPU, and a failed image gets the mean of its prompt group's successful scores (``impute="group_mean"``,
the default); a prompt group with no successful score gets the batch's mean, counted and logged. Each group then
holds no NaN and its failures move no advantage, with or without the tracker's ``global_std`` (``impute=None``: NaN).

Calls overlap (Flow-GRPO submits them back to back to its executor): each call takes a ticket on entry and runs its
exchange in ticket order, so the n-th exchange of every process is its n-th submission. The factories load one judge
per process and configuration (``train_sd3.py`` builds ``reward_fn`` and ``eval_reward_fn`` from the same config),
and calls on a shared judge run one at a time.

Scores are ``score / scale_max`` by default (upstream Flow-GRPO divides the 1-5 score by 5). Images are resized to
512x512 before judging, as upstream does (``resize=None`` keeps them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from reward_core.prompts import get_template

from ..distributed import ProcessExchange

logger = logging.getLogger(__name__)

POINT_TEMPLATE = "image_generation.point_score.v1"
PAIR_TEMPLATE = "image_generation.pair_rank.v1"
RESIZE = 512  # upstream unifiedreward_score_sglang judges 512x512 images


def split_images(images: Any, resize: int | None = None) -> list[Any]:
    """A batch (NCHW tensor, NHWC array, or a list) -> one entry per image: an RGB PIL image (``resize`` x ``resize``
    if given), or the raw entry when it cannot be read, so that the judge reports that item as a ``media_error``."""
    from reward_core.media import MediaError, load_image

    if not isinstance(images, (list, tuple)):
        shape = getattr(images, "shape", None)
        if shape is None or len(shape) != 4:
            raise ValueError(f"Expected a batch of images (NCHW tensor or NHWC array), got shape {shape}.")
        images = [images[index] for index in range(shape[0])]
    out = []
    for image in images:
        try:
            pil = load_image(image)
        except MediaError:
            out.append(image)
            continue
        out.append(pil.resize((resize, resize)) if resize else pil)
    return out


@dataclass
class Imputed:
    """Scores with their NaNs filled, and the prompts of the groups that had no successful score."""

    scores: np.ndarray
    failed_groups: list[str]


def impute_by_prompt(scores: np.ndarray, prompts: Sequence[str], fallback: float) -> Imputed:
    """NaN scores -> the mean of the finite scores of the same prompt; a prompt with none -> the mean of every finite
    score (``fallback`` when none is). Either way a group holds one value for its failures, so their advantage in
    Flow-GRPO's per-prompt stat tracker is 0 and no NaN reaches its ``np.std`` (per prompt or, ``global_std``, global)."""
    out = scores.copy()
    prompts = np.asarray(prompts, dtype=object)
    finite = ~np.isnan(scores)
    batch_mean = float(scores[finite].mean()) if finite.any() else fallback
    failed_groups = []
    for prompt in sorted(set(prompts[~finite].tolist())):
        members = prompts == prompt
        ok = members & finite
        if not ok.any():
            failed_groups.append(prompt)
        out[members & ~finite] = scores[ok].mean() if ok.any() else batch_mean
    return Imputed(out, failed_groups)


def prompts_fingerprint(prompts: Sequence[str]) -> str:
    """A short id of one call's prompts, in order (error messages name a call by it)."""
    return hashlib.blake2b(json.dumps(list(prompts), default=str).encode(), digest_size=6).hexdigest()


class CallOrder:
    """Tickets taken on entry; ``turn(ticket)`` runs its block in ticket order (first come, first served, which a
    ``threading.Lock`` does not promise). Every ticket taken must be turned, even by a call that fails before."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._next = 0
        self._serving = 0

    def take(self) -> int:
        with self._ready:
            ticket, self._next = self._next, self._next + 1
            return ticket

    @contextmanager
    def turn(self, ticket: int) -> Iterator[None]:
        with self._ready:
            self._ready.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._ready:
                self._serving += 1
                self._ready.notify_all()


_JUDGE_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_JUDGE_LOCKS_GUARD = threading.Lock()


def judge_lock(reward_model: Any) -> threading.Lock:
    """One lock per judge object: concurrent calls on one model would share its vision cache's pending keys."""
    with _JUDGE_LOCKS_GUARD:
        return _JUDGE_LOCKS.setdefault(reward_model, threading.Lock())


class _GroupedScorer:
    """Shared by both scorers: calls exchange in the order they were made, then imputation per prompt group.

    Flow-GRPO submits reward calls to a thread pool back to back, so they overlap; a ticket taken on entry orders
    their exchanges, on every process, as the calls were submitted. Each exchange gathers every process's ticket,
    prompts and their fingerprint: processes at different tickets raise, and ``group_size`` (Flow-GRPO's
    ``num_image_per_prompt``) checks by content that each prompt's group is complete across processes, which catches
    calls paired out of order.
    """

    neutral = 0.5  # the fill when a whole batch failed (scores are on [0, 1])

    def __init__(self, reward_model: Any, impute: str | None, group_size: int | None):
        if impute not in ("group_mean", None):
            raise ValueError("impute must be 'group_mean' or None")
        self.reward_model = reward_model
        self.impute, self.group_size = impute, group_size
        self.exchange = ProcessExchange()
        self.order = CallOrder()
        self.failed_groups_seen = 0

    def __call__(self, images: Any, prompts: Sequence[str], metadata: Any = None, **_: Any):
        ticket = self.order.take()
        prompts = list(prompts)
        try:
            local = self.prepare(images, prompts)
        except BaseException:
            with self.order.turn(ticket):  # hand the turn on
                raise
        with self.order.turn(ticket):
            return self.exchange_and_score(ticket, prompts, local)

    def prepare(self, images: Any, prompts: list[str]) -> Any:
        """This process's part of a call, before its turn (runs concurrently with other calls)."""
        raise NotImplementedError

    def exchange_and_score(self, ticket: int, prompts: list[str], local: Any) -> tuple[np.ndarray, dict]:
        """The call's exchanges and scores, in its turn."""
        raise NotImplementedError

    def judge(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        with judge_lock(self.reward_model):
            return getattr(self.reward_model, method)(*args, **kwargs)

    def gather_call(self, ticket: int, prompts: list[str], payload: Any) -> tuple[list[str], int, list[Any]]:
        """Every process's prompts (rank order), this process's offset in them, and every process's payload."""
        shards = self.exchange.gather((ticket, prompts_fingerprint(prompts), prompts, payload))
        calls = [(t, fingerprint) for t, fingerprint, _, _ in shards]
        if len({t for t, _ in calls}) != 1:
            raise RuntimeError(f"reward calls out of step across processes (ticket, prompts' fingerprint): {calls}")
        offset = sum(len(p) for _, _, p, _ in shards[: self.exchange.rank])
        everyone = [prompt for _, _, ps, _ in shards for prompt in ps]
        if self.group_size:
            counts = {prompt: everyone.count(prompt) for prompt in set(everyone)}
            wrong = {p: c for p, c in counts.items() if c % self.group_size}
            if wrong:
                raise RuntimeError(f"prompt groups are not multiples of group_size={self.group_size} across "
                                   f"processes (calls paired out of order? (ticket, prompts' fingerprint): {calls}): "
                                   f"{wrong}")
        return everyone, offset, [payload for _, _, _, payload in shards]

    def finish(self, scores: np.ndarray, everyone: list[str], local: slice) -> tuple[np.ndarray, np.ndarray, int]:
        """Imputed global scores -> this process's slice, the mask of its imputed entries, and the number of prompt
        groups (all processes) with no successful score."""
        failed = np.isnan(scores)
        failed_groups: list[str] = []
        if self.impute == "group_mean":
            imputed = impute_by_prompt(scores, everyone, self.neutral)
            scores, failed_groups = imputed.scores, imputed.failed_groups
        if failed_groups:
            self.failed_groups_seen += len(failed_groups)
            if self.exchange.rank == 0:
                logger.warning("%s: %d prompt group(s) with no successful score (%d so far) get the batch's mean "
                               "score (advantage 0): %s", self.__name__, len(failed_groups), self.failed_groups_seen,
                               failed_groups[:5])
        imputed_mask = failed & ~np.isnan(scores)
        return scores[local].astype(np.float32), imputed_mask[local], len(failed_groups)


class UnifiedRewardScorer(_GroupedScorer):
    """Pointwise UnifiedReward reward: ``scorer(images, prompts, metadata) -> (scores, info)``.

    ``scores`` is a float array; a failed item gets its prompt group's mean, or the batch's mean when its whole group
    failed (NaN with ``impute=None``). ``info`` holds per-item ``status``, ``error``, ``raw_score`` (on the template's
    scale, None when failed), ``imputed`` and ``text`` lists, plus ``num_failed`` and ``failed_groups`` (prompt groups,
    on every process, with no successful score).
    """

    __name__ = "unifiedreward"

    def __init__(self, reward_model: Any, template: str = POINT_TEMPLATE, mode: str = "generate", scale: str = "max",
                 resize: int | None = RESIZE, impute: str | None = "group_mean", group_size: int | None = None):
        super().__init__(reward_model, impute, group_size)
        if scale not in ("max", "none"):
            raise ValueError("scale must be 'max' (score / scale_max, as Flow-GRPO) or 'none'.")
        self.template = get_template(template)
        if self.template.pairwise or self.template.scale is None:
            raise ValueError(f"{template} is not a pointwise template with a score scale.")
        self.mode, self.resize = mode, resize
        self.scaled = self.template.max_scaled if scale == "max" else float
        self.neutral = self.scaled(sum(self.template.scale) / 2)

    def prepare(self, images: Any, prompts: list[str]) -> list[Any]:
        from reward_core import JudgeItem

        media = split_images(images, self.resize)
        if len(media) != len(prompts):
            raise ValueError(f"{len(media)} images but {len(prompts)} prompts.")
        items = [JudgeItem(media=[image], fields={"prompt": prompt}) for image, prompt in zip(media, prompts)]
        return self.judge("score_batch", self.template, items, mode=self.mode)

    def exchange_and_score(self, ticket: int, prompts: list[str], results: list[Any]) -> tuple[np.ndarray, dict]:
        raw = [float(r.score) if r.ok and r.score is not None else None for r in results]
        local_scores = [np.nan if s is None else self.scaled(s) for s in raw]
        everyone, offset, shards = self.gather_call(ticket, prompts, local_scores)
        all_scores = np.array([s for shard in shards for s in shard], dtype=np.float64)
        scores, imputed, failed_groups = self.finish(all_scores, everyone, slice(offset, offset + len(prompts)))
        info = {
            "status": [r.status.value for r in results],
            "error": [r.error for r in results],
            "raw_score": raw,
            "imputed": imputed.tolist(),
            "text": [r.text for r in results],
            "num_failed": sum(s is None for s in raw),
            "failed_groups": failed_groups,
        }
        if info["num_failed"]:
            logger.warning("UnifiedReward failed on %d of %d images (%d imputed).", info["num_failed"], len(scores),
                           int(imputed.sum()))
        return scores, info


class UnifiedRewardWinRateScorer(_GroupedScorer):
    """Pairwise UnifiedReward reduced to pointwise: each image's win rate against every image of its prompt.

    The group is every image of the prompt on every process (Flow-GRPO spreads the ``num_image_per_prompt`` images
    of a prompt over all GPUs). Each pair is judged once, by the process holding its first image; pairs in both
    orders with ``swap=True``. A win counts 1, a tie 0.5 (the probability in ``mode="logit"``); a failed
    comparison is left out of the rate, an image with no successful comparison gets its prompt group's mean win
    rate, and a group with none (e.g. a prompt with a single image) the batch's mean (NaN with ``impute=None``).
    """

    __name__ = "unifiedreward_winrate"

    def __init__(self, reward_model: Any, template: str = PAIR_TEMPLATE, mode: str = "generate", swap: bool = True,
                 resize: int | None = RESIZE, impute: str | None = "group_mean", group_size: int | None = None):
        super().__init__(reward_model, impute, group_size)
        self.template = get_template(template)
        if not self.template.pairwise:
            raise ValueError(f"{template} is not a pairwise template.")
        self.mode, self.swap, self.resize = mode, swap, resize

    def prepare(self, images: Any, prompts: list[str]) -> list[Any]:
        media = split_images(images, self.resize)
        if len(media) != len(prompts):
            raise ValueError(f"{len(media)} images but {len(prompts)} prompts.")
        return media

    def exchange_and_score(self, ticket: int, prompts: list[str], media: list[Any]) -> tuple[np.ndarray, dict]:
        from reward_core import JudgeItem

        # every process gets every image (resized PIL) so that it can judge the pairs it owns
        everyone, offset, shards = self.gather_call(ticket, prompts, media)
        all_media = [m for shard in shards for m in shard]
        groups: dict[str, list[int]] = {}
        for index, prompt in enumerate(everyone):
            groups.setdefault(prompt, []).append(index)
        pairs = [(a, b) for members in groups.values() for i, a in enumerate(members) for b in members[i + 1 :]]
        local = range(offset, offset + len(prompts))
        mine = [n for n, (a, _) in enumerate(pairs) if a in local]
        items = [JudgeItem(media=[all_media[pairs[n][0]], all_media[pairs[n][1]]], fields={"prompt": everyone[pairs[n][0]]})
                 for n in mine]
        results = self.judge("compare_batch", self.template, items, swap=self.swap, mode=self.mode) if items else []
        use_probs = self.mode == "logit"
        outcomes = [(n, r.first_share(use_probs), None if r.ok else f"{r.status.value}: {r.error}")
                    for n, r in zip(mine, results)]
        wins, games = np.zeros(len(everyone)), np.zeros(len(everyone))
        failed, errors = 0, []
        for shard in self.exchange.gather(outcomes):
            for n, share, error in shard:
                if share is None:
                    failed += 1
                    errors.append(error)
                    continue
                a, b = pairs[n]
                games[[a, b]] += 1
                wins[a] += share
                wins[b] += 1.0 - share
        with np.errstate(invalid="ignore", divide="ignore"):
            all_scores = np.where(games > 0, wins / games, np.nan)
        scores, imputed, failed_groups = self.finish(all_scores, everyone, slice(offset, offset + len(prompts)))
        info = {
            "comparisons": len(pairs),
            "judged_here": len(mine),
            "failed_comparisons": failed,
            "games": games[offset : offset + len(prompts)].tolist(),
            "imputed": imputed.tolist(),
            "failed_groups": failed_groups,
            "errors": errors,
        }
        return scores, info


_JUDGES: dict[tuple, Any] = {}
_JUDGES_GUARD = threading.Lock()


def load_reward_model(model_name_or_path: str | None = None, base_url: str | None = None, device: Any = None, **kwargs):
    """``UnifiedReward`` from a checkpoint or an OpenAI-compatible server (env ``UNIFIEDREWARD_MODEL`` /
    ``UNIFIEDREWARD_BASE_URL`` when neither is given), loaded once per process and configuration: every factory
    call with the same judge settings (``reward_fn`` and ``eval_reward_fn``, both scorers) shares it."""
    from reward_core import UnifiedReward

    model_name_or_path = model_name_or_path or os.environ.get("UNIFIEDREWARD_MODEL")
    base_url = base_url or os.environ.get("UNIFIEDREWARD_BASE_URL")
    if not (model_name_or_path or base_url):
        raise ValueError("Give model_name_or_path or base_url (or set UNIFIEDREWARD_MODEL / UNIFIEDREWARD_BASE_URL).")
    device = None if device is None else str(device)
    key = (model_name_or_path, base_url, None if base_url else device, json.dumps(kwargs, sort_keys=True, default=repr))
    with _JUDGES_GUARD:
        if key not in _JUDGES:
            _JUDGES[key] = (UnifiedReward.from_server(base_url, model=model_name_or_path, **kwargs) if base_url else
                            UnifiedReward.from_pretrained(model_name_or_path, device=device, **kwargs))
        return _JUDGES[key]


def _setting(value: Any, variable: str, default: Any) -> Any:
    return value if value is not None else os.environ.get(variable, default)


def unifiedreward_score(device: Any = None, model_name_or_path: str | None = None, base_url: str | None = None,
                        template: str | None = None, mode: str | None = None, scale: str = "max",
                        resize: int | None = RESIZE, impute: str | None = "group_mean", group_size: int | None = None,
                        **kwargs):
    """Flow-GRPO reward factory: returns ``fn(images, prompts, metadata) -> (scores, info)``.

    Called as ``factory(device)`` by ``multi_score``, which reads ``factory.__code__``: configure it in a ``def``
    (the module docstring's example; a ``functools.partial`` has no ``__code__`` and crashes ``multi_score``) or with
    the env vars ``UNIFIEDREWARD_MODEL`` / ``UNIFIEDREWARD_BASE_URL`` (judge), ``UNIFIEDREWARD_TEMPLATE``,
    ``UNIFIEDREWARD_MODE``.
    """
    reward_model = load_reward_model(model_name_or_path, base_url, device, **kwargs)
    return UnifiedRewardScorer(reward_model, template=_setting(template, "UNIFIEDREWARD_TEMPLATE", POINT_TEMPLATE),
                               mode=_setting(mode, "UNIFIEDREWARD_MODE", "generate"), scale=scale, resize=resize,
                               impute=impute, group_size=group_size)


def unifiedreward_winrate(device: Any = None, model_name_or_path: str | None = None, base_url: str | None = None,
                          template: str | None = None, mode: str | None = None, swap: bool = True,
                          resize: int | None = RESIZE, impute: str | None = "group_mean", group_size: int | None = None,
                          **kwargs):
    """Flow-GRPO reward factory for the pairwise (group win-rate) reward; settings as :func:`unifiedreward_score`
    (``UNIFIEDREWARD_PAIR_TEMPLATE`` for the template)."""
    reward_model = load_reward_model(model_name_or_path, base_url, device, **kwargs)
    return UnifiedRewardWinRateScorer(reward_model, template=_setting(template, "UNIFIEDREWARD_PAIR_TEMPLATE", PAIR_TEMPLATE),
                                      mode=_setting(mode, "UNIFIEDREWARD_MODE", "generate"), swap=swap, resize=resize,
                                      impute=impute, group_size=group_size)
