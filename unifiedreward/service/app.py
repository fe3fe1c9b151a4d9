"""`create_app(judge, config)`: the FastAPI app: the protocol routers over one batcher, ``/health``, ``/metrics``,
the bearer key, and each request counted and timed."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from reward_core.model import UnifiedReward
from unifiedreward.service import api, openrlhf_protocol, scorer_protocol
from unifiedreward.service.auth import require_key
from unifiedreward.service.batcher import Batcher
from unifiedreward.service.config import ServiceConfig, judge_workers
from unifiedreward.service.metrics import ServiceMetrics
from unifiedreward.service.state import ServiceError, ServiceState, state_of

logger = logging.getLogger(__name__)


def create_app(judge: UnifiedReward, config: ServiceConfig) -> FastAPI:
    """The reward service over ``judge``; its batcher runs while the app's lifespan does."""
    metrics = ServiceMetrics()
    batcher = Batcher(
        judge, max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000, max_queue=config.max_queue,
        workers=judge_workers(config, judge.backend), metrics=metrics,
    )  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="UnifiedReward service", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = ServiceState(judge, config, batcher, metrics)
    for module in (api, scorer_protocol, openrlhf_protocol):
        app.include_router(module.router, dependencies=[Depends(require_key)])

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, error: ServiceError) -> JSONResponse:
        return JSONResponse({"error": error.message}, error.status, error.headers)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        started = time.monotonic()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.monotonic() - started)
        return response

    @app.get("/health")
    async def health(request: Request) -> dict:
        """Open without the key: whether the judge workers run, the model, the backend and the queue."""
        state = state_of(request)
        return {
            "ok": batcher.alive,
            "model": state.config.model_name,
            "backend": type(state.judge.backend).__name__,
            "checkpoint": state.judge.checkpoint.hub_id if state.judge.checkpoint is not None else None,
            "mode": state.config.mode,
            "workers": batcher.workers,
            "queue_depth": batcher.queued,
            "running": batcher.running,
        }

    @app.get("/metrics", dependencies=[Depends(require_key)])
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app
