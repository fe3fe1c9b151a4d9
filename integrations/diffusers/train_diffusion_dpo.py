#!/usr/bin/env python
"""Diffusion-DPO fine-tuning of Stable Diffusion 1.x/2.x and SDXL (incl. SDXL-Turbo) on preference pairs.

Flags and defaults follow diffusers' ``examples/research_projects/diffusion_dpo`` scripts (their README commands are
accepted as they are), plus UnifiedReward's ``DiffusionDPO/train.py`` flags (``--sdxl``, ``--use_adafactor``,
``--proportion_empty_prompts``); ``--help`` lists each deliberate difference. Data is the Pick-a-Pic layout
(``caption``, ``jpg_0``, ``jpg_1``, ``label_0``): a ``save_to_disk`` folder (``integrations.diffusers.sift_images``),
UnifiedReward's ``dpo_data.json`` + ``images_dpo/``, or a Hub dataset / its local copy. The input is never written to.

    accelerate launch -m integrations.diffusers.train_diffusion_dpo \\
        --pretrained_model_name_or_path stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --dataset_name ./dpo_data --output_dir ./sd15-dpo-lora --resolution 512 --train_batch_size 4 \\
        --gradient_accumulation_steps 8 --max_train_steps 2000 --learning_rate 1e-5 --beta_dpo 5000 --rank 8

LoRA (default) uses the base UNet with adapters disabled as the reference, so only one UNet is in memory;
``--full_finetune`` trains every UNet weight against a frozen copy. Besides the trackers (``--report_to``), metrics
are written to ``<output_dir>/metrics.jsonl``; ``--eval_split`` reports held-out implicit accuracy before and after
training in ``<output_dir>/eval_results.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import random
import shutil
import time
from pathlib import Path

import torch
import transformers
from accelerate import Accelerator, PartialState
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, broadcast_object_list, parse_flag_from_env, set_seed
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from tqdm.auto import tqdm
from transformers import AutoTokenizer

import diffusers
from diffusers import AutoencoderKL, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin
from diffusers.optimization import get_scheduler
from diffusers.training_utils import cast_training_params
from diffusers.utils import check_min_version, convert_state_dict_to_diffusers, convert_unet_state_dict_to_peft

from integrations.diffusers.dpo_data import (
    EpochShuffleSampler,
    PairTransform,
    PreferencePairs,
    collate_pairs,
    default_split,
    load_preference_split,
    mix_seed,
    strict_preference_indices,
)
from integrations.diffusers.dpo_loss import diffusion_dpo_loss, per_sample_mse

check_min_version("0.30.0")

logger = get_logger(__name__, log_level="INFO")

TURBO_TIMESTEPS = (249, 499, 749, 999)
LORA_TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]


DIFFUSERS_VALIDATION_PROMPTS = [  # diffusers' research scripts' VALIDATION_PROMPTS, used by --run_validation
    "portrait photo of a girl, photograph, highly detailed face, depth of field, moody light, golden hour, style by Dan "
    "Winters, Russell James, Steve McCurry, centered, extremely detailed, Nikon D850, award winning photography",
    "Self-portrait oil painting, a beautiful cyborg with golden hair, 8k",
    "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k",
    "A photo of beautiful mountain with realistic sunset and blue lake, highly detailed, masterpiece",
]

DIFFERENCES = """
Flags and defaults are those of diffusers' examples/research_projects/diffusion_dpo scripts, plus UnifiedReward's
DiffusionDPO/train.py flags used by its launchers. Deliberate differences:
  --beta_dpo             one meaning for SD and SDXL: the paper's (UnifiedReward, diffusers' SDXL script; default 5000).
                         diffusers' SD1.5 script drops the 0.5 factor, so its --beta_dpo 2500 is our 5000.
  --dataset_split_name   default: 'train' for a local folder (sift_images / UnifiedReward output, a Hub-layout copy
                         whose files carry no split name), diffusers' 'validation' for a Hub dataset id.
  --resolution           default 512 for SD, 1024 for SDXL (diffusers' two scripts, UnifiedReward).
  ties (label_0 = 0.5)   dropped, not trained as if jpg_0 had won (diffusers keeps them).
  --resume_from_checkpoint  a name inside --output_dir or a path; a missing one is an error ('latest' with no
                         checkpoint starts a new run, as in diffusers). Resumed runs see the same pairs, crops, flips,
                         noise and timesteps as an uninterrupted run.
  --enable_xformers_memory_efficient_attention  without xformers installed: a warning, PyTorch SDPA is kept.
  --report_to            an unavailable tracker asked for by name is an error (accelerate skips it silently);
                         by default tensorboard if installed. Metrics always go to <output_dir>/metrics.jsonl.
  --sdxl                 UnifiedReward's meaning: the model must be SDXL (detected anyway), Adafactor unless another
                         optimizer is asked for, gradient checkpointing on, and a model name containing 'turbo' turns
                         on --is_turbo. UnifiedReward's train.py trains the full UNet: add --full_finetune for that.
  --push_to_hub          also skips checkpoint-*/ folders (optimizer states) when uploading.
  --loss_type            sigmoid or hinge; diffusers' SD script also lists ipo, which fails there (args.beta).
  --run_validation       after training, images with the trained weights only (diffusers adds no-LoRA images).
"""


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Diffusion-DPO training for Stable Diffusion / SDXL (LoRA by default).",
        epilog=DIFFERENCES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pretrained_model_name_or_path", type=str, required=True)
    parser.add_argument("--pretrained_vae_model_name_or_path", type=str, default=None, help="e.g. an fp16-fixed SDXL VAE.")
    parser.add_argument("--revision", type=str, default=None)
    parser.add_argument("--variant", type=str, default=None)
    parser.add_argument("--dataset_name", type=str, required=True,
                        help="save_to_disk folder, UnifiedReward sift folder (dpo_data.json), Hub dataset or its copy.")
    parser.add_argument("--dataset_split_name", type=str, default=None,
                        help="Default: 'train' for a local folder, 'validation' for a Hub dataset (see below).")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--eval_split", type=str, default=None, help="Held-out split: implicit accuracy before/after.")
    parser.add_argument("--eval_max_samples", type=int, default=None)
    parser.add_argument("--eval_noise_draws", type=int, default=4, help="Noise/timestep draws averaged per eval pair.")
    parser.add_argument("--cache_dir", type=str, default=None)
    parser.add_argument("--output_dir", type=str, default="diffusion-dpo-lora")
    parser.add_argument("--logging_dir", type=str, default="logs")
    parser.add_argument("--seed", type=int, default=None,
                        help="Default: drawn at random, logged and stored in checkpoints (a resume reuses it).")
    parser.add_argument("--resolution", type=int, default=None, help="Default 512 (SD) or 1024 (SDXL).")
    parser.add_argument("--random_crop", action="store_true")
    parser.add_argument("--no_hflip", action="store_true")
    parser.add_argument("--proportion_empty_prompts", type=float, default=0.0,
                        help="Share of captions replaced by '' (UnifiedReward; its train.py defaults to 0.2).")
    parser.add_argument("--vae_encode_batch_size", type=int, default=8)
    parser.add_argument(
        "--latent_sampling", default="sample", choices=["sample", "mode"],
        help="Draw training latents from the VAE posterior (diffusers) or take its mode (for VAEs whose posterior "
        "noise swamps the image, e.g. random toy VAEs).",
    )
    parser.add_argument("--train_batch_size", type=int, default=4, help="Pairs per device per micro-batch.")
    parser.add_argument("--num_train_epochs", type=int, default=1)
    parser.add_argument("--max_train_steps", type=int, default=None)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=None)
    parser.add_argument("--resume_from_checkpoint", type=str, default=None,
                        help='"latest", a checkpoint name inside --output_dir (checkpoint-500) or a path.')
    parser.add_argument("--beta_dpo", type=float, default=5000.0, help="Paper scale (= diffusers SD1.5 script x2).")
    parser.add_argument("--loss_type", type=str, default="sigmoid", choices=["sigmoid", "hinge"])
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--scale_lr", action="store_true", help="lr x accumulation x batch size x processes.")
    parser.add_argument("--lr_scheduler", type=str, default="constant")
    parser.add_argument("--lr_warmup_steps", type=int, default=500)
    parser.add_argument("--lr_num_cycles", type=int, default=1)
    parser.add_argument("--lr_power", type=float, default=1.0)
    optimizer = parser.add_mutually_exclusive_group()
    optimizer.add_argument("--use_8bit_adam", action="store_true", help="bitsandbytes' AdamW8bit (CUDA).")
    optimizer.add_argument("--use_adafactor", action="store_true",
                           help="transformers' Adafactor as in UnifiedReward (fixed lr, no clipping by us).")
    parser.add_argument("--adam_beta1", type=float, default=0.9)
    parser.add_argument("--adam_beta2", type=float, default=0.999)
    parser.add_argument("--adam_weight_decay", type=float, default=1e-2)
    parser.add_argument("--adam_epsilon", type=float, default=1e-8)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument("--allow_tf32", action="store_true")
    parser.add_argument("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16"])
    parser.add_argument("--prior_generation_precision", type=str, default=None, choices=["no", "fp32", "fp16", "bf16"],
                        help="Accepted for diffusers compatibility; unused there and here.")
    parser.add_argument("--enable_xformers_memory_efficient_attention", action="store_true")
    parser.add_argument("--report_to", type=str, default=None, help="Default: tensorboard if installed, else none.")
    parser.add_argument("--tracker_name", type=str, default=None,
                        help="Default diffusion-dpo-lora (SD) / diffusion-dpo-lora-sdxl (SDXL), as in diffusers.")
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_token", type=str, default=None)
    parser.add_argument("--hub_model_id", type=str, default=None)
    parser.add_argument("--run_validation", action="store_true",
                        help="Generate images every --validation_steps and after training (diffusers' prompts).")
    parser.add_argument("--validation_prompts", type=str, nargs="*", default=None, help="Implies --run_validation.")
    parser.add_argument("--validation_steps", type=int, default=200)
    parser.add_argument("--validation_inference_steps", type=int, default=None, help="Default 25, or 4 with --is_turbo.")
    finetune = parser.add_mutually_exclusive_group()
    finetune.add_argument("--use_lora", dest="use_lora", action="store_true", default=True, help="Default.")
    finetune.add_argument("--full_finetune", dest="use_lora", action="store_false")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank.")
    parser.add_argument("--sdxl", action="store_true", help="UnifiedReward's SDXL recipe flag (see below).")
    parser.add_argument("--is_turbo", action="store_true",
                        help="SDXL-Turbo: timesteps in {249, 499, 749, 999} and a zero-terminal-SNR schedule.")
    parser.add_argument("--rescale_betas_zero_snr", action="store_true", help="Zero-terminal-SNR noise schedule.")
    parser.add_argument("--local_rank", type=int, default=-1)
    args = parser.parse_args(input_args)
    env_local_rank = int(os.environ.get("LOCAL_RANK", -1))
    if env_local_rank != -1:
        args.local_rank = env_local_rank
    if args.dataset_split_name is None:
        args.dataset_split_name = default_split(args.dataset_name)
    if args.validation_prompts:
        args.run_validation = True
    elif args.run_validation:
        args.validation_prompts = list(DIFFUSERS_VALIDATION_PROMPTS)
    if args.report_to == "wandb" and args.hub_token is not None:
        raise ValueError("--report_to wandb with --hub_token would expose the token; use `hf auth login` instead.")
    if args.sdxl:
        if not (args.use_8bit_adam or args.use_adafactor):
            args.use_adafactor = True
        args.gradient_checkpointing = True
        if "turbo" in args.pretrained_model_name_or_path.lower():
            args.is_turbo = True
    if args.is_turbo:
        args.rescale_betas_zero_snr = True  # upstream (diffusers' SDXL script, UnifiedReward) do this for turbo
    return args


def resolve_report_to(report_to: str | None) -> str | list[str] | None:
    """The tracker for accelerate; an unavailable one asked for by name is an error, not a silent no-op."""
    from accelerate.tracking import get_available_trackers

    available = {str(tracker) for tracker in get_available_trackers()}
    if report_to is None:
        if "tensorboard" in available:
            return "tensorboard"
        logger.warning("tensorboard is not installed: metrics go to <output_dir>/metrics.jsonl only.")
        return None
    if report_to == "none":
        return None
    names = report_to.split(",")
    missing = [name for name in names if name not in available and name != "all"]
    if missing:
        raise ValueError(
            f"--report_to {report_to}: {missing} not installed (available: {sorted(available) or 'none'}). "
            "Install it, or pass --report_to none (metrics.jsonl is always written)."
        )
    return names[0] if len(names) == 1 else names


def create_hub_repo(args) -> str | None:
    """The Hub repo for --push_to_hub, created before training so that an offline machine fails at once."""
    if not args.push_to_hub:
        return None
    from huggingface_hub import constants, create_repo

    repo_name = args.hub_model_id or Path(args.output_dir).name
    if constants.HF_HUB_OFFLINE:
        raise RuntimeError(
            f"--push_to_hub needs the Hugging Face Hub, but HF_HUB_OFFLINE is set: unset it, or drop --push_to_hub "
            f"and upload {args.output_dir} later with `hf upload {repo_name} {args.output_dir}`."
        )
    try:
        return create_repo(repo_id=repo_name, exist_ok=True, token=args.hub_token).repo_id
    except Exception as error:  # network, auth: say what failed before any training time is spent
        raise RuntimeError(f"--push_to_hub: could not create or reach Hub repo {repo_name!r}: {error}") from error


def build_optimizer(args, params):
    """AdamW (default), bitsandbytes' AdamW8bit (--use_8bit_adam) or transformers' Adafactor (--use_adafactor)."""
    if args.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError as error:
            raise ImportError(
                "--use_8bit_adam needs bitsandbytes (`pip install bitsandbytes`, a CUDA GPU); "
                "drop the flag to use torch AdamW, or pass --use_adafactor for a low-memory optimizer."
            ) from error
        optimizer_class = bnb.optim.AdamW8bit
    elif args.use_adafactor:  # UnifiedReward's settings: a fixed lr, its own update clipping
        return transformers.Adafactor(
            params, lr=args.learning_rate, weight_decay=args.adam_weight_decay, clip_threshold=1.0,
            scale_parameter=False, relative_step=False,
        )
    else:
        optimizer_class = torch.optim.AdamW
    return optimizer_class(
        params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay, eps=args.adam_epsilon,
    )


def enable_xformers(unet) -> None:
    from diffusers.utils.import_utils import is_xformers_available

    if is_xformers_available():
        unet.enable_xformers_memory_efficient_attention()
    else:
        logger.warning(
            "--enable_xformers_memory_efficient_attention: xformers is not installed; keeping PyTorch's "
            "scaled_dot_product_attention, which is memory-efficient on its own."
        )


class TextConditioner:
    """Frozen CLIP text encoder(s) -> UNet conditioning for SD (one encoder) or SDXL (two + pooled embeddings)."""

    def __init__(self, tokenizers: list, text_encoders: list):
        self.tokenizers = tokenizers
        self.text_encoders = text_encoders

    @property
    def is_sdxl(self) -> bool:
        return len(self.text_encoders) == 2

    def _ids(self, tokenizer, captions: list[str], device) -> torch.Tensor:
        tokens = tokenizer(
            captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        return tokens.input_ids.to(device)

    @torch.no_grad()
    def __call__(self, captions: list[str], device, dtype) -> tuple[torch.Tensor, dict | None]:
        """``(hidden_states, added_cond_kwargs)`` for one image per caption; SDXL's ``time_ids`` come separately."""
        if not self.is_sdxl:
            hidden = self.text_encoders[0](self._ids(self.tokenizers[0], captions, device))[0]
            return hidden.to(dtype), None
        hidden_states, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            output = encoder(self._ids(tokenizer, captions, device), output_hidden_states=True)
            pooled = output[0]  # the projection model comes last: its first output is the pooled embedding
            hidden_states.append(output.hidden_states[-2])
        return torch.cat(hidden_states, dim=-1).to(dtype), {"text_embeds": pooled.to(dtype)}


def sdxl_time_ids(original_sizes, crop_top_lefts, resolution: int, device, dtype) -> torch.Tensor:
    """SDXL micro-conditioning per image: ``[orig_h, orig_w, crop_top, crop_left, target_h, target_w]``."""
    rows = [[*size, *crop, resolution, resolution] for size, crop in zip(original_sizes, crop_top_lefts)]
    return torch.tensor(rows, device=device, dtype=dtype)


def load_components(args):
    """Scheduler, VAE, UNet and the text conditioner of an SD or SDXL checkpoint."""
    path, revision, variant = args.pretrained_model_name_or_path, args.revision, args.variant
    pipeline_config = DiffusionPipeline.load_config(path, revision=revision)
    is_sdxl = "text_encoder_2" in pipeline_config
    if args.sdxl and not is_sdxl:
        raise ValueError(f"--sdxl given, but {path} is not an SDXL pipeline (no text_encoder_2 in model_index.json).")
    tokenizers, text_encoders = [], []
    for suffix in ("", "_2") if is_sdxl else ("",):
        tokenizers.append(AutoTokenizer.from_pretrained(path, subfolder=f"tokenizer{suffix}", revision=revision))
        library, class_name = pipeline_config[f"text_encoder{suffix}"]
        encoder_class = getattr(transformers, class_name)
        text_encoders.append(
            encoder_class.from_pretrained(path, subfolder=f"text_encoder{suffix}", revision=revision, variant=variant)
        )
    noise_scheduler = DDPMScheduler.from_pretrained(
        path, subfolder="scheduler", revision=revision, rescale_betas_zero_snr=args.rescale_betas_zero_snr
    )
    vae_path = args.pretrained_vae_model_name_or_path
    vae = AutoencoderKL.from_pretrained(
        vae_path or path, subfolder=None if vae_path else "vae", revision=None if vae_path else revision
    )
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", revision=revision, variant=variant)
    return noise_scheduler, vae, unet, TextConditioner(tokenizers, text_encoders)


def sample_timesteps(num_pairs: int, noise_scheduler, is_turbo: bool, generator=None) -> torch.Tensor:
    """One timestep per pair (shared by its chosen and rejected halves), repeated to ``2 * num_pairs``."""
    if is_turbo:
        choice = torch.randint(0, len(TURBO_TIMESTEPS), (num_pairs,), generator=generator)
        timesteps = torch.tensor(TURBO_TIMESTEPS)[choice]
    else:
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (num_pairs,), generator=generator)
    return timesteps.long().repeat(2)


def encode_pairs(vae, pixel_values: torch.Tensor, batch_size: int, sample: bool = True, generator=None) -> torch.Tensor:
    """``(B, 6, H, W)`` chosen|rejected pixels -> ``(2B, C, h, w)`` latents laid out as ``[chosen..., rejected...]``.

    Posterior samples are drawn on the CPU from ``generator`` (reproducible on any device)."""
    pixels = torch.cat(pixel_values.chunk(2, dim=1)).to(vae.device, vae.dtype)
    latents = []
    with torch.no_grad():
        for start in range(0, pixels.shape[0], batch_size):
            distribution = vae.encode(pixels[start : start + batch_size]).latent_dist
            latent = distribution.mean
            if sample:
                draw = torch.randn(latent.shape, generator=generator, dtype=torch.float32)
                latent = latent + distribution.std * draw.to(latent.device, latent.dtype)
            latents.append(latent)
    return torch.cat(latents) * vae.config.scaling_factor


class DenoisingLoss:
    """Per-sample denoising loss of a UNet on a shared (noise, timestep) draw."""

    def __init__(self, noise_scheduler):
        self.noise_scheduler = noise_scheduler

    def prepare(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor):
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction_type = self.noise_scheduler.config.prediction_type
        if prediction_type == "epsilon":
            target = noise
        elif prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise ValueError(f"Unsupported prediction type {prediction_type!r}.")
        return noisy, target

    def __call__(self, unet, noisy, timesteps, conditioning, target) -> torch.Tensor:
        hidden_states, added_cond_kwargs = conditioning
        prediction = unet(noisy, timesteps, hidden_states, added_cond_kwargs=added_cond_kwargs).sample
        return per_sample_mse(prediction, target)


class ReferenceModel:
    """The DPO reference: the base UNet with LoRA adapters disabled, or a frozen copy for full fine-tuning."""

    def __init__(self, accelerator: Accelerator, unet, frozen_copy=None):
        self.accelerator = accelerator
        self.unet = unet
        self.frozen_copy = frozen_copy

    @torch.no_grad()
    def losses(self, denoising_loss: DenoisingLoss, noisy, timesteps, conditioning, target) -> torch.Tensor:
        if self.frozen_copy is not None:
            with self.accelerator.autocast():
                return denoising_loss(self.frozen_copy, noisy, timesteps, conditioning, target)
        base = self.accelerator.unwrap_model(self.unet)
        base.disable_adapters()
        try:
            return denoising_loss(self.unet, noisy, timesteps, conditioning, target)
        finally:
            base.enable_adapters()


def expand_conditioning(conditioning, time_ids: torch.Tensor | None = None):
    """Repeat text conditioning for the chosen and rejected halves; ``time_ids`` (SDXL) are per image, ``(2B, 6)``."""
    hidden_states, added = conditioning
    if added is not None:
        added = {key: value.repeat(2, *([1] * (value.ndim - 1))) for key, value in added.items()}
        added["time_ids"] = time_ids
    return hidden_states.repeat(2, 1, 1), added


def batch_conditioning(conditioner, batch, resolution: int, device, dtype):
    """Text conditioning of a collated batch, with each image's micro-conditioning for SDXL."""
    conditioning = conditioner(batch["captions"], device, dtype)
    time_ids = None
    if conditioner.is_sdxl:
        time_ids = sdxl_time_ids(batch["original_sizes"], batch["crop_top_lefts"], resolution, device, dtype)
    return expand_conditioning(conditioning, time_ids)


@torch.no_grad()
def evaluate_implicit_accuracy(
    accelerator, unet, reference, denoising_loss, vae, conditioner, dataloader, args, dtype
) -> dict[str, float]:
    """Held-out implicit accuracy with fixed (seeded) noise draws, so before/after numbers are paired."""
    device = accelerator.device
    generator = torch.Generator().manual_seed(args.seed or 0)
    was_training = unet.training
    unet.eval()
    margins = []
    for batch in dataloader:
        latents = encode_pairs(vae, batch["pixel_values"], args.vae_encode_batch_size, sample=False).to(dtype)
        conditioning = batch_conditioning(conditioner, batch, args.resolution, device, dtype)
        num_pairs = latents.shape[0] // 2
        pair_margin = torch.zeros(num_pairs, device=device)
        for _ in range(args.eval_noise_draws):
            noise = torch.randn(latents[:num_pairs].shape, generator=generator).repeat(2, 1, 1, 1).to(device, dtype)
            timesteps = sample_timesteps(num_pairs, denoising_loss.noise_scheduler, args.is_turbo, generator).to(device)
            noisy, target = denoising_loss.prepare(latents, noise, timesteps)
            with accelerator.autocast():
                model_losses = denoising_loss(unet, noisy, timesteps, conditioning, target)
            ref_losses = reference.losses(denoising_loss, noisy, timesteps, conditioning, target)
            pair_margin += diffusion_dpo_loss(model_losses, ref_losses, args.beta_dpo).margins.float()
        margins.append(pair_margin / args.eval_noise_draws)
    unet.train(was_training)
    margins = torch.cat(margins)
    accuracy = (margins > 0).float().mean() + 0.5 * (margins == 0).float().mean()
    return {"implicit_acc": accuracy.item(), "margin": margins.mean().item(), "pairs": int(margins.numel())}


def lora_loader(is_sdxl: bool):
    return StableDiffusionXLLoraLoaderMixin if is_sdxl else StableDiffusionLoraLoaderMixin


def save_trained_unet(unet, output_dir: str, use_lora: bool, is_sdxl: bool) -> None:
    """LoRA weights in diffusers format (``pytorch_lora_weights.safetensors``) or the full UNet in ``unet/``."""
    if use_lora:
        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        lora_loader(is_sdxl).save_lora_weights(output_dir, unet_lora_layers=layers)
    else:
        unet.save_pretrained(os.path.join(output_dir, "unet"))


def register_lora_checkpoint_hooks(accelerator: Accelerator, unet, is_sdxl: bool) -> None:
    """Make ``save_state``/``load_state`` store only the LoRA layers, in diffusers format."""
    unet_class = type(accelerator.unwrap_model(unet))

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                if not isinstance(model, unet_class):
                    raise ValueError(f"Unexpected model to save: {model.__class__}")
                save_trained_unet(model, output_dir, use_lora=True, is_sdxl=is_sdxl)
                weights.pop()

    def load_hook(models, input_dir):
        while models:
            model = models.pop()
            if not isinstance(model, unet_class):
                raise ValueError(f"Unexpected model to load: {model.__class__}")
            state_dict, _ = lora_loader(is_sdxl).lora_state_dict(input_dir)
            unet_state_dict = {k.removeprefix("unet."): v for k, v in state_dict.items() if k.startswith("unet.")}
            # into the existing (optimized) adapter, not a new one that the optimizer would never see
            incompatible = set_peft_model_state_dict(
                model, convert_unet_state_dict_to_peft(unet_state_dict), adapter_name="default"
            )
            if incompatible is not None and getattr(incompatible, "unexpected_keys", None):
                raise ValueError(f"Checkpoint {input_dir} has unexpected LoRA keys: {incompatible.unexpected_keys[:5]}")

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def prune_checkpoints(output_dir: str, limit: int | None) -> None:
    """Keep at most ``limit - 1`` checkpoints so that the next save respects the limit."""
    if limit is None:
        return
    checkpoints = sorted(
        (name for name in os.listdir(output_dir) if name.startswith("checkpoint-")), key=lambda n: int(n.split("-")[1])
    )
    for name in checkpoints[: max(0, len(checkpoints) - limit + 1)]:
        logger.info(f"Removing old checkpoint {name}")
        shutil.rmtree(os.path.join(output_dir, name))


RUN_STATE_FILE = "diffusion_dpo_state.json"


def checkpoint_step(path: str | Path) -> int:
    name = Path(path).name
    if not (name.startswith("checkpoint-") and name.split("-", 1)[1].isdigit()):
        raise ValueError(f"{path}: a checkpoint folder is named checkpoint-<step>.")
    return int(name.split("-", 1)[1])


def resolve_checkpoint(output_dir: str, resume_from_checkpoint: str | None) -> str | None:
    """``latest`` (None when there is none yet), a name inside ``output_dir`` (diffusers' convention) or a path."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        names = [n for n in os.listdir(output_dir) if n.startswith("checkpoint-")] if os.path.isdir(output_dir) else []
        return os.path.join(output_dir, max(names, key=checkpoint_step)) if names else None
    for candidate in (Path(resume_from_checkpoint), Path(output_dir, resume_from_checkpoint)):
        if candidate.is_dir():
            checkpoint_step(candidate)
            return str(candidate)
    raise FileNotFoundError(
        f"--resume_from_checkpoint {resume_from_checkpoint!r}: no such checkpoint (looked for "
        f"{resume_from_checkpoint} and {Path(output_dir, resume_from_checkpoint)})."
    )


def resolve_seed(args, accelerator: Accelerator, checkpoint: str | None) -> int:
    """The run's seed: ``--seed``, else the resumed checkpoint's, else a random one shared by all processes."""
    saved = None
    if checkpoint is not None and Path(checkpoint, RUN_STATE_FILE).is_file():
        saved = json.loads(Path(checkpoint, RUN_STATE_FILE).read_text())["seed"]
    if args.seed is not None:
        if saved is not None and saved != args.seed:
            logger.warning(f"--seed {args.seed} differs from the checkpoint's {saved}: sample order and noise change.")
        return args.seed
    if saved is not None:
        return saved
    seed = [random.SystemRandom().randrange(2**31)]
    broadcast_object_list(seed)
    logger.info(f"No --seed given: using {seed[0]} (stored in checkpoints, so a resume continues the same stream).")
    return seed[0]


def log_validation(args, accelerator, unet, vae, conditioner, weight_dtype, step: int, final: bool = False) -> None:
    """Generate one image per validation prompt with the current weights; saved and sent to image trackers.

    ``final``: after training, every module is cast to ``weight_dtype`` (the frozen ones were kept in the mixed
    precision dtype during training, the trained UNet was upcast for saving)."""
    modules = {"unet": accelerator.unwrap_model(unet), "vae": vae}
    names = ("", "_2") if conditioner.is_sdxl else ("",)
    for suffix, tokenizer, encoder in zip(names, conditioner.tokenizers, conditioner.text_encoders):
        modules[f"tokenizer{suffix}"], modules[f"text_encoder{suffix}"] = tokenizer, encoder
    config = DiffusionPipeline.load_config(args.pretrained_model_name_or_path, revision=args.revision)
    if "safety_checker" in config:
        modules.update(safety_checker=None, requires_safety_checker=False)
    pipeline = DiffusionPipeline.from_pretrained(
        args.pretrained_model_name_or_path, revision=args.revision, torch_dtype=weight_dtype, **modules
    )
    if final:
        pipeline.to(accelerator.device, weight_dtype)
    pipeline.set_progress_bar_config(disable=True)
    steps = args.validation_inference_steps or (4 if args.is_turbo else 25)
    extra = {"guidance_scale": 0.0} if args.is_turbo else {}
    folder = Path(args.output_dir, "validation", f"step-{step}")
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for index, prompt in enumerate(args.validation_prompts):
        generator = torch.Generator(device=accelerator.device).manual_seed((args.seed or 0) + index)
        with accelerator.autocast():
            image = pipeline(
                prompt, num_inference_steps=steps, generator=generator, height=args.resolution,
                width=args.resolution, **extra,
            ).images[0]
        image.save(folder / f"{index:03d}.png")
        images.append(image)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            import numpy as np

            tracker.writer.add_images("validation", np.stack([np.asarray(i) for i in images]), step, dataformats="NHWC")
    del pipeline


class MetricsFile:
    """Append-only JSON lines of logged metrics, readable without any tracker installed."""

    def __init__(self, path: Path, enabled: bool):
        self.path = path
        self.enabled = enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


def step_generator(seed: int, micro_step: int, process_index: int) -> torch.Generator:
    """Noise, timesteps and posterior samples of one micro-batch: a function of its position in the run only."""
    return torch.Generator().manual_seed(mix_seed(seed, micro_step, process_index))


def build_train_dataloader(args, seed: int):
    split = load_preference_split(args.dataset_name, args.dataset_split_name, args.cache_dir)
    indices, _ = strict_preference_indices(split.rows)
    if args.max_train_samples is not None:
        order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed)).tolist()
        indices = [indices[i] for i in order[: args.max_train_samples]]
    if not indices:
        raise ValueError(f"No strict-preference pairs in {args.dataset_name}:{args.dataset_split_name}.")
    transform = PairTransform(args.resolution, random_crop=args.random_crop, random_flip=not args.no_hflip)
    dataset = PreferencePairs(split, indices, transform, seed, args.proportion_empty_prompts)
    sampler = EpochShuffleSampler(len(dataset), seed)
    dataloader = torch.utils.data.DataLoader(
        dataset, batch_size=args.train_batch_size, sampler=sampler, collate_fn=collate_pairs,
        num_workers=args.dataloader_num_workers,
    )
    return dataset, sampler, dataloader


def build_eval_dataloader(args):
    split = load_preference_split(args.dataset_name, args.eval_split, args.cache_dir)
    indices, _ = strict_preference_indices(split.rows)
    if args.eval_max_samples is not None:
        indices = indices[: args.eval_max_samples]
    dataset = PreferencePairs(split, indices, PairTransform(args.resolution, random_crop=False, random_flip=False))
    return torch.utils.data.DataLoader(dataset, batch_size=args.train_batch_size, collate_fn=collate_pairs)


def main(args: argparse.Namespace) -> None:
    # accelerate's logger needs a state before the Accelerator exists; like the Accelerator's own, it honours
    # ACCELERATE_USE_CPU (else a multi-process CPU launch would leave every process training alone)
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    report_to = resolve_report_to(args.report_to)
    repo_id = create_hub_repo(args) if state.is_main_process else None  # fail before any model is loaded
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=str(Path(args.output_dir, args.logging_dir))
        ),
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    if accelerator.is_local_main_process:
        transformers.utils.logging.set_verbosity_warning()
        diffusers.utils.logging.set_verbosity_info()
    else:
        transformers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.set_verbosity_error()
    checkpoint = resolve_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if args.resume_from_checkpoint == "latest" and checkpoint is None:
        logger.info(f"No checkpoint in {args.output_dir} yet; starting a new run.")
    seed = resolve_seed(args, accelerator, checkpoint)
    set_seed(seed)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True

    noise_scheduler, vae, unet, conditioner = load_components(args)
    if args.resolution is None:
        args.resolution = 1024 if conditioner.is_sdxl else 512
    if args.tracker_name is None:
        args.tracker_name = "diffusion-dpo-lora-sdxl" if conditioner.is_sdxl else "diffusion-dpo-lora"
    if args.is_turbo and not conditioner.is_sdxl:
        logger.warning("--is_turbo on a non-SDXL model: turbo timesteps and zero-terminal SNR are applied anyway.")
    elif not args.is_turbo and "turbo" in args.pretrained_model_name_or_path.lower():
        logger.warning("The model name contains 'turbo' but --is_turbo is not set: training on all 1000 timesteps.")
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    vae_dtype = torch.float32 if (vae.config.force_upcast and weight_dtype == torch.float16) else weight_dtype
    vae.requires_grad_(False).to(accelerator.device, dtype=vae_dtype)
    for encoder in conditioner.text_encoders:
        encoder.requires_grad_(False).to(accelerator.device, dtype=weight_dtype)

    frozen_copy = None
    if args.use_lora:
        unet.requires_grad_(False).to(accelerator.device, dtype=weight_dtype)
        unet.add_adapter(
            LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian", target_modules=LORA_TARGET_MODULES)
        )
        cast_training_params(unet, dtype=torch.float32)
        register_lora_checkpoint_hooks(accelerator, unet, conditioner.is_sdxl)
    else:
        frozen_copy = copy.deepcopy(unet).requires_grad_(False).eval().to(accelerator.device, dtype=weight_dtype)
        unet.to(accelerator.device)
    if args.enable_xformers_memory_efficient_attention:
        enable_xformers(unet)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()

    if args.scale_lr:
        args.learning_rate *= args.gradient_accumulation_steps * args.train_batch_size * accelerator.num_processes
    params_to_optimize = [p for p in unet.parameters() if p.requires_grad]
    optimizer = build_optimizer(args, params_to_optimize)

    train_dataset, train_sampler, train_dataloader = build_train_dataloader(args, seed)
    eval_dataloader = build_eval_dataloader(args) if args.eval_split else None

    overrode_max_train_steps = args.max_train_steps is None
    if overrode_max_train_steps:
        args.max_train_steps = args.num_train_epochs * math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
        num_cycles=args.lr_num_cycles,
        power=args.lr_power,
    )
    unet, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(unet, optimizer, train_dataloader, lr_scheduler)
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    if overrode_max_train_steps:
        args.max_train_steps = args.num_train_epochs * num_update_steps_per_epoch
    args.num_train_epochs = math.ceil(args.max_train_steps / num_update_steps_per_epoch)

    if accelerator.is_main_process:
        tracker_config = {k: v for k, v in vars(args).items() if not isinstance(v, list)}
        accelerator.init_trackers(args.tracker_name, config=tracker_config)
    metrics_file = MetricsFile(Path(args.output_dir, "metrics.jsonl"), accelerator.is_main_process)
    reference = ReferenceModel(accelerator, unet, frozen_copy)
    denoising_loss = DenoisingLoss(noise_scheduler)

    total_batch_size = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running Diffusion-DPO *****")
    logger.info(f"  Pairs = {len(train_dataset)}, SDXL = {conditioner.is_sdxl}, LoRA = {args.use_lora}, seed = {seed}")
    logger.info(f"  Total batch size = {total_batch_size}, optimization steps = {args.max_train_steps}")

    global_step, first_epoch = 0, 0
    if checkpoint is not None:
        logger.info(f"Resuming from {checkpoint}")
        accelerator.load_state(checkpoint)
        global_step = checkpoint_step(checkpoint)
        first_epoch = global_step // num_update_steps_per_epoch

    eval_results = {}
    if eval_dataloader is not None:
        eval_results["before"] = evaluate_implicit_accuracy(
            accelerator, accelerator.unwrap_model(unet), reference, denoising_loss, vae, conditioner, eval_dataloader,
            args, weight_dtype,
        )
        logger.info(f"Held-out implicit accuracy before training: {eval_results['before']}")

    progress_bar = tqdm(
        range(args.max_train_steps), initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    unet.train()
    window, step_started = [], time.perf_counter()
    batches_to_skip = (global_step % num_update_steps_per_epoch) * args.gradient_accumulation_steps
    for epoch in range(first_epoch, args.num_train_epochs):
        if global_step >= args.max_train_steps:
            break
        train_sampler.start_epoch(epoch)
        skipped = batches_to_skip if epoch == first_epoch else 0
        epoch_batches = accelerator.skip_first_batches(train_dataloader, skipped) if skipped else train_dataloader
        for batch_index, batch in enumerate(epoch_batches, start=skipped):
            generator = step_generator(seed, epoch * len(train_dataloader) + batch_index, accelerator.process_index)
            with accelerator.accumulate(unet):
                latents = encode_pairs(
                    vae, batch["pixel_values"], args.vae_encode_batch_size, args.latent_sampling == "sample", generator
                ).to(weight_dtype)
                num_pairs = latents.shape[0] // 2
                noise = torch.randn(latents[:num_pairs].shape, generator=generator).repeat(2, 1, 1, 1)
                noise = noise.to(latents.device, latents.dtype)
                timesteps = sample_timesteps(num_pairs, noise_scheduler, args.is_turbo, generator).to(latents.device)
                noisy, target = denoising_loss.prepare(latents, noise, timesteps)
                conditioning = batch_conditioning(conditioner, batch, args.resolution, accelerator.device, weight_dtype)

                model_losses = denoising_loss(unet, noisy, timesteps, conditioning, target)
                ref_losses = reference.losses(denoising_loss, noisy, timesteps, conditioning, target)
                output = diffusion_dpo_loss(model_losses, ref_losses, args.beta_dpo, args.loss_type)

                accelerator.backward(output.loss)
                if accelerator.sync_gradients and not args.use_adafactor:  # Adafactor clips its own updates
                    accelerator.clip_grad_norm_(params_to_optimize, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            window.append(
                {**output.metrics(), "raw_model_loss": model_losses.mean().item(), "ref_loss": ref_losses.mean().item()}
            )
            if not accelerator.sync_gradients:
                continue

            global_step += 1
            progress_bar.update(1)
            logs = {key: sum(m[key] for m in window) / len(window) for key in window[0]}
            logs.update(lr=lr_scheduler.get_last_lr()[0], step_time=time.perf_counter() - step_started)
            window = []
            progress_bar.set_postfix(loss=logs["loss"], implicit_acc=logs["implicit_acc"])
            accelerator.log(logs, step=global_step)
            metrics_file.write({"step": global_step, **logs})

            if accelerator.is_main_process and global_step % args.checkpointing_steps == 0:
                prune_checkpoints(args.output_dir, args.checkpoints_total_limit)
                save_path = os.path.join(args.output_dir, f"checkpoint-{global_step}")
                accelerator.save_state(save_path)
                Path(save_path, RUN_STATE_FILE).write_text(json.dumps({"seed": seed, "global_step": global_step}))
                logger.info(f"Saved state to {save_path}")
            if accelerator.is_main_process and args.run_validation and global_step % args.validation_steps == 0:
                log_validation(args, accelerator, unet, vae, conditioner, weight_dtype, global_step)
            step_started = time.perf_counter()
            if global_step >= args.max_train_steps:
                break
    progress_bar.close()

    accelerator.wait_for_everyone()
    if eval_dataloader is not None:
        eval_results["after"] = evaluate_implicit_accuracy(
            accelerator, accelerator.unwrap_model(unet), reference, denoising_loss, vae, conditioner, eval_dataloader,
            args, weight_dtype,
        )
        logger.info(f"Held-out implicit accuracy after training: {eval_results['after']}")
        accelerator.log({f"eval/{k}_{stage}": v for stage, r in eval_results.items() for k, v in r.items()})
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(unet).to(torch.float32)
        save_trained_unet(trained, args.output_dir, args.use_lora, conditioner.is_sdxl)
        if eval_results:
            Path(args.output_dir, "eval_results.json").write_text(json.dumps(eval_results, indent=2))
        if args.run_validation:
            log_validation(args, accelerator, trained, vae, conditioner, torch.float32, global_step, final=True)
        logger.info(f"Trained {global_step} steps; weights in {args.output_dir}")
        if repo_id is not None:
            from huggingface_hub import upload_folder

            upload_folder(repo_id=repo_id, folder_path=args.output_dir, commit_message="End of training",
                          ignore_patterns=["step_*", "epoch_*", "checkpoint-*"], token=args.hub_token)
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
