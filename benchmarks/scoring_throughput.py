"""Scoring throughput: upstream's one-sample loop vs our batched generate and logit modes.

Measured side by side in one run, per task (pairwise ``image_generation.pair_rank.v1``, pointwise
``image_generation.point_score.v1``):

(a) upstream-style: one sample per call, ``process_vision_info`` + ``apply_chat_template`` + ``processor``
    + ``model.generate`` + ``batch_decode`` (``inference_qwen`` scripts, line for line);
(b) ours, batched generate (left padding, length bucketing, greedy, encoding prefetched in a thread);
(c) ours, batched logit mode (one forward pass per batch);
(d) a bare forward: the model calls of (c) replayed on the same padded, pre-encoded batches already on the device
    (no templating, media, processor, collation or parsing); ``overhead_fraction`` = 1 - (d) / (c) seconds.

Both wall-clock throughput and CPU time per sample (all threads of the process) are reported: on a
shared machine the CPU time is the steadier figure, and it shows what the encoding thread costs.

A randomly initialised model never emits EOS, so (a) and (b) stop at a *typical* output length per
template (about 6 tokens for a pair-rank verdict, about 80 for a point score with its element lines)
instead of upstream's ``max_new_tokens`` (512); a real checkpoint stops there on its own.

    python benchmarks/scoring_throughput.py --json bench-out/throughput.json        # CPU, toy world
    python benchmarks/scoring_throughput.py --device cuda --dtype bfloat16 --config-7b --items 64 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from reward_core.backends.transformers_backend import TransformersBackend, collate
from reward_core.model import JudgeItem, UnifiedReward
from reward_core.prompts import get_template

TASKS = {
    # task: (template, typical output tokens, data file)
    "pairwise": ("image_generation.pair_rank.v1", 6, "image_pairs"),
    "pointwise": ("image_generation.point_score.v1", 80, "image_points"),
}
PARAMS_7B = 7.6e9  # Qwen2.5-VL-7B language model + vision tower, for the FLOP bound
PEAK_BF16_FLOPS = 790e12  # ~dense bf16 throughput of an H100 SXM

# Qwen/Qwen2.5-VL-7B-Instruct config.json dimensions (random weights; nothing is downloaded).
QWEN2_5_VL_7B = {
    "text_config": {
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "max_position_embeddings": 128000, "max_window_layers": 28, "vocab_size": 152064,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        "rms_norm_eps": 1e-06,
    },
    "vision_config": {
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
    },
}  # fmt: skip


@dataclass
class Measurement:
    samples: int
    seconds: float
    cpu_seconds: float  # process CPU time (every thread) over the same span
    tokens_per_sample: float  # prompt + output tokens the model processes per sample

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def cpu_ms_per_sample(self) -> float:
        return 1000 * self.cpu_seconds / self.samples

    def as_dict(self) -> dict:
        return {
            "samples": self.samples,
            "seconds": round(self.seconds, 4),
            "samples_per_s": round(self.samples_per_s, 3),
            "cpu_ms_per_sample": round(self.cpu_ms_per_sample, 3),
            "tokens_per_sample": round(self.tokens_per_sample, 1),
            "flop_bound_samples_per_s_7b": round(PEAK_BF16_FLOPS / (2 * PARAMS_7B * self.tokens_per_sample), 1),
        }


def load_items(world: dict, data_name: str, count: int, image_size: int | None) -> list[JudgeItem]:
    root = Path(world["data_dir"])
    rows = [json.loads(line) for line in Path(world["data"][data_name]).read_text().splitlines()]
    rows = (rows * (count // len(rows) + 1))[:count]
    items = []
    for i, row in enumerate(rows):
        paths = row.get("images") or [row["image"]]
        images = [Image.open(root / p).convert("RGB") for p in paths]
        if image_size:
            images = [im.resize((image_size, image_size)) for im in images]
        items.append(JudgeItem(media=images, fields={"prompt": row["prompt"]}, id=str(i)))
    return items


def upstream_loop(model, processor, template, items: list[JudgeItem], max_new_tokens: int) -> Measurement:
    """``inference_qwen``, one sample per call: message with the PIL images first, ``process_vision_info``,
    ``apply_chat_template``, ``processor``, ``model.generate`` with the checkpoint's defaults, ``batch_decode``."""
    from qwen_vl_utils import process_vision_info

    tokens = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for item in items:
        content = [{"type": "image", "image": image} for image in item.media]
        messages = [{"role": "user", "content": content + [{"type": "text", "text": template.render(**item.fields)}]}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images, videos = process_vision_info(messages)
        inputs = processor(text=[text], images=images, videos=videos, padding=True, return_tensors="pt").to(model.device)
        generated_ids = model.generate(**inputs, max_new_tokens=max_new_tokens)
        trimmed = [out_ids[len(in_ids) :] for in_ids, out_ids in zip(inputs.input_ids, generated_ids)]
        processor.batch_decode(trimmed, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        tokens += generated_ids.shape[1]
    synchronize(model)
    return Measurement(len(items), time.perf_counter() - started, time.process_time() - cpu_started, tokens / len(items))


def ours(rm: UnifiedReward, backend: TransformersBackend, template, items, mode: str, max_new_tokens: int) -> Measurement:
    started, cpu_started = time.perf_counter(), time.process_time()
    results = rm.judge_batch(template, items, mode=mode, max_new_tokens=max_new_tokens)
    synchronize(backend.model)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    failed = [r for r in results if r.status.value in ("media_error", "backend_error")]
    if failed:
        raise RuntimeError(f"{len(failed)} {mode} items failed, e.g. {failed[0].error}")
    prompt = statistics.mean(backend.encode(rm._request(template, item)).length for item in items[:4])
    return Measurement(len(items), seconds, cpu_seconds, prompt + (max_new_tokens if mode == "generate" else 1))


def bare_forward(rm: UnifiedReward, backend: TransformersBackend, template, items) -> Measurement:
    """(d): capture every padded batch and model call that logit mode makes on ``items``, then time only the
    replay of those calls (the vision tower runs uncached in the replay)."""
    captured = []
    run_chunk = backend._run_chunk

    def capture(chunk, run):
        captured.append((backend._to_device(collate(chunk, backend.pad_token_id)), run))
        return run_chunk(chunk, run)

    backend._run_chunk = capture
    try:
        rm.judge_batch(template, items, mode="logit")
    finally:
        del backend._run_chunk
    synchronize(backend.model)
    started, cpu_started = time.perf_counter(), time.process_time()
    for batch, run in captured:
        run(batch)
    synchronize(backend.model)
    tokens = sum(int(batch["attention_mask"].sum()) for batch, _ in captured) / len(items)
    return Measurement(len(items), time.perf_counter() - started, time.process_time() - cpu_started, tokens)


def synchronize(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def build_model(args, world: dict):
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    dtype = getattr(torch, args.dtype)
    attn = {"attn_implementation": args.attn} if getattr(args, "attn", None) else {}
    processor = AutoProcessor.from_pretrained(world["reward_model"])
    if not args.config_7b:
        model = AutoModelForImageTextToText.from_pretrained(args.model or world["reward_model"], dtype=dtype, **attn)
        if args.model:
            processor = AutoProcessor.from_pretrained(args.model)
        return model.to(args.device).eval(), processor
    config = AutoConfig.from_pretrained(world["reward_model"])  # toy token ids, 7B shapes
    for part, values in QWEN2_5_VL_7B.items():
        for key, value in values.items():
            setattr(getattr(config, part), key, value)
    # Upstream processor pixel budget (qwen-vl-utils caps images at 16384 * 28 * 28 pixels anyway).
    processor.image_processor.min_pixels, processor.image_processor.max_pixels = 4 * 28 * 28, 16384 * 28 * 28
    processor.image_processor.size = {"shortest_edge": 4 * 28 * 28, "longest_edge": 16384 * 28 * 28}
    torch.manual_seed(0)
    with torch.device(args.device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype, **attn)
    return model.eval(), processor


def run(args) -> dict:
    from unifiedreward.toy import build_world, load_world

    world_dir = args.world or os.path.join(tempfile.gettempdir(), "unifiedreward-bench-world")
    world = load_world(world_dir) or build_world(world_dir)
    model, processor = build_model(args, world)
    backend = TransformersBackend(model, processor, batch_size=args.batch_size, prefetch=not args.no_prefetch)
    rm = UnifiedReward(backend, batch_size=args.batch_size, chunk_size=max(args.items, args.batch_size))
    report = {
        "device": args.device,
        "dtype": args.dtype,
        "attn": model.config._attn_implementation,
        "threads": torch.get_num_threads(),
        "model": "qwen2.5-vl-7b-shaped (random)" if args.config_7b else (args.model or "toy qwen2.5-vl"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "items": args.items,
        "batch_size": args.batch_size,
        "prefetch": not args.no_prefetch,
        "image_size": args.image_size,
        "stopping": "random weights never emit EOS: (a) and (b) stop at the typical output length per template",
        "tasks": {},
    }
    for task in args.tasks:
        key, typical, data_name = TASKS[task]
        template = get_template(key)
        items = load_items(world, data_name, args.items, args.image_size)
        warm = items[: min(2, len(items))]
        upstream_loop(model, processor, template, warm[:1], 2)  # warm-up: kernels, caches, lazy imports
        rm.judge_batch(template, warm, mode="generate", max_new_tokens=2)
        rm.judge_batch(template, warm, mode="logit")
        upstream = upstream_loop(model, processor, template, items, typical)
        generate = ours(rm, backend, template, items, "generate", typical)
        logit = ours(rm, backend, template, items, "logit", typical)
        bare = bare_forward(rm, backend, template, items)
        report["tasks"][task] = {
            "template": key,
            "upstream_max_new_tokens": template.max_new_tokens,
            "output_tokens": typical,
            "upstream_loop": upstream.as_dict(),
            "batched_generate": generate.as_dict(),
            "batched_logit": logit.as_dict(),
            "bare_forward": bare.as_dict(),
            "overhead_fraction": round(1 - bare.seconds / logit.seconds, 3),
            "overhead_fraction_cpu": round(1 - bare.cpu_seconds / logit.cpu_seconds, 3),
            "logit_vs_bare_forward_ratio": round(logit.samples_per_s / bare.samples_per_s, 3),
            "generate_vs_upstream_ratio": round(generate.samples_per_s / upstream.samples_per_s, 2),
            "logit_vs_upstream_ratio": round(logit.samples_per_s / upstream.samples_per_s, 2),
            "generate_vs_upstream_cpu_ratio": round(upstream.cpu_ms_per_sample / generate.cpu_ms_per_sample, 2),
            "logit_vs_upstream_cpu_ratio": round(upstream.cpu_ms_per_sample / logit.cpu_ms_per_sample, 2),
        }
    return report


def table(report: dict) -> str:
    lines = [
        f"{report['model']} on {report['device']} ({report['dtype']}), {report['items']} items, batch {report['batch_size']}",
        f"note: {report['stopping']}",
        f"{'task':<10} {'method':<18} {'samples/s':>10} {'vs upstream':>12} {'cpu ms/sample':>14} {'cpu vs upstream':>16}"
        f" {'tok/sample':>11} {'7B bf16 FLOP bound/s':>21}",
    ]
    for task, entry in report["tasks"].items():
        base, base_cpu = entry["upstream_loop"]["samples_per_s"], entry["upstream_loop"]["cpu_ms_per_sample"]
        for method in ("upstream_loop", "batched_generate", "batched_logit", "bare_forward"):
            m = entry[method]
            lines.append(
                f"{task:<10} {method:<18} {m['samples_per_s']:>10.2f} {m['samples_per_s'] / base:>11.1f}x "
                f"{m['cpu_ms_per_sample']:>14.2f} {base_cpu / m['cpu_ms_per_sample']:>15.1f}x "
                f"{m['tokens_per_sample']:>11.0f} {m['flop_bound_samples_per_s_7b']:>21.1f}"
            )
        lines.append(f"{task:<10} logit overhead over a bare forward: {entry['overhead_fraction']:.1%} of its time, "
                     f"{entry['overhead_fraction_cpu']:.1%} of its CPU time "
                     f"(throughput {entry['logit_vs_bare_forward_ratio']:.0%} of the bare forward)")
    return "\n".join(lines)


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """The judge flags shared with ``sift_throughput.py``: which model, where, and its input size."""
    parser.add_argument("--model", help="checkpoint to time (default: the toy world's reward model)")
    parser.add_argument("--world", help="toy world folder (built there when missing; default: a temp folder)")
    parser.add_argument("--config-7b", action="store_true", help="a Qwen2.5-VL-7B-shaped judge with random weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--attn", help="attn_implementation: sdpa, eager, flash_attention_2 (default: transformers')")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, help="resize images to N x N (default: as stored; 448 with --config-7b)")


def parse_judge_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.config_7b and args.image_size is None:
        args.image_size = 448
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_judge_arguments(parser)
    parser.add_argument("--items", type=int, default=16, help="samples per task and method")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--no-prefetch", action="store_true", help="encode on the main thread only (for A/B timing)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parse_judge_arguments(parser, argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    report = run(args)
    print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
