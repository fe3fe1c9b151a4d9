"""Test servers: real ``transformers serve`` and vLLM (its CPU build, in ``.venv-vllm``) processes on
free 127.0.0.1 ports, and a tiny stub.

The stub is only for behaviour a real local server cannot show on demand (HTTP 500s, hanging,
malformed answers); everything else is tested against ``transformers serve`` or vLLM.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def transformers_cli() -> str:
    """The ``transformers`` console script of the running interpreter's environment."""
    script = Path(sys.executable).with_name("transformers")
    return str(script) if script.exists() else shutil.which("transformers") or "transformers"


class LocalServer:
    """A server process on a free 127.0.0.1 port, ready when ``/health`` answers 200; killed by PID."""

    name = "server"

    def __init__(self, model_path: str | os.PathLike, port: int | None = None, startup_timeout: float = 120.0):
        self.model_path = str(model_path)
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._home = tempfile.mkdtemp(prefix="ur-serve-home-")
        Path(self._home, "hub").mkdir()
        self._log = Path(self._home) / "server.log"
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HF_HOME": self._home,  # /v1/models scans this (empty) cache, not the user's
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }

    def start(self):
        with open(self._log, "ab") as log:  # start_new_session: kill() reaches the engine's children too
            self.process = subprocess.Popen(
                self.command(), env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self) -> None:
        """Poll ``/health`` until it answers 200; fail with the server log if it exits or times out."""
        stop_at = time.monotonic() + self.startup_timeout
        while time.monotonic() < stop_at:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during startup:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {self.startup_timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the server's process group (its PID and the engine processes it started), like a crash."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None:  # engine workers left in the group after the leader exited
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def log_tail(self, chars: int = 3000) -> str:
        return self._log.read_text(errors="replace")[-chars:] if self._log.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._home, ignore_errors=True)


class TransformersServer(LocalServer):
    """``transformers serve MODEL`` (model pinned, CPU, float32) that can be killed and restarted."""

    name = "transformers serve"

    def command(self) -> list[str]:
        return [
            transformers_cli(), "serve", self.model_path, "--host", "127.0.0.1", "--port", str(self.port),
            "--device", "cpu", "--dtype", "float32", "--log-level", "warning",
        ]  # fmt: skip


VLLM_VENV = Path(__file__).resolve().parent.parent / ".venv-vllm"
# What vLLM's CPU build needs here on top of `unifiedreward serve-cmd`'s flags (docs/serving.md).
VLLM_CPU_FLAGS = ["--dtype", "float32", "--enforce-eager", "--max-num-seqs", "4"]


def vllm_python() -> Path | None:
    """The ``.venv-vllm`` interpreter (``make venv-vllm``), or ``None`` when that environment is missing."""
    python = VLLM_VENV / "bin" / "python"
    return python if python.exists() else None


def require_vllm() -> Path:
    """The vLLM interpreter; skips without it, except when ``UNIFIEDREWARD_REQUIRE_VLLM=1`` (``make test``, CI)."""
    python = vllm_python()
    if python is None:
        message = f"{VLLM_VENV} is missing: run `make venv-vllm`"
        if os.environ.get("UNIFIEDREWARD_REQUIRE_VLLM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return python


def serve_cmd_line(model_path: str, port: int, *extra: str) -> str:
    """The shell line ``unifiedreward serve-cmd MODEL --module`` prints (a 1-GPU layout), run as printed."""
    from unifiedreward.cli.serve_cmd import plan, render, vllm_command

    command = vllm_command(plan(model_path, 1, params_b=0.001), port, 4096, 32, None, module=True)
    return render(command + list(extra), 1)


class VLLMServer(LocalServer):
    """vLLM's OpenAI server (CPU build) started from the exact line ``unifiedreward serve-cmd --module``
    prints, plus the CPU flags; ``python`` on that line is ``.venv-vllm``'s."""

    name = "vllm"

    def __init__(self, model_path, port: int | None = None, startup_timeout: float = 420.0, extra: tuple = ()):
        super().__init__(model_path, port, startup_timeout)
        self.extra = list(extra)
        self.scratch = Path(self._home, "scratch")
        self.scratch.mkdir()

    def command(self) -> list[str]:
        return ["bash", "-c", serve_cmd_line(self.model_path, self.port, *VLLM_CPU_FLAGS, *self.extra)]

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("PYTHONPATH", None)  # the vLLM env must not import the main env's packages
        return {
            **env,
            "PATH": f"{VLLM_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "VIRTUAL_ENV": str(VLLM_VENV),
            "VLLM_TARGET_DEVICE": "cpu",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # two servers must not pin to the same core
            "VLLM_NO_USAGE_STATS": "1",
            "VLLM_CACHE_ROOT": str(self.scratch),
            "TMPDIR": str(self.scratch),
            "OMP_NUM_THREADS": "2",
        }


@pytest.fixture(scope="session")
def toy_server(toy_world):
    """One ``transformers serve`` of the toy reward model per test session (registered in conftest.py)."""
    server = TransformersServer(toy_world["reward_model"]).start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def vllm_server(toy_world):
    """One real vLLM server (CPU) of the toy reward model per test session (registered in conftest.py)."""
    require_vllm()
    server = VLLMServer(toy_world["reward_model"])
    try:
        yield server.start()
    finally:
        server.close()


def vllm_logprobs_response(top: dict[str, float], model: str = "UnifiedReward") -> dict:
    """A chat completion in the response shape vLLM documents for ``logprobs: true, top_logprobs: k``.

    OpenAI's schema (``choices[0].logprobs.content[i].top_logprobs``), written by hand in that shape,
    for answers a real server does not give on demand (a top-20 holding chosen tokens); the real
    answers are tested against vLLM in tests/test_vllm_server.py.
    """
    tokens = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top.items()]
    best = max(tokens, key=lambda entry: entry["logprob"])
    return {
        "id": "chatcmpl-0d5b7c1e9a2f4c7d8e1b3a5f6c9d0e2f",
        "object": "chat.completion",
        "created": 1760000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": best["token"], "refusal": None, "tool_calls": []},
                "logprobs": {"content": [{**best, "top_logprobs": tokens}]},
                "finish_reason": "length",
                "stop_reason": None,
            }
        ],
        "usage": {"prompt_tokens": 412, "total_tokens": 413, "completion_tokens": 1, "prompt_tokens_details": None},
        "prompt_logprobs": None,
    }


def vllm_generation_response(steps: list[tuple[str, dict[str, float]]], model: str = "UnifiedReward") -> dict:
    """A generated answer with per-token logprobs in vLLM's shape for ``logprobs: true, top_logprobs: k``
    (as a real vLLM 0.32 answer: ``choices[0].logprobs.content[i]`` = the token, its logprob and bytes, and its
    ``top_logprobs``), written by hand for answers a real server does not give on demand. ``steps``: each
    generated token and its top list ({token: logprob}, the token itself included)."""
    entry = lambda token, logprob: {"token": token, "logprob": logprob, "bytes": list(token.encode())}  # noqa: E731
    content = [{**entry(token, top[token]), "top_logprobs": [entry(t, lp) for t, lp in top.items()]} for token, top in steps]
    body = chat_response("".join(token for token, _ in steps), model)
    body["choices"][0]["logprobs"] = {"content": content}
    return body


def chat_response(text: str, model: str = "UnifiedReward") -> dict:
    """A plain chat completion (OpenAI shape)."""
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1760000000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


@dataclass
class RawAnswer:
    """An answer written by hand: status, headers, then ``chunks`` one by one (a generator may sleep
    between them: a trickling server; or yield a compressed stream: a gzip bomb)."""

    status: int
    chunks: Iterable[bytes]
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[str, dict], "tuple[int, dict] | tuple[int, dict, dict[str, str]] | RawAnswer | None"]


class BackloggedHTTPServer(ThreadingHTTPServer):
    """A listen backlog like uvicorn's (2048), not socketserver's 5: more simultaneous connects than 5 must not
    see dropped SYNs (a 1 s retransmit that reads as a timeout) where a real server would accept them."""

    request_queue_size = 2048


class StubServer:
    """A tiny threaded HTTP server: ``respond(path, json_body)`` returns ``(status, json)``,
    ``(status, json, headers)``, a `RawAnswer`, or ``None`` to hang (a black hole: accepted, never answered).

    Only for faults a real server cannot produce on demand; every request body is kept in ``received``,
    with its arrival time (monotonic) in ``arrivals``. ``/health`` answers 200; `freeze` makes it hang too.
    """

    def __init__(
        self, respond: Responder, models: list[str] | None = None, hang_models: bool = False, model_info: dict | None = None
    ):
        self.respond = respond
        self.models = ["UnifiedReward"] if models is None else models
        self.model_info = dict(model_info or {})  # extra fields of every /v1/models entry (root, max_model_len)
        self.hang_models = hang_models
        self.received: list[dict] = []
        self.headers: list[dict[str, str]] = []  # of every request, GETs included
        self.gets: list[str] = []
        self.arrivals: list[float] = []
        self.release = threading.Event()
        self.thawed = threading.Event()  # cleared by `freeze`: every request waits (SIGSTOP-like), GETs included
        self.thawed.set()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self._write(RawAnswer(status, [data], {"Content-Length": str(len(data)), **(headers or {})}))

            def _write(self, answer: RawAnswer) -> None:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    for chunk in answer.chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up: fine
                    self.close_connection = True

            def do_GET(self):
                stub.gets.append(self.path)
                stub.headers.append(dict(self.headers))
                stub.thawed.wait(60)
                if self.path == "/v1/models" and stub.hang_models:
                    stub.release.wait(60)
                    return
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model", **stub.model_info} for m in stub.models]})
                elif self.path == "/health":
                    self._send(200, {})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.received.append(body)
                stub.arrivals.append(time.monotonic())
                stub.headers.append(dict(self.headers))
                stub.thawed.wait(60)
                answer = stub.respond(self.path, body)
                if answer is None:
                    stub.release.wait(60)
                    return
                self._write(answer) if isinstance(answer, RawAnswer) else self._send(*answer)

        self.server = BackloggedHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def freeze(self) -> None:
        """Stop answering anything (connections are still accepted, as by a SIGSTOPped server)."""
        self.thawed.clear()

    def thaw(self) -> None:
        """Answer again, the requests that waited included."""
        self.thawed.set()

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.thawed.set()
        self.server.shutdown()
        self.server.server_close()
