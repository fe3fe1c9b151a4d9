"""The network lab's client (tests/test_replica_network_faults.py), run inside the client's namespace:
rank ``--items`` toy-world image pairs in logit mode (one request per item) through
``UnifiedReward.from_server(URLS)`` and print one JSON object: per item its probabilities and error, the
wall time, and per replica the requests it answered with HTTP 200 and the POSTs sent to it (counted from
httpx in this process, not by the library).

    lab_client.py URL1,URL2,... --items 40 --timeout 4 --deadline 30
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from reward_core.model import JudgeItem, UnifiedReward
from unifiedreward.toy import load_world

PAIR = "image_generation.pair_rank.v1"
answered: Counter = Counter()
sent: Counter = Counter()


def count_answers(send):
    async def counted(self, request, *args, **kwargs):
        if request.method == "POST":
            sent[f"{request.url.host}:{request.url.port}"] += 1
        response = await send(self, request, *args, **kwargs)
        if request.method == "POST" and response.status_code == 200:
            answered[f"{request.url.host}:{request.url.port}"] += 1
        return response

    return counted


def items(world_dir: str, count: int) -> list[JudgeItem]:
    world = load_world(world_dir)
    rows = [json.loads(line) for line in Path(world["data"]["image_pairs"]).read_text().splitlines()[:count]]
    return [JudgeItem(media=[str(Path(world["data_dir"]) / p) for p in r["images"]], fields={"prompt": r["prompt"]})
            for r in rows]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("urls")
    parser.add_argument("--world", required=True, help="the toy world's folder")
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=4.0)
    parser.add_argument("--deadline", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    httpx.AsyncClient.send = count_answers(httpx.AsyncClient.send)
    judge = UnifiedReward.from_server(
        args.urls.split(","), image_format="png", logprob_tokens="exact", concurrency=args.concurrency,
        timeout=args.timeout, deadline=args.deadline, backoff_base=0.1, backoff_max=0.5, discovery_timeout=2.0,
    )  # fmt: skip
    batch = items(args.world, args.items)
    started = time.monotonic()
    results = judge.compare_batch(PAIR, batch, mode="logit")
    wall = time.monotonic() - started
    print(json.dumps({
        "wall": wall,
        "results": [{"probs": r.probs, "error": r.error} for r in results],
        "answered": dict(answered),
        "sent": dict(sent),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
