"""Step time and peak memory of ``train_video_dpo.py``'s DPO step, per text-to-video family.

The step is the script's own (:func:`train_video_dpo.training_step` on :func:`train_video_dpo.load_trainable`):
VAE encoding of both clips, text encoding, policy and reference (LoRA disabled) forward passes, backward, AdamW.
Clips are random pixels; weights are random tiny toy pipelines unless ``--pretrained_model_name_or_path`` is given.

    python benchmarks/video_dpo_step.py --family animatediff ltx               # toy pipelines, CPU, 32 px
    python benchmarks/video_dpo_step.py --pretrained_model_name_or_path Wan-AI/Wan2.1-T2V-1.3B-Diffusers \\
        --device cuda --mixed_precision bf16 --height 480 --width 832 --num_frames 33 --gradient_checkpointing

Prints one line per family (median ms/step after warm-up; peak memory: CUDA max allocated, or on CPU the
process's peak RSS so far, which includes earlier families) and writes them to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from integrations.diffusers import train_video_dpo  # noqa: E402


TOY_FAMILIES = ["animatediff", "cogvideox", "ltx", "wan"]


def toy_pipeline(family: str, work: Path) -> Path:
    """A random tiny AnimateDiff (on the toy SD), CogVideoX, LTX-Video or Wan pipeline."""
    from unifiedreward.toy import t2v
    from unifiedreward.toy.sd import build_stable_diffusion
    from unifiedreward.toy.tokenization import scene_texts

    if family == "animatediff":
        return t2v.build_animatediff(build_stable_diffusion(work / "sd", scene_texts()), work / "animatediff")
    return getattr(t2v, f"build_{family}")(work / family, scene_texts())


def measure(path: Path, args: argparse.Namespace) -> dict:
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=args.device == "cpu")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    train_args = train_video_dpo.parse_args([
        "--pretrained_model_name_or_path", str(path), "--dataset_name", "-", "--rank", str(args.rank),
        "--latent_sampling", "mode", *(["--gradient_checkpointing"] if args.gradient_checkpointing else []),
    ])
    pipeline, family, model, frozen_copy, denoising = train_video_dpo.load_trainable(
        train_args, accelerator.device, dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    model, optimizer = accelerator.prepare(model, optimizer)
    batch = {
        "pixels": torch.rand(args.batch_size, 2, args.num_frames, 3, args.height, args.width) * 2 - 1,
        "captions": ["a red circle moving left"] * args.batch_size,
    }
    times = []
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup_steps + args.steps):
        started = time.perf_counter()
        train_video_dpo.training_step(accelerator, model, frozen_copy, denoising, batch, train_args, dtype)
        optimizer.step()
        optimizer.zero_grad()
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() if accelerator.device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "family": family.name,
        "pipeline": type(pipeline).__name__,
        "objective": "flow-dpo" if family.flow_matching else "diffusion-dpo",
        "ms_per_step": round(1000 * statistics.median(times[args.warmup_steps:]), 1),
        "peak_mem_mb": round(peak / 2**20, 1),
        "shape": [args.batch_size, args.num_frames, args.height, args.width],
        "device": accelerator.device.type,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", nargs="+", default=TOY_FAMILIES, choices=TOY_FAMILIES,
                        help="Toy pipelines to build (ignored with --pretrained_model_name_or_path).")
    parser.add_argument("--pretrained_model_name_or_path", default=None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--batch_size", type=int, default=2, help="Pairs per step.")
    parser.add_argument("--num_frames", type=int, default=5)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as work:
        paths = ([Path(args.pretrained_model_name_or_path)] if args.pretrained_model_name_or_path
                 else [toy_pipeline(family, Path(work)) for family in args.family])
        for path in paths:
            result = measure(path, args)
            results.append(result)
            print(f"{result['family']:<12} {result['objective']:<14} {result['ms_per_step']:>9.1f} ms/step  "
                  f"peak {result['peak_mem_mb']:>8.1f} MB  pairs x frames x H x W = {result['shape']} "
                  f"on {result['device']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
