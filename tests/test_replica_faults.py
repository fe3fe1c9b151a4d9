"""Replicas under faults a killed process does not show (issue 25), against real sockets on 127.0.0.1:
STUB replicas (a real server cannot be made to black-hole, answer 404 for its own model or report another
checkpoint on demand) that accept and never answer, answer 404/401, are slow, or serve another model.
The network-namespace lab (partitions, loss, SIGSTOP) is not here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time

from PIL import Image

from reward_core.backends.base import BackendRequest
from reward_core.backends.http_client import Replicas, probing
from reward_core.backends.openai_backend import OpenAIBackend
from reward_core.model import UnifiedReward
from servers import StubServer, chat_response, vllm_logprobs_response

os.environ.setdefault("OMP_NUM_THREADS", "1")

FAST_RETRY = {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.1}
POINT = "image_generation.point_score.v1"
NOT_FOUND = (404, {"object": "error", "message": "The model `UnifiedReward` does not exist.", "code": 404})


def echo(path, payload):
    return 200, chat_response(payload["messages"][0]["content"][-1]["text"])


def slow_echo(path, payload):  # 50 ms an answer: a batch outlasts several timeouts and probes
    time.sleep(0.05)
    return echo(path, payload)


def black_hole(path, payload):
    return None


def requests(count: int) -> list[BackendRequest]:
    return [BackendRequest(media=[], text=f"item {i}") for i in range(count)]


def texts(out) -> list:
    return [o.text for o in out]


def test_black_holed_replica_is_taken_out_and_retries_go_elsewhere(caplog):
    """A replica that accepts and never answers: its timeouts open its breaker, each timed-out item is retried
    on the healthy replica, and it never gets more than its first requests."""
    with StubServer(black_hole) as hole, StubServer(slow_echo) as good, caplog.at_level(logging.WARNING):
        backend = OpenAIBackend([hole.base_url, good.base_url], model="m", concurrency=4, timeout=0.5, deadline=30, **FAST_RETRY)
        started = time.monotonic()
        out = backend.generate(requests(120), max_new_tokens=4)
        elapsed = time.monotonic() - started
    failed = [o.error for o in out if o.error]
    logging.getLogger(__name__).warning("black hole: %d ok, %d failed, %.1fs, load %d/%d", 120 - len(failed), len(failed),
                                        elapsed, len(hole.received), len(good.received))  # fmt: skip
    assert texts(out) == [f"item {i}" for i in range(120)], failed[:2]
    assert len(hole.received) <= 4, len(hole.received)  # one wave of `concurrency`, then out
    assert "taken out" in caplog.text and "timed out" in caplog.text


@contextlib.contextmanager
def connect_black_hole():
    """A listening socket that never accepts, its accept queue filled: new connects get no SYN-ACK (the kernel
    drops their SYNs), as with a powered-off host; the client sees ``ConnectTimeout``."""
    with socket.socket() as listener, contextlib.ExitStack() as fillers:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(3):
            filler = fillers.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
        time.sleep(0.1)
        yield "http://127.0.0.1:%d" % listener.getsockname()[1]


def test_connect_timeouts_and_black_holes_open_the_circuit():
    """Every replica silent (one never completes the TCP handshake, one never answers): the circuit opens
    and the rest of the batch fails at once, long before the deadline."""
    with connect_black_hole() as unreachable, StubServer(black_hole) as hole:
        backend = OpenAIBackend([unreachable, hole.base_url], model="m", concurrency=4, timeout=0.5, deadline=20,
                                **FAST_RETRY)  # fmt: skip
        started = time.monotonic()
        out = backend.generate(requests(40), max_new_tokens=4)
        elapsed = time.monotonic() - started
    assert all(o.text is None for o in out)
    assert sum(o.error.startswith("circuit open") for o in out) >= 30, [o.error for o in out][-1]
    assert elapsed < 4, elapsed


def test_retry_never_goes_straight_back_to_the_replica_that_timed_out():
    """One request at a time: the item that timed out on the black hole is retried on the other replica."""
    with StubServer(black_hole) as hole, StubServer(echo) as good:
        backend = OpenAIBackend([hole.base_url, good.base_url], model="m", concurrency=1, timeout=0.5, deadline=30,
                                breaker_threshold=None, **FAST_RETRY)  # fmt: skip
        out = backend.generate(requests(6), max_new_tokens=4)
    assert texts(out) == [f"item {i}" for i in range(6)], [o.error for o in out]
    assert len(hole.received) == 1  # then least-in-flight prefers the replica that answers


def test_wrong_server_404_and_401_take_the_replica_out_and_items_go_elsewhere(caplog):
    """A replica restarted under another served name (404 for the model) and one without the key (401)."""
    with (
        StubServer(lambda path, payload: NOT_FOUND) as renamed,
        StubServer(lambda path, payload: (401, {"error": "invalid API key"})) as locked,
        StubServer(echo) as good,
        caplog.at_level(logging.WARNING),
    ):
        urls = [renamed.base_url, locked.base_url, good.base_url]
        out = OpenAIBackend(urls, model="UnifiedReward", concurrency=4, **FAST_RETRY).generate(requests(60), 4)
    assert texts(out) == [f"item {i}" for i in range(60)], [o.error for o in out if o.error][:2]
    assert len(renamed.received) <= 4 and len(locked.received) <= 4
    assert "wrong server" in caplog.text and "HTTP 404" in caplog.text and "HTTP 401" in caplog.text


def test_single_server_404_still_fails_the_item_with_the_answer():
    with StubServer(lambda path, payload: NOT_FOUND) as stub:
        out = OpenAIBackend(stub.base_url, model="UnifiedReward", **FAST_RETRY).generate(requests(2), 4)
    assert all(o.error.startswith("HTTP 404: ") and "does not exist" in o.error for o in out)


def tokenize_then(answer):
    """A vLLM-shaped replica: /tokenize gives one id per character after "Image ", chat gives `answer`."""

    def respond(path, payload):
        if path == "/tokenize":
            return 200, {"tokens": [7, 8] + [ord(c) for c in payload["prompt"][len("Image "):]]}
        return answer(path, payload)

    return respond


EXACT = vllm_logprobs_response({f"token_id:{ord('1')}": -0.2, f"token_id:{ord('2')}": -1.8})


def test_token_ids_are_resolved_on_another_replica_when_one_black_holes():
    """Every batch's first /tokenize used to go to the same replica: with it black-holed, every item failed."""
    with StubServer(black_hole) as hole, StubServer(tokenize_then(lambda p, b: (200, EXACT))) as good:
        backend = OpenAIBackend([hole.base_url, good.base_url], model="m", timeout=0.5, deadline=30,
                                logprob_tokens="exact", **FAST_RETRY)  # fmt: skip
        out = backend.answer_logprobs([BackendRequest(media=[], text="Rate.", answer_prefix="Image")] * 8, ["1", "2"])
    assert all(o.logprobs == {"1": -0.2, "2": -1.8} for o in out), [o.error for o in out]


def test_token_id_failure_is_not_cached_and_a_fixed_replica_recovers():
    """/tokenize answers 404 for the model once (a renamed replica); the next call resolves the ids again."""
    broken = {"now": True}

    def respond(path, payload):
        if path == "/tokenize" and broken["now"]:
            return NOT_FOUND
        return tokenize_then(lambda p, b: (200, EXACT))(path, payload)

    prefixed = [BackendRequest(media=[], text="Rate.", answer_prefix="Image")]
    with StubServer(respond) as stub:
        backend = OpenAIBackend(stub.base_url, model="UnifiedReward", **FAST_RETRY)  # logprob_tokens="auto"
        backend.answer_logprobs(prefixed, ["1", "2"])
        broken["now"] = False
        [out] = backend.answer_logprobs(prefixed, ["1", "2"])
    assert out.logprobs == {"1": -0.2, "2": -1.8}, out.error
    assert "logprob_token_ids" in stub.received[-1]


def test_unknown_model_is_not_reported_as_logit_mode_unsupported():
    with StubServer(lambda path, payload: NOT_FOUND) as stub:
        backend = OpenAIBackend(stub.base_url, model="UnifiedReward", logprob_tokens="top", **FAST_RETRY)
        [out] = backend.answer_logprobs([BackendRequest(media=[], text="Rate.", answer_prefix="Image")], ["1", "2"])
    assert "HTTP 404" in out.error and "not supported" not in out.error, out.error


def test_one_deadline_per_judge_batch_call_and_chunks_pipelined():
    """Three 8-item chunks, each with one item that never gets an answer: the call ends at its one
    deadline (not one deadline per chunk), and the healthy items of later chunks do not wait for the stuck one."""

    def respond(path, payload):
        return None if "hang" in str(payload["messages"]) else (200, chat_response("Final Score: 4"))

    items = [{"media": [Image.new("RGB", (28, 28))], "fields": {"prompt": "hang" if i % 8 == 0 else f"p{i}"}} for i in range(24)]
    with StubServer(respond) as stub:
        backend = OpenAIBackend(stub.base_url, model="m", concurrency=4, timeout=30, deadline=2.0, **FAST_RETRY)
        judge = UnifiedReward(backend, batch_size=8, chunk_size=8)
        started = time.monotonic()
        results = judge.judge_batch(POINT, items)
        elapsed = time.monotonic() - started
    failed = [i for i, r in enumerate(results) if r.error]
    logging.getLogger(__name__).warning("deadline 2s: %d ok, %d failed, %.1fs", 24 - len(failed), len(failed), elapsed)
    assert failed == [0, 8, 16]
    assert all("deadline exceeded (2s)" in results[i].error for i in failed)
    assert elapsed < 2.0 + 1.0, elapsed


def test_discovery_in_parallel_bounded_and_a_replica_of_another_checkpoint_is_taken_out(caplog):
    """Replica 1 never answers /v1/models; replica 3 serves another checkpoint under the same name."""
    same = {"root": "/ckpt/UnifiedReward-qwen-7b", "max_model_len": 4096}
    other = {"root": "/ckpt/UnifiedReward-qwen-3b", "max_model_len": 4096}
    with (
        StubServer(echo, hang_models=True, model_info=same) as silent,
        StubServer(echo, model_info=same) as good,
        StubServer(echo, model_info=other) as impostor,
        caplog.at_level(logging.WARNING),
    ):
        backend = OpenAIBackend([silent.base_url, good.base_url, impostor.base_url], timeout=30, deadline=60, **FAST_RETRY)
        started = time.monotonic()
        out = backend.generate(requests(30), max_new_tokens=4)
        elapsed = time.monotonic() - started
    assert texts(out) == [f"item {i}" for i in range(30)]
    assert not impostor.received and "another judge" in caplog.text and "UnifiedReward-qwen-3b" in caplog.text
    assert elapsed < 8, elapsed  # not the 30 s attempt timeout


def executions(*stubs: StubServer) -> dict[str, int]:
    """How many times each item's request reached the servers (all replicas together)."""
    counts: dict[str, int] = {}
    for stub in stubs:
        for body in stub.received:
            text = body["messages"][0]["content"][-1]["text"]
            counts[text] = counts.get(text, 0) + 1
    return counts


def test_a_request_that_timed_out_is_not_run_again_on_a_replica_that_answers_others():
    """Issue 25 point 6: a request slower than `timeout` (both replicas answer everything else at once) was sent
    up to `max_attempts` times, each one executed in full by a server. Now once per replica, then it fails."""

    def respond(path, payload):
        text = payload["messages"][0]["content"][-1]["text"]
        time.sleep(0.8 if "slow" in text else 0.05)
        return 200, chat_response(text)

    batch = [BackendRequest(media=[], text=f"slow {i}" if i % 30 == 0 else f"item {i}") for i in range(120)]
    with StubServer(respond) as first, StubServer(respond) as second:
        backend = OpenAIBackend([first.base_url, second.base_url], model="m", concurrency=4, timeout=0.5, deadline=8,
                                max_attempts=10, backoff_base=0.05, backoff_max=0.1)  # fmt: skip
        started = time.monotonic()
        out = backend.generate(batch, max_new_tokens=4)
        elapsed = time.monotonic() - started
        counts = executions(first, second)
    slow = {text: n for text, n in counts.items() if "slow" in text}
    logging.getLogger(__name__).warning("executions per slow request: %s, %.1fs", sorted(slow.values()), elapsed)
    assert [o.text for o in out if o.text] == [r.text for r in batch if "slow" not in r.text]
    assert all("timed out" in o.error and "not sent again" in o.error for o, r in zip(out, batch) if "slow" in r.text)
    assert max(slow.values()) <= 2, slow  # once per replica
    assert max(counts.values()) <= 2  # a fast one too, should a busy machine make it time out once


PROBES = {"discovery_timeout": 0.3, "probe_interval": 0.2}


def later(seconds: float, action) -> dict[str, float]:
    """Run `action` in `seconds` on a timer thread; the returned dict gets its end time (monotonic) as "at"."""
    done: dict[str, float] = {}

    def run():
        action()
        done["at"] = time.monotonic()

    threading.Timer(seconds, run).start()
    return done


def test_health_probes_hold_out_a_frozen_replica_before_it_gets_items_and_bring_it_back_when_thawed(caplog):
    """A replica frozen from the start (every request, /health included, hangs; SIGSTOP-like) gets no item
    while frozen: the call's first probe (discovery) holds it out; the background probe brings it back once
    thawed, without an item having to find it first."""
    with StubServer(slow_echo) as frozen, StubServer(slow_echo) as good, caplog.at_level(logging.INFO):
        frozen.freeze()
        thawed = later(1.0, frozen.thaw)
        backend = OpenAIBackend([frozen.base_url, good.base_url], model="m", concurrency=4, timeout=2, deadline=30,
                                **PROBES, **FAST_RETRY)  # fmt: skip
        started = time.monotonic()
        out = backend.generate(requests(120), max_new_tokens=4)
        elapsed = time.monotonic() - started
    early = [t for t in frozen.arrivals if t < thawed["at"]]
    logging.getLogger(__name__).warning("frozen then thawed: %d items before the thaw, %d after, %.1fs", len(early),
                                        len(frozen.arrivals) - len(early), elapsed)  # fmt: skip
    assert texts(out) == [f"item {i}" for i in range(120)], [o.error for o in out if o.error][:2]
    assert not early  # no item sent to it while frozen
    assert len(frozen.arrivals) >= 5  # back in, and carrying load
    assert "health probe" in caplog.text and "back in" in caplog.text


def test_a_replica_restarted_as_another_judge_is_held_out_before_it_answers_items(caplog):
    """A replica goes silent for 1.5 s and comes back serving another checkpoint under the same name (its
    /v1/models root changed): the probe re-reads /v1/models and keeps it out with the reason."""
    same = {"root": "/ckpt/UnifiedReward-qwen-7b", "max_model_len": 4096}
    with StubServer(slow_echo, model_info=same) as moved, StubServer(slow_echo, model_info=same) as good:

        def restart_on_another_checkpoint():
            moved.freeze()
            time.sleep(1.5)
            moved.model_info["root"] = "/ckpt/UnifiedReward-qwen-3b"
            moved.thaw()

        restarted = later(0.5, restart_on_another_checkpoint)
        backend = OpenAIBackend([moved.base_url, good.base_url], concurrency=4, timeout=2, deadline=30, **PROBES,
                                **FAST_RETRY)  # fmt: skip
        with caplog.at_level(logging.WARNING):
            out = backend.generate(requests(240), max_new_tokens=4)
    judged_by_other = [t for t in moved.arrivals if t >= restarted["at"]]
    logging.getLogger(__name__).warning("restarted as another judge: %d items sent to it after", len(judged_by_other))
    assert texts(out) == [f"item {i}" for i in range(240)], [o.error for o in out if o.error][:2]
    assert moved.arrivals and not judged_by_other
    assert "another judge" in caplog.text and "UnifiedReward-qwen-3b" in caplog.text


def test_a_silent_replica_stays_out_across_calls_until_a_probe_passes():
    """Issue 25 (the GRPO run): health was per call, so every call read the black-holed replica's /v1/models and
    sent it its first requests, each call waiting ~2 timeouts. Now the call in which it goes silent takes it out
    after its first timeout; later calls neither ask it nor wait for it; once thawed, a probe brings it back."""
    with StubServer(echo) as hole, StubServer(echo) as good:
        backend = OpenAIBackend([hole.base_url, good.base_url], model="m", concurrency=4, timeout=0.5, deadline=30,
                                probe_interval=0.2, **FAST_RETRY)  # fmt: skip
        assert texts(backend.generate(requests(8), 4)) == [f"item {i}" for i in range(8)]

        def go_silent(path, payload):  # from its first request on, /v1/models included (as in the GRPO test)
            hole.hang_models = True

        hole.respond, before = go_silent, len(hole.received)
        times = []
        for _ in range(5):
            started = time.monotonic()
            out = backend.generate(requests(8), 4)
            times.append(time.monotonic() - started)
            assert texts(out) == [f"item {i}" for i in range(8)], [o.error for o in out if o.error]
        logging.getLogger(__name__).warning("calls after the black hole: %s s", [round(t, 2) for t in times])
        assert times[0] < 0.5 + 0.4 and max(times[1:]) < 0.4, times  # one timeout (0.5 s), then none
        assert len(hole.received) - before <= 2  # its share of the first wave only
        hole.respond, hole.hang_models, before = slow_echo, False, len(hole.received)
        time.sleep(0.3)  # a probe falls due: it runs as the next call starts
        assert texts(backend.generate(requests(40), 4)) == [f"item {i}" for i in range(40)]
    assert len(hole.received) > before  # back in


def test_a_call_that_starts_with_every_replica_out_tries_them_again():
    """Health lasts across calls, but a server that was taken out and is back (restarted) must not wait out
    `revive_after` while no call runs: a call that finds every replica out tries them all again."""
    with StubServer(black_hole) as stub:
        backend = OpenAIBackend(stub.base_url, model="m", concurrency=1, timeout=0.3, deadline=30, **FAST_RETRY)
        [down] = backend.generate(requests(1), 4)
        stub.respond = echo
        [up] = backend.generate(requests(1), 4)
    assert down.error and "timed out" in down.error
    assert up.text == "item 0", up.error


def test_probing_ends_even_when_a_probe_swallows_its_cancellation():
    """A CI run hung here forever: Python 3.11's ``asyncio.wait_for`` (inside each health probe) can swallow a
    cancellation that lands as its answer arrives, and the probe loop, cancelled once at the end of the call, then
    probed on and the call never returned. The probe below swallows every cancellation, as that race does."""

    async def swallowing_probe(replica):
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.02)

    async def call():
        async with probing(Replicas(["http://a", "http://b"]), swallowing_probe, interval=0.001):
            await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(call()), daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "the call did not return: the probes outlived it"
