"""UnifiedReward as a diffusion-RL reward in the Flow-GRPO / DanceGRPO calling convention.

Flow-GRPO (``flow_grpo/rewards.py``) builds each reward with a factory and calls
``fn(images, prompts, metadata) -> (scores, info)``, where ``images`` is an NCHW float tensor in [0, 1] or an NHWC
uint8 array. Upstream's ``unifiedreward_score_sglang`` needs an SGLang server and turns a parse failure into 0;
here the judge runs in-process (or against any OpenAI-compatible server) and a failed item scores NaN, with the reason
in ``info``, never 0::

    # flow_grpo/rewards.py, inside multi_score(): swap the entry
    from integrations.diffusers.flow_grpo_reward import unifiedreward_score
    score_functions["unifiedreward"] = unifiedreward_score   # reads $UNIFIEDREWARD_MODEL or $UNIFIEDREWARD_BASE_URL

Scores are ``score / scale_max`` by default (upstream Flow-GRPO divides the 1-5 score by 5). Flow-GRPO's per-prompt
stat tracker uses ``np.mean``/``np.std``: drop or impute NaN rows there explicitly (e.g. ``np.nanmean``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from reward_core.prompts import get_template

logger = logging.getLogger(__name__)

POINT_TEMPLATE = "image_generation.point_score.v1"
PAIR_TEMPLATE = "image_generation.pair_rank.v1"


def split_images(images: Any) -> list[Any]:
    """A batch (NCHW tensor, NHWC array, or a list) -> one media entry per image, as ``reward_core`` reads them."""
    if isinstance(images, (list, tuple)):
        return list(images)
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(f"Expected a batch of images (NCHW tensor or NHWC array), got shape {shape}.")
    return [images[index] for index in range(shape[0])]


class UnifiedRewardScorer:
    """Pointwise UnifiedReward reward: ``scorer(images, prompts, metadata) -> (scores, info)``.

    ``scores`` is a float array with NaN for failed items; ``info`` holds per-item ``status``, ``error``,
    ``raw_score`` (on the template's scale) and ``text`` lists, plus ``num_failed``.
    """

    __name__ = "unifiedreward"

    def __init__(self, reward_model: Any, template: str = POINT_TEMPLATE, mode: str = "generate", scale: str = "max"):
        if scale not in ("max", "none"):
            raise ValueError("scale must be 'max' (score / scale_max, as Flow-GRPO) or 'none'.")
        self.reward_model = reward_model
        self.template = get_template(template)
        if self.template.pairwise or self.template.scale is None:
            raise ValueError(f"{template} is not a pointwise template with a score scale.")
        self.mode = mode
        self.divisor = self.template.scale[1] if scale == "max" else 1.0

    def __call__(self, images: Any, prompts: Sequence[str], metadata: Any = None, **_: Any):
        from reward_core import JudgeItem

        media = split_images(images)
        if len(media) != len(prompts):
            raise ValueError(f"{len(media)} images but {len(prompts)} prompts.")
        items = [JudgeItem(media=[image], fields={"prompt": prompt}) for image, prompt in zip(media, prompts)]
        results = self.reward_model.score_batch(self.template, items, mode=self.mode)
        raw = [float(r.score) if r.ok and r.score is not None else None for r in results]
        scores = np.array([np.nan if s is None else s / self.divisor for s in raw], dtype=np.float32)
        info = {
            "status": [r.status.value for r in results],
            "error": [r.error for r in results],
            "raw_score": raw,
            "text": [r.text for r in results],
            "num_failed": int(np.isnan(scores).sum()),
        }
        if info["num_failed"]:
            logger.warning("UnifiedReward failed on %d of %d images (scored NaN).", info["num_failed"], len(scores))
        return scores, info


class UnifiedRewardWinRateScorer:
    """Pairwise UnifiedReward reduced to pointwise: each image's win rate against the images of its prompt group.

    Images sharing a prompt form a group (Flow-GRPO samples ``num_image_per_prompt`` per prompt); every unordered
    pair in a group is compared (both orders with ``swap=True``). A win counts 1, a tie 0.5; a failed comparison is
    left out of the rate. An image with no successful comparison scores NaN.
    """

    __name__ = "unifiedreward_winrate"

    def __init__(self, reward_model: Any, template: str = PAIR_TEMPLATE, mode: str = "generate", swap: bool = True):
        self.reward_model = reward_model
        self.template = get_template(template)
        if not self.template.pairwise:
            raise ValueError(f"{template} is not a pairwise template.")
        self.mode, self.swap = mode, swap

    def __call__(self, images: Any, prompts: Sequence[str], metadata: Any = None, **_: Any):
        from reward_core import JudgeItem

        media = split_images(images)
        groups: dict[str, list[int]] = {}
        for index, prompt in enumerate(prompts):
            groups.setdefault(prompt, []).append(index)
        pairs = [(a, b) for members in groups.values() for i, a in enumerate(members) for b in members[i + 1 :]]
        items = [JudgeItem(media=[media[a], media[b]], fields={"prompt": prompts[a]}) for a, b in pairs]
        results = self.reward_model.compare_batch(self.template, items, swap=self.swap, mode=self.mode) if items else []
        wins, games = np.zeros(len(media)), np.zeros(len(media))
        failed = 0
        for (a, b), result in zip(pairs, results):
            if not result.ok or result.winner not in (0, 1, 2):
                failed += 1
                continue
            games[[a, b]] += 1
            share_a = {1: 1.0, 2: 0.0, 0: 0.5}[result.winner]
            wins[a] += share_a
            wins[b] += 1.0 - share_a
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = np.where(games > 0, wins / games, np.nan).astype(np.float32)
        info = {
            "comparisons": len(pairs),
            "failed_comparisons": failed,
            "games": games.tolist(),
            "errors": [r.error for r in results if not r.ok],
        }
        return scores, info


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


def unifiedreward_score(device: Any = None, model_name_or_path: str | None = None, base_url: str | None = None,
                        template: str = POINT_TEMPLATE, mode: str = "generate", scale: str = "max", **kwargs):
    """Flow-GRPO reward factory: returns ``fn(images, prompts, metadata) -> (scores, info)``."""
    reward_model = load_reward_model(model_name_or_path, base_url, device, **kwargs)
    return UnifiedRewardScorer(reward_model, template=template, mode=mode, scale=scale)


def unifiedreward_winrate(device: Any = None, model_name_or_path: str | None = None, base_url: str | None = None,
                          template: str = PAIR_TEMPLATE, mode: str = "generate", swap: bool = True, **kwargs):
    """Flow-GRPO reward factory for the pairwise (group win-rate) reward."""
    reward_model = load_reward_model(model_name_or_path, base_url, device, **kwargs)
    return UnifiedRewardWinRateScorer(reward_model, template=template, mode=mode, swap=swap)
