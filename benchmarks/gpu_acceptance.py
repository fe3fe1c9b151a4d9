"""GPU acceptance: a Qwen2.5-VL-7B-shaped judge (random weights, bf16) loaded the way large judges are loaded
(``device_map="auto"``, flash-attention 2 when installed, else sdpa), then generate + logit scoring.

One command, a few minutes on one 80 GB GPU (nothing is downloaded: the toy world's tokenizer and processor,
7B shapes from ``scoring_throughput.QWEN2_5_VL_7B``):

    python benchmarks/gpu_acceptance.py                      # 7B-shaped, on the visible GPU(s)
    python benchmarks/gpu_acceptance.py --size tiny          # the same code path on the toy judge (CPU is fine)

Checks (exit status 1 when one fails): the weights load through ``from_pretrained(..., device_map, dtype="bf16",
attn_implementation)``; generation never fails an item with a backend error; logit mode gives a winner for each
pair and an in-scale expected score on 1-5, 1-10 and 0-100; the tree step (one prefill + KV cache) matches a
brute-force pass over every answer prefix on the 1-5 scale. Prints a JSON summary with timings and memory.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring_throughput import QWEN2_5_VL_7B  # noqa: E402

from reward_core import UnifiedReward, logit  # noqa: E402
from reward_core.backends import tree_scoring  # noqa: E402
from reward_core.backends.base import BackendRequest  # noqa: E402
from reward_core.model import JudgeItem  # noqa: E402
from reward_core.prompts import get_template  # noqa: E402
from reward_core.score_trie import score_distribution  # noqa: E402

logger = logging.getLogger("gpu_acceptance")
# 1-5, 1-10 (the only image 1-10 prompt is the DPO sift's LLaVA text, run with force=True), 0-100
POINT_KEYS = ("image_generation.point_score.v1", "dpo.image_generation.point_score", "image_understanding.point_score.v1")


def toy_reward_model(world_dir: Path) -> Path:
    from unifiedreward.toy import build_world, load_world

    world = load_world(world_dir) or build_world(world_dir)
    return Path(world["reward_model"])


def write_checkpoint(source: Path, out_dir: Path, size: str, device: str) -> float:
    """Save a random judge of ``size`` with ``source``'s tokenizer and processor; returns its parameter count."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, GenerationConfig

    config = AutoConfig.from_pretrained(source)
    if size == "7b":
        for part, values in QWEN2_5_VL_7B.items():
            for key, value in values.items():
                setattr(getattr(config, part), key, value)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig.from_pretrained(source)
    model.save_pretrained(out_dir, safe_serialization=True)
    AutoProcessor.from_pretrained(source).save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return params


def attention(choice: str) -> str:
    if choice != "auto":
        return choice
    return "flash_attention_2" if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") else "sdpa"


def brute_force_score(backend, request: BackendRequest, template) -> float:
    """Expected score from one uncached full forward per trie node (the reference for the tree step)."""
    trie = logit.trie_for(template)
    layout = tree_scoring.tree_layout(backend.tokenizer, request.answer_prefix, trie.nodes)
    base = backend.encode(request).extend(layout.shared)
    probs = {}
    for node in trie.nodes:
        inputs = backend._to_device(base.extend([layout.symbol_ids[c] for c in node]).inputs)
        with torch.inference_mode():
            last = torch.softmax(backend.model(**inputs, use_cache=False, logits_to_keep=1).logits[0, -1].float(), -1)
        probs[node] = {s: float(last[i]) for s, i in layout.symbol_ids.items() if i >= 0}
    return score_distribution(trie, probs).expected


def timed(fn):
    start = time.perf_counter()
    value = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value, time.perf_counter() - start


def run(args) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    source = toy_reward_model(Path(args.world))
    checks: dict[str, bool] = {}
    report: dict = {"size": args.size, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"}
    if args.tmp:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        params, report["write_s"] = timed(lambda: write_checkpoint(source, Path(folder), args.size, device))
        report["params_b"] = round(params / 1e9, 3)
        implementation = attention(args.attn)
        rm, report["load_s"] = timed(lambda: UnifiedReward.from_pretrained(
            folder, device_map=args.device_map, dtype="bf16", attn_implementation=implementation, batch_size=args.batch_size))  # fmt: skip
        model = rm.backend.model
        report.update(attn=model.config._attn_implementation, dtype=str(model.dtype),
                      devices=sorted({str(p.device) for p in model.parameters()}))  # fmt: skip
        checks["loaded_bf16"] = model.dtype == torch.bfloat16 and model.config._attn_implementation == implementation
        side = args.image_size
        images = [Image.new("RGB", (side, side), (37 * i % 256, 91 * i % 256, 53 * i % 256)) for i in range(args.items)]
        caption = {"prompt": "a red circle on a white table"}

        pair = get_template("image_generation.pair_rank.v1")
        items = [JudgeItem([images[i], images[(i + 1) % len(images)]], caption) for i in range(len(images))]
        generated, report["generate_s"] = timed(lambda: rm.compare_batch(pair, items, max_new_tokens=args.max_new_tokens))
        report["generate_status"] = sorted({r.status.value for r in generated})
        checks["generate_no_backend_error"] = all(r.status.value != "backend_error" for r in generated)

        pairs, report["logit_pair_s"] = timed(lambda: rm.compare_batch(pair, items, mode="logit"))
        checks["logit_pairs"] = all(r.ok and r.winner in (0, 1, 2) for r in pairs)
        for key in POINT_KEYS:
            template = get_template(key)
            fields = {"prompt": caption["prompt"], "question": "What is on the table?", "response": "A red circle."}
            batch = [JudgeItem([image], fields) for image in images]
            scores, seconds = timed(lambda: rm.score_batch(template, batch, mode="logit", force=True))
            low, high = template.scale
            report[f"logit_{key}_s"] = round(seconds, 3)
            report[f"logit_{key}_mean"] = sum(r.score for r in scores if r.ok) / max(1, sum(r.ok for r in scores))
            checks[f"logit_{key}"] = all(r.ok and low <= r.score <= high for r in scores)

        if not args.no_reference:
            template = get_template(POINT_KEYS[0])
            request = BackendRequest([images[0]], template.render(**caption), answer_prefix=template.answer_prefix)
            tree = rm.score(template, images[0], mode="logit", **caption).score
            reference, report["brute_force_s"] = timed(lambda: brute_force_score(rm.backend, request, template))
            report["tree_vs_brute_force"] = abs(tree - reference)
            checks["tree_matches_brute_force"] = math.isfinite(tree) and abs(tree - reference) <= args.tolerance
        if device == "cuda":
            report["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    report["checks"] = checks
    report["passed"] = all(checks.values())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("7b", "tiny"), default="7b")
    parser.add_argument("--world", default=str(Path(tempfile.gettempdir()) / "unifiedreward-gpu-acceptance-world"))
    parser.add_argument("--tmp", default=None, help="folder for the random checkpoint (7b: about 17 GB; created when missing)")
    parser.add_argument("--device-map", default="auto")
    parser.add_argument("--attn", choices=("auto", "flash_attention_2", "sdpa", "eager"), default="auto")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--tolerance", type=float, default=0.05, help="score units; bf16 rounding differs between paths")
    parser.add_argument("--no-reference", action="store_true", help="skip the brute-force check (52 full forwards)")
    parser.add_argument("--json", default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    report = run(args)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
