"""Hostile cases for the HTTP client, against a stub server (a real one cannot be made to answer
malformed JSON, hang on model discovery or show the headers it received) and unreachable ports:
malformed answers, the deadline over discovery, API keys, URL credentials, replicas, exit codes."""

from __future__ import annotations

import json
import logging
import math
import time
import tracemalloc
import zlib

import pytest
from PIL import Image

from reward_core.backends.base import BackendRequest
from reward_core.backends.openai_backend import OpenAIBackend, split_urls
from reward_core.model import UnifiedReward
from reward_core.results import Status
from servers import RawAnswer, StubServer, chat_response, free_port, vllm_logprobs_response
from unifiedreward.cli import main as cli_main

FAST_RETRY = {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.1}
POINT = "image_generation.point_score.v1"


def request(text: str = "Rate.", prefix: str | None = None) -> BackendRequest:
    return BackendRequest(media=[], text=text, answer_prefix=prefix)


@pytest.mark.parametrize(
    "body, reason",
    [
        ({**chat_response("Final Score: 5"), "choices": [chat_response("5")["choices"][0]] * 2}, "2 choices"),
        ({"choices": [{"message": {"role": "assistant", "content": [{"type": "text", "text": "5"}]}}]}, "a list"),
        ({"choices": []}, "no choices[0]"),
        ({"object": "error"}, "no choices[0]"),
    ],
)
def test_malformed_generations_are_backend_errors(body, reason):
    """STUB: answers that are not one choice of text are never an ok verdict."""
    with StubServer(lambda path, payload: (200, body)) as stub:
        result = UnifiedReward.from_server(stub.base_url, **FAST_RETRY).score(POINT, Image.new("RGB", (28, 28)), prompt="a")
    assert result.status == Status.BACKEND_ERROR and reason in result.error


@pytest.mark.parametrize("logprob", [math.nan, math.inf, 3.0])
def test_non_finite_logprobs_are_backend_errors(logprob):
    """STUB (vLLM's documented shape, then corrupted): NaN / inf / positive log-probabilities."""
    answer = vllm_logprobs_response({"1": -0.1, "2": -2.5})
    answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"][1]["logprob"] = logprob
    with StubServer(lambda path, payload: (200, json.loads(json.dumps(answer)))) as stub:
        [out] = OpenAIBackend(stub.base_url, logprob_tokens="top").answer_logprobs([request(prefix="Image")], ["1", "2"])
    assert out.logprobs == {} and "invalid log-probabilities" in out.error


def test_empty_logprobs_are_backend_errors():
    answer = vllm_logprobs_response({"1": -0.1})
    answer["choices"][0]["logprobs"]["content"] = []
    with StubServer(lambda path, payload: (200, answer)) as stub:
        [out] = OpenAIBackend(stub.base_url, logprob_tokens="top").answer_logprobs([request(prefix="Image")], ["1", "2"])
    assert "carries no logprobs" in out.error


def test_exact_ids_ignored_by_the_server_is_an_error_not_a_top_k_read():
    """STUB: /tokenize answers ids, but the chat answer lacks them (an older vLLM ignoring logprob_token_ids)."""

    def respond(path, payload):
        if path == "/tokenize":
            return 200, {"tokens": [7, 8] + [ord(c) for c in payload["prompt"][len("Image "):]]}
        return 200, vllm_logprobs_response({"1": -0.1, "2": -2.0})

    with StubServer(respond) as stub:
        [out] = OpenAIBackend(stub.base_url, logprob_tokens="exact").answer_logprobs([request(prefix="Image")], ["1", "2"])
    assert "lacks the log-probabilities of token ids" in out.error
    chat = [b for b in stub.received if "messages" in b][0]
    assert chat["logprob_token_ids"] == [ord("1"), ord("2")] and chat["return_tokens_as_token_ids"] is True


def test_exact_ids_are_read_by_id():
    """STUB in vLLM's ``return_tokens_as_token_ids`` shape: the ids asked for, resolved once per prefix."""

    def respond(path, payload):
        if path == "/tokenize":
            return 200, {"tokens": [7, 8] + [ord(c) for c in payload["prompt"][len("Image "):]]}
        return 200, vllm_logprobs_response({f"token_id:{ord('1')}": -0.2, f"token_id:{ord('2')}": -1.8})

    with StubServer(respond) as stub:
        backend = OpenAIBackend(stub.base_url)  # auto: exact because /tokenize answered
        first = backend.answer_logprobs([request(prefix="Image")] * 3, ["1", "2"])
        backend.answer_logprobs([request(prefix="Image")], ["1", "2"])
    assert all(o.logprobs == {"1": -0.2, "2": -1.8} for o in first)
    assert sum(b.get("prompt") is not None for b in stub.received) == 3  # "Image ", "Image 1", "Image 2", once


def test_deadline_covers_model_discovery_and_the_model_is_cached():
    """STUB: /v1/models hangs; the batch still ends at its deadline. Then discovery runs once only."""
    with StubServer(lambda path, payload: (200, chat_response("ok")), hang_models=True) as stub:
        started = time.monotonic()
        out = OpenAIBackend(stub.base_url, deadline=1.5, **FAST_RETRY).generate([request()] * 2, 4)
        assert time.monotonic() - started < 5
        assert all(o.error and "deadline exceeded" in o.error for o in out)
    with StubServer(lambda path, payload: (200, chat_response("ok"))) as stub:
        backend = OpenAIBackend(stub.base_url, **FAST_RETRY)
        backend.generate([request()], 4)
        backend.generate([request()], 4)
    assert stub.gets.count("/v1/models") == 1 and stub.received[-1]["model"] == "UnifiedReward"


def test_api_key_goes_to_the_server_only_and_is_never_logged(monkeypatch, caplog):
    monkeypatch.setenv("UNIFIEDREWARD_API_KEY", "sk-test-secret-1")
    with StubServer(lambda path, payload: (500, {"error": "boom"})) as stub, caplog.at_level(logging.DEBUG):
        backend = OpenAIBackend(stub.base_url, **FAST_RETRY)
        [out] = backend.generate([request()], 4)
    assert all(h.get("Authorization") == "Bearer sk-test-secret-1" for h in stub.headers)
    assert "sk-test-secret-1" not in out.error + caplog.text + repr(backend)
    with StubServer(lambda path, payload: (200, chat_response("ok"))) as stub:
        OpenAIBackend(stub.base_url, api_key="explicit", **FAST_RETRY).generate([request()], 4)
    assert {h["Authorization"] for h in stub.headers} == {"Bearer explicit"}


def test_url_credentials_never_reach_errors_or_logs(caplog):
    url = f"http://alice:hunter2@127.0.0.1:{free_port()}"
    with caplog.at_level(logging.DEBUG):
        backend = OpenAIBackend(url, **FAST_RETRY)
        [out] = backend.generate([request()], 4)
    assert out.error and "hunter2" not in out.error and "hunter2" not in caplog.text and "hunter2" not in repr(backend)
    assert "***@127.0.0.1" in out.error


def test_replicas_keep_order_share_work_and_drop_a_dead_one(caplog):
    """STUB replicas echo the prompt; a third URL is a closed port: every item answers, in order."""
    echo = lambda path, payload: (200, chat_response(payload["messages"][0]["content"][-1]["text"]))  # noqa: E731
    dead = f"http://127.0.0.1:{free_port()}"
    with StubServer(echo) as a, StubServer(echo) as b, caplog.at_level(logging.WARNING):
        backend = OpenAIBackend(f"{a.base_url},{dead}", **FAST_RETRY)
        backend.base_urls.append(b.base_url)  # a list works too: see split_urls
        out = backend.generate([request(f"item {i}") for i in range(40)], 4)
    assert [o.text for o in out] == [f"item {i}" for i in range(40)]
    assert len(a.received) > 5 and len(b.received) > 5
    assert "taken out" in caplog.text
    assert split_urls(["http://x:1/v1/", "http://y:2, http://z:3"]) == ["http://x:1", "http://y:2", "http://z:3"]


def test_cli_run_where_every_item_failed_exits_non_zero(tmp_path, capsys):
    Image.new("RGB", (28, 28)).save(tmp_path / "a.png")
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": str(i), "media": ["a.png"], "fields": {"prompt": "p"}}) + "\n" for i in range(3)))
    url = f"http://127.0.0.1:{free_port()}"
    code = cli_main(["score", "--server", url, "--template", POINT, "--input", str(items), "--output", str(tmp_path / "o")])
    assert code == 1
    assert "backend_error 3" in capsys.readouterr().err


def test_api_key_echoed_by_the_server_is_scrubbed_everywhere(caplog):
    """STUB: a server that quotes the bearer token back in every answer (error bodies, a malformed 200,
    a 401). The key never reaches a result, an error or a log line; ``***`` stands in for it."""
    key = "sk-echo-secret-7"

    def echo(status):
        def respond(path, payload):
            quoted = stub.headers[-1].get("Authorization", "")
            return (200, {"choices": [], "echo": quoted}) if status == 200 else (status, {"error": f"bad {quoted}"})

        return respond

    for status in (500, 401, 200):
        with StubServer(echo(status)) as stub, caplog.at_level(logging.DEBUG):
            judge = UnifiedReward.from_server(stub.base_url, api_key=key, **FAST_RETRY)
            result = judge.score(POINT, Image.new("RGB", (28, 28)), prompt="a")
            [logit] = OpenAIBackend(stub.base_url, api_key=key, **FAST_RETRY).answer_logprobs([request(prefix="Image")], ["1", "2"])
        assert result.status == Status.BACKEND_ERROR and "Bearer ***" in result.error, (status, result.error)
        assert key not in result.error + str(result.to_dict()) + logit.error + caplog.text, status
    assert "Bearer ***" in caplog.text  # the retries' log lines quote the body, scrubbed


def test_gzip_bomb_is_refused_with_bounded_memory():
    """STUB: a 200 answer of ~1 MB gzip that decodes to 1 GiB of JSON blanks. The client stops at
    ``max_response_bytes`` (16 MiB) of decoded bytes: bounded memory, a clear per-item error."""
    mib = b" " * 2**20

    def bomb():
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip stream
        for _ in range(1024):
            yield packer.compress(mib)
        yield packer.compress(json.dumps(chat_response("ok")).encode()) + packer.flush()

    with StubServer(lambda path, payload: RawAnswer(200, bomb(), {"Content-Encoding": "gzip"})) as stub:  # ends at close
        backend = OpenAIBackend(stub.base_url, model="m", **FAST_RETRY)
        tracemalloc.start()
        try:
            [out] = backend.generate([request()], 4)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert out.text is None and "larger than 16777216 bytes" in out.error, out
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert len(stub.received) == 1  # refused at once, not retried


def test_duplicate_logprob_entries_are_refused():
    """STUB (vLLM's documented shape, then corrupted): a token listed twice would double its probability."""
    answer = vllm_logprobs_response({"1": math.log(0.5), "2": math.log(0.3)})
    top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    top.append(dict(top[0]))
    with StubServer(lambda path, payload: (200, answer)) as stub:
        [out] = OpenAIBackend(stub.base_url, logprob_tokens="top").answer_logprobs([request(prefix="Image")], ["1", "2"])
    assert out.logprobs == {} and "lists token '1' twice" in out.error, out

    def by_id(path, payload):  # exact mode: "token_id:49" listed twice, the last one would win
        if path == "/tokenize":
            return 200, {"tokens": [7, 8] + [ord(c) for c in payload["prompt"][len("Image "):]]}
        ids = vllm_logprobs_response({f"token_id:{ord('1')}": -0.2, f"token_id:{ord('2')}": -1.8})
        ids["choices"][0]["logprobs"]["content"][0]["top_logprobs"].append({"token": f"token_id:{ord('1')}", "logprob": -0.01})
        return 200, ids

    with StubServer(by_id) as stub:
        [out] = OpenAIBackend(stub.base_url, logprob_tokens="exact").answer_logprobs([request(prefix="Image")], ["1", "2"])
    assert out.logprobs == {} and f"lists token 'token_id:{ord('1')}' twice" in out.error, out


def test_lossy_token_texts_may_repeat():
    """STUB in vLLM's shape: distinct byte tokens that each decode to U+FFFD share that text in a real
    vLLM top-20; they are not duplicates, and the answer stays usable."""
    answer = vllm_logprobs_response({"1": math.log(0.5), "2": math.log(0.3), "\ufffd": math.log(0.01)})
    top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    top.append({**top[2], "logprob": math.log(0.02)})
    with StubServer(lambda path, payload: (200, answer)) as stub:
        [out] = OpenAIBackend(stub.base_url, logprob_tokens="top").answer_logprobs([request(prefix="Image")], ["1", "2"])
    assert out.error is None and out.logprobs["1"] == pytest.approx(math.log(0.5))
