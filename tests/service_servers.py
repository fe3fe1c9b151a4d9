"""``unifiedreward serve`` as a real subprocess on a free 127.0.0.1 port, and a stand-in judge backend.

`RewardService` runs the CLI exactly as a user would (``python -m unifiedreward.cli serve ...``), so it can
be SIGKILLed and restarted like a crashed GPU node. `StandInBackend` is an OpenAI-compatible stub that the
service reaches through ``--server``: it **stands in for GPU speed only** (a real judge on this 2-core
machine scores a few items a second, far too slow to load the service with thousands of items). It answers
each chat request with ``Final Score: X`` where X is derived from the item's tag in the prompt, so a client
can tell which answer belongs to which item (order, loss and duplication checks); ``delay`` makes it a slow
backend. Parity with a direct ``UnifiedReward`` call is tested against the real toy judge, never this stub.
"""

from __future__ import annotations

import base64
import io
import os
import re
import sys
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from servers import LocalServer, StubServer, chat_response

REPO = Path(__file__).resolve().parent.parent
TAG = re.compile(r"item-(\d+)-(\d+)")
FAIL_MARK = "unscorable"  # a prompt holding this gets an answer without a score: a per-item parse error


class RewardService(LocalServer):
    """``unifiedreward serve ARGS --host 127.0.0.1 --port P`` (the main environment's interpreter)."""

    name = "unifiedreward serve"

    def __init__(self, args: list[str], port: int | None = None, startup_timeout: float = 180.0):
        super().__init__("", port, startup_timeout)
        self.args = list(args)

    def command(self) -> list[str]:
        address = ["--host", "127.0.0.1", "--port", str(self.port)]
        return [sys.executable, "-m", "unifiedreward.cli", "serve", *self.args, *address]

    def env(self) -> dict[str, str]:
        return {**super().env(), "PYTHONPATH": str(REPO)}

    def rss_mb(self) -> float:
        """Resident memory of the server process (and any children), in MiB."""
        process = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def stand_in_score(client: int, index: int) -> float:
    """The score the stand-in backend gives item ``index`` of client ``client``: 400 distinct values
    on the 1-5 scale (two decimals), so a reordered or swapped answer shows."""
    return 1 + ((client * 7919 + index) % 400) / 100


def tag(client: int, index: int) -> str:
    return f"item-{client}-{index}"


class StandInBackend(StubServer):
    """The stand-in judge backend (see the module docstring); ``delay`` seconds per chat request."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.tags: list[str] = []  # the item tag of every chat request judged, in arrival order
        super().__init__(self._answer)

    def duplicates(self) -> int:
        """Items judged more than once (a retried request judges its items again)."""
        return len(self.tags) - len(set(self.tags))

    def _answer(self, path: str, body: dict):
        if not path.endswith("/chat/completions"):
            return 404, {"error": f"no {path} here"}
        if self.delay:
            time.sleep(self.delay)
        text = " ".join(part.get("text", "") for m in body["messages"] for part in _parts(m["content"]))
        found = TAG.search(text)
        if found is not None:
            self.tags.append(found[0])
        if found is None or FAIL_MARK in text:
            return 200, chat_response("The picture is nice.")  # no score in it
        return 200, chat_response(f"Final Score: {stand_in_score(int(found[1]), int(found[2])):.2f}")


def _parts(content) -> list[dict]:
    return [{"text": content}] if isinstance(content, str) else [p for p in content if p.get("type") == "text"]


def png_b64(seed: int, size: int = 32) -> str:
    """A small solid-colour PNG, base64: the media of a load-test item."""
    image = Image.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
