"""``POST /get_reward``: OpenRLHF's remote reward model (``--remote_rm_url http://HOST:PORT/get_reward``).

Request ``{"query": [...], "prompts": [...], "labels": [...]}``: ``query`` is prompt + completion as the policy's
tokenizer decoded it, ``prompts`` the prompts, ``labels`` the dataset's label column. OpenRLHF carries no images, so
each label is a JSON string (or object) ``{"image": <base64 or a path under --media-root>, "question": ...,
"template": optional key, ...other template fields}``. The completion is the query after its prompt, trailing chat
special tokens (``<|im_end|>`` ...) removed; it fills the template's ``response`` field (default template
``--get-reward-template``, image_understanding.point_score.v1: ``question`` + ``response``).

Answer (200): ``{"rewards": [...], "scores": [...], "extra_logs": {"raw_score": [...]}}``, rewards = score / the
template's scale maximum (0-1, what OpenRLHF's dynamic filtering expects of ``scores``), raw_score on the template's
scale. A failed item never gets a float: the request is answered as /v1/scorer's (422 / 502 / 503 with ``error``,
``errors`` and the computed ``rewards``); OpenRLHF's client retries it, then leaves that sample without a reward.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from reward_core.model import JudgeItem
from reward_core.results import RewardResult, Status
from unifiedreward.reward_labels import completion_of, decode_label
from unifiedreward.service.batcher import BatchKey
from unifiedreward.service.state import (
    ServiceError,
    ServiceState,
    check_media_count,
    field_list,
    failure_answer,
    judge,
    read_json,
    scaled_score,
    state_of,
)

router = APIRouter()


def _prepared(state: ServiceState, query: str, prompt: str | None, label: Any) -> tuple[str, JudgeItem | RewardResult]:
    """The item's template and judge item (or its failure: a bad label, :func:`unifiedreward.reward_labels.decode_label`)."""
    try:
        decoded = decode_label(label, state.config.media_root, root_required=True)
    except ValueError as error:
        return state.config.get_reward_template, RewardResult.failure(Status.MEDIA_ERROR, f"bad item: {error}")
    fields = {"response": completion_of(query, prompt), **decoded.fields}
    return decoded.template or state.config.get_reward_template, JudgeItem(media=decoded.media, fields=fields)


@router.post("/get_reward")
async def get_reward(request: Request) -> JSONResponse:
    state = state_of(request)
    data = await read_json(request)
    queries = field_list(data, "query", str)
    prompts = data.get("prompts") or [None] * len(queries)
    labels = data.get("labels")
    if not isinstance(labels, list) or len(labels) != len(queries) or len(prompts) != len(queries):
        raise ServiceError(400, "'query', 'prompts' and 'labels' must be lists of the same length")
    check_media_count(state, len(queries))
    parsed = [_prepared(state, q, p, label) for q, p, label in zip(queries, prompts, labels)]
    groups: dict[str, list[int]] = {}
    for index, (template, _) in enumerate(parsed):
        groups.setdefault(template, []).append(index)
    keys = {template: BatchKey("score", template, state.config.mode) for template in groups}
    answers = await asyncio.gather(
        *(judge(state, keys[t], [parsed[i][1] for i in members]) for t, members in groups.items())
    )
    results: list[RewardResult] = [None] * len(queries)  # type: ignore[list-item]
    for members, judged in zip(groups.values(), answers):
        for index, result in zip(members, judged):
            results[index] = result
    state.metrics.record_results("/get_reward", results)
    rewards = [scaled_score(template, result) for (template, _), result in zip(parsed, results)]
    if all(result.ok for result in results):
        raw = [result.score for result in results]
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": {"raw_score": raw}})
    status, answer, headers = failure_answer(results)
    return JSONResponse({**answer, "rewards": rewards}, status, headers)
