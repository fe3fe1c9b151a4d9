"""``POST /v1/scorer`` (and ``POST /``): the HTTP-scorer protocol of Flow-GRPO's reward servers and verl-omni's
``http_scorer_client``.

Request: ``{"images": [image file bytes], "prompts": [...], "metadata": ...}``, as JSON (images in base64) or, with
``--allow-pickle`` on 127.0.0.1 only, pickled (``application/octet-stream``: what those clients send; Flow-GRPO's
clients post to the server's root, hence ``/``). Each image is judged with ``--scorer-template`` (pointwise) and its
prompt; ``metadata`` / ``meta_datas`` are accepted and not used.

Answer (200): ``{"scores": [...], "outputs": [...]}`` (the same list twice: verl-omni reads ``scores``, Flow-GRPO's
``unifiedreward_score_remote`` reads ``outputs``), each score / the template's scale maximum (a 1-5 score / 5), the
scale of the in-process Flow-GRPO adapter. This protocol carries nothing but floats, so a failed item never gets
one: when any item fails, the answer is ``{"error": ..., "errors": [{"index", "status", "error"}], "scores": [float or
None]}`` with 422 (only bad inputs), 502 (an unreadable judge answer) or 503 + ``Retry-After`` (the judge or the
deadline failed; retried by verl-omni). The scores that were computed are in that body too.
"""

from __future__ import annotations

import pickle
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from reward_core.media import MediaError
from reward_core.model import JudgeItem
from reward_core.results import RewardResult, Status
from unifiedreward.service.batcher import BatchKey
from unifiedreward.media_entries import decode_base64
from unifiedreward.service.state import (
    ServiceError,
    ServiceState,
    check_media_count,
    failure_answer,
    judge,
    json_object,
    read_body,
    scaled_score,
    state_of,
)

router = APIRouter()
PICKLE_REFUSED = (
    "pickled request bodies are refused (unpickling network input runs code): send JSON with base64 images, or "
    "start the service with --allow-pickle (allowed on 127.0.0.1 only)"
)


def _is_pickle(request: Request, body: bytes) -> bool:
    """A body that is not declared JSON and starts with a pickle protocol header (``requests`` sends no type)."""
    return "json" not in request.headers.get("content-type", "") and body[:1] == b"\x80"


def _load(state: ServiceState, request: Request, body: bytes) -> tuple[dict[str, Any], bool]:
    pickled = _is_pickle(request, body)
    if pickled and not state.config.allow_pickle:
        raise ServiceError(415, PICKLE_REFUSED)
    try:
        data = pickle.loads(body) if pickled else body  # noqa: S301 (--allow-pickle, loopback only)
        return json_object(data, "the body"), pickled
    except Exception as error:  # anything a malformed pickle or JSON body raises
        raise ServiceError(400, f"cannot read the body: {error}") from None


def _items(state: ServiceState, data: dict[str, Any], pickled: bool) -> list[JudgeItem | RewardResult]:
    images, prompts = data.get("images"), data.get("prompts")
    if images is None or not hasattr(images, "__len__"):
        raise ServiceError(400, "'images' must be a list")
    prompts = [None] * len(images) if prompts is None else list(prompts)  # Flow-GRPO sends a numpy array
    if len(prompts) != len(images):
        raise ServiceError(400, f"{len(images)} images but {len(prompts)} prompts")
    check_media_count(state, len(images))
    prepared: list[JudgeItem | RewardResult] = []
    for index, (image, prompt) in enumerate(zip(images, prompts)):
        fields = {} if prompt is None else {"prompt": str(prompt)}
        try:
            raw = pickled and isinstance(image, (bytes, bytearray))
            media = bytes(image) if raw else decode_base64(image, f"images[{index}]")
        except MediaError as error:
            prepared.append(RewardResult.failure(Status.MEDIA_ERROR, str(error)))
            continue
        prepared.append(JudgeItem(media=[media], fields=fields))
    return prepared


def _respond(content: dict[str, Any], status: int, pickled: bool, headers: dict[str, str] | None = None) -> Response:
    if pickled:
        return Response(pickle.dumps(content), status, headers, media_type="application/octet-stream")
    return JSONResponse(content, status, headers)


@router.post("/v1/scorer")
@router.post("/", include_in_schema=False)
async def scorer(request: Request) -> Response:
    state = state_of(request)
    body = await read_body(request, state.config.max_body_bytes)
    pickled = _is_pickle(request, body) and state.config.allow_pickle
    try:
        data, pickled = _load(state, request, body)
        key = BatchKey("score", state.config.scorer_template, state.config.mode)
        results = await judge(state, key, _items(state, data, pickled))
    except ServiceError as error:
        return _respond({"error": error.message}, error.status, pickled, error.headers)
    state.metrics.record_results("/v1/scorer", results)
    scores = [scaled_score(key.template, result) for result in results]
    if all(result.ok for result in results):
        return _respond({"scores": scores, "outputs": scores}, 200, pickled)
    status, answer, headers = failure_answer(results)
    return _respond({**answer, "scores": scores}, status, pickled, headers)
