"""Logit point scores: the decimal trie's tree step vs re-running the whole model per digit branch.

Side by side on the same items and model, per scale:

(a) integer candidates, one full forward (vision tower included) per deepest digit branch: the previous
    method (``TransformersBackend.answer_logprobs``; 9 branches on 0-100, 1 on 1-10), integers only;
(b) the decimal trie (``answer_node_probs``): one prefill per item, then one tree step over every node
    (52 on 1-5 with two decimals, 21 on 1-10, 102 on 0-100) on its KV cache.

    python benchmarks/logit_scores.py --items 16                     # CPU, toy world
    python benchmarks/logit_scores.py --device cuda --items 64 --batch-size 16 --model PATH
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from reward_core import logit
from reward_core.backends.base import BackendRequest
from reward_core.backends.transformers_backend import TransformersBackend
from reward_core.prompts import get_template

TEMPLATES = ("image_generation.point_score.v1", "dpo.image_generation.point_score", "image_understanding.point_score.v1")


def requests_for(world: dict, key: str, count: int) -> list[BackendRequest]:
    template = get_template(key)
    rows = [json.loads(line) for line in Path(world["data"]["image_points"]).read_text().splitlines()][:count]
    return [
        BackendRequest(
            media=[str(Path(world["data_dir"]) / row["image"])],
            text=template.render(prompt=row["prompt"], question=row["prompt"], response="It is a red circle."),
            answer_prefix=template.answer_prefix,
        )
        for row in rows
    ]


def measure(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: the toy judge)")
    parser.add_argument("--world", default=os.path.join(tempfile.gettempdir(), "unifiedreward-bench-world"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from unifiedreward.toy import build_world, load_world

    world = load_world(args.world) or build_world(args.world)
    backend = TransformersBackend.from_pretrained(args.model or world["reward_model"], device=args.device, batch_size=args.batch_size)
    rows = []
    for key in TEMPLATES:
        template = get_template(key)
        requests = requests_for(world, key, args.items)
        integers = [str(v) for v in range(int(template.scale[0]), int(template.scale[1]) + 1)]
        trie = logit.trie_for(template)
        backend.answer_logprobs(requests[:1], integers)  # warm-up
        old_wall, old_cpu = measure(lambda: backend.answer_logprobs(requests, integers))
        new_wall, new_cpu = measure(lambda: backend.answer_node_probs(requests, trie.nodes))
        rows.append({"template": key, "scale": template.scale, "nodes": len(trie.nodes), "items": len(requests),
                     "branches_ms_per_item": 1000 * old_wall / len(requests), "branches_cpu_ms": 1000 * old_cpu / len(requests),
                     "tree_ms_per_item": 1000 * new_wall / len(requests), "tree_cpu_ms": 1000 * new_cpu / len(requests)})  # fmt: skip
    print(f"{'template':<36} {'scale':>9} {'nodes':>5} {'(a) ms/item':>12} {'cpu':>7} {'(b) tree ms/item':>17} {'cpu':>7}")
    for r in rows:
        print(f"{r['template']:<36} {str(r['scale']):>9} {r['nodes']:>5} {r['branches_ms_per_item']:>12.1f} "
              f"{r['branches_cpu_ms']:>7.1f} {r['tree_ms_per_item']:>17.1f} {r['tree_cpu_ms']:>7.1f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
