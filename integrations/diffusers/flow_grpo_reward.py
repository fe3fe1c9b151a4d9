"""UnifiedReward as a diffusion-RL reward in the Flow-GRPO / DanceGRPO calling convention.

Flow-GRPO (``flow_grpo/rewards.py``) builds each reward with ``factory(device)`` and calls
``fn(images, prompts, metadata) -> (scores, info)``, where ``images`` is an NCHW float tensor in [0, 1] or an NHWC
uint8 array, from ``ThreadPoolExecutor`` threads, on every GPU process. Upstream's ``unifiedreward_score_sglang``
needs an SGLang server and turns a parse failure into 0; here the judge runs in-process or against any
OpenAI-compatible server::

    # flow_grpo/rewards.py, inside multi_score(): swap the entry
    from integrations.diffusers.flow_grpo_reward import unifiedreward_score
    score_functions["unifiedreward"] = unifiedreward_score   # reads $UNIFIEDREWARD_MODEL or $UNIFIEDREWARD_BASE_URL

Groups: Flow-GRPO's ``DistributedKRepeatSampler`` spreads the k images of a prompt over all GPUs and its
``PerPromptStatTracker`` normalises per prompt text. Both scorers therefore gather (prompt, score) across processes
(:class:`integrations.distributed.ProcessExchange`): the win rate compares each image with every image of its prompt
on every GPU, and a failed image gets the mean of its prompt group's successful scores (``impute="group_mean"``,
the default), so no NaN reaches the stat tracker and the failure moves no advantage (``impute=None``: NaN).

Scores are ``score / scale_max`` by default (upstream Flow-GRPO divides the 1-5 score by 5). Images are resized to
512x512 before judging, as upstream does (``resize=None`` keeps them).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
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


def impute_by_prompt(scores: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
    """NaN scores -> the mean of the finite scores of the same prompt (NaN stays where a prompt has none)."""
    out = scores.copy()
    prompts = np.asarray(prompts, dtype=object)
    for prompt in set(prompts[np.isnan(scores)].tolist()):
        members = prompts == prompt
        ok = members & ~np.isnan(scores)
        if ok.any():
            out[members & np.isnan(scores)] = scores[ok].mean()
    return out


class _GroupedScorer:
    """Shared by both scorers: one call at a time per process, exchanges in call order, optional imputation.

    Flow-GRPO submits reward calls to a thread pool; every process must run its calls in the same order (its
    sampling loop submits them in order, seconds apart). ``group_size`` (Flow-GRPO's ``num_image_per_prompt``)
    checks that each prompt's group is complete across processes, which catches calls paired out of order.
    """

    def __init__(self, impute: str | None, group_size: int | None):
        if impute not in ("group_mean", None):
            raise ValueError("impute must be 'group_mean' or None")
        self.impute, self.group_size = impute, group_size
        self.exchange = ProcessExchange()
        self._call_lock = threading.Lock()
        self.calls = 0

    def gather_prompts(self, prompts: Sequence[str]) -> tuple[list[str], int]:
        """Every process's prompts (rank order) and this process's offset in them."""
        shards = self.exchange.gather((self.calls, list(prompts)))
        if len({call for call, _ in shards}) != 1:
            raise RuntimeError(f"reward calls out of step across processes: {[call for call, _ in shards]}")
        offset = sum(len(p) for _, p in shards[: self.exchange.rank])
        everyone = [prompt for _, ps in shards for prompt in ps]
        if self.group_size:
            counts = {prompt: everyone.count(prompt) for prompt in set(everyone)}
            wrong = {p: c for p, c in counts.items() if c % self.group_size}
            if wrong:
                raise RuntimeError(f"prompt groups are not multiples of group_size={self.group_size} across "
                                   f"processes: {wrong}")
        return everyone, offset

    def finish(self, scores: np.ndarray, everyone: list[str], local: slice) -> tuple[np.ndarray, np.ndarray]:
        """Imputed global scores -> this process's slice, plus the mask of imputed entries."""
        failed = np.isnan(scores)
        if self.impute == "group_mean":
            scores = impute_by_prompt(scores, everyone)
        imputed = failed & ~np.isnan(scores)
        return scores[local].astype(np.float32), imputed[local]


class UnifiedRewardScorer(_GroupedScorer):
    """Pointwise UnifiedReward reward: ``scorer(images, prompts, metadata) -> (scores, info)``.

    ``scores`` is a float array; a failed item gets its prompt group's mean (NaN with ``impute=None``). ``info``
    holds per-item ``status``, ``error``, ``raw_score`` (on the template's scale, None when failed), ``imputed``
    and ``text`` lists, plus ``num_failed``.
    """

    __name__ = "unifiedreward"

    def __init__(self, reward_model: Any, template: str = POINT_TEMPLATE, mode: str = "generate", scale: str = "max",
                 resize: int | None = RESIZE, impute: str | None = "group_mean", group_size: int | None = None):
        super().__init__(impute, group_size)
        if scale not in ("max", "none"):
            raise ValueError("scale must be 'max' (score / scale_max, as Flow-GRPO) or 'none'.")
        self.reward_model = reward_model
        self.template = get_template(template)
        if self.template.pairwise or self.template.scale is None:
            raise ValueError(f"{template} is not a pointwise template with a score scale.")
        self.mode, self.resize = mode, resize
        self.divisor = self.template.scale[1] if scale == "max" else 1.0

    def __call__(self, images: Any, prompts: Sequence[str], metadata: Any = None, **_: Any):
        from reward_core import JudgeItem

        media = split_images(images, self.resize)
        if len(media) != len(prompts):
            raise ValueError(f"{len(media)} images but {len(prompts)} prompts.")
        items = [JudgeItem(media=[image], fields={"prompt": prompt}) for image, prompt in zip(media, prompts)]
        results = self.reward_model.score_batch(self.template, items, mode=self.mode)
        raw = [float(r.score) if r.ok and r.score is not None else None for r in results]
        local_scores = [np.nan if s is None else s / self.divisor for s in raw]
        with self._call_lock:
            everyone, offset = self.gather_prompts(prompts)
            all_scores = np.array([s for shard in self.exchange.gather(local_scores) for s in shard], dtype=np.float64)
            scores, imputed = self.finish(all_scores, everyone, slice(offset, offset + len(prompts)))
            self.calls += 1
        info = {
            "status": [r.status.value for r in results],
            "error": [r.error for r in results],
            "raw_score": raw,
            "imputed": imputed.tolist(),
            "text": [r.text for r in results],
            "num_failed": sum(s is None for s in raw),
        }
        if info["num_failed"]:
            logger.warning("UnifiedReward failed on %d of %d images (%d given their prompt's mean).",
                           info["num_failed"], len(scores), int(imputed.sum()))
        return scores, info


class UnifiedRewardWinRateScorer(_GroupedScorer):
    """Pairwise UnifiedReward reduced to pointwise: each image's win rate against every image of its prompt.

    The group is every image of the prompt on every process (Flow-GRPO spreads the ``num_image_per_prompt`` images
    of a prompt over all GPUs). Each pair is judged once, by the process holding its first image; pairs in both
    orders with ``swap=True``. A win counts 1, a tie 0.5 (the probability in ``mode="logit"``); a failed
    comparison is left out of the rate, and an image with no successful comparison gets its prompt group's mean
    win rate (NaN with ``impute=None`` or when the whole group failed, e.g. a prompt with a single image).
    """

    __name__ = "unifiedreward_winrate"

    def __init__(self, reward_model: Any, template: str = PAIR_TEMPLATE, mode: str = "generate", swap: bool = True,
                 resize: int | None = RESIZE, impute: str | None = "group_mean", group_size: int | None = None):
        super().__init__(impute, group_size)
        self.reward_model = reward_model
        self.template = get_template(template)
        if not self.template.pairwise:
            raise ValueError(f"{template} is not a pairwise template.")
        self.mode, self.swap, self.resize = mode, swap, resize

    def __call__(self, images: Any, prompts: Sequence[str], metadata: Any = None, **_: Any):
        from reward_core import JudgeItem

        media = split_images(images, self.resize)
        if len(media) != len(prompts):
            raise ValueError(f"{len(media)} images but {len(prompts)} prompts.")
        with self._call_lock:
            everyone, offset = self.gather_prompts(prompts)
            # every process gets every image (resized PIL) so that it can judge the pairs it owns
            all_media = [m for shard in self.exchange.gather(media) for m in shard]
            groups: dict[str, list[int]] = {}
            for index, prompt in enumerate(everyone):
                groups.setdefault(prompt, []).append(index)
            pairs = [(a, b) for members in groups.values() for i, a in enumerate(members) for b in members[i + 1 :]]
            local = range(offset, offset + len(prompts))
            mine = [n for n, (a, _) in enumerate(pairs) if a in local]
            items = [JudgeItem(media=[all_media[pairs[n][0]], all_media[pairs[n][1]]], fields={"prompt": everyone[pairs[n][0]]})
                     for n in mine]
            results = self.reward_model.compare_batch(self.template, items, swap=self.swap, mode=self.mode) if items else []
            outcomes = [(n, self._share(r), None if r.ok else f"{r.status.value}: {r.error}") for n, r in zip(mine, results)]
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
            scores, imputed = self.finish(all_scores, everyone, slice(offset, offset + len(prompts)))
            self.calls += 1
        info = {
            "comparisons": len(pairs),
            "judged_here": len(mine),
            "failed_comparisons": failed,
            "games": games[offset : offset + len(prompts)].tolist(),
            "imputed": imputed.tolist(),
            "errors": errors,
        }
        return scores, info

    def _share(self, result: Any) -> float | None:
        if not result.ok or result.winner not in (0, 1, 2):
            return None
        if self.mode == "logit" and result.probs:
            return float(result.probs["1"])
        return {1: 1.0, 2: 0.0, 0: 0.5}[result.winner]


def load_reward_model(model_name_or_path: str | None = None, base_url: str | None = None, device: Any = None, **kwargs):
    """``UnifiedReward`` from a checkpoint or an OpenAI-compatible server (env ``UNIFIEDREWARD_MODEL`` /
    ``UNIFIEDREWARD_BASE_URL`` when neither is given)."""
    from reward_core import UnifiedReward

    model_name_or_path = model_name_or_path or os.environ.get("UNIFIEDREWARD_MODEL")
    base_url = base_url or os.environ.get("UNIFIEDREWARD_BASE_URL")
    if base_url:
        return UnifiedReward.from_server(base_url, model=model_name_or_path, **kwargs)
    if not model_name_or_path:
        raise ValueError("Give model_name_or_path or base_url (or set UNIFIEDREWARD_MODEL / UNIFIEDREWARD_BASE_URL).")
    return UnifiedReward.from_pretrained(model_name_or_path, device=None if device is None else str(device), **kwargs)


def _setting(value: Any, variable: str, default: Any) -> Any:
    return value if value is not None else os.environ.get(variable, default)


def unifiedreward_score(device: Any = None, model_name_or_path: str | None = None, base_url: str | None = None,
                        template: str | None = None, mode: str | None = None, scale: str = "max",
                        resize: int | None = RESIZE, impute: str | None = "group_mean", group_size: int | None = None,
                        **kwargs):
    """Flow-GRPO reward factory: returns ``fn(images, prompts, metadata) -> (scores, info)``.

    Called as ``factory(device)`` by ``multi_score``; configure it with ``functools.partial`` or the env vars
    ``UNIFIEDREWARD_MODEL`` / ``UNIFIEDREWARD_BASE_URL`` (judge), ``UNIFIEDREWARD_TEMPLATE``, ``UNIFIEDREWARD_MODE``.
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
