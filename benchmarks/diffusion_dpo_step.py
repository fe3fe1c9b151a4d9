"""Step time and peak memory of our Diffusion-DPO script vs diffusers' research ``train_diffusion_dpo.py``.

Both scripts train LoRA on the same random-weight pipeline and the same synthetic Pick-a-Pic data, each in its own
process. An ``AdamW.step`` hook timestamps optimizer steps (after a CUDA sync), so both are measured the same way;
peak memory is ``torch.cuda.max_memory_allocated`` on CUDA and the process's peak RSS on CPU. diffusers' script is
not vendored: pass its path (a diffusers checkout's ``examples/research_projects/diffusion_dpo/train_diffusion_dpo.py``).
Its unconditional ``import wandb`` is satisfied with an empty module when wandb is not installed.

    python benchmarks/diffusion_dpo_step.py --reference_script ~/diffusers/examples/research_projects/diffusion_dpo/train_diffusion_dpo.py \\
        --device cuda --json bench-out/dpo_step.json      # SD1.5-shaped UNet (real config, random weights), bf16, 512px
    python benchmarks/diffusion_dpo_step.py --reference_script ... --device cpu  # the toy pipeline, fp32, 64px

``--json`` holds ``step_time_ratio`` and ``peak_mem_ratio`` (ours / theirs) with the raw figures. Both children run
with the same intra-op thread count (``--threads``, default 1 on CPU: with unpinned threads one run measured 53x
between the scripts, at one thread each 1.02x), checked from inside each child, and the report records the
reference script's version (its file hash, the installed diffusers version and, in a git checkout, the commit).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import io
import json
import os
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
OUR_SCRIPT = REPO_ROOT / "integrations" / "diffusers" / "train_diffusion_dpo.py"
CAPTIONS = [f"a toy caption number {i}" for i in range(64)]


# --------------------------------------------------------------------------- the shared fixture


def build_sd15_shaped_pipeline(out_dir: Path) -> Path:
    """SD1.5's UNet/VAE/CLIP-L shapes with random weights (the toy tokenizer; vocab sized to it)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from unifiedreward.toy.tokenization import save_clip_tokenizer

    vocab_size = save_clip_tokenizer(out_dir / "tokenizer", CAPTIONS, 77)
    tokenizer = CLIPTokenizer.from_pretrained(out_dir / "tokenizer")
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(vocab_size=vocab_size, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, max_position_embeddings=77, projection_dim=768)
    )
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)
    StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(out_dir)
    return out_dir


def build_toy_pipeline(out_dir: Path) -> Path:
    from unifiedreward.toy.sd import build_stable_diffusion

    return build_stable_diffusion(out_dir, CAPTIONS, seed=0)


def write_pickapic_parquet(folder: Path, rows: int, resolution: int, seed: int = 0) -> Path:
    """``folder/train-00000-of-00001.parquet`` with random PNG pairs; readable by both scripts' ``load_dataset``."""
    from datasets import Dataset
    from PIL import Image

    rng = np.random.default_rng(seed)

    def png() -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()

    data = {
        "caption": [CAPTIONS[i % len(CAPTIONS)] for i in range(rows)],
        "jpg_0": [png() for _ in range(rows)],
        "jpg_1": [png() for _ in range(rows)],
        "label_0": [int(i % 2) for i in range(rows)],
    }
    folder.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(data).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    return folder


# --------------------------------------------------------------------------- one measured run (child process)


def run_child(script: str, result_path: str, script_args: list[str]) -> None:
    """Run ``script`` as ``__main__`` with optimizer-step timestamps and report them with the peak memory."""
    import torch

    threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)

    if "wandb" not in sys.modules:
        try:
            import wandb  # noqa: F401
        except ImportError:
            stub = types.ModuleType("wandb")
            stub.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # find_spec() must not raise
            sys.modules["wandb"] = stub
    cuda = torch.cuda.is_available()
    stamps: list[float] = []
    original_step = torch.optim.AdamW.step

    def timed_step(self, *args, **kwargs):
        output = original_step(self, *args, **kwargs)
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return output

    torch.optim.AdamW.step = timed_step
    sys.argv = [script, *script_args]
    sys.path.insert(0, str(REPO_ROOT))
    runpy.run_path(script, run_name="__main__")
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {"stamps": stamps, "peak_memory_bytes": int(peak), "torch_threads": torch.get_num_threads()}
    Path(result_path).write_text(json.dumps(result))


# --------------------------------------------------------------------------- the comparison


def common_args(args, model: Path, data: Path, output_dir: Path) -> list[str]:
    return [
        "--pretrained_model_name_or_path", str(model), "--dataset_name", str(data), "--dataset_split_name", "train",
        "--output_dir", str(output_dir), "--resolution", str(args.resolution),
        "--train_batch_size", str(args.train_batch_size), "--max_train_steps", str(args.warmup_steps + args.steps),
        "--learning_rate", "1e-5", "--lr_warmup_steps", "0", "--mixed_precision", args.mixed_precision,
        "--seed", "0", "--rank", str(args.rank), "--checkpointing_steps", "100000", "--no_hflip",
        "--dataloader_num_workers", "0",
    ] + (["--gradient_checkpointing"] if args.gradient_checkpointing else [])


def reference_version(script: Path) -> dict:
    """What the reference script is: its sha256, diffusers' version, and its checkout's commit when there is one."""
    version = {"path": str(script), "sha256": hashlib.sha256(script.read_bytes()).hexdigest()}
    try:
        import diffusers

        version["diffusers"] = diffusers.__version__
    except ImportError:
        version["diffusers"] = None
    commit = subprocess.run(["git", "-C", str(script.parent), "rev-parse", "HEAD"], capture_output=True, text=True)
    version["git_commit"] = commit.stdout.strip() if commit.returncode == 0 else None
    return version


def measure(name: str, script: Path, script_args: list[str], work: Path, device: str, threads: int | None) -> dict:
    result_path = work / f"{name}.json"
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [sys.executable, __file__, "--_child", str(script), str(result_path), "--", *script_args]
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{name} run failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(result_path.read_text())


def summarize(raw: dict, warmup_steps: int) -> dict:
    intervals = np.diff(raw["stamps"])[max(0, warmup_steps - 1) :].tolist()
    if not intervals:
        raise RuntimeError("Too few optimizer steps were recorded to time a step.")
    return {
        "step_time_s": statistics.median(intervals),
        "step_times_s": intervals,
        "peak_memory_bytes": raw["peak_memory_bytes"],
        "torch_threads": raw.get("torch_threads"),
    }


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_child":
        run_child(argv[1], argv[2], argv[4:])
        return {}
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference_script", required=True, help="diffusers' research train_diffusion_dpo.py")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--pretrained_model_name_or_path", default=None, help="Default: built (toy or SD1.5-shaped).")
    parser.add_argument("--resolution", type=int, default=None, help="Default 64 (cpu) / 512 (cuda).")
    parser.add_argument("--train_batch_size", type=int, default=None, help="Default 2 (cpu) / 4 (cuda).")
    parser.add_argument("--mixed_precision", default=None, choices=["no", "fp16", "bf16"], help="no (cpu) / bf16.")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="Measured optimizer steps.")
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="Intra-op threads for both runs. Default 1 (cpu) / unpinned.")
    parser.add_argument("--work_dir", default=None)
    parser.add_argument("--json", default=None, help="Write the result here.")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    args.resolution = args.resolution or (512 if cuda else 64)
    args.train_batch_size = args.train_batch_size or (4 if cuda else 2)
    args.mixed_precision = args.mixed_precision or ("bf16" if cuda else "no")
    args.threads = args.threads or (None if cuda else 1)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="dpo-step-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.pretrained_model_name_or_path) if args.pretrained_model_name_or_path else (
        build_sd15_shaped_pipeline(work / "sd15-shaped") if cuda else build_toy_pipeline(work / "toy-sd")
    )
    rows = args.train_batch_size * (args.steps + args.warmup_steps)
    data = write_pickapic_parquet(work / "data", rows, args.resolution)

    runs = {
        # diffusers' SD1.5 script writes the paper's beta=5000 as 2500 (no 0.5 factor); the objective is the same.
        "theirs": (Path(args.reference_script), common_args(args, model, data, work / "out-theirs")
                   + ["--beta_dpo", "2500", "--report_to", "tensorboard"]),
        "ours": (OUR_SCRIPT, common_args(args, model, data, work / "out-ours")
                 + ["--beta_dpo", "5000", "--report_to", "none"]),
    }
    results = {name: summarize(measure(name, script, script_args, work, args.device, args.threads), args.warmup_steps)
               for name, (script, script_args) in runs.items()}
    if results["ours"]["torch_threads"] != results["theirs"]["torch_threads"]:
        raise RuntimeError(f"thread counts differ: {results['ours']['torch_threads']} vs {results['theirs']['torch_threads']}")
    report = {
        "device": args.device,
        "config": {k: getattr(args, k) for k in ("resolution", "train_batch_size", "mixed_precision", "rank", "steps",
                                                 "warmup_steps", "gradient_checkpointing", "threads")},
        "reference_script": reference_version(Path(args.reference_script)),
        "model": str(model),
        **results,
        "step_time_ratio": results["ours"]["step_time_s"] / results["theirs"]["step_time_s"],
        "peak_mem_ratio": results["ours"]["peak_memory_bytes"] / results["theirs"]["peak_memory_bytes"],
    }
    if cuda:
        import torch

        report["gpu"] = torch.cuda.get_device_name(0)
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
