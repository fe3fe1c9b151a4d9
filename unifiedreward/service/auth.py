"""``--api-key``: every route but ``/health`` needs ``Authorization: Bearer KEY`` (compared in constant time)."""

from __future__ import annotations

import hmac

from fastapi import Request

from unifiedreward.service.state import ServiceError, state_of


def require_key(request: Request) -> None:
    """A FastAPI dependency: 401 unless the request carries the service's bearer key (no key set: open)."""
    key = state_of(request).config.api_key
    if key is None:
        return
    sent = request.headers.get("authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {key}".encode()):
        message = "missing or wrong API key: send 'Authorization: Bearer KEY'"
        raise ServiceError(401, message, {"WWW-Authenticate": "Bearer"})
