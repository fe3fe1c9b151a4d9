"""Dynamic batching: concurrent requests' items merged into one judge call.

Each request's items are queued under a `BatchKey` (call kind, template, mode, swap). A worker takes the oldest
waiting items, waits at most ``max_wait_s`` (from when they arrived) for more items of the same key, and runs up to
``max_batch`` of them as one ``score_batch`` / ``compare_batch`` call in a thread (the judge blocks). Results go back
to each request in its own input order. At most ``max_queue`` items wait: `submit` raises `QueueFull` beyond that.
A request's deadline covers its wait and its judging: items not judged by then fail with "deadline exceeded", and
items still queued at that moment are never run.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from reward_core.model import JudgeItem, UnifiedReward
from reward_core.prompts import get_template
from reward_core.results import RewardResult, Status
from unifiedreward.service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

KINDS = ("score", "compare")
DEADLINE_ERROR = "deadline exceeded"
RETRY_AFTER_MAX_S = 60


class QueueFull(Exception):
    """The queue holds ``max_queue`` items; try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int, queued: int):
        self.retry_after = retry_after
        super().__init__(f"the queue is full ({queued} items waiting); retry in {retry_after} s")


@dataclass(frozen=True)
class BatchKey:
    """Items with equal keys can share one judge call."""

    kind: str  # "score" (pointwise) or "compare" (pairwise)
    template: str
    mode: str
    swap: bool = False


@dataclass(eq=False)
class _Job:
    """One request's items and where their results go."""

    key: BatchKey
    items: list[JudgeItem]
    deadline: float  # time.monotonic()
    deadline_s: float
    future: asyncio.Future
    results: list[RewardResult | None] = field(default_factory=list)
    arrived: float = field(default_factory=time.monotonic)
    open: int = 0  # items not answered yet

    def answer(self, start: int, results: list[RewardResult]) -> None:
        self.results[start : start + len(results)] = results
        self.open -= len(results)
        if self.open <= 0 and not self.future.done():
            self.future.set_result(None)


@dataclass(eq=False)
class _Piece:
    """A slice ``[start, end)`` of a job's items, waiting in the queue."""

    job: _Job
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def deadline_failure(deadline_s: float) -> RewardResult:
    reason = f"{DEADLINE_ERROR}: not judged within the request's {deadline_s:g} s"
    return RewardResult.failure(Status.BACKEND_ERROR, reason)


def check_key(judge: UnifiedReward, key: BatchKey) -> None:
    """Raise ``ValueError`` for a key no judge call could run (unknown kind, mode or template, a pairwise template for
    a pointwise call, a template of the other prompt format), before its items join anyone's batch."""
    if key.kind not in KINDS:
        raise ValueError(f"unknown call kind {key.kind!r}")
    if key.mode not in ("generate", "logit"):
        raise ValueError(f"mode must be 'generate' or 'logit', got {key.mode!r}")
    template = get_template(key.template)  # KeyError for an unknown key
    if template.pairwise != (key.kind == "compare"):
        wanted = "pairwise" if key.kind == "compare" else "pointwise"
        raise ValueError(f"template {key.template!r} is not {wanted}")
    if judge.checkpoint is not None:
        judge.checkpoint.check_template(template)


class Batcher:
    """Queues items from many requests and runs them through ``judge`` in merged batches (see the module doc)."""

    def __init__(
        self,
        judge: UnifiedReward,
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.02,
        max_queue: int = 1024,
        workers: int = 1,
        metrics: ServiceMetrics | None = None,
    ):
        self.judge = judge
        self.max_batch, self.max_wait_s, self.max_queue, self.workers = max_batch, max_wait_s, max_queue, workers
        self.metrics = metrics
        self.queued = 0  # items waiting
        self.running = 0  # items in judge calls now
        self._pending: collections.deque[_Piece] = collections.deque()
        self._changed: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task] = []
        self._executor: ThreadPoolExecutor | None = None
        self._seconds_per_item = 0.0  # moving average, for Retry-After
        self._stopping = False

    # --- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="unifiedreward-judge")
        self._tasks = [asyncio.create_task(self._worker(), name=f"batcher-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        self._stopping = True  # a flag as well as cancellation: Python 3.11's wait_for can swallow a cancellation
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for piece in self._pending:
            if not piece.job.future.done():
                piece.job.future.set_exception(RuntimeError("the service is shutting down"))
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def alive(self) -> bool:
        """Whether every worker is running."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    # --- requests -----------------------------------------------------------------------------------------------

    async def submit(self, key: BatchKey, items: list[JudgeItem], deadline_s: float) -> list[RewardResult]:
        """Judge ``items`` (merged with other requests' items of the same key); results in input order."""
        if not items:
            return []
        if self._changed is None:
            raise RuntimeError("Batcher.start() was not awaited (the app's lifespan starts it)")
        if self.queued + len(items) > self.max_queue:
            raise QueueFull(self.retry_after(), self.queued)
        loop = asyncio.get_running_loop()
        job = _Job(key, list(items), time.monotonic() + deadline_s, deadline_s, loop.create_future())
        job.results, job.open = [None] * len(items), len(items)
        for start in range(0, len(items), self.max_batch):
            self._pending.append(_Piece(job, start, min(start + self.max_batch, len(items))))
        self._set_queued(self.queued + len(items))
        async with self._changed:
            self._changed.notify_all()
        try:
            await asyncio.wait_for(asyncio.shield(job.future), timeout=max(0.0, job.deadline - time.monotonic()))
        except asyncio.TimeoutError:
            logger.warning("deadline (%g s) passed, %d of %d items unanswered", deadline_s, job.open, len(items))
        finally:
            self._drop(job)
        return [deadline_failure(deadline_s) if result is None else result for result in job.results]

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained (at least 1)."""
        estimate = self.queued * self._seconds_per_item / self.workers
        return int(min(RETRY_AFTER_MAX_S, max(1, math.ceil(estimate))))

    # --- workers ------------------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        assert self._changed is not None
        while not self._stopping:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._pending))
                first = self._pending[0]
                key, wait_until = first.job.key, first.job.arrived + self.max_wait_s
                while self._waiting(key) < self.max_batch and (left := wait_until - time.monotonic()) > 0:
                    try:
                        await asyncio.wait_for(self._changed.wait(), left)
                    except asyncio.TimeoutError:
                        break
                batch = self._take(key)
            if batch:
                await self._run(key, batch)

    def _waiting(self, key: BatchKey) -> int:
        return sum(piece.size for piece in self._pending if piece.job.key == key)

    def _take(self, key: BatchKey) -> list[_Piece]:
        """Up to ``max_batch`` waiting items of ``key``, oldest first (the last piece split if needed); pieces whose
        request deadline has passed are answered "deadline exceeded" instead of being run."""
        batch, kept, room, now = [], collections.deque(), self.max_batch, time.monotonic()
        taken = 0
        for piece in self._pending:
            if piece.job.key != key or room == 0:
                kept.append(piece)
                continue
            taken += piece.size
            if piece.job.deadline <= now:
                piece.job.answer(piece.start, [deadline_failure(piece.job.deadline_s)] * piece.size)
                continue
            if piece.size > room:
                kept.append(_Piece(piece.job, piece.start + room, piece.end))
                taken -= piece.size - room
                piece = _Piece(piece.job, piece.start, piece.start + room)
            batch.append(piece)
            room -= piece.size
        self._pending = kept
        self._set_queued(self.queued - taken)
        return batch

    async def _run(self, key: BatchKey, batch: list[_Piece]) -> None:
        items = [item for piece in batch for item in piece.job.items[piece.start : piece.end]]
        self.running += len(items)
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(items))
        started = time.monotonic()
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._call, key, items)
            if len(results) != len(items):
                raise RuntimeError(f"the judge answered {len(results)} results for {len(items)} items")
        except Exception as error:  # the judge reports per item; anything it raises fails this batch's items alone
            logger.exception("judge call on %d items failed", len(items))
            results = [RewardResult.failure(Status.BACKEND_ERROR, f"{type(error).__name__}: {error}")] * len(items)
        finally:
            self.running -= len(items)
        elapsed = (time.monotonic() - started) / len(items)
        self._seconds_per_item = elapsed if not self._seconds_per_item else 0.8 * self._seconds_per_item + 0.2 * elapsed
        offset = 0
        for piece in batch:
            piece.job.answer(piece.start, list(results[offset : offset + piece.size]))
            offset += piece.size

    def _call(self, key: BatchKey, items: list[JudgeItem]) -> list[RewardResult]:
        if key.kind == "compare":
            return self.judge.compare_batch(key.template, items, swap=key.swap, mode=key.mode)
        return self.judge.score_batch(key.template, items, mode=key.mode)

    # --- bookkeeping --------------------------------------------------------------------------------------------

    def _drop(self, job: _Job) -> None:
        """Remove a finished (or abandoned) request's pieces that are still queued."""
        mine = [piece for piece in self._pending if piece.job is job]
        if mine:
            self._pending = collections.deque(piece for piece in self._pending if piece.job is not job)
            self._set_queued(self.queued - sum(piece.size for piece in mine))

    def _set_queued(self, value: int) -> None:
        self.queued = value
        if self.metrics is not None:
            self.metrics.queue_depth.set(value)

