"""Load and faults on the real ``unifiedreward serve`` subprocess (issue 26, item 4), on 127.0.0.1.

The service judges through `StandInBackend`, an OpenAI-compatible stub that **stands in for GPU speed** (see
tests/service_servers.py): the toy judge on this 2-core machine scores a few items a second, so thousands of
items through the real judge would not fit CI. Everything between the client and the backend (HTTP, dynamic
batching, the judge's parsing, the queue, deadlines) is the real service. Clients are httpx with bounded
retries, as a trainer's reward worker (tests/service_load.py).

In the suite: 64 concurrent clients x 50 items (3,200 items, 25-45 s here); the full 64 x 2,000 runs as
``python benchmarks/reward_service.py --soak`` (figures in docs/service.md).
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from service_load import chunk_body, run_load
from service_servers import RewardService, StandInBackend

pytestmark = pytest.mark.slow

CLIENTS = 64
ITEMS_PER_CLIENT = 50
CHUNK = 25
FAIL_EVERY = 50  # every 50th item is unscorable: a per-item error, never a number
RSS_GROWTH_LIMIT_MB = 40.0


class MemorySampler:
    """The server's RSS every ``period`` seconds while the load runs."""

    def __init__(self, service: RewardService, period: float = 0.5):
        self.service, self.period = service, period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.samples.append(self.service.rss_mb())

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def growth_mb(self) -> float:
        """Last sample minus the first one after warm-up (the first tenth of the run)."""
        return self.samples[-1] - self.samples[len(self.samples) // 10]


def test_64_clients_lose_nothing_duplicate_nothing_keep_order():
    with StandInBackend() as backend:
        service = RewardService(["--server", backend.base_url, "--max-batch", "64", "--max-queue", "4096"]).start()
        try:
            with MemorySampler(service) as memory:
                stats = run_load(service.base_url, CLIENTS, ITEMS_PER_CLIENT, CHUNK, fail_every=FAIL_EVERY)
        finally:
            service.close()
    total = CLIENTS * ITEMS_PER_CLIENT
    unscorable = total // FAIL_EVERY
    rss = f"RSS {memory.samples[0]:.0f} -> {memory.samples[-1]:.0f} MiB"
    print(f"load: {stats}; backend judged {len(backend.tags)}; {rss}")
    assert (stats.lost_items, stats.duplicated_items, stats.misordered_items) == (0, 0, 0), stats
    assert stats.failed_requests == 0, stats.failure_reasons
    assert (stats.scored_items, stats.item_errors, stats.zero_or_nan_failures) == (total - unscorable, unscorable, 0)
    assert len(backend.tags) == total and backend.duplicates() == 0  # every item judged exactly once
    assert memory.growth_mb() < RSS_GROWTH_LIMIT_MB, memory.samples


def test_server_killed_mid_load_and_restarted_every_request_answered_or_failed_with_reason():
    with StandInBackend() as backend:
        service = RewardService(["--server", backend.base_url]).start()
        crashed_at: list[float] = []

        def crash_and_restart() -> None:
            time.sleep(2.0)
            crashed_at.append(time.monotonic())
            service.kill()  # SIGKILL, like a lost node: requests in flight get no answer
            service.start()  # same port: the trainer's URL stays valid

        began = time.monotonic()
        try:
            stats = run_load(service.base_url, 16, 100, 10, during=crash_and_restart, attempts=6)
        finally:
            service.close()
    print(f"kill/restart: {stats}")
    assert crashed_at and crashed_at[0] - began < stats.seconds, "the kill came after the load ended"
    assert service.starts == 2 and stats.retries > 0  # the load saw the crash
    assert (stats.lost_items, stats.duplicated_items, stats.misordered_items) == (0, 0, 0), stats
    assert stats.answered_items + stats.failed_request_items == stats.items
    assert not any(reason.startswith("client crashed") for reason in stats.failure_reasons), stats.failure_reasons
    assert stats.zero_or_nan_failures == 0


def test_slow_backend_answers_429_or_deadline_errors_never_hangs():
    """A backend taking 3 s per item, a queue of 8 items and a 2 s deadline: every request ends within the
    deadline plus slack, either judged, with per-item deadline errors, or refused with 429 + Retry-After."""
    with StandInBackend(delay=3.0) as backend:
        service = RewardService(
            ["--server", backend.base_url, "--max-queue", "8", "--max-batch", "4", "--deadline", "2"]
        ).start()
        try:
            outcomes: list[tuple[int, float, dict, dict]] = []
            lock = threading.Lock()

            def one(client: int) -> None:
                body = chunk_body(client, range(4))
                began = time.monotonic()
                response = httpx.post(f"{service.base_url}/v1/score", json=body, timeout=30)
                with lock:
                    seconds = time.monotonic() - began
                    outcomes.append((response.status_code, seconds, dict(response.headers), response.json()))

            threads = [threading.Thread(target=one, args=(c,)) for c in range(12)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=40)
            assert not any(t.is_alive() for t in threads), "a request hung"
        finally:
            service.close()
    statuses = sorted(o[0] for o in outcomes)
    print(f"slow backend: statuses {statuses}, slowest {max(o[1] for o in outcomes):.1f} s")
    assert set(statuses) <= {200, 429} and 429 in statuses
    assert all(int(h["retry-after"]) >= 1 for status, _, h, _ in outcomes if status == 429)
    assert max(o[1] for o in outcomes) < 2 + 5  # deadline + slack, never the backend's pace
    answered = [item for status, _, _, body in outcomes if status == 200 for item in body["results"]]
    assert answered and all(item["status"] != "ok" and "deadline" in item["error"] for item in answered)
    assert all(item["score"] is None for item in answered)


def test_max_new_tokens_reaches_the_backend():
    """``serve --max-new-tokens`` is the judge's generation budget (the benchmark runs both paths at one budget)."""
    with StandInBackend() as backend:
        service = RewardService(["--server", backend.base_url, "--max-new-tokens", "7"]).start()
        try:
            answer = httpx.post(f"{service.base_url}/v1/score", json=chunk_body(0, range(2)), timeout=30)
        finally:
            service.close()
    assert answer.status_code == 200 and [r["status"] for r in answer.json()["results"]] == ["ok", "ok"]
    assert [body["max_tokens"] for body in backend.received] == [7, 7]
