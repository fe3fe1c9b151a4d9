"""Scoring throughput: upstream's one-sample loop vs our batched generate and logit modes.

Measured side by side in one run, per task (pairwise ``image_generation.pair_rank.v1``, pointwise
``image_generation.point_score.v1``):

(a) upstream-style: one sample per call, ``process_vision_info`` + ``apply_chat_template`` + ``processor``
    + ``model.generate`` + ``batch_decode`` (``inference_qwen`` scripts, line for line);
(b) ours, batched generate (left padding, length bucketing, greedy, encoding prefetched in a thread);
(c) ours, batched logit mode (one forward pass per batch);
(d) a bare forward: the model calls of (c) replayed on the same padded, pre-encoded batches already on the device
    (no templating, media, processor, collation or parsing); ``overhead_fraction`` = 1 - (d) / (c) seconds.
    (c) runs twice, with the prefetch thread (default) and with every group encoded on the main thread
    (``overhead_fraction_no_prefetch``); each logit run starts with an empty vision cache, so it runs the tower
    on every distinct image, as (d) does. ``host_cpu_ms_per_item`` = (c) - (d) CPU ms per item.

``--shape``: ``toy`` (the toy world's judge), ``mid`` (Qwen2.5-0.5B text dimensions with 2 layers, a 2-block
vision tower 1280 wide, on the toy processor: the same host work per item as ``toy``, a forward about 100x
heavier), ``7b`` (Qwen2.5-VL-7B dimensions, upstream's pixel budget, 448 px images); mid and 7b are built from
config with random weights, nothing is downloaded.

Both wall-clock throughput and CPU time per sample (all threads of the process) are reported: on a
shared machine the CPU time is the steadier figure, and it shows what the encoding thread costs.

A randomly initialised model never emits EOS, so (a) and (b) stop at a *typical* output length per
template (about 6 tokens for a pair-rank verdict, about 80 for a point score with its element lines)
instead of upstream's ``max_new_tokens`` (512); a real checkpoint stops there on its own.

    python benchmarks/scoring_throughput.py --json bench-out/throughput.json        # CPU, toy world
    python benchmarks/scoring_throughput.py --shape mid --items 64 --tasks pairwise pointwise   # CPU, ~2 min
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


# A mid-sized judge: Qwen2.5-0.5B's text dimensions (head_dim 64) with two decoder layers and a two-block vision
# tower of Qwen2.5-VL-7B's width, on the toy tokenizer and processor (the same host work per item as the toy judge).
QWEN2_5_VL_MID = {
    "text_config": {
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 2, "num_attention_heads": 14,
        "num_key_value_heads": 2, "max_window_layers": 2,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
        "rms_norm_eps": 1e-06,
    },
    "vision_config": {
        "depth": 2, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 896,
        "fullatt_block_indexes": [1],
    },
}  # fmt: skip
SHAPES = {"mid": QWEN2_5_VL_MID, "7b": QWEN2_5_VL_7B}


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


def ours(
    rm: UnifiedReward, backend: TransformersBackend, template, items, mode: str, max_new_tokens: int, fresh_cache: bool = False
) -> Measurement:
    if fresh_cache and backend.vision_cache is not None:
        backend.vision_cache.clear()
    started, cpu_started = time.perf_counter(), time.process_time()
    results = rm.judge_batch(template, items, mode=mode, max_new_tokens=max_new_tokens)
    synchronize(backend.model)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    failed = [r for r in results if r.status.value in ("media_error", "backend_error")]
    if failed:
        raise RuntimeError(f"{len(failed)} {mode} items failed, e.g. {failed[0].error}")
    prompt = statistics.mean(backend.encode(rm._request(template, item)).length for item in items[:4])
    return Measurement(len(items), seconds, cpu_seconds, prompt + (max_new_tokens if mode == "generate" else 1))


class OverlapProbe:
    """Wall-clock intervals of the backend's encoding (``_encode_all``, prefetch thread or not) and model calls
    (``_run_chunk``) during one run: how much of the encoding ran while a forward was in flight."""

    def __init__(self, backend: TransformersBackend):
        self.backend, self.encodes, self.forwards = backend, [], []

    def __enter__(self) -> OverlapProbe:
        encode_all, run_chunk = self.backend._encode_all, self.backend._run_chunk

        def timed(intervals, fn):
            def wrapper(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    intervals.append((started, time.perf_counter()))
            return wrapper

        self.backend._encode_all = timed(self.encodes, encode_all)
        self.backend._run_chunk = timed(self.forwards, run_chunk)
        return self

    def __exit__(self, *exc) -> None:
        del self.backend._encode_all, self.backend._run_chunk

    def as_dict(self, items: int) -> dict:
        encode = sum(end - start for start, end in self.encodes)
        overlapped = sum(max(0.0, min(e1, f1) - max(e0, f0)) for e0, e1 in self.encodes for f0, f1 in self.forwards)
        return {
            "encode_wall_ms_per_item": round(1000 * encode / items, 3),
            "encode_overlapped_fraction": round(overlapped / encode, 3) if encode else None,
        }


def capture_batches(rm: UnifiedReward, backend: TransformersBackend, template, items) -> list:
    """Every padded batch and model call that logit mode makes on ``items``, on the device, for (d)."""
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
    return captured


def bare_forward(model, captured: list, samples: int) -> Measurement:
    """(d): only the replay of the captured model calls (the vision tower runs uncached in the replay)."""
    synchronize(model)
    started, cpu_started = time.perf_counter(), time.process_time()
    for batch, run in captured:
        run(batch)
    synchronize(model)
    tokens = sum(int(batch["attention_mask"].sum()) for batch, _ in captured) / samples
    return Measurement(samples, time.perf_counter() - started, time.process_time() - cpu_started, tokens)


def fastest(runs: list[tuple[Measurement, dict]]) -> tuple[Measurement, dict]:
    """The repeat with the least wall time (its overlap figures with it), CPU time the least over the repeats."""
    measurement, extra = min(runs, key=lambda run: run[0].seconds)
    cpu = min(run[0].cpu_seconds for run in runs)
    return Measurement(measurement.samples, measurement.seconds, cpu, measurement.tokens_per_sample), extra


def synchronize(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def build_model(args, world: dict):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dtype = getattr(torch, args.dtype)
    attn = {"attn_implementation": args.attn} if getattr(args, "attn", None) else {}
    processor = AutoProcessor.from_pretrained(world["reward_model"])
    if args.shape == "toy":
        model = AutoModelForImageTextToText.from_pretrained(args.model or world["reward_model"], dtype=dtype, **attn)
        if args.model:
            processor = AutoProcessor.from_pretrained(args.model)
        return model.to(args.device).eval(), processor
    if args.shape == "7b":  # upstream processor pixel budget (qwen-vl-utils caps images at 16384 * 28 * 28 pixels)
        processor.image_processor.min_pixels, processor.image_processor.max_pixels = 4 * 28 * 28, 16384 * 28 * 28
        processor.image_processor.size = {"shortest_edge": 4 * 28 * 28, "longest_edge": 16384 * 28 * 28}
    return random_judge(args, world, SHAPES[args.shape], seed=0), processor


def random_judge(args, world: dict, changes: dict[str, dict], seed: int):
    """A judge with random weights from the toy judge's config (its token ids), with ``changes`` set on the config's
    parts (``{"text_config": {...}, "vision_config": {...}, "": {...}}``, ``""`` the top level); nothing is
    downloaded."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(world["reward_model"])
    for part, values in changes.items():
        for key, value in values.items():
            setattr(getattr(config, part) if part else config, key, value)
    attn = {"attn_implementation": args.attn} if getattr(args, "attn", None) else {}
    torch.manual_seed(seed)
    with torch.device(args.device):
        model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, args.dtype), **attn)
    return model.eval()


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
        "model": model_label(args),
        "shape": args.shape,
        "parameters": sum(p.numel() for p in model.parameters()),
        "items": args.items,
        "batch_size": args.batch_size,
        "prefetch": not args.no_prefetch,
        "repeats": args.repeats,
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
        entry: dict = {"template": key, "upstream_max_new_tokens": template.max_new_tokens, "output_tokens": typical}
        if not args.overhead_only:
            upstream = upstream_loop(model, processor, template, items, typical)
            generate = ours(rm, backend, template, items, "generate", typical)
            entry.update(upstream_loop=upstream.as_dict(), batched_generate=generate.as_dict())
        captured = capture_batches(rm, backend, template, items)
        runs: dict[str, list] = {"logit": [], "serial": [], "bare": []}
        for _ in range(args.repeats):  # interleaved, so a load spike hits all three alike
            # logit runs start with an empty vision cache: the tower runs on every distinct image, as in (d)
            with OverlapProbe(backend) as probe:
                runs["logit"].append((ours(rm, backend, template, items, "logit", typical, fresh_cache=True), probe))
            backend.prefetch = False  # the same run with every group encoded on the main thread (no overlap)
            with OverlapProbe(backend) as probe:
                runs["serial"].append((ours(rm, backend, template, items, "logit", typical, fresh_cache=True), probe))
            backend.prefetch = not args.no_prefetch
            runs["bare"].append((bare_forward(model, captured, len(items)), None))
        (logit, overlap), (serial, serial_overlap), (bare, _) = (fastest(runs[k]) for k in ("logit", "serial", "bare"))
        entry.update({
            "batched_logit": logit.as_dict(),
            "batched_logit_no_prefetch": serial.as_dict(),
            "bare_forward": bare.as_dict(),
            "overhead_fraction": round(1 - bare.seconds / logit.seconds, 3),
            "overhead_fraction_cpu": round(1 - bare.cpu_seconds / logit.cpu_seconds, 3),
            "overhead_fraction_no_prefetch": round(1 - bare.seconds / serial.seconds, 3),
            "host_cpu_ms_per_item": round(logit.cpu_ms_per_sample - bare.cpu_ms_per_sample, 3),
            "prefetch": overlap.as_dict(len(items)),  # how much encoding ran while a forward was in flight
            "no_prefetch": serial_overlap.as_dict(len(items)),
            "logit_vs_bare_forward_ratio": round(logit.samples_per_s / bare.samples_per_s, 3),
        })  # fmt: skip
        if not args.overhead_only:
            entry.update({
                "generate_vs_upstream_ratio": round(generate.samples_per_s / upstream.samples_per_s, 2),
                "logit_vs_upstream_ratio": round(logit.samples_per_s / upstream.samples_per_s, 2),
                "generate_vs_upstream_cpu_ratio": round(upstream.cpu_ms_per_sample / generate.cpu_ms_per_sample, 2),
                "logit_vs_upstream_cpu_ratio": round(upstream.cpu_ms_per_sample / logit.cpu_ms_per_sample, 2),
            })  # fmt: skip
        report["tasks"][task] = entry
    return report


def table(report: dict) -> str:
    base_name = "upstream" if all("upstream_loop" in entry for entry in report["tasks"].values()) else "logit"
    lines = [
        f"{report['model']} on {report['device']} ({report['dtype']}), {report['items']} items, batch {report['batch_size']}",
        f"note: {report['stopping']}",
        f"{'task':<10} {'method':<25} {'samples/s':>10} {'vs ' + base_name:>12} {'cpu ms/sample':>14} {'cpu vs ' + base_name:>16}"
        f" {'tok/sample':>11} {'7B bf16 FLOP bound/s':>21}",
    ]
    for task, entry in report["tasks"].items():
        first = entry["upstream_loop" if base_name == "upstream" else "batched_logit"]  # the ratios' base
        base, base_cpu = first["samples_per_s"], first["cpu_ms_per_sample"]
        for method in ("upstream_loop", "batched_generate", "batched_logit", "batched_logit_no_prefetch", "bare_forward"):
            if method not in entry:
                continue
            m = entry[method]
            lines.append(
                f"{task:<10} {method:<25} {m['samples_per_s']:>10.2f} {m['samples_per_s'] / base:>11.1f}x "
                f"{m['cpu_ms_per_sample']:>14.2f} {base_cpu / m['cpu_ms_per_sample']:>15.1f}x "
                f"{m['tokens_per_sample']:>11.0f} {m['flop_bound_samples_per_s_7b']:>21.1f}"
            )
        lines.append(f"{task:<10} logit overhead over a bare forward: {entry['overhead_fraction']:.1%} of its time "
                     f"({entry['overhead_fraction_no_prefetch']:.1%} without prefetch), "
                     f"{entry['overhead_fraction_cpu']:.1%} of its CPU time, host {entry['host_cpu_ms_per_item']:.2f} cpu ms/item "
                     f"(throughput {entry['logit_vs_bare_forward_ratio']:.0%} of the bare forward); encoding "
                     f"{entry['prefetch']['encode_wall_ms_per_item']:.2f} ms/item wall, {entry['prefetch']['encode_overlapped_fraction']:.0%} "
                     f"of it during a forward ({entry['no_prefetch']['encode_wall_ms_per_item']:.2f} ms/item without prefetch)")
    return "\n".join(lines)


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """The judge flags shared with ``sift_throughput.py``: which model, where, and its input size."""
    parser.add_argument("--model", help="checkpoint to time (default: the toy world's reward model)")
    parser.add_argument("--world", help="toy world folder (built there when missing; default: a temp folder)")
    parser.add_argument("--shape", choices=("toy", *SHAPES), default="toy",
                        help="toy: the toy world's judge; mid: Qwen2.5-0.5B text dims, 2 layers; 7b: Qwen2.5-VL-7B "
                             "(mid and 7b: random weights from config, nothing downloaded)")
    parser.add_argument("--config-7b", action="store_true", help="the same as --shape 7b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--attn", help="attn_implementation: sdpa, eager, flash_attention_2 (default: transformers')")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, help="resize images to N x N (default: as stored; 448 with --config-7b)")


def parse_judge_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.config_7b:
        args.shape = "7b"
    if args.shape != "toy" and args.model:
        parser.error("--model and --shape mid / 7b exclude each other")
    if args.shape == "7b" and args.image_size is None:
        args.image_size = 448
    return args


def model_label(args: argparse.Namespace) -> str:
    labels = {"7b": "qwen2.5-vl-7b-shaped (random)", "mid": "qwen2.5-vl mid-shaped: 0.5B text dims, 2 layers (random)"}
    return labels.get(args.shape) or args.model or "toy qwen2.5-vl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_judge_arguments(parser)
    parser.add_argument("--items", type=int, default=16, help="samples per task and method")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--no-prefetch", action="store_true", help="encode on the main thread only (for A/B timing)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of (c), (c) without prefetch and (d); the fastest counts")
    parser.add_argument("--overhead-only", action="store_true", help="skip (a) and (b): only the overhead figures")
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
