"""Prometheus metrics of one service instance, in its own registry (two apps in a process never share counts)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reward_core.results import RewardResult

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    """Requests by route and status code, items and failed items by route (and status), request latency,
    judge-call batch sizes and the queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "unifiedreward_requests", "HTTP requests by route and status code", ["route", "code"],
            registry=self.registry,
        )
        self.items = Counter("unifiedreward_items", "items answered, by route", ["route"], registry=self.registry)
        self.failed_items = Counter(
            "unifiedreward_failed_items", "items answered with an error, by route and status", ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "unifiedreward_request_seconds", "request latency by route", ["route"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "unifiedreward_batch_size", "items per judge call (dynamic batching)", buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge("unifiedreward_queue_depth", "items waiting for the judge", registry=self.registry)

    def record_results(self, route: str, results: Iterable[RewardResult]) -> None:
        for result in results:
            self.items.labels(route).inc()
            if not result.ok:
                self.failed_items.labels(route, result.status.value).inc()

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
