"""UnifiedReward as a verl-omni scorer: ``compute_score_unifiedreward``.

verl-omni's reward managers load a scorer from ``reward.custom_reward_function.{path,name}`` or
``reward.reward_functions.<key>.{path,name,weight,required}`` (every other key of that entry arrives here as a keyword
argument; ``path`` may be this file, or ``pkg://integrations.verl_omni.unified_reward`` with the project installed),
call it by keyword with one rollout sample (``solution_image``: uint8 CHW image or TCHW video) and read
``{"score": float, ...}`` (the other keys become metrics). The judge is the reward router verl starts
(``reward_router_address``, an OpenAI-compatible vLLM / SGLang server, served under ``model_name``), or
``server_url`` / ``model_path`` when given; one judge per address and settings, per process.

Unlike verl-omni's own ``unified_reward.py``: the project's templates and parsers (a malformed answer is a parse
error, never "the first three numbers"), ``mode="logit"`` (one decoding step, a score for every answer), a video is
one request with the template's frame protocol (the 2.0 APS template: 16 frames), and a failed sample gets a neutral
score (:mod:`integrations.neutral_fill`), never 0.0, with ``unifiedreward_failed`` = 1 and the reason in the metrics.
``on_failure="raise"`` raises instead (with ``required: true`` under ``MultiVisualRewardManager``: the run stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from integrations.diffusers.flow_grpo_reward import judge_lock, load_reward_model
from integrations.neutral_fill import RunningGroupMeans
from integrations.trl.rewards import normalized
from reward_core import JudgeItem, RewardResult, get_template
from reward_core.media import MediaError, VideoFrames

logger = logging.getLogger(__name__)

# (mode, media) -> template. Logit mode needs an answer prefix; no Qwen video template with one sends frames, and an
# in-memory video cannot go natively: a video in logit mode needs an explicit template.
DEFAULT_TEMPLATES = {
    ("generate", "image"): "image_generation.point_score_acs.v2",
    ("generate", "video"): "video_generation.point_score_aps.v2",
    ("logit", "image"): "image_generation.point_score.v1",
}
_FILLS: dict[str, RunningGroupMeans] = {}


def caption_of(ground_truth: Any, extra_info: dict | None) -> str:
    """The text the image was generated from: ``extra_info["prompt"]`` / ``["raw_prompt"]``, else ``ground_truth``."""
    extra_info = extra_info or {}
    return str(extra_info.get("prompt") or extra_info.get("raw_prompt") or ground_truth or "")


def judge_for(reward_router_address: str | None, model_name: str | None, server_url: str | None,
              model_path: str | None, **judge_kwargs: Any):
    """The cached judge: ``model_path`` in-process, else ``server_url`` or the router (``host:port``) as a server."""
    if model_path:
        return load_reward_model(model_path, None, judge_kwargs.pop("device", None), **judge_kwargs)
    base_url = server_url or (f"http://{reward_router_address}/v1" if reward_router_address else None)
    if not base_url:
        raise ValueError("compute_score_unifiedreward needs a judge: run verl-omni with a reward model (its router "
                         "address arrives as reward_router_address), or set server_url or model_path")
    return load_reward_model(model_name, base_url, **judge_kwargs)


def _judge_one(judge: Any, template: Any, media: Any, caption: str, mode: str) -> RewardResult:
    queued = getattr(judge.backend, "queues_requests", False)  # HTTP judges take concurrent calls
    with contextlib.nullcontext() if queued else judge_lock(judge):
        return judge.score_batch(template, [JudgeItem(media=[media], fields={"prompt": caption})], mode=mode)[0]


async def compute_score_unifiedreward(
    data_source: str,
    solution_image: Any,
    ground_truth: str,
    extra_info: dict | None,
    reward_router_address: str | None = None,
    reward_model_tokenizer: Any = None,
    model_name: str | None = None,
    *,
    template: str | None = None,
    mode: str = "generate",
    server_url: str | None = None,
    model_path: str | None = None,
    on_failure: str = "neutral",
    **judge_kwargs: Any,
) -> dict[str, Any]:
    """One rollout sample's UnifiedReward score on [0, 1] (the template's scale mapped linearly), plus metrics:
    ``unifiedreward_raw`` (template scale), ``unifiedreward_failed`` (0/1), ``unifiedreward_fill`` (how a failure was
    filled), ``unifiedreward_status``, ``unifiedreward_error``.

    ``template`` defaults by mode and media (generate: the 2.0 ACS / APS templates; logit: ``Final Score`` templates);
    ``judge_kwargs`` go to the judge (``api_key``, ``checkpoint``, ``device`` ...).
    """
    del data_source, reward_model_tokenizer
    if on_failure not in ("neutral", "raise"):
        raise ValueError("on_failure must be 'neutral' or 'raise'")
    is_video = getattr(solution_image, "ndim", 0) == 4
    key = template or DEFAULT_TEMPLATES.get((mode, "video" if is_video else "image"))
    if key is None:
        raise ValueError(f"no default UnifiedReward template for {'videos' if is_video else 'images'} in mode={mode!r}: "
                         "use mode='generate' (the 2.0 APS template, 16 frames in one request) or pass template=")
    chosen = get_template(key)
    caption = caption_of(ground_truth, extra_info)
    judge = judge_for(reward_router_address, model_name, server_url, model_path, **judge_kwargs)
    try:
        media = VideoFrames.from_array(solution_image) if is_video else solution_image
    except MediaError as error:
        result = RewardResult.failure("media_error", str(error))
    else:
        result = await asyncio.to_thread(_judge_one, judge, chosen, media, caption, mode)
    fills = _FILLS.setdefault(key, RunningGroupMeans(midpoint=0.5))
    metrics = {"unifiedreward_status": result.status.value, "unifiedreward_error": result.error or ""}
    if result.ok and result.score is not None:
        score = normalized(result.score, chosen.scale)
        fills.record(caption, score)
        return {"score": score, "unifiedreward_raw": result.score, "unifiedreward_failed": 0.0,
                "unifiedreward_fill": "", **metrics}
    reason = f"{result.status.value}: {result.error}"
    if on_failure == "raise":
        raise RuntimeError(f"UnifiedReward could not score this sample ({key}): {reason}")
    fill = fills.fill(caption)
    logger.warning("UnifiedReward failed on a sample (%s); it gets %s %.4f", reason, fill.source, fill.value)
    low, high = chosen.scale
    return {"score": fill.value, "unifiedreward_raw": low + fill.value * (high - low), "unifiedreward_failed": 1.0,
            "unifiedreward_fill": fill.source, **metrics}
