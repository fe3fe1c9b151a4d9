"""Trainer-like load on ``unifiedreward serve``: many concurrent clients, each scoring its items in chunks
through ``POST /v1/score`` with httpx and retries (as a trainer's reward worker would: connection errors,
429 with Retry-After and 5xx are retried a bounded number of times, then the request fails with the reason).

Every item carries a tag (`service_servers.tag`) that the stand-in backend turns into a known score, so each
answer can be checked against the item in its position: none lost, none duplicated, order kept. Used by
tests/test_service_load.py (small) and benchmarks/reward_service.py ``--soak`` (64 clients x 2,000 items).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from service_servers import FAIL_MARK, png_b64, stand_in_score, tag

SCORE_TEMPLATE = "image_generation.point_score.v1"
RETRYABLE = {408, 429, 500, 502, 503, 504}


@dataclass
class LoadStats:
    clients: int
    items: int
    requests: int
    answered_items: int = 0  # items that came back in an answered request
    scored_items: int = 0  # ... with the stand-in's score for that very item
    item_errors: int = 0  # ... as a per-item error (status + reason), e.g. the deliberately unscorable ones
    failed_requests: int = 0  # requests that failed after the retries, with a reason
    failed_request_items: int = 0  # the items of those requests
    lost_items: int = 0  # items neither answered nor in a failed request (must be 0)
    duplicated_items: int = 0  # answers beyond the items sent (must be 0)
    misordered_items: int = 0  # answers whose id or score belongs to another item (must be 0)
    zero_or_nan_failures: int = 0  # failed items reported as a number (must be 0)
    retries: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # HTTP statuses seen (all attempts)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    items_per_s: float = 0.0
    p50_s: float = 0.0
    p95_s: float = 0.0
    max_request_s: float = 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def chunk_body(client: int, indices: range, fail_every: int = 0) -> dict:
    """A `/v1/score` body for items ``indices`` of ``client``; every ``fail_every``-th is unscorable."""
    items = []
    for i in indices:
        prompt = f"a red square, {tag(client, i)}"
        if fail_every and i % fail_every == fail_every - 1:
            prompt += f" ({FAIL_MARK})"
        items.append({"id": tag(client, i), "media": [png_b64(i)], "fields": {"prompt": prompt}})
    return {"template": SCORE_TEMPLATE, "items": items}


class TrainerClient:
    """One reward worker: ``attempts`` tries per request, backing off (Retry-After when given)."""

    def __init__(self, base_url: str, timeout: float = 60.0, attempts: int = 8, backoff: float = 0.25):
        self.http = httpx.Client(base_url=base_url, timeout=timeout)
        self.attempts = attempts
        self.backoff = backoff

    def post(self, path: str, body: dict, stats: LoadStats, lock: threading.Lock) -> tuple[dict | None, str | None]:
        """The answer's JSON, or ``None`` and the reason after the last attempt."""
        reason = None
        for attempt in range(self.attempts):
            wait = self.backoff * 2**attempt
            try:
                response = self.http.post(path, json=body)
                with lock:
                    stats.statuses[str(response.status_code)] = stats.statuses.get(str(response.status_code), 0) + 1
                if response.status_code == 200:
                    return response.json(), None
                reason = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRYABLE:
                    return None, reason
                wait = float(response.headers.get("Retry-After", wait))
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < self.attempts:
                with lock:
                    stats.retries += 1
                time.sleep(min(wait, 5.0))
        return None, reason

    def close(self) -> None:
        self.http.close()


def check_answer(client: int, indices: range, answer: dict, stats: LoadStats) -> None:
    """Count the answer's items: scored right, per-item errors, lost, duplicated, misordered."""
    results = answer.get("results", [])
    stats.answered_items += min(len(results), len(indices))
    stats.duplicated_items += max(0, len(results) - len(indices))
    for i, result in zip(indices, results):
        if result.get("id") != tag(client, i):
            stats.misordered_items += 1
            continue
        if result.get("status") != "ok":
            stats.item_errors += 1
            if result.get("score") is not None or not result.get("error"):
                stats.zero_or_nan_failures += 1
            continue
        expected = stand_in_score(client, i)
        if result.get("score") is None or not math.isclose(result["score"], expected, abs_tol=1e-6):
            stats.misordered_items += 1
        else:
            stats.scored_items += 1


def run_load(
    base_url: str, clients: int, items_per_client: int, chunk: int, fail_every: int = 0, timeout: float = 60.0,
    attempts: int = 8, during=None,
) -> LoadStats:  # fmt: skip
    """``clients`` threads each score ``items_per_client`` items in chunks; ``during()`` runs alongside
    (a fault: kill and restart the server, sample its memory)."""
    requests_per_client = math.ceil(items_per_client / chunk)
    stats = LoadStats(clients, clients * items_per_client, clients * requests_per_client)
    lock = threading.Lock()
    latencies: list[float] = []
    reasons: Counter[str] = Counter()

    def worker(client: int) -> None:
        trainer = TrainerClient(base_url, timeout=timeout, attempts=attempts)
        try:
            for start in range(0, items_per_client, chunk):
                indices = range(start, min(start + chunk, items_per_client))
                began = time.perf_counter()
                answer, reason = trainer.post("/v1/score", chunk_body(client, indices, fail_every), stats, lock)
                with lock:
                    latencies.append(time.perf_counter() - began)
                    if answer is None:
                        stats.failed_requests += 1
                        stats.failed_request_items += len(indices)
                        reasons[reason.split(":")[0]] += 1
                    else:
                        check_answer(client, indices, answer, stats)
        finally:
            trainer.close()

    started = time.perf_counter()
    side = threading.Thread(target=during, daemon=True) if during else None
    if side:
        side.start()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        crashed = [f.exception() for f in [pool.submit(worker, c) for c in range(clients)]]
    reasons.update(f"client crashed: {type(e).__name__}: {e}" for e in crashed if e is not None)
    if side:
        side.join()
    stats.seconds = round(time.perf_counter() - started, 3)
    stats.lost_items = stats.items - stats.answered_items - stats.failed_request_items
    stats.items_per_s = round(stats.answered_items / stats.seconds, 1)
    stats.p50_s, stats.p95_s = round(percentile(latencies, 0.5), 3), round(percentile(latencies, 0.95), 3)
    stats.max_request_s = round(max(latencies), 3)
    stats.failure_reasons = dict(reasons)
    return stats
