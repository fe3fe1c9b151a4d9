#!/usr/bin/env python
"""Toy Diffusion-DPO proof, offline on CPU: the preference is learned and carries over to held-out pairs.

    python examples/diffusers/toy_dpo_proof.py --work_dir demo-work/toy-dpo --seeds 0 1 2 --json proof.json

1. toy world (``unifiedreward.toy``) -> its SD briefly pre-trained on the toy scenes (``unifiedreward.toy.sd_pretrain``);
2. ``generate_candidates``: 4 images per prompt for 160 prompts (128 train / 32 held-out ``test`` prompts);
3. ``sift_images.sift_candidates`` with :class:`BrightnessJudge`, a rule judge behind the normal UnifiedReward API
   (it answers in UnifiedReward's formats, which ``reward_core`` parses): the brighter image wins;
4. ``accelerate launch integrations/diffusers/train_diffusion_dpo.py`` (LoRA, CPU) with ``--eval_split test``:
   held-out implicit accuracy before/after, every pair scored on the same 8 seeded (noise, timestep) draws;
5. the LoRA is loaded into the pipeline, which then draws the held-out prompts brighter than the base model.

Controls (``--preference darker``: the opposite preference must be learned just as well; ``--shuffle_train_labels``:
random training labels, the held-out margin must stay near 0) show what the accuracy measures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from reward_core.backends.base import AnswerLogprobs, Generation

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO_ROOT / "integrations" / "diffusers" / "train_diffusion_dpo.py"
CPU_CONFIG = REPO_ROOT / "examples" / "diffusers" / "accelerate_cpu.yaml"
CPU_CONFIG_2PROC = REPO_ROOT / "examples" / "diffusers" / "accelerate_cpu_2proc.yaml"  # two gloo processes
RESOLUTION = 32
LUMA = np.array([0.299, 0.587, 0.114])

logger = logging.getLogger(__name__)


def luminance(image) -> float:
    """Mean luminance in [0, 1] of an RGB PIL image."""
    return float((np.asarray(image, dtype=np.float64) / 255.0 @ LUMA).mean())


class BrightnessJudge:
    """A rule judge backend answering like UnifiedReward: "Image 1 is better." / "Final Score: x" (1-5).

    ``preference="brighter"`` prefers (and scores higher) the brighter image, ``"darker"`` the darker one.
    """

    def __init__(self, preference: str = "brighter"):
        if preference not in ("brighter", "darker"):
            raise ValueError(f"preference must be 'brighter' or 'darker', not {preference!r}")
        self.sign = 1.0 if preference == "brighter" else -1.0

    def _value(self, image) -> float:
        from reward_core.media import load_image

        return self.sign * luminance(load_image(image))

    def _answer(self, media: list) -> str:
        if len(media) == 2:
            first, second = (self._value(image) for image in media)
            if first == second:
                return "Both images are equally good."
            return "Image 1 is better." if first > second else "Image 2 is better."
        return f"Final Score: {3 + 2 * self._value(media[0]):.4f}"

    def generate(self, requests, max_new_tokens):
        return [Generation(text=self._answer(request.media)) for request in requests]

    def answer_logprobs(self, requests, candidates):
        return [AnswerLogprobs(error="BrightnessJudge has no logit mode") for _ in requests]


def write_prompts(path: Path, num_prompts: int, seed: int) -> Path:
    """Toy captions (20% held out as split ``test``) as ``generate_candidates`` prompts."""
    from unifiedreward.toy.data import make_gen_prompts, write_jsonl

    return write_jsonl(path, make_gen_prompts(num_prompts, seed=seed, held_out=0.2))


def make_preference_data(sd_dir: Path, prompts: Path, work_dir: Path, preference: str, seed: int) -> dict:
    """Candidates (4 per prompt) -> UnifiedReward sift with the rule judge -> ``work_dir/dpo_<preference>``."""
    from integrations.diffusers.generate_candidates import main as generate_main
    from integrations.diffusers.sift_images import sift_candidates
    from reward_core import UnifiedReward

    candidates = work_dir / "candidates"
    generate_main([
        "--pretrained_model_name_or_path", str(sd_dir), "--prompts", str(prompts), "--output_dir", str(candidates),
        "--num_images_per_prompt", "4", "--batch_size", "4", "--num_inference_steps", "2", "--seed", str(seed),
        "--height", str(RESOLUTION), "--width", str(RESOLUTION), "--device", "cpu",
    ])
    return sift_candidates(
        UnifiedReward(BrightnessJudge(preference)), candidates, work_dir / f"dpo_{preference}", progress=False
    )


def shuffle_train_labels(data_dir: Path, out_dir: Path, seed: int) -> Path:
    """Copy of a sifted dataset whose ``train`` labels are coin flips (``test`` untouched): a chance control."""
    from datasets import DatasetDict, load_from_disk

    dataset = load_from_disk(str(data_dir))
    flips = np.random.default_rng(seed).integers(0, 2, len(dataset["train"])).tolist()
    train = dataset["train"].remove_columns("label_0").add_column("label_0", flips)
    DatasetDict({**dataset, "train": train}).save_to_disk(str(out_dir))
    return out_dir


def train_args(
    sd_dir: Path, data_dir: Path, output_dir: Path, seed: int, steps: int = 40, checkpointing_steps: int = 20,
    evaluate: bool = True,
) -> list[str]:
    """The proof's ``train_diffusion_dpo.py`` flags: LoRA on CPU, held-out evaluation on split ``test``."""
    return [
        "--pretrained_model_name_or_path", str(sd_dir), "--dataset_name", str(data_dir), "--output_dir",
        str(output_dir), "--resolution", str(RESOLUTION), "--latent_sampling", "mode", "--train_batch_size", "8",
        "--max_train_steps", str(steps), "--learning_rate", "1e-3", "--rank", "8", "--beta_dpo", "5000",
        "--checkpointing_steps", str(checkpointing_steps), "--mixed_precision", "no", "--report_to", "none",
        "--seed", str(seed),
    ] + (["--eval_split", "test", "--eval_noise_draws", "8"] if evaluate else [])


def accelerate_launch(script_args: list[str], timeout: int = 600, train_script: Path = TRAIN_SCRIPT,
                      config_file: Path = CPU_CONFIG) -> subprocess.CompletedProcess:
    """``accelerate launch --config_file <config_file> <train_script> ...`` in a subprocess (CPU, one thread per
    process)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",  # the toy UNet is too small to gain from threads; on shared CPUs they only contend
        "ACCELERATE_USE_CPU": "1",  # the 2-process config is a multi-GPU layout: its processes must join on gloo
    }
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
               str(train_script), *script_args]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise RuntimeError(f"accelerate launch failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return completed


@torch.no_grad()
def generation_shift(sd_dir: Path, lora_dir: Path, prompts: list[str], num_inference_steps: int = 10) -> dict:
    """Luminance of the base vs the DPO-tuned pipeline on ``prompts`` (same seed per prompt)."""
    from diffusers import DiffusionPipeline

    pipeline = DiffusionPipeline.from_pretrained(str(sd_dir))
    pipeline.set_progress_bar_config(disable=True)

    def draw() -> np.ndarray:
        generators = [torch.Generator().manual_seed(index) for index in range(len(prompts))]
        images = pipeline(prompts, num_inference_steps=num_inference_steps, generator=generators,
                          height=RESOLUTION, width=RESOLUTION, output_type="np").images
        return (images @ LUMA).mean(axis=(1, 2))

    base = draw()
    pipeline.load_lora_weights(str(lora_dir))
    tuned = draw()
    if not np.isfinite(tuned).all():
        raise RuntimeError("The DPO-tuned pipeline produced non-finite images.")
    return {"base": float(base.mean()), "tuned": float(tuned.mean()), "brighter_share": float((tuned > base).mean())}


def held_out_prompts(prompts: Path) -> list[str]:
    from unifiedreward.toy.data import read_jsonl

    return [record["prompt"] for record in read_jsonl(prompts) if record["split"] == "test"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work_dir", type=Path, default=Path("demo-work/toy-dpo"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Training seeds (one run each).")
    parser.add_argument("--data_seed", type=int, default=0, help="Seed of the toy world, pre-training and candidates.")
    parser.add_argument("--num_prompts", type=int, default=160)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--preference", default="brighter", choices=["brighter", "darker"])
    parser.add_argument("--shuffle_train_labels", action="store_true", help="Chance control: random train labels.")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from unifiedreward.toy import build_world, load_world
    from unifiedreward.toy.sd_pretrain import PretrainSettings, pretrain_stable_diffusion

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work = args.work_dir.resolve()
    world = load_world(work / "world") or build_world(work / "world", seed=args.data_seed)
    sd_dir = work / "sd-pretrained"
    pretrain = pretrain_stable_diffusion(world["sd_model"], sd_dir, PretrainSettings(seed=args.data_seed))
    prompts = write_prompts(work / "prompts.jsonl", args.num_prompts, args.data_seed)
    sifted = make_preference_data(sd_dir, prompts, work, args.preference, args.data_seed)
    data_dir = work / f"dpo_{args.preference}"
    if args.shuffle_train_labels:
        data_dir = shuffle_train_labels(data_dir, work / f"dpo_{args.preference}_shuffled", args.data_seed)
    runs = {}
    for seed in args.seeds:
        output_dir = work / f"lora_{data_dir.name}_seed{seed}"
        accelerate_launch(train_args(sd_dir, data_dir, output_dir, seed, args.steps))
        runs[seed] = {
            **json.loads((output_dir / "eval_results.json").read_text()),
            "generation_luminance": generation_shift(sd_dir, output_dir, held_out_prompts(prompts)),
        }
        logger.info("seed %d: %s", seed, runs[seed])
    report = {"preference": args.preference, "shuffled_train_labels": args.shuffle_train_labels,
              "pretrain": asdict(pretrain), "sift": sifted, "runs": runs}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
