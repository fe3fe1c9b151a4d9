"""The reward service vs upstream's thread-pool client, against one real vLLM, same items, one run.

(a) ``unifiedreward serve --server <vLLM URL>``: trainer-like clients (``--clients`` threads) send the items in
    chunks of ``--chunk`` pairs to ``POST /v1/compare`` (our JSON API); the service batches them into the judge,
    which calls vLLM through the project's client;
(b) upstream's path (Pref-GRPO's, ``vllm_qwen/vllm_request.py``): a ThreadPoolExecutor of ``--concurrency``
    workers, one request per item straight to vLLM (`http_throughput.run_upstream`, imported, not copied);
(c) for reference, the library's own HTTP client straight to vLLM (`http_throughput.run_ours`): what the service
    adds on top of the client it uses.

Both judge the same image pairs (`http_throughput.make_pairs`) with the pair-rank template and the same token
budget (``--max-tokens``). vLLM is its CPU build in ``.venv-vllm`` (`servers.VLLMServer`, as in the tests) serving
the toy reward model unless ``--model``. Threads are pinned: vLLM gets ``OMP_NUM_THREADS=2`` (its launcher's
setting), the service and this process 1; ``--cpus`` pins this process and its children to those cores.
Latency is per item (the time its request took; all items of a chunk share it).

    python benchmarks/reward_service.py --items 64 --json bench-out/reward-service.json
    python benchmarks/reward_service.py --soak --json bench-out/reward-service-soak.json   # 64 clients x 2,000

``--soak`` runs no vLLM: the service judges through the tests' stand-in backend (it stands in for GPU speed)
and the load of tests/service_load.py is run at full size with the server's memory sampled.
"""

from __future__ import annotations

import argparse
import base64
import io
import logging
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from http_throughput import (  # noqa: E402
    TEMPLATE, RunStats, make_pairs, make_requests, percentile, report_figures, run_ours, run_upstream,
)  # fmt: skip
from servers import VLLMServer, require_vllm  # noqa: E402  (the test suite's launchers)
from service_load import run_load  # noqa: E402
from service_servers import RewardService, StandInBackend  # noqa: E402

from reward_core.prompts import get_template  # noqa: E402

logger = logging.getLogger("reward_service")


def jpeg_b64(image) -> str:
    """The image file's bytes (JPEG q95, as upstream's client sends them), base64."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return base64.b64encode(buffer.getvalue()).decode()


def run_service(base_url: str, pairs, clients: int, chunk: int, scenario: str) -> RunStats:
    """``clients`` trainer threads post the pairs in chunks to ``/v1/compare``; outcome per item."""
    chunks = [list(range(start, min(start + chunk, len(pairs)))) for start in range(0, len(pairs), chunk)]
    bodies = [
        {
            "template": TEMPLATE,
            "items": [{"media": [jpeg_b64(m) for m in pairs[i][0]], "fields": {"prompt": pairs[i][1]}} for i in c],
        }
        for c in chunks
    ]
    local = threading.local()

    def one(body: dict) -> tuple[float, list[str]]:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base_url, timeout=600)
        began = time.perf_counter()
        try:
            response = local.http.post("/v1/compare", json=body)
            response.raise_for_status()
            results = response.json()["results"]
            outcomes = ["ok" if r.get("text") is not None else "error" for r in results]
            outcomes += ["lost"] * (len(body["items"]) - len(results))
        except httpx.HTTPError as exc:
            logger.warning("service request failed: %s", exc)
            outcomes = ["error"] * len(body["items"])
        return time.perf_counter() - began, outcomes

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        answers = list(pool.map(one, bodies))
    seconds = time.perf_counter() - started
    latencies = [seconds_ for seconds_, outcomes in answers for _ in outcomes]
    outcomes = [o for _, item_outcomes in answers for o in item_outcomes]
    ok = outcomes.count("ok")
    failed = outcomes.count("error")
    return RunStats(
        "service", scenario, len(outcomes), ok, failed, len(outcomes) - ok - failed, round(seconds, 3),
        round(ok / seconds, 3), round(percentile(latencies, 0.5), 3), round(percentile(latencies, 0.95), 3),
    )  # fmt: skip


def pin(cpus: str | None) -> list[int]:
    """Pin this process (and the servers it starts) to ``cpus`` ("0,1"); the cores in use."""
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    return sorted(os.sched_getaffinity(0))


def benchmark(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="ur-service-bench-") as tmp:
        model = args.model
        if model is None:
            from unifiedreward.toy.qwen import build_qwen2_5_vl
            from unifiedreward.toy.tokenization import train_qwen_tokenizer

            model = str(build_qwen2_5_vl(Path(tmp) / "reward", train_qwen_tokenizer()))
        require_vllm()
        vllm = VLLMServer(model).start()
        service = None
        try:
            service = RewardService(["--server", vllm.base_url, "--mode", "generate", *args.serve_arg]).start()
            pairs = make_pairs(args.items)
            batch = make_requests(args.items)
            extra = {"do_sample": False}
            # warm-up of both paths (first requests compile code paths in vLLM)
            run_upstream(vllm.base_url, batch[:4], args.concurrency, args.max_tokens, "warm-up", extra)
            run_service(service.base_url, pairs[:4], 1, 4, "warm-up")
            passes = {
                "upstream": lambda: run_upstream(
                    vllm.base_url, batch, args.concurrency, args.max_tokens, "clean", extra
                ),
                "service": lambda: run_service(service.base_url, pairs, args.clients, args.chunk, "clean"),
                "client-direct": lambda: run_ours(vllm.base_url, batch, args.concurrency, args.max_tokens, "clean"),
            }
            runs = []
            for round_ in range(args.rounds):  # the order alternates, so drifting machine load hits both sides
                order = list(passes) if round_ % 2 == 0 else list(reversed(passes))
                runs += [passes[name]() for name in order]
        finally:
            if service is not None:
                service.close()
            vllm.close()
    return {
        "server": "vLLM CPU build (continuous batching)",
        "model": args.model or "toy reward-qwen2_5_vl",
        "template": TEMPLATE,
        "items": args.items,
        "max_tokens": args.max_tokens,
        "upstream_workers": args.concurrency,
        "service_clients": args.clients,
        "service_chunk": args.chunk,
        "service_args": args.serve_arg,
        "cpus": args.cpus_in_use,
        "rounds": args.rounds,
        "service_vs_upstream_ratio": ratio(runs, "service", "upstream", "items_per_s"),
        "p95_ratio": ratio(runs, "service", "upstream", "p95_s"),
        "client_direct_vs_upstream_ratio": ratio(runs, "ours", "upstream", "items_per_s"),
        "runs": [asdict(r) for r in runs],
    }


def ratio(runs: list[RunStats], a: str, b: str, figure: str) -> float | None:
    """``figure`` of client ``a`` over client ``b``: items/s over all rounds (items / seconds), p95 as a mean."""
    def value(client: str) -> float:
        mine = [r for r in runs if r.client == client]
        if figure == "items_per_s":
            return sum(r.ok for r in mine) / sum(r.seconds for r in mine)
        return sum(getattr(r, figure) for r in mine) / len(mine)

    return round(value(a) / value(b), 3) if value(b) else None


def soak(args) -> dict:
    """64 clients x 2,000 items (by default) through the real service over the stand-in backend."""
    with StandInBackend() as backend:
        service = RewardService(["--server", backend.base_url, *args.serve_arg]).start()
        samples: list[float] = []
        stop = threading.Event()

        def sample_memory() -> None:
            while not stop.wait(1.0):
                samples.append(service.rss_mb())

        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        try:
            stats = run_load(
                service.base_url, args.soak_clients, args.soak_items, args.chunk, fail_every=50, timeout=300
            )
        finally:
            stop.set()
            sampler.join()
            service.close()
    warm = samples[len(samples) // 10 :] or samples
    return {
        "mode": "soak (stand-in backend: it stands in for GPU speed)",
        "service_args": args.serve_arg,
        "cpus": args.cpus_in_use,
        "load": asdict(stats),
        "backend_requests": len(backend.tags),
        "backend_duplicates": backend.duplicates(),
        "rss_mb_first": round(warm[0], 1) if warm else None,
        "rss_mb_last": round(samples[-1], 1) if samples else None,
        "rss_mb_max": round(max(samples), 1) if samples else None,
        "rss_growth_mb": round(samples[-1] - warm[0], 1) if samples else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint for vLLM (default: the toy reward model, built in a temp dir)")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8, help="upstream's ThreadPoolExecutor max_workers")
    parser.add_argument("--clients", type=int, default=4, help="trainer threads calling the service")
    parser.add_argument("--chunk", type=int, default=16, help="items per service request")
    parser.add_argument(
        "--max-tokens", type=int, default=get_template(TEMPLATE).max_new_tokens,
        help="upstream's max_tokens (default: the template's budget, which the service's judge sends)",
    )
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `unifiedreward serve` argument")
    parser.add_argument("--rounds", type=int, default=1, help="passes of each client, the order alternating")
    parser.add_argument("--cpus", help="pin to these cores, e.g. 0,1")
    parser.add_argument("--soak", action="store_true", help="the 64 x 2,000 load over the stand-in backend")
    parser.add_argument("--soak-clients", type=int, default=64)
    parser.add_argument("--soak-items", type=int, default=2000, help="items per soak client")
    parser.add_argument("--json", dest="json_out", help="write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ["OMP_NUM_THREADS"] = "1"  # the service and this process; vLLM's launcher sets its own (2)
    args.cpus_in_use = pin(args.cpus)
    report_figures(soak(args) if args.soak else benchmark(args), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
