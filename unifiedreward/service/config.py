"""The service's settings, checked once at startup."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MODES = ("generate", "logit")
HTTP_WORKERS = 2


@dataclass(frozen=True)
class ServiceConfig:
    """Everything `create_app` needs besides the judge.

    Batching: concurrent requests' items are merged into one judge call of at most ``max_batch`` items, waiting
    at most ``max_wait_ms`` for company; at most ``max_queue`` items wait (more: 429). ``workers`` judge calls run
    at once; ``None``: 1 for an in-process model, `HTTP_WORKERS` for a backend that queues requests itself (HTTP
    replicas: ``queues_requests``), so that the next batch is sent while one is in flight.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    allow_pickle: bool = False
    media_root: str | None = None
    model_name: str = "UnifiedReward"  # what /health reports (a path, or the replicas' URLs)
    mode: str = "generate"
    max_batch: int = 32
    max_wait_ms: float = 20.0
    max_queue: int = 1024
    workers: int | None = None
    request_deadline_s: float = 300.0
    max_body_bytes: int = 64 * 1024 * 1024
    max_media_per_request: int = 256
    score_template: str = "image_generation.point_score.v1"
    compare_template: str = "image_generation.pair_rank.v1"
    scorer_template: str = "image_generation.point_score.v1"  # /v1/scorer (Flow-GRPO's pointwise template)
    get_reward_template: str = "image_understanding.point_score.v1"  # /get_reward (OpenRLHF: question + response)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("max_batch", "max_queue", "workers", "max_body_bytes", "max_media_per_request"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.request_deadline_s <= 0:
            raise ValueError("max_wait_ms must be >= 0 and request_deadline_s > 0")
        if self.allow_pickle and self.host not in LOOPBACK:
            raise ValueError(
                f"--allow-pickle unpickles request bodies, which runs any code a client sends: it is only allowed "
                f"when bound to 127.0.0.1, not {self.host!r}"
            )
        if self.media_root is not None and not Path(self.media_root).is_dir():
            raise ValueError(f"--media-root {self.media_root!r} is not a folder")
        if self.api_key is not None and not self.api_key:
            raise ValueError("the API key is empty")


def judge_workers(config: ServiceConfig, backend: object) -> int:
    """How many judge calls run at once (see `ServiceConfig`)."""
    return config.workers or (HTTP_WORKERS if getattr(backend, "queues_requests", False) else 1)
