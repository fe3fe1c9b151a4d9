"""Our JSON API: ``POST /v1/score``, ``/v1/compare`` and ``/v1/group``.

Every item's answer is its `RewardResult` (``to_dict()``: status, winner, score, scores, probs, text, error,
consistency), in input order; a failed item is a per-item error and the request is still 200.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fastapi import APIRouter, Request

from reward_core.checkpoints import lookup
from reward_core.media import MediaError
from reward_core.model import JudgeItem, infer_task
from reward_core.pairing import Pairing, score_pairs, seed_from
from reward_core.results import RewardResult, Status
from unifiedreward.service.batcher import BatchKey
from unifiedreward.media_entries import decode_media
from unifiedreward.service.state import (
    ServiceError,
    ServiceState,
    check_media_count,
    field_list,
    judge,
    prepare_item,
    read_json,
    scaled_score,
    state_of,
)

router = APIRouter()
GROUP_METHODS = ("pointwise", "winrate")
UNDERSTANDING_TEMPLATES = {"score": "image_understanding.point_score.v1", "compare": "image_understanding.pair_rank.v1"}


def group_pairing(data: dict[str, Any], key: BatchKey) -> Pairing:
    """The request's pairing (``pairing``, ``k``, ``aggregate``, ``swap``, ``max_pairs``), defaults as the trainers'
    (:meth:`reward_core.pairing.Pairing.for_mode`: soft verdicts -> sparse k=4 + Bradley-Terry, text -> all pairs)."""
    try:
        return Pairing.for_mode(key.mode, data.get("pairing"), int(data.get("k", 4)), data.get("aggregate"),
                                data.get("swap"), data.get("max_pairs"), template=key.template)
    except (TypeError, ValueError) as error:
        raise ServiceError(400, f"bad pairing: {error}") from None


def pick_template(
    state: ServiceState,
    data: dict[str, Any],
    kind: str,
    first: JudgeItem | None,
    defaults: dict[str, str] | None = None,
) -> str:
    """The request's ``template``; else the default template of its ``checkpoint`` for the first item's task
    (template mode ``template_kind``, default point_score / the checkpoint's pairwise mode); else ``defaults[kind]``
    or the service's."""
    if data.get("template"):
        return str(data["template"])
    if data.get("checkpoint"):
        checkpoint = lookup(str(data["checkpoint"]))
        if checkpoint is None:
            raise ServiceError(400, f"unknown checkpoint {data['checkpoint']!r}")
        task = infer_task(first.media, first.fields) if first is not None else "image_generation"
        edit = task == "image_edit"
        default = ("edit_point_score" if edit else "point_score") if kind == "score" else (
            "pair_rank" if edit else checkpoint.pair_mode)
        try:
            return checkpoint.default_template(task, str(data.get("template_kind") or default)).key
        except (KeyError, ValueError) as error:
            raise ServiceError(400, f"checkpoint {checkpoint.hub_id}: {error}") from None
    if defaults:
        return defaults[kind]
    return state.config.score_template if kind == "score" else state.config.compare_template


def batch_key(
    state: ServiceState,
    data: dict[str, Any],
    kind: str,
    first: JudgeItem | None,
    defaults: dict[str, str] | None = None,
) -> BatchKey:
    mode, swap = str(data.get("mode") or state.config.mode), data.get("swap", False)
    if not isinstance(swap, bool):
        raise ServiceError(400, f"'swap' must be true or false, got {swap!r}")
    return BatchKey(kind, pick_template(state, data, kind, first, defaults), mode, swap)


def _items(state: ServiceState, data: dict[str, Any]) -> list[JudgeItem | RewardResult]:
    rows = field_list(data, "items", dict)
    check_media_count(state, sum(len(row["media"]) if isinstance(row.get("media"), list) else 1 for row in rows))
    prepared = []
    for row in rows:
        fields = row.get("fields") or {}
        if "media" not in row or not isinstance(fields, dict):
            reason = "no 'media'" if "media" not in row else "'fields' must be an object"
            prepared.append(RewardResult.failure(Status.MEDIA_ERROR, f"bad item: {reason}"))
        else:
            prepared.append(prepare_item(state, row["media"], fields))
    return prepared


def _answer(key: BatchKey, extras: list[dict[str, Any]], results: list[RewardResult]) -> dict[str, Any]:
    """The response: each result (with its ``extras``: an item's id, a comparison's pair) in input order."""
    answers = [{**extra, **result.to_dict()} for extra, result in zip(extras, results)]
    return {"template": key.template, "mode": key.mode, "failed": sum(not r.ok for r in results), "results": answers}


async def _judge_items(request: Request, kind: str) -> dict[str, Any]:
    state = state_of(request)
    data = await read_json(request)
    prepared = _items(state, data)
    key = batch_key(state, data, kind, _first(prepared))
    results = await judge(state, key, prepared)
    state.metrics.record_results(request.url.path, results)
    return _answer(key, [{"id": row.get("id")} for row in data["items"]], results)


@router.post("/v1/score")
async def score(request: Request) -> dict[str, Any]:
    """Pointwise verdicts: ``{"items": [{"media": [...], "fields": {...}, "id": ...}], "template", "mode"}``."""
    return await _judge_items(request, "score")


@router.post("/v1/compare")
async def compare(request: Request) -> dict[str, Any]:
    """Pairwise verdicts: items as /v1/score, each with its pair's media (or one image and answer1/answer2)."""
    return await _judge_items(request, "compare")


@router.post("/v1/group")
async def group(request: Request) -> dict[str, Any]:
    """One prompt's candidates -> a reward each: ``method="pointwise"`` (score / scale max) or ``"winrate"``
    (pairs of the request's `group_pairing`, verdicts aggregated by its win rate or Bradley-Terry fit).
    Candidates are media (``candidates``, after the shared ``context_media``) or text answers about shared
    ``media`` (``answers``: the understanding templates' ``response`` / ``answer1`` and ``answer2``)."""
    state = state_of(request)
    data = await read_json(request)
    method = data.get("method", "pointwise")
    fields = data.get("fields") or {}
    if method not in GROUP_METHODS or not isinstance(fields, dict):
        raise ServiceError(400, f"method must be one of {GROUP_METHODS} and 'fields' an object")
    count, point, pair, defaults = (_answer_group if "answers" in data else _media_group)(state, data, fields)
    if method == "pointwise":
        prepared = [point(i) for i in range(count)]
        key = batch_key(state, data, "score", _first(prepared), defaults)
        results = await judge(state, key, prepared)
        state.metrics.record_results(request.url.path, results)
        rewards = [scaled_score(key.template, result) for result in results]
        return {**_answer(key, [{} for _ in results], results), "method": method, "rewards": rewards}
    first_pair = pair(0, 1) if count > 1 else None
    key = batch_key(state, data, "compare", first_pair if isinstance(first_pair, JudgeItem) else None, defaults)
    pairing = group_pairing(data, key)
    key = dataclasses.replace(key, swap=False)  # the schedule holds both orders when asked for
    seed = seed_from(key.template, json.dumps(data.get("fields"), sort_keys=True), data.get("candidates"),
                     data.get("answers"))  # the same request, the same pairs
    pairs = pairing.pairs(count, seed)
    prepared = [pair(a, b) for a, b in pairs]
    results = await judge(state, key, prepared)
    state.metrics.record_results(request.url.path, results)
    shares = [result.first_share(use_probs=True) for result in results]
    rewards, (scored,) = score_pairs(count, [list(range(count))], pairs, shares, pairing)
    answer = _answer(key, [{"pair": list(p)} for p in pairs], results)
    answer.update(pairing=dataclasses.asdict(pairing), position_bias=scored.position_bias,
                  consistency=scored.consistency)
    return {**answer, "method": method, "rewards": rewards, "comparisons": answer.pop("results")}


def _first(prepared: list[JudgeItem | RewardResult]) -> JudgeItem | None:
    return next((item for item in prepared if isinstance(item, JudgeItem)), None)


def _media_group(state: ServiceState, data: dict[str, Any], fields: dict[str, Any]):
    """Media candidates: (count, item of one, item of a pair, no template defaults of its own)."""
    candidates = field_list(data, "candidates")
    context = data.get("context_media") or []  # e.g. an edit's source image, before each candidate
    if not isinstance(context, list):
        raise ServiceError(400, "'context_media' must be a list")
    check_media_count(state, len(candidates) + len(context))
    decoded: list[list[Any] | RewardResult] = []
    for candidate in candidates:
        try:
            root = state.config.media_root
            decoded.append(decode_media(context, root) + decode_media(candidate, root))
        except MediaError as error:
            decoded.append(RewardResult.failure(Status.MEDIA_ERROR, str(error)))

    def point(i: int) -> JudgeItem | RewardResult:
        media = decoded[i]
        return media if isinstance(media, RewardResult) else JudgeItem(media=media, fields=dict(fields))

    def pair(a: int, b: int) -> JudgeItem | RewardResult:
        failed = next((m for m in (decoded[a], decoded[b]) if isinstance(m, RewardResult)), None)
        return failed or JudgeItem(media=decoded[a] + decoded[b][len(context):], fields=dict(fields))

    return len(candidates), point, pair, None


def _answer_group(state: ServiceState, data: dict[str, Any], fields: dict[str, Any]):
    """Text answers about shared ``media``: (count, item of one, item of a pair, understanding templates)."""
    answers = field_list(data, "answers", str)
    media = data.get("media")
    check_media_count(state, len(media) if isinstance(media, list) else 1)
    try:
        shared: list[Any] | RewardResult = decode_media(media, state.config.media_root)
    except MediaError as error:
        shared = RewardResult.failure(Status.MEDIA_ERROR, str(error))

    def item(values: dict[str, str]) -> JudgeItem | RewardResult:
        if isinstance(shared, RewardResult):
            return shared
        return JudgeItem(media=list(shared), fields={**fields, **values})

    def point(i: int) -> JudgeItem | RewardResult:
        return item({"response": answers[i]})

    def pair(a: int, b: int) -> JudgeItem | RewardResult:
        return item({"answer1": answers[a], "answer2": answers[b]})

    return len(answers), point, pair, UNDERSTANDING_TEMPLATES

