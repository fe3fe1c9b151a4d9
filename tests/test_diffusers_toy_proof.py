"""End-to-end toy proof: tiny SD candidates -> toy judge sift -> `accelerate launch` Diffusion-DPO -> reload.

The training runs through the real accelerate CLI with a CPU config, in a subprocess, as a user would run it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from integrations.diffusers.generate_candidates import main as generate_main
from integrations.diffusers.sift_images import sift_candidates
from reward_core import UnifiedReward
from test_diffusers_units import BrightnessJudge

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO_ROOT / "integrations" / "diffusers" / "train_diffusion_dpo.py"
CPU_CONFIG = REPO_ROOT / "examples" / "diffusers" / "accelerate_cpu.yaml"

pytestmark = pytest.mark.slow


def accelerate_launch(*script_args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_CONFIG), str(TRAIN_SCRIPT),
               *script_args]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


def read_metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_generate_sift_train_resume_and_reload(toy_world, tmp_path):
    from diffusers import DiffusionPipeline

    prompts = tmp_path / "prompts.jsonl"
    lines = Path(toy_world["data"]["gen_prompts"]).read_text().splitlines()
    prompts.write_text("\n".join(lines[:6] + [line for line in lines if '"test"' in line][:2]) + "\n")
    generate_main([
        "--pretrained_model_name_or_path", toy_world["sd_model"], "--prompts", str(prompts),
        "--num_images_per_prompt", "4", "--batch_size", "4", "--num_inference_steps", "1",
        "--output_dir", str(tmp_path / "candidates"), "--device", "cpu",
    ])
    sifted = sift_candidates(UnifiedReward(BrightnessJudge()), tmp_path / "candidates", tmp_path / "dpo",
                             progress=False)
    assert sifted["kept"] == 8 and sifted["splits"] == {"train": 6, "test": 2}

    output_dir = tmp_path / "lora"
    common = [
        "--pretrained_model_name_or_path", toy_world["sd_model"], "--dataset_name", str(tmp_path / "dpo"),
        "--output_dir", str(output_dir), "--resolution", "32", "--train_batch_size", "2", "--learning_rate", "1e-3",
        "--mixed_precision", "no", "--seed", "0", "--rank", "4", "--checkpointing_steps", "2", "--report_to", "none",
        "--latent_sampling", "mode",
    ]
    accelerate_launch(*common, "--max_train_steps", "2", "--eval_split", "test", "--eval_noise_draws", "1")
    assert (output_dir / "checkpoint-2" / "pytorch_lora_weights.safetensors").is_file()
    first = read_metrics(output_dir)
    assert [m["step"] for m in first] == [1, 2]
    assert {"loss", "implicit_acc", "rewards/chosen", "rewards/rejected", "rewards/margins"} <= set(first[0])
    assert first[0]["implicit_acc"] == 0.5 and first[0]["rewards/margins"] == 0.0  # LoRA B=0: model == reference
    held_out = json.loads((output_dir / "eval_results.json").read_text())
    assert held_out["before"] == {"implicit_acc": 0.5, "margin": 0.0, "pairs": 2}
    assert held_out["after"]["pairs"] == 2 and held_out["after"]["margin"] != 0.0

    accelerate_launch(*common, "--max_train_steps", "3", "--resume_from_checkpoint", "latest")
    assert [m["step"] for m in read_metrics(output_dir)] == [1, 2, 3]  # resumed at step 2, not from scratch
    assert (output_dir / "checkpoint-2").is_dir() and (output_dir / "pytorch_lora_weights.safetensors").is_file()

    pipeline = DiffusionPipeline.from_pretrained(toy_world["sd_model"])
    pipeline.set_progress_bar_config(disable=True)
    call = dict(prompt="a red circle on the left", num_inference_steps=2, output_type="np")
    base = pipeline(**call, generator=torch.Generator().manual_seed(0)).images
    pipeline.load_lora_weights(str(output_dir))
    tuned = pipeline(**call, generator=torch.Generator().manual_seed(0)).images
    assert tuned.shape == base.shape and np.isfinite(tuned).all()
    assert not np.allclose(tuned, base)  # the trained adapter is loaded and changes the output

