"""Async JSON POST over one or more server replicas, with bounded retries, jittered exponential
backoff, an overall deadline and a circuit breaker.

`post_json` never returns a bad answer silently: it returns the decoded JSON body of a 2xx response
or raises `RequestFailed` whose message says why ("server unreachable at URL after N attempts",
"HTTP 500: ...", "deadline exceeded ...", "circuit open: ...").

`Replicas` spreads requests over the live base URLs (least in flight first). A replica with
``breaker_threshold`` consecutive connection failures is taken out for ``revive_after`` seconds, then
tried again; when every replica is out, the remaining requests fail at once with the reason.
Credentials in a URL (``http://user:pass@host``) never appear in a message or a log line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
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


def redact_url(url: str) -> str:
    """``url`` without its user-info part (``http://user:key@host:8000`` -> ``http://***@host:8000``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{slash}{path}"


@dataclass
class Replica:
    """One server base URL and its health: consecutive connection failures, out until ``dead_until``."""

    url: str
    in_flight: int = 0
    failures: int = 0
    dead_until: float = 0.0
    last_reason: str = ""

    @property
    def name(self) -> str:
        return redact_url(self.url)


class Replicas:
    """Data-parallel replicas of one judge: requests go to the live one with the fewest in flight.

    ``breaker_threshold`` consecutive connection failures (refused, reset, dropped mid-answer; not slow
    answers) take a replica out for ``revive_after`` seconds; ``None`` disables the breaker.
    """

    def __init__(self, urls: Sequence[str], breaker_threshold: int | None = 3, revive_after: float = 5.0):
        if not urls:
            raise ValueError("need at least one server URL")
        self.replicas = [Replica(url) for url in urls]
        self.breaker_threshold = breaker_threshold
        self.revive_after = revive_after
        self._turn = 0

    def __len__(self) -> int:
        return len(self.replicas)

    def pick(self) -> Replica | None:
        """The live replica with the fewest requests in flight (round-robin on ties); ``None`` when all are out."""
        now = time.monotonic()
        live = [r for r in self.replicas if r.dead_until <= now]
        if not live:
            return None
        self._turn += 1
        return min(live, key=lambda r: (r.in_flight, (self.replicas.index(r) - self._turn) % len(self.replicas)))

    def answered(self, replica: Replica) -> None:
        """Any HTTP answer (even an error status) proves the replica is up."""
        if replica.dead_until:
            logger.info("replica %s is back", replica.name)
        replica.failures, replica.dead_until = 0, 0.0

    def connection_failed(self, replica: Replica, reason: str) -> None:
        replica.failures += 1
        replica.last_reason = reason
        if self.breaker_threshold is not None and replica.failures >= self.breaker_threshold:
            if replica.dead_until <= time.monotonic():
                logger.warning(
                    "replica %s taken out after %d consecutive connection failures (%s); retrying it in %gs",
                    replica.name, replica.failures, reason, self.revive_after,
                )  # fmt: skip
            replica.dead_until = time.monotonic() + self.revive_after

    def open_reason(self) -> str:
        """Why every replica is out, for the items that fail at once."""
        details = "; ".join(f"{r.name}: {r.failures} consecutive connection failures ({r.last_reason})" for r in self.replicas)
        return f"circuit open: server unreachable ({details})"

    def scrub(self, text: str) -> str:
        """``text`` with every replica URL's credentials removed."""
        for replica in self.replicas:
            if replica.url != replica.name:
                text = text.replace(replica.url, replica.name)
                userinfo = replica.url.partition("://")[2].partition("/")[0].rsplit("@", 1)[0]
                text = text.replace(userinfo, "***")
        return text


async def post_json(
    client: httpx.AsyncClient,
    replicas: Replicas,
    path: str,
    payload: dict[str, Any],
    policy: RetryPolicy,
    deadline: float | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST `payload` to `path` on a live replica; retry connection errors, timeouts, 408/429/5xx (on any
    live replica); stop at `deadline` (monotonic) or when the circuit is open."""
    try:
        return await _post_json(client, replicas, path, payload, policy, deadline, headers)
    except RequestFailed as exc:
        raise RequestFailed(replicas.scrub(str(exc)), exc.status, exc.body) from None


async def _post_json(client, replicas, path, payload, policy, deadline, headers) -> dict[str, Any]:
    last_reason = "no attempt made"
    last_status: int | None = None
    last_body: str | None = None
    url = replicas.replicas[0].name + path
    for attempt in range(1, policy.max_attempts + 1):
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise RequestFailed(f"deadline exceeded after {attempt - 1} attempts (last: {last_reason})", last_status)
        replica = replicas.pick()
        if replica is None:
            raise RequestFailed(replicas.open_reason())
        url = replica.name + path
        replica.in_flight += 1
        try:
            response = await asyncio.wait_for(client.post(replica.url + path, json=payload, headers=headers), remaining)
        except asyncio.TimeoutError:
            raise RequestFailed(f"deadline exceeded during attempt {attempt} (last: {last_reason})") from None
        except httpx.TimeoutException as exc:
            last_reason, last_status = f"request timed out ({type(exc).__name__})", None
        except httpx.TransportError as exc:
            last_reason, last_status = f"{type(exc).__name__}: {exc or 'connection failed'}", None
            replicas.connection_failed(replica, last_reason)
        else:
            replicas.answered(replica)
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
        finally:
            replica.in_flight -= 1
        if attempt < policy.max_attempts:
            pause = policy.delay(attempt)
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise RequestFailed(f"deadline exceeded after {attempt} attempts (last: {last_reason})", last_status)
            logger.debug("attempt %d on %s failed (%s); retrying in %.2fs", attempt, url, last_reason, pause)
            await asyncio.sleep(pause)
    if last_status is None:
        where = url if len(replicas) == 1 else f"{len(replicas)} replicas (last {url})"
        raise RequestFailed(f"server unreachable at {where} after {policy.max_attempts} attempts ({last_reason})")
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
