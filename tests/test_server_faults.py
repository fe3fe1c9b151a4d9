"""Faults: a real ``transformers serve`` killed mid-batch and restarted; an unreachable port; and, with a
stub server (only because a real one cannot be made to do it on demand), HTTP 500/429/400 and hanging."""

from __future__ import annotations

import json
import os
import threading
import time
from email.utils import formatdate

from PIL import Image

from reward_core.backends.base import BackendRequest
from reward_core.backends.openai_backend import OpenAIBackend
from servers import RawAnswer, StubServer, chat_response, free_port

os.environ.setdefault("OMP_NUM_THREADS", "1")

FAST_RETRY = {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.1}


def requests(count: int, text: str = "Describe image {i} in detail.") -> list[BackendRequest]:
    return [BackendRequest(media=[Image.new("RGB", (56, 56), (40 * i % 255, 90, 160))], text=text.format(i=i)) for i in range(count)]


def test_unreachable_server_fails_every_item_with_the_reason():
    url = f"http://127.0.0.1:{free_port()}"
    out = OpenAIBackend(url, model="m", breaker_threshold=None, **FAST_RETRY).generate(requests(3), max_new_tokens=4)
    for item in out:
        assert item.text is None
        assert item.error.startswith(f"server unreachable at {url}/v1/chat/completions after 3 attempts")


def test_dead_server_opens_the_circuit_and_the_rest_fail_at_once():
    """Three connection failures in a row take the only replica out; the 200 queued items fail at once."""
    url = f"http://127.0.0.1:{free_port()}"
    slow_retry = {"max_attempts": 10, "backoff_base": 1.0, "backoff_max": 5.0}  # ~30 s per item without the breaker
    started = time.monotonic()
    out = OpenAIBackend(url, model="m", concurrency=2, **slow_retry).generate(requests(200), max_new_tokens=4)
    assert time.monotonic() - started < 10
    assert all(item.text is None and item.error.startswith("circuit open: server unreachable") for item in out)
    assert f"{url}: 3 consecutive connection failures" in out[-1].error


def test_http_500_is_retried_then_reported():
    """STUB: a server that always answers 500."""
    with StubServer(lambda path, body: (500, {"error": "CUDA error: device-side assert"})) as stub:
        out = OpenAIBackend(stub.base_url, **FAST_RETRY).generate(requests(2), max_new_tokens=4)
    assert len(stub.received) == 2 * 3  # every attempt reached the server
    for item in out:
        assert item.text is None and item.error.startswith("HTTP 500: ") and "device-side assert" in item.error
        assert "after 3 attempts" in item.error


def test_transient_429_and_503_recover():
    """STUB: the first two answers are 429 then 503, then the server recovers."""
    answers = iter([(429, {"error": "rate limited"}), (503, {"error": "loading"})])
    with StubServer(lambda path, body: next(answers, (200, chat_response("Image 2 is better.")))) as stub:
        [out] = OpenAIBackend(stub.base_url, **FAST_RETRY).generate(requests(1), max_new_tokens=4)
    assert out.text == "Image 2 is better." and len(stub.received) == 3


def test_client_errors_are_not_retried():
    """STUB: a 400 (bad request) fails at once."""
    with StubServer(lambda path, body: (400, {"message": "too many images"})) as stub:
        [out] = OpenAIBackend(stub.base_url, **FAST_RETRY).generate(requests(1), max_new_tokens=4)
    assert out.error.startswith("HTTP 400: ") and "too many images" in out.error and len(stub.received) == 1


def test_hanging_server_hits_the_deadline_and_others_survive():
    """STUB: requests whose prompt says "hang" never get an answer."""

    def respond(path, body):
        return None if "hang" in body["messages"][0]["content"][-1]["text"] else (200, chat_response("ok"))

    batch = requests(2) + requests(1, text="please hang {i}") + requests(1)
    with StubServer(respond) as stub:
        backend = OpenAIBackend(stub.base_url, timeout=30, deadline=1.5, **FAST_RETRY)
        started = time.monotonic()
        out = backend.generate(batch, max_new_tokens=4)
        elapsed = time.monotonic() - started
    assert elapsed < 5
    assert [o.text for o in out] == ["ok", "ok", None, "ok"]
    assert out[2].error.startswith("deadline exceeded (1.5s)")


def test_per_attempt_timeout_is_retried():
    """STUB: the hanging server again, now with a short per-attempt timeout and no overall deadline."""
    with StubServer(lambda path, body: None) as stub:
        [out] = OpenAIBackend(stub.base_url, timeout=0.3, deadline=None, **FAST_RETRY).generate(requests(1), 4)
    assert "after 3 attempts" in out.error and "timed out" in out.error and len(stub.received) == 3


def test_server_killed_mid_batch_then_restarted(toy_server):
    """REAL server: SIGKILL while a batch is in flight; items fail with a reason within the deadline,
    and after a restart the same batch completes."""
    batch = requests(48)  # long enough (seconds even on an idle machine) for the kill to land mid-batch
    backend = OpenAIBackend(toy_server.base_url, concurrency=2, timeout=30, deadline=20, **FAST_RETRY)
    baseline = backend.generate(batch[:1], max_new_tokens=24)
    assert baseline[0].error is None

    killer = threading.Timer(0.3, toy_server.kill)
    started = time.monotonic()
    killer.start()
    try:
        out = backend.generate(batch, max_new_tokens=24)
    finally:
        killer.join()
    assert time.monotonic() - started < 20 + 2
    failed = [o for o in out if o.error is not None]
    assert failed, "the kill landed after the batch finished; make the batch longer"
    for item in failed:
        assert item.text is None
        assert "server unreachable" in item.error or "deadline exceeded" in item.error
    assert all(o.text is not None for o in out if o.error is None)

    toy_server.start()
    backend.deadline = 300  # the 20 s bound is for the failing batch; 48 answers take longer on a busy machine
    rerun = backend.generate(batch, max_new_tokens=24)
    assert all(o.error is None for o in rerun), [o.error for o in rerun if o.error][:3]
    assert rerun[0].text == baseline[0].text


def test_trickling_server_attempt_ends_at_its_timeout():
    """STUB: the answer arrives one byte every 0.2 s (25 s in all), so no single read ever waits 2 s;
    ``timeout`` bounds the whole attempt, body included."""
    data = json.dumps(chat_response("ok")).encode().rjust(125)  # leading blanks: still valid JSON

    def trickle():
        for i in range(len(data)):
            time.sleep(0.2)
            yield data[i : i + 1]

    with StubServer(lambda path, body: RawAnswer(200, trickle(), {"Content-Length": str(len(data))})) as stub:
        started = time.monotonic()
        [out] = OpenAIBackend(stub.base_url, timeout=2, deadline=None, max_attempts=1).generate(requests(1), 4)
        elapsed = time.monotonic() - started
    assert elapsed < 3.5, f"a timeout=2 attempt lasted {elapsed:.1f}s"
    assert out.text is None and "timed out" in out.error and "2s" in out.error


def test_retry_after_is_honoured_in_seconds_and_as_a_date():
    """STUB: 429 "Retry-After: 1", then 503 with an HTTP date 2 s ahead, then an answer. The fast
    backoff alone would retry within 0.1 s."""
    answers = iter([
        lambda: (429, {"error": "rate limited"}, {"Retry-After": "1"}),
        lambda: (503, {"error": "loading"}, {"Retry-After": formatdate(time.time() + 2, usegmt=True)}),
    ])  # fmt: skip
    with StubServer(lambda path, body: next(answers, lambda: (200, chat_response("ok")))()) as stub:
        [out] = OpenAIBackend(stub.base_url, model="m", **FAST_RETRY).generate(requests(1), max_new_tokens=4)
    assert out.text == "ok"
    first, second = (b - a for a, b in zip(stub.arrivals, stub.arrivals[1:]))
    assert 1.0 <= first < 1.6, first
    assert 1.0 <= second < 2.6, second  # an HTTP date has whole seconds


def test_retry_after_is_capped():
    """STUB: a 429 asking for an hour waits ``retry_after_max`` (1 s here), then retries."""
    answers = iter([(429, {"error": "rate limited"}, {"Retry-After": "3600"})])
    with StubServer(lambda path, body: next(answers, (200, chat_response("ok")))) as stub:
        backend = OpenAIBackend(stub.base_url, model="m", retry_after_max=1.0, **FAST_RETRY)
        [out] = backend.generate(requests(1), max_new_tokens=4)
    assert out.text == "ok" and 1.0 <= stub.arrivals[1] - stub.arrivals[0] < 1.6
