"""What every protocol module shares: the service's state, its errors, body reading within the limits, and
judging a request's items through the batcher with the items that already failed kept in place."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from reward_core.media import MediaError
from reward_core.model import JudgeItem, UnifiedReward
from reward_core.prompts import get_template
from reward_core.results import RewardResult, Status
from unifiedreward.service.batcher import Batcher, BatchKey, QueueFull, check_key
from unifiedreward.service.config import ServiceConfig
from unifiedreward.media_entries import decode_media
from unifiedreward.service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A request answered with HTTP ``status`` and ``{"error": message}`` (plus ``headers``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        self.status, self.message, self.headers = status, message, headers or {}
        super().__init__(message)


@dataclass
class ServiceState:
    judge: UnifiedReward
    config: ServiceConfig
    batcher: Batcher
    metrics: ServiceMetrics


def state_of(request: Request) -> ServiceState:
    return request.app.state.service


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is longer than ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, f"request body of {declared} bytes is above the limit ({limit} bytes, --max-body-mb)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, f"request body is above the limit ({limit} bytes, --max-body-mb)")
        chunks.append(chunk)
    return b"".join(chunks)


def json_object(text: str | bytes | dict, what: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object (an object already parsed is copied); ``ValueError`` naming ``what``."""
    if isinstance(text, (str, bytes)):
        try:
            text = json.loads(text)
        except ValueError as error:
            raise ValueError(f"{what} is not JSON ({error})") from None
    if not isinstance(text, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(text).__name__}")
    return dict(text)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object (400 when it is not one; 413 above the size limit)."""
    body = await read_body(request, state_of(request).config.max_body_bytes)
    try:
        return json_object(body, "the body")
    except ValueError as error:
        raise ServiceError(400, str(error)) from None


def check_media_count(state: ServiceState, count: int) -> None:
    limit = state.config.max_media_per_request
    if count > limit:
        raise ServiceError(413, f"{count} media entries in one request; the limit is {limit} (--max-media)")


def field_list(data: dict[str, Any], name: str, expected: type | tuple[type, ...] = object) -> list[Any]:
    """``data[name]`` as a list (400 when missing, not a list, or holding other than ``expected``)."""
    value = data.get(name)
    if not isinstance(value, list):
        raise ServiceError(400, f"'{name}' must be a list, got {type(value).__name__}")
    if any(not isinstance(entry, expected) for entry in value):
        raise ServiceError(400, f"every entry of '{name}' must be {getattr(expected, '__name__', expected)}")
    return value


def prepare_item(state: ServiceState, media: Any, fields: dict[str, Any]) -> JudgeItem | RewardResult:
    """A judge item, or this item's ``media_error`` when its media cannot be decoded."""
    try:
        return JudgeItem(media=decode_media(media, state.config.media_root), fields=fields)
    except MediaError as error:
        return RewardResult.failure(Status.MEDIA_ERROR, str(error))


async def judge(state: ServiceState, key: BatchKey, prepared: list[JudgeItem | RewardResult]) -> list[RewardResult]:
    """Results for ``prepared`` in order: items judged through the batcher, failures already made kept as they are.
    400 for a key no judge call could run (unknown template, wrong kind, other prompt format); 413 for more items
    than the queue holds; 429 with ``Retry-After`` when the queue is full."""
    try:
        check_key(state.judge, key)
    except (KeyError, ValueError) as error:
        raise ServiceError(400, str(error).strip("'\"")) from None
    todo = [index for index, item in enumerate(prepared) if isinstance(item, JudgeItem)]
    if len(todo) > state.config.max_queue:  # could never be queued: not a 429 to retry
        limit = state.config.max_queue
        raise ServiceError(413, f"{len(todo)} items in one request; the queue holds {limit} (--max-queue)")
    try:
        judged = await state.batcher.submit(key, [prepared[i] for i in todo], state.config.request_deadline_s)
    except QueueFull as full:
        raise ServiceError(429, str(full), {"Retry-After": str(full.retry_after)}) from None
    results = list(prepared)
    for index, result in zip(todo, judged):
        results[index] = result
    return results


def scaled_score(template_key: str, result: RewardResult) -> float | None:
    """A pointwise result's score / the template's scale maximum (Flow-GRPO's scale, as the in-process adapter);
    ``None`` when the item failed."""
    if not result.ok or result.score is None or not math.isfinite(result.score):
        return None
    return get_template(template_key).max_scaled(result.score)


def failure_status(results: list[RewardResult]) -> int:
    """The HTTP status of a float-only protocol's answer when items failed: 503 (retry later) when the judge or its
    deadline failed, 502 when the judge's answer could not be read, 422 when only the inputs were bad."""
    statuses = {result.status for result in results if not result.ok}
    if Status.BACKEND_ERROR in statuses:
        return 503
    return 502 if Status.PARSE_ERROR in statuses else 422


def failure_answer(results: list[RewardResult]) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """A float-only protocol's answer when items failed: its HTTP status (`failure_status`), the body's ``error``
    (a summary) and ``errors`` (``[{"index", "status", "error"}]``), and ``Retry-After`` with a 503."""
    errors = [
        {"index": index, "status": result.status.value, "error": result.error}
        for index, result in enumerate(results)
        if not result.ok
    ]
    status = failure_status(results)
    message = f"{len(errors)} of {len(results)} items failed; first: item {errors[0]['index']}: {errors[0]['error']}"
    logger.warning("answered %d: %s", status, message)
    return status, {"error": message, "errors": errors}, {"Retry-After": "1"} if status == 503 else None
