"""Async JSON POST with bounded retries, jittered exponential backoff and an overall deadline.

`post_json` never returns a bad answer silently: it returns the decoded JSON body of a 2xx response
or raises `RequestFailed` whose message says why ("server unreachable at URL after N attempts",
"HTTP 500: ...", "deadline exceeded ...").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx


logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RequestFailed(Exception):
    """A request that did not produce a usable 2xx answer. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None, body: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts to make and how long to wait between them (`base * 2**k` plus jitter, capped)."""

    max_attempts: int = 10
    backoff_base: float = 0.5
    backoff_max: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to sleep after failed attempt number `attempt` (1-based): full jitter on an exponential cap."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    policy: RetryPolicy,
    deadline: float | None = None,
) -> dict[str, Any]:
    """POST `payload` to `url`; retry connection errors, timeouts, 408/429/5xx; stop at `deadline` (monotonic)."""
    last_reason = "no attempt made"
    last_status: int | None = None
    last_body: str | None = None
    for attempt in range(1, policy.max_attempts + 1):
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise RequestFailed(f"deadline exceeded after {attempt - 1} attempts (last: {last_reason})", last_status)
        try:
            response = await asyncio.wait_for(client.post(url, json=payload), timeout=remaining)
        except asyncio.TimeoutError:
            raise RequestFailed(f"deadline exceeded during attempt {attempt} (last: {last_reason})") from None
        except httpx.TimeoutException as exc:
            last_reason, last_status = f"request timed out ({type(exc).__name__})", None
        except httpx.TransportError as exc:
            last_reason, last_status = f"{type(exc).__name__}: {exc or 'connection failed'}", None
        else:
            if response.is_success:
                try:
                    return response.json()
                except ValueError:
                    raise RequestFailed(
                        f"HTTP {response.status_code}: body is not JSON: {_short(response.text)}", response.status_code
                    ) from None
            last_status, last_body = response.status_code, response.text
            last_reason = f"HTTP {response.status_code}: {_short(response.text)}"
            if response.status_code not in RETRYABLE_STATUS:
                raise RequestFailed(last_reason, response.status_code, response.text)
        if attempt < policy.max_attempts:
            pause = policy.delay(attempt)
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise RequestFailed(f"deadline exceeded after {attempt} attempts (last: {last_reason})", last_status)
            logger.debug("attempt %d on %s failed (%s); retrying in %.2fs", attempt, url, last_reason, pause)
            await asyncio.sleep(pause)
    if last_status is None:
        raise RequestFailed(f"server unreachable at {url} after {policy.max_attempts} attempts ({last_reason})")
    raise RequestFailed(f"{last_reason} (after {policy.max_attempts} attempts)", last_status, last_body)


async def gather_ordered(
    jobs: list[Callable[[], Awaitable[T]]],
    concurrency: int,
    deadline: float | None,
    on_error: Callable[[str], T],
    on_done: Callable[[], None] | None = None,
) -> list[T]:
    """Run `jobs` with at most `concurrency` in flight; keep input order; turn any failure into `on_error(reason)`.

    A job still running when `deadline` (monotonic) passes is cancelled and reported as "deadline exceeded".
    """
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def run_one(job: Callable[[], Awaitable[T]]) -> T:
        try:
            async with semaphore:
                if deadline is not None and time.monotonic() >= deadline:
                    return on_error("deadline exceeded before the request was sent")
                return await job()
        except RequestFailed as exc:
            return on_error(str(exc))
        except Exception as exc:  # one bad item never loses the others
            logger.exception("unexpected failure in an HTTP job")
            return on_error(f"{type(exc).__name__}: {exc}")
        finally:
            if on_done is not None:
                on_done()

    tasks = [asyncio.ensure_future(run_one(job)) for job in jobs]
    if not tasks:
        return []
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    return [task.result() if task in done else on_error("deadline exceeded") for task in tasks]


def run_sync(make_coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, in a private thread if this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="unifiedreward-http") as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()
