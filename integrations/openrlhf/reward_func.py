"""UnifiedReward as OpenRLHF's reward function: ``--remote_rm_url integrations/openrlhf/reward_func.py``.

OpenRLHF loads this file by path and calls ``reward_func(queries, prompts, labels)`` (0.11: one sample per call, in a
worker thread of the rollout engine): ``queries`` are the decoded prompt + response, ``labels`` the dataset's
``--label_key`` column, here a JSON object per sample naming the image and the template fields
(:mod:`unifiedreward.reward_labels`, the format ``unifiedreward serve``'s ``/get_reward`` reads too). It returns
``{"rewards": tensor, "scores": tensor, "extra_logs": {...}}``, rewards = score / the template's scale maximum, as
``unifiedreward serve``'s ``/get_reward`` answers (the default template's 0-100 score / 100).

The judge and options come from ``UNIFIEDREWARD_*`` variables / ``UNIFIEDREWARD_CONFIG`` (:mod:`integrations.trl.config`;
its ``pointwise`` section or ``UNIFIEDREWARD_MODE`` / ``UNIFIEDREWARD_POINTWISE_TEMPLATE``), plus
``UNIFIEDREWARD_MEDIA_ROOT`` (label paths must lie under it). Default template: ``image_understanding.point_score.v1``
(the response judged as an answer about the label's image).

A sample the judge cannot score (bad label, unreadable image, parse error, server down) is never 0 and never NaN:
OpenRLHF turns an exception into a missing reward that stops the step, and a NaN into NaN advantages for its group. It
gets the mean of its group's successful scores in the call, else the running mean of its group (equal labels) or of
recent samples (:mod:`integrations.neutral_fill`); ``extra_logs["unifiedreward_failed"]`` counts it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from integrations.neutral_fill import RunningGroupMeans
from integrations.trl.config import RewardConfig, load_reward_model
from integrations.trl.rewards import group_members, impute_group_mean
from reward_core import JudgeItem, get_template
from unifiedreward.reward_labels import completion_of, decode_label

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "image_understanding.point_score.v1"
_FILLS = RunningGroupMeans(midpoint=0.5)


def _judge_item(query: str, prompt: str, label: Any, default_template: str, media_root: str | None):
    """(template key, JudgeItem, group key) for one sample; raises ValueError for a bad label."""
    decoded = decode_label(label, media_root)
    key = decoded.template or default_template
    template = get_template(key)
    response = completion_of(query, prompt)
    values = {"question": prompt, "prompt": response, **decoded.fields, "response": response}
    fields = {name: values[name] for name in template.fields if name in values}
    return key, JudgeItem(media=decoded.media, fields=fields), decoded.key


def reward_func(queries: list[str], prompts: list[str], labels: list[Any]) -> dict[str, Any]:
    """OpenRLHF's reward function contract; see the module docstring."""
    config = RewardConfig.from_env()
    section = config.section("pointwise")
    mode, default_template = section.get("mode", "generate"), section.get("template") or DEFAULT_TEMPLATE
    media_root = os.environ.get("UNIFIEDREWARD_MEDIA_ROOT") or None
    values: list[float | None] = [None] * len(queries)
    errors: list[str] = []
    keys = [f"#{i}" for i in range(len(queries))]
    by_template: dict[str, list[tuple[int, JudgeItem]]] = {}
    for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels)):
        try:
            template, item, keys[i] = _judge_item(query, prompt, label, default_template, media_root)
        except ValueError as error:
            errors.append(f"sample {i}: bad label: {error}")
            continue
        by_template.setdefault(template, []).append((i, item))
    judge = load_reward_model(config) if by_template else None
    for key, entries in by_template.items():
        template = get_template(key)
        results = judge.score_batch(template, [item for _, item in entries], mode=mode)
        for (i, _), result in zip(entries, results):
            if result.ok and result.score is not None:
                values[i] = template.max_scaled(result.score)
                _FILLS.record(keys[i], values[i])
            else:
                errors.append(f"sample {i}: {result.status.value}: {result.error}")
    filled, imputed = impute_group_mean(values, group_members(keys))
    failed = [v is None for v in values]
    rewards = [v if v is not None else _FILLS.fill(keys[i]).value for i, v in enumerate(filled)]
    if errors:
        logger.warning("UnifiedReward failed on %d/%d samples, given neutral rewards (%d from their group in this "
                       "call): %s", len(errors), len(queries), sum(imputed), errors[:3])
    tensor = torch.tensor(rewards, dtype=torch.float32)
    return {
        "rewards": tensor,
        "scores": tensor.clone(),
        "extra_logs": {"unifiedreward_failed": torch.tensor(failed, dtype=torch.float32)},
    }
