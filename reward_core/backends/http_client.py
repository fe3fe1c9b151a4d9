"""Async JSON POST over one or more server replicas, with bounded retries, jittered exponential
backoff (or the server's ``Retry-After``, capped), a timeout per attempt, an overall deadline, a cap on
the answer's size and a circuit breaker.

`post_json` never returns a bad answer silently: it returns the decoded JSON body of a 2xx response
or raises `RequestFailed` whose message says why ("server unreachable at URL after N attempts",
"HTTP 500: ...", "deadline exceeded ...", "circuit open: ...", "... larger than N bytes ...").

An attempt's timeout covers the whole exchange, the body included (a server trickling bytes cannot
keep it alive), and the body is streamed and refused once its *decoded* size passes the cap (a gzip
bomb stops there; the overshoot is at most one network read's worth of decompressed bytes).

`Replicas` spreads requests over the live base URLs (least in flight first, healthy before suspect).
A replica with ``breaker_threshold`` consecutive connection failures or timeouts is taken out for
``revive_after`` seconds, then tried again, one request at a time until it answers; one that answers
"wrong server" (HTTP 401/403/404), or is silent for a whole attempt (it timed out and answered nothing else
meanwhile), while another replica is live is taken out at once. A failed attempt
is retried on another live replica when there is one, but a request that timed out is not sent again to a
replica that still answers others (it may be running there). `probing` runs health probes in the background:
a replica that fails one is held out until one passes (`Replicas.probed`). The health lasts as long as the
`Replicas` (a backend keeps one for all its calls), the probes' schedule included. When every replica is out, the
remaining requests fail at once with the reasons.
Credentials in a URL (``http://user:pass@host``) and the given secrets (the API key, even when a
server quotes it back) never appear in a message or a log line: ``***`` stands in for them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx


logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRY_AFTER_STATUS = frozenset({429, 503})  # whose Retry-After header sets the wait before the next attempt
WRONG_SERVER_STATUS = frozenset({401, 403, 404})  # unknown model or route, missing key: this replica, not the item


class RequestFailed(Exception):
    """A request that did not produce a usable 2xx answer. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None, body: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = body


class ResponseTooLarge(RequestFailed):
    """An answer whose decoded body passed the size cap; it was not read further."""


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts to make, how long each may take (``attempt_timeout``: the whole exchange, body
    included; ``None``: no limit), and how long to wait between them (`base * 2**k` plus jitter, capped;
    at least a 429/503's ``Retry-After``, itself capped at ``retry_after_max``)."""

    max_attempts: int = 10
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    attempt_timeout: float | None = None
    retry_after_max: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep after failed attempt number `attempt` (1-based): full jitter on an exponential
        cap, or the server's `retry_after` (capped) when that is longer."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        pause = random.uniform(ceiling / 2, ceiling)
        return pause if retry_after is None else max(pause, min(retry_after, self.retry_after_max))


def retry_after_seconds(value: str | None) -> float | None:
    """The wait a ``Retry-After`` header asks for (delay-seconds or an HTTP date); ``None`` if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, its body read in full (decoded)."""

    status: int
    headers: httpx.Headers
    content: bytes
    encoding: str

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


async def exchange(
    client: httpx.AsyncClient, method: str, url: str, max_bytes: int | None = None, **kwargs: Any
) -> Answer:
    """Send one request and read its answer, streamed: `ResponseTooLarge` once more than `max_bytes`
    decoded bytes have arrived (``None``: no cap). Time limits are the caller's (`attempt_limit`)."""
    response = await client.send(client.build_request(method, url, **kwargs), stream=True)
    try:
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise ResponseTooLarge(
                    f"HTTP {response.status_code}: answer larger than {max_bytes} bytes (decoded; max_response_bytes), "
                    "refused", response.status_code,
                )  # fmt: skip
            chunks.append(chunk)
    finally:
        await response.aclose()
    return Answer(response.status_code, response.headers, b"".join(chunks), response.encoding or "utf-8")


def attempt_limit(timeout: float | None, deadline: float | None) -> tuple[float | None, bool]:
    """Seconds the next attempt may take (its `timeout`, or less when the `deadline` (monotonic) comes
    first), and whether the deadline is what sets it."""
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    if remaining is not None and (timeout is None or remaining <= timeout):
        return remaining, True
    return timeout, False


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
    """One server base URL and its health: consecutive failures, out until ``dead_until`` (and why)."""

    url: str
    in_flight: int = 0
    failures: int = 0
    dead_until: float = 0.0
    last_reason: str = ""
    answers: int = 0  # answers (not 4xx) so far: one that grows while a request of ours hangs there is serving
    probe_misses: int = 0  # health probes failed in a row
    held_by_probe: bool = False  # out until a health probe passes (no timed revival, no revival by a late answer)
    next_probe: float = 0.0  # when its next health probe is due (monotonic; 0: not scheduled yet)

    @property
    def name(self) -> str:
        return redact_url(self.url)

    @property
    def suspect(self) -> bool:
        """Its last attempt failed (connection, timeout, wrong server): it gets one request at a time."""
        return self.failures > 0


class Replicas:
    """Data-parallel replicas of one judge: requests go to the live one with the fewest in flight.

    ``breaker_threshold`` consecutive failures to answer (refused, reset, dropped mid-answer, timed out)
    take a replica out for ``revive_after`` seconds; ``None`` disables the breaker. A suspect replica
    (its last attempt failed) gets at most one request in flight, and loses ties to healthy ones. A replica
    silent for a whole attempt is taken out at once while another is live: until a health probe passes with
    ``hold_silent`` (the caller runs `probing`), else for ``revive_after`` seconds.
    """

    def __init__(
        self,
        urls: Sequence[str],
        breaker_threshold: int | None = 3,
        revive_after: float = 5.0,
        secrets: Sequence[str] = (),
        hold_silent: bool = False,
    ):
        if not urls:
            raise ValueError("need at least one server URL")
        self.replicas = [Replica(url) for url in urls]
        self.breaker_threshold = breaker_threshold
        self.revive_after = revive_after
        self.hold_silent = hold_silent
        self.secrets = [secret for secret in secrets if secret]
        self._turn = 0

    def __len__(self) -> int:
        return len(self.replicas)

    def live(self, avoid: Replica | None = None) -> list[Replica]:
        """The replicas not taken out (without `avoid`, unless it is the only one)."""
        now = time.monotonic()
        live = [r for r in self.replicas if r.dead_until <= now]
        return [r for r in live if r is not avoid] or live

    def pick(self, avoid: Replica | None = None, exclude: Sequence[Replica] = ()) -> Replica | None:
        """The live replica with the fewest requests in flight, a busy suspect one last, healthy before suspect
        on ties, then round-robin; another than `avoid` (the one that just failed) when there is one, never
        one in `exclude`; ``None`` when none is left."""
        live = [r for r in self.live(avoid) if r not in exclude]
        if not live:
            return None
        self._turn += 1
        order = {id(r): (i - self._turn) % len(self.replicas) for i, r in enumerate(self.replicas)}
        return min(live, key=lambda r: (r.suspect and r.in_flight > 0, r.in_flight, r.suspect, order[id(r)]))

    def answered(self, replica: Replica) -> None:
        """An answer that is not a 4xx proves the replica is up and serving (one held out by a probe stays out
        until a probe passes: a late answer may come from another judge)."""
        replica.answers += 1
        if replica.held_by_probe:
            return
        if replica.dead_until:
            logger.info("replica %s is back", replica.name)
        replica.failures, replica.dead_until = 0, 0.0

    def connection_failed(self, replica: Replica, reason: str) -> None:
        """A failure to answer (refused, reset, timed out); ``breaker_threshold`` in a row take it out."""
        reason = self._failed(replica, reason)
        if self.breaker_threshold is not None and replica.failures >= self.breaker_threshold:
            self.take_out(replica, f"{replica.failures} consecutive connection failures ({reason})", self.revive_after)

    def silent(self, replica: Replica, reason: str) -> bool:
        """An attempt that timed out while `replica` answered nothing else: take it out at once if another replica
        is live and the breaker is on (until a probe passes with ``hold_silent``). True if it was."""
        if self.breaker_threshold is None or not [r for r in self.live() if r is not replica]:
            return False
        reason = f"silent ({self._failed(replica, reason)})"
        if self.hold_silent:
            replica.held_by_probe = True
            self.take_out(replica, reason, later="until a health probe passes")
        else:
            self.take_out(replica, reason, self.revive_after)
        return True

    def try_all_if_out(self) -> None:
        """At the start of a call: when every replica is out, bring them all back as suspect (one request at a
        time; the breaker takes a still-dead one out again within a few failures), as a restarted server must
        not wait for its timed or probed return while no call is running."""
        if self.live():
            return
        for replica in self.replicas:
            replica.failures, replica.dead_until, replica.held_by_probe = max(replica.failures, 1), 0.0, False
        logger.info("every replica was out: trying them all again, one request at a time")

    def wrong_server(self, replica: Replica, reason: str) -> bool:
        """A "wrong server" answer (HTTP 401/403/404): take the replica out for ``revive_after`` seconds if
        another one is live (with a single live replica the request itself may be wrong). True if it was."""
        if not [r for r in self.live() if r is not replica]:
            return False
        self.take_out(replica, f"wrong server ({self._failed(replica, reason)})", self.revive_after)
        return True

    def take_out(self, replica: Replica, reason: str, seconds: float = math.inf, later: str = "") -> None:
        """Take `replica` out for `seconds` (for good by default; never shortening a longer take-out) with
        `reason`, logged once."""
        replica.failures = max(replica.failures, 1)
        if replica.dead_until <= time.monotonic():
            later = later or ("for good" if math.isinf(seconds) else f"retrying it in {seconds:g}s")
            logger.warning("replica %s taken out: %s; %s", replica.name, self.scrub(reason), later)
        replica.dead_until = max(replica.dead_until, time.monotonic() + seconds)

    def probed(self, replica: Replica, failure: str | None, misses: int = 2, force: bool = False) -> None:
        """A health probe's verdict: `failure` says why it failed (``None``: it passed). `misses` failed probes
        in a row take the replica out until a probe passes, while another replica is live (at once and
        always with `force`: it serves another judge); a passing probe brings back a replica that probes held
        out, as suspect (one request at a time until it answers)."""
        if failure is None:
            replica.probe_misses = 0
            if replica.held_by_probe:
                replica.held_by_probe, replica.dead_until = False, 0.0
                logger.info("replica %s passes its health probe: back in", replica.name)
            return
        replica.probe_misses += 1
        if not force and (replica.probe_misses < misses or not [r for r in self.live() if r is not replica]):
            return
        out, before = replica.dead_until > time.monotonic(), replica.last_reason
        replica.held_by_probe = True
        reason = self._failed(replica, failure)
        if out and reason != before:
            logger.warning("replica %s stays out: %s; until a health probe passes", replica.name, reason)
        self.take_out(replica, reason, later="until a health probe passes")

    def _failed(self, replica: Replica, reason: str) -> str:
        """Count one failure against `replica`; the scrubbed `reason`."""
        replica.failures += 1
        replica.last_reason = self.scrub(reason)
        return replica.last_reason

    def open_reason(self) -> str:
        """Why every replica is out, for the items that fail at once."""
        details = "; ".join(f"{r.name}: {r.failures} consecutive connection failures ({r.last_reason})" for r in self.replicas)
        return f"circuit open: server unreachable ({details})"

    def scrub(self, text: str) -> str:
        """``text`` with every replica URL's credentials and every secret replaced by ``***``."""
        for replica in self.replicas:
            if replica.url != replica.name:
                text = text.replace(replica.url, replica.name)
                userinfo = replica.url.partition("://")[2].partition("/")[0].rsplit("@", 1)[0]
                text = text.replace(userinfo, "***")
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


async def post_json(
    client: httpx.AsyncClient,
    replicas: Replicas,
    path: str,
    payload: dict[str, Any],
    policy: RetryPolicy,
    deadline: float | None = None,
    headers: dict[str, str] | None = None,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """POST `payload` to `path` on a live replica; retry connection errors, timeouts, 408/429/5xx and a
    "wrong server" answer (on another live replica when there is one); stop at `deadline` (monotonic) or
    when the circuit is open. An answer over `max_bytes` (decoded) fails at once."""
    try:
        return await _post_json(client, replicas, path, payload, policy, deadline, headers, max_bytes)
    except RequestFailed as exc:
        body = None if exc.body is None else replicas.scrub(exc.body)
        raise RequestFailed(replicas.scrub(str(exc)), exc.status, body) from None


async def _post_json(client, replicas, path, payload, policy, deadline, headers, max_bytes) -> dict[str, Any]:
    last_reason = "no attempt made"
    last_status: int | None = None
    last_body: str | None = None
    url = replicas.replicas[0].name + path
    previous: Replica | None = None  # the replica the last attempt failed on: the retry goes elsewhere if it can
    timed_out: list[tuple[Replica, int]] = []  # where an attempt timed out (it may still run there); answers then
    for attempt in range(1, policy.max_attempts + 1):
        limit, by_deadline = attempt_limit(policy.attempt_timeout, deadline)
        if by_deadline and limit <= 0:
            raise RequestFailed(f"deadline exceeded after {attempt - 1} attempts (last: {last_reason})", last_status)
        serving = [r for r, answers in timed_out if r.answers > answers]  # they answered others since: it is slow
        replica = previous = replicas.pick(avoid=previous, exclude=serving)
        if replica is None and serving and replicas.pick() is not None:
            raise RequestFailed(
                f"{last_reason} on every live replica ({len(serving)}); not sent again while they answer "
                "others (it may still be running there)"
            )
        if replica is None:
            raise RequestFailed(replicas.open_reason())
        url, failed, silent, answers = replica.name + path, None, False, replica.answers
        replica.in_flight += 1
        retry_after = None
        try:
            answer = await asyncio.wait_for(
                exchange(client, "POST", replica.url + path, max_bytes, json=payload, headers=headers), limit
            )
        except asyncio.TimeoutError:
            if by_deadline:
                raise RequestFailed(f"deadline exceeded during attempt {attempt} (last: {last_reason})") from None
            last_reason, last_status, failed = f"request timed out (no full answer within {limit:g}s)", None, replica
            timed_out.append((replica, answers))
            silent = replica.answers == answers
        except httpx.TimeoutException as exc:
            last_reason, last_status, failed = f"request timed out ({type(exc).__name__})", None, replica
            if not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):  # those never reached the server
                timed_out.append((replica, answers))
            silent = not isinstance(exc, httpx.PoolTimeout) and replica.answers == answers
        except httpx.TransportError as exc:
            last_reason, last_status, failed = f"{type(exc).__name__}: {exc or 'connection failed'}", None, replica
        except ResponseTooLarge:
            replicas.answered(replica)
            raise
        else:
            if answer.is_success:
                replicas.answered(replica)
                try:
                    return answer.json()
                except ValueError:
                    reason = f"HTTP {answer.status}: body is not JSON: {_short(answer.text)}"
                    raise RequestFailed(reason, answer.status) from None
            last_status, last_body = answer.status, answer.text
            last_reason = f"HTTP {answer.status}: {_short(answer.text)}"
            if answer.status in WRONG_SERVER_STATUS and replicas.wrong_server(replica, last_reason):
                continue  # at once, on another replica
            if not 400 <= answer.status < 500:
                replicas.answered(replica)
            if answer.status not in RETRYABLE_STATUS:
                raise RequestFailed(last_reason, answer.status, answer.text)
            if answer.status in RETRY_AFTER_STATUS:
                retry_after = retry_after_seconds(answer.headers.get("Retry-After"))
        finally:
            replica.in_flight -= 1
        if failed is not None and not (silent and replicas.silent(failed, last_reason)):
            replicas.connection_failed(failed, last_reason)
        if attempt < policy.max_attempts:
            pause = policy.delay(attempt, retry_after)
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise RequestFailed(f"deadline exceeded after {attempt} attempts (last: {last_reason})", last_status)
            asked = "" if retry_after is None else f" (Retry-After {retry_after:g}s)"
            reason = replicas.scrub(last_reason)
            logger.debug("attempt %d on %s failed (%s); retrying in %.2fs%s", attempt, url, reason, pause, asked)
            await asyncio.sleep(pause)
    if last_status is None:
        where = url if len(replicas) == 1 else f"{len(replicas)} replicas (last {url})"
        raise RequestFailed(f"server unreachable at {where} after {policy.max_attempts} attempts ({last_reason})")
    raise RequestFailed(f"{last_reason} (after {policy.max_attempts} attempts)", last_status, last_body)


@contextlib.asynccontextmanager
async def probing(replicas: Replicas, probe: Callable[[Replica], Awaitable[None]], interval: float):
    """While the block runs, ``await probe(replica)`` every `interval` seconds for each replica, each on its own
    (a silent replica delays no other probe) and in the background (no request waits for a probe). The schedule
    (`Replica.next_probe`) carries over to the next block: a probe that fell due between two calls runs at once.
    The probes stop on a flag as well as on cancellation: Python 3.11's ``asyncio.wait_for`` (in a probe) can
    swallow a cancellation that lands as its answer arrives, and the block must still end."""
    stopped = asyncio.Event()

    async def watch(replica: Replica) -> None:
        while not stopped.is_set():
            await asyncio.sleep(max(0.0, replica.next_probe - time.monotonic()))
            if stopped.is_set():
                return
            replica.next_probe = time.monotonic() + interval
            try:
                await probe(replica)
            except Exception:  # a probe's own bug never ends the call
                logger.exception("health probe of %s failed unexpectedly", replica.name)

    for replica in replicas.replicas:  # the first block follows discovery, its first probe
        replica.next_probe = replica.next_probe or time.monotonic() + interval
    tasks = [asyncio.ensure_future(watch(replica)) for replica in replicas.replicas]
    try:
        yield
    finally:
        stopped.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
