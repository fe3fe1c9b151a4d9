"""HTTP judge throughput: our asyncio client vs an upstream-style client, against one local server.

The server (``--server``) is ``transformers serve`` or a real vLLM (its CPU build in ``.venv-vllm``,
started from ``unifiedreward serve-cmd``'s line, as in the tests) of a checkpoint (default: the toy
reward model, built on the fly). "upstream" mimics ``vllm_qwen/vllm_request.py``: a ThreadPoolExecutor,
one ``requests.post`` per item from a per-thread Session, JPEG q95 data URLs, no sampling parameters
but ``do_sample: false``, up to 10 attempts with ``min(2**attempt + U(0,1), 10)`` s backoff and a
``timeout_base + 5*attempt`` timeout. (``do_sample`` is dropped for ``transformers serve``, which refuses
unknown fields.) Each client runs a clean pass and a pass during which the server is SIGKILLed and
restarted. Against vLLM the same batch is also judged in logit mode (exact candidate ids) by our client.

    python benchmarks/http_throughput.py --items 32 --concurrency 8 --json bench-out/http.json
    python benchmarks/http_throughput.py --server vllm --items 32 --concurrency 4 --json bench-out/http-vllm.json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
from PIL import Image, ImageDraw

from reward_core.backends import openai_backend
from reward_core.backends.base import BackendRequest
from reward_core.backends.openai_backend import OpenAIBackend
from reward_core.backends.openai_messages import image_data_url
from reward_core.prompts import get_template

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import TransformersServer, VLLMServer, require_vllm  # noqa: E402  (the test suite's launchers)

logger = logging.getLogger("http_throughput")
TEMPLATE = "image_generation.pair_rank.v1"


@dataclass
class RunStats:
    client: str
    scenario: str
    items: int
    ok: int
    failed: int
    lost_items: int  # items that came back with neither an answer nor an error
    seconds: float
    items_per_s: float
    p50_s: float
    p95_s: float


def make_pairs(count: int, seed: int = 0) -> list[tuple[list[Image.Image], str]]:
    """Image pairs of coloured shapes, each with its caption."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        images = []
        for _ in range(2):
            image = Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3)))
            ImageDraw.Draw(image).ellipse((10, 10, 50, 50), fill=tuple(rng.randrange(256) for _ in range(3)))
            images.append(image)
        out.append((images, f"a shape on a background, item {i}"))
    return out


def make_requests(count: int, seed: int = 0) -> list[BackendRequest]:
    """`make_pairs`, rendered with the real pair-rank template."""
    template = get_template(TEMPLATE)
    return [BackendRequest(media=images, text=template.render(prompt=prompt)) for images, prompt in make_pairs(count, seed)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(client, scenario, latencies, outcomes, seconds) -> RunStats:
    ok = sum(1 for o in outcomes if o == "ok")
    failed = sum(1 for o in outcomes if o == "error")
    return RunStats(
        client, scenario, len(outcomes), ok, failed, len(outcomes) - ok - failed, round(seconds, 3),
        round(ok / seconds, 3), round(percentile(latencies, 0.5), 3), round(percentile(latencies, 0.95), 3),
    )  # fmt: skip


def run_ours(
    base_url: str, batch: list[BackendRequest], concurrency: int, max_tokens: int, scenario: str, logit: bool = False
) -> RunStats:
    """Our backend, one `generate` (or, ``logit``, `answer_logprobs`) call for the whole batch;
    latency = one item's request, retries included."""
    backend = OpenAIBackend(base_url, concurrency=concurrency, timeout=60, deadline=600, logprob_tokens="exact")
    latencies: list[float] = []
    original = openai_backend.post_json

    async def timed_post_json(client, replicas, path, *args, **kwargs):
        began = time.perf_counter()
        try:
            return await original(client, replicas, path, *args, **kwargs)
        finally:
            if path == openai_backend.CHAT_PATH:  # not the /tokenize calls of logit mode (once per batch)
                latencies.append(time.perf_counter() - began)

    openai_backend.post_json = timed_post_json
    try:
        started = time.perf_counter()
        if logit:
            answers = backend.answer_logprobs(batch, ["1", "2"])
            outcomes = [outcome("" if a.logprobs else None, a.error) for a in answers]
        else:
            outcomes = [outcome(r.text, r.error) for r in backend.generate(batch, max_tokens)]
        seconds = time.perf_counter() - started
    finally:
        openai_backend.post_json = original
    return summarize("ours-logit" if logit else "ours", scenario, latencies, outcomes, seconds)


def outcome(text: str | None, error: str | None) -> str:
    return "ok" if text is not None and error is None else ("error" if error else "lost")


def run_upstream(
    base_url: str, batch: list[BackendRequest], workers: int, max_tokens: int, scenario: str, extra: dict | None = None
) -> RunStats:
    """Upstream's ``vllm_request.py`` pattern (see the module docstring)."""
    local = threading.local()
    url = f"{base_url}/v1/chat/completions"

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=workers))
        return local.session

    def one(request: BackendRequest) -> tuple[float, str | None, str | None]:
        content = [{"type": "image_url", "image_url": {"url": image_data_url(m)}} for m in request.media]
        payload = {
            "messages": [{"role": "user", "content": [*content, {"type": "text", "text": request.text}]}],
            "max_tokens": max_tokens,
            **(extra or {}),
        }
        began, error = time.perf_counter(), None
        for attempt in range(10):
            try:
                response = session().post(url, json=payload, timeout=60 + 5 * attempt)
                if response.status_code in (429, 500, 502, 503, 504):
                    raise RuntimeError(f"retryable HTTP {response.status_code}")
                response.raise_for_status()
                text = response.json()["choices"][0]["message"]["content"]
                return time.perf_counter() - began, text, None
            except Exception as exc:  # upstream retries on any exception
                error = f"{type(exc).__name__}: {exc}"
                time.sleep(min(2**attempt + random.random(), 10))
        return time.perf_counter() - began, None, error

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(workers, len(batch))) as pool:
        answers = list(pool.map(one, batch))
    seconds = time.perf_counter() - started
    return summarize("upstream", scenario, [a[0] for a in answers], [outcome(a[1], a[2]) for a in answers], seconds)


def with_kill_and_restart(server, after_s: float, run) -> RunStats:
    """Run ``run()`` while the server is SIGKILLed ``after_s`` into it and restarted right away."""

    def crash_and_restart():
        server.kill()
        server.start()

    chaos = threading.Timer(after_s, crash_and_restart)
    chaos.start()
    try:
        return run()
    finally:
        chaos.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=("transformers", "vllm"), default="transformers", help="engine to serve with")
    parser.add_argument("--model", help="checkpoint to serve (default: the toy reward model, built in a temp dir)")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8, help="our in-flight limit = upstream's max_workers")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--kill-after", type=float, default=1.0, help="seconds into the chaos runs to kill the server")
    parser.add_argument("--no-chaos", action="store_true", help="skip the kill-and-restart runs")
    parser.add_argument("--json", dest="json_out", help="write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="ur-http-bench-") as tmp:
        model = args.model
        if model is None:
            from unifiedreward.toy.tokenization import train_qwen_tokenizer
            from unifiedreward.toy.qwen import build_qwen2_5_vl

            model = str(build_qwen2_5_vl(Path(tmp) / "reward", train_qwen_tokenizer()))
        vllm = args.server == "vllm"
        if vllm:
            require_vllm()
        server = (VLLMServer(model) if vllm else TransformersServer(model, startup_timeout=300)).start()
        upstream_extra = {"do_sample": False} if vllm else {}
        try:
            batch = make_requests(args.items)
            # warm-up: the first requests of each kind (sampled, greedy, logprobs) compile code paths
            run_upstream(server.base_url, batch[:4], args.concurrency, args.max_tokens, "warm-up", upstream_extra)
            OpenAIBackend(server.base_url).generate(batch[:4], args.max_tokens)
            runs = [
                run_upstream(server.base_url, batch, args.concurrency, args.max_tokens, "clean", upstream_extra),
                run_ours(server.base_url, batch, args.concurrency, args.max_tokens, "clean"),
            ]
            if vllm:
                prefix = get_template(TEMPLATE).answer_prefix
                logit_batch = [BackendRequest(r.media, r.text, answer_prefix=prefix) for r in batch]
                OpenAIBackend(server.base_url, logprob_tokens="exact").answer_logprobs(logit_batch[:4], ["1", "2"])
                runs.append(run_ours(server.base_url, logit_batch, args.concurrency, args.max_tokens, "clean", logit=True))
            if not args.no_chaos:
                chaos = (
                    ("upstream", lambda: run_upstream(server.base_url, batch, args.concurrency, args.max_tokens,
                                                      "kill_restart", upstream_extra)),
                    ("ours", lambda: run_ours(server.base_url, batch, args.concurrency, args.max_tokens, "kill_restart")),
                )  # fmt: skip
                for _, run in chaos:
                    runs.append(with_kill_and_restart(server, args.kill_after, run))
        finally:
            server.close()

    by = {(r.client, r.scenario): r for r in runs}
    ours, upstream = by["ours", "clean"], by["upstream", "clean"]
    logit = by.get(("ours-logit", "clean"))
    report = {
        "server": "vLLM CPU build (continuous batching)" if args.server == "vllm"
        else "transformers serve (CPU, no continuous batching)",
        "model": args.model or "toy reward-qwen2_5_vl",
        "items": args.items,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
        "throughput_ratio": round(ours.items_per_s / upstream.items_per_s, 3) if upstream.items_per_s else None,
        "p95_ratio": round(ours.p95_s / upstream.p95_s, 3) if upstream.p95_s else None,
        "logit_vs_generate_ratio": round(logit.items_per_s / ours.items_per_s, 3) if logit and ours.items_per_s else None,
        "lost_items": {f"{r.client}/{r.scenario}": r.lost_items for r in runs},
        "failed_items": {f"{r.client}/{r.scenario}": r.failed for r in runs},
        "runs": [asdict(r) for r in runs],
    }
    report_figures(report, args.json_out)
    return 0


def report_figures(report: dict, json_out: str | None) -> None:
    """Print the figures, and write them to ``json_out`` when given."""
    print(json.dumps(report, indent=2))
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
