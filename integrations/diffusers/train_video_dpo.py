#!/usr/bin/env python
"""Diffusion-DPO / Flow-DPO fine-tuning of diffusers text-to-video pipelines on video preference pairs.

    accelerate launch integrations/diffusers/train_video_dpo.py \\
        --pretrained_model_name_or_path ./animatediff-pipeline --dataset_name ./video_dpo_data \\
        --output_dir ./video-dpo-lora --height 256 --width 256 --num_frames 16 --train_batch_size 1 \\
        --gradient_accumulation_steps 16 --max_train_steps 1000 --learning_rate 1e-5 --beta_dpo 5000 --rank 16

Families, detected from the pipeline's denoiser class (``video_families.py``):

* ``UNetMotionModel`` (AnimateDiff: SD 1.5 + motion adapter) and ``UNet3DConditionModel`` (TextToVideoSD /
  ModelScope, Zeroscope; diffusers has no LoRA for it: ``--full_finetune``), DDPM epsilon or v-prediction, and
  ``CogVideoXTransformer3DModel`` (CogVideoX, v-prediction on its SNR-shifted schedule) -> Diffusion-DPO (Wallace et
  al. 2023), as in upstream UnifiedReward's VideoDPO (``beta_dpo=5000``).
* ``WanTransformer3DModel`` (Wan 2.1 / 2.2 T2V) and ``LTXVideoTransformer3DModel`` (LTX-Video): rectified flow ->
  Flow-DPO (Liu et al. 2025, arXiv:2501.13918): the same objective on velocity errors, constant beta.

Data (``--dataset_name``): a ``save_to_disk`` folder or an upstream-style ``dpo_data.json`` folder with ``caption``,
``chosen`` and ``rejected`` video paths (relative to the folder), e.g. ``sift_videos.py``'s output. LoRA is the
default (the reference is the same denoiser with adapters disabled); ``--full_finetune`` trains against a frozen copy.
Metrics go to ``--report_to`` and ``<output_dir>/metrics.jsonl``; ``--eval_split`` writes held-out implicit accuracy
before/after training to ``<output_dir>/eval_results.json``; ``checkpoint-N/`` + ``--resume_from_checkpoint latest``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file
from tqdm.auto import tqdm

from diffusers import DiffusionPipeline
from diffusers.optimization import get_scheduler
from diffusers.training_utils import cast_training_params, compute_density_for_timestep_sampling
from diffusers.utils import convert_state_dict_to_diffusers, convert_unet_state_dict_to_peft

from integrations.diffusers.dpo_loss import diffusion_dpo_loss, flow_matching_inputs, per_sample_mse
from integrations.diffusers.video_families import VideoFamily, detect_family
from reward_core.media import MediaError, VideoSpec, check_video, load_video_frames

logger = get_logger(__name__, log_level="INFO")

LORA_TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
LORA_FILE = "pytorch_lora_weights.safetensors"


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Diffusion-DPO / Flow-DPO for diffusers text-to-video pipelines.")
    parser.add_argument("--pretrained_model_name_or_path", required=True)
    parser.add_argument("--revision", default=None)
    parser.add_argument("--variant", default=None)
    parser.add_argument("--dataset_name", required=True, help="save_to_disk folder or folder with dpo_data.json.")
    parser.add_argument("--dataset_split_name", default="train")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--eval_split", default=None, help="Held-out split: implicit accuracy before/after.")
    parser.add_argument("--eval_noise_draws", type=int, default=4)
    parser.add_argument("--output_dir", default="video-dpo-lora")
    parser.add_argument("--logging_dir", default="logs")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--num_frames", type=int, default=16, help="Evenly spaced frames read from each video.")
    parser.add_argument("--latent_sampling", default="sample", choices=["sample", "mode"],
                        help="VAE posterior sample (diffusers) or its mode (random toy VAEs).")
    parser.add_argument("--train_batch_size", type=int, default=1, help="Pairs per device per micro-batch.")
    parser.add_argument("--num_train_epochs", type=int, default=1)
    parser.add_argument("--max_train_steps", type=int, default=None)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=None)
    parser.add_argument("--resume_from_checkpoint", default=None, help='A checkpoint path or "latest".')
    parser.add_argument("--beta_dpo", type=float, default=5000.0)
    parser.add_argument("--loss_type", default="sigmoid", choices=["sigmoid", "hinge"])
    parser.add_argument("--weighting_scheme", default="logit_normal", choices=["logit_normal", "uniform", "mode"],
                        help="Flow matching: how sigmas are drawn (diffusers' compute_density_for_timestep_sampling).")
    parser.add_argument("--logit_mean", type=float, default=0.0)
    parser.add_argument("--logit_std", type=float, default=1.0)
    parser.add_argument("--mode_scale", type=float, default=1.29)
    parser.add_argument("--flow_shift", type=float, default=None, help="Default: the pipeline scheduler's shift.")
    parser.add_argument("--frame_rate", type=float, default=25.0,
                        help="LTX-Video: the clips' frame rate for its RoPE scaling (LTXPipeline's default, 25).")
    parser.add_argument("--learning_rate", type=float, default=1e-5)
    parser.add_argument("--lr_scheduler", default="constant")
    parser.add_argument("--lr_warmup_steps", type=int, default=0)
    parser.add_argument("--adam_weight_decay", type=float, default=1e-2)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--mixed_precision", default=None, choices=["no", "fp16", "bf16"])
    parser.add_argument("--report_to", default="tensorboard")
    parser.add_argument("--tracker_name", default="video-dpo")
    finetune = parser.add_mutually_exclusive_group()
    finetune.add_argument("--use_lora", dest="use_lora", action="store_true", default=True, help="Default.")
    finetune.add_argument("--full_finetune", dest="use_lora", action="store_false")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lora_target_modules", nargs="+", default=LORA_TARGET_MODULES)
    return parser.parse_args(input_args)


# ----------------------------------------------------------------------------------------------------------- data
def load_pairs(dataset_name: str, split: str) -> tuple[list[dict], Path]:
    """Rows ``{caption, chosen, rejected}`` of one split and the folder their relative paths start from."""
    root = Path(dataset_name)
    if (root / "dataset_dict.json").is_file() or (root / "dataset_info.json").is_file():
        from datasets import load_from_disk

        dataset = load_from_disk(str(root))
        rows = list(dataset[split] if hasattr(dataset, "keys") else dataset)
    elif (root / "dpo_data.json").is_file():  # upstream VideoDPO layout; rows without "split" are train
        rows = [row for row in json.loads((root / "dpo_data.json").read_text()) if row.get("split", "train") == split]
    else:
        raise FileNotFoundError(f"{root} has neither a save_to_disk dataset nor dpo_data.json.")
    return [{"caption": row["caption"], "chosen": row["chosen"], "rejected": row["rejected"]} for row in rows], root


def readable_pairs(rows: list[dict], root: Path) -> list[dict]:
    """Drop (and log) pairs with a missing or undecodable video, so one bad file does not stop training."""
    kept = []
    for row in rows:
        try:
            for key in ("chosen", "rejected"):
                check_video(VideoSpec(str(root / row[key])))
        except MediaError as error:
            logger.warning(f"Skipping pair {row['caption']!r}: {error}")
            continue
        kept.append(row)
    return kept


class VideoPairs(torch.utils.data.Dataset):
    """``(2, F, 3, H, W)`` chosen|rejected clips in [-1, 1] (``num_frames`` evenly spaced frames, resized)."""

    def __init__(self, rows: list[dict], root: Path, num_frames: int, height: int, width: int):
        self.rows, self.root = rows, root
        self.num_frames, self.size = num_frames, (width, height)

    def __len__(self) -> int:
        return len(self.rows)

    def clip(self, path: str) -> torch.Tensor:
        frames = load_video_frames(VideoSpec(str(self.root / path)), count=self.num_frames)
        array = np.stack([np.asarray(frame.resize(self.size), dtype=np.float32) for frame in frames])
        return torch.from_numpy(array / 127.5 - 1.0).permute(0, 3, 1, 2)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        pixels = torch.stack([self.clip(row["chosen"]), self.clip(row["rejected"])])
        return {"pixels": pixels, "caption": row["caption"]}


def collate(examples: list[dict]) -> dict:
    return {"pixels": torch.stack([e["pixels"] for e in examples]), "captions": [e["caption"] for e in examples]}


# ------------------------------------------------------------------------------------------------------ denoising
class VideoDenoising:
    """Latents, text conditioning, noisy inputs / targets and per-sample losses for one :class:`VideoFamily`."""

    def __init__(self, family: VideoFamily, args):
        self.family, self.args = family, args
        self.scheduler = family.training_scheduler(args.flow_shift)
        if not family.flow_matching and self.scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"Unsupported prediction type {self.scheduler.config.prediction_type!r}.")

    @torch.no_grad()
    def encode_videos(self, pixels: torch.Tensor, sample: bool) -> torch.Tensor:
        """``(B, 2, F, 3, H, W)`` pairs -> ``(2B, C, f, h, w)`` latents laid out as ``[chosen..., rejected...]``."""
        vae = self.family.pipeline.vae
        clips = torch.cat([pixels[:, 0], pixels[:, 1]]).to(vae.device, vae.dtype)
        return self.family.encode_videos(clips, sample)

    @torch.no_grad()
    def encode_captions(self, captions: list[str], device, dtype) -> dict[str, torch.Tensor]:
        """The denoiser's text arguments (the pipeline's own ``encode_prompt``), repeated for the two halves."""
        text = self.family.encode_text(captions, device)
        return {key: value.to(dtype if value.is_floating_point() else value.dtype).repeat(2, *([1] * (value.ndim - 1)))
                for key, value in text.items()}

    def draw(self, num_pairs: int, latents: torch.Tensor, generator=None):
        """A shared (noise, timestep) per pair -> noisy inputs, targets and model timesteps for both halves."""
        noise = torch.randn(latents[:num_pairs].shape, generator=generator).to(latents.device, latents.dtype)
        noise = noise.repeat(2, *([1] * (latents.ndim - 1)))
        if self.family.flow_matching:
            u = compute_density_for_timestep_sampling(
                self.args.weighting_scheme, num_pairs, self.args.logit_mean, self.args.logit_std,
                self.args.mode_scale, generator=generator,
            )
            indices = (u * self.scheduler.config.num_train_timesteps).long()
            indices = indices.clamp(max=len(self.scheduler.timesteps) - 1)
            timesteps = self.scheduler.timesteps[indices].repeat(2).to(latents.device)
            sigmas = self.scheduler.sigmas[indices].repeat(2)
            noisy, target = flow_matching_inputs(latents, noise, sigmas)
            return noisy, target, timesteps
        steps = self.scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (num_pairs,), generator=generator).long().repeat(2).to(latents.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        if self.scheduler.config.prediction_type == "epsilon":
            return noisy, noise, timesteps
        return noisy, self.scheduler.get_velocity(latents, noise, timesteps), timesteps

    def losses(self, model, noisy, timesteps, text, target) -> torch.Tensor:
        return per_sample_mse(self.family.predict(model, noisy, timesteps, text), target)


def reference_losses(accelerator, model, frozen_copy, denoising, *inputs) -> torch.Tensor:
    """The DPO reference: the same denoiser with LoRA disabled, or the frozen copy of a full fine-tune."""
    with torch.no_grad():
        if frozen_copy is not None:
            return denoising.losses(frozen_copy, *inputs)
        base = accelerator.unwrap_model(model)
        base.disable_adapters()
        try:
            return denoising.losses(model, *inputs)
        finally:
            base.enable_adapters()


def load_trainable(args, device, weight_dtype):
    """The pipeline (frozen, on ``device``), its family, the trainable denoiser (LoRA or full), the frozen copy
    (full fine-tuning only) and the family's :class:`VideoDenoising`."""
    pipeline = DiffusionPipeline.from_pretrained(
        args.pretrained_model_name_or_path, revision=args.revision, variant=args.variant, dtype=weight_dtype
    )
    family = detect_family(pipeline, args.frame_rate)
    model = getattr(pipeline, family.denoiser)
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False).to(device)
    if pipeline.vae.dtype == torch.float16 and getattr(pipeline.vae.config, "force_upcast", False):
        pipeline.vae.to(torch.float32)
    frozen_copy = None
    if args.use_lora and not hasattr(model, "add_adapter"):
        raise ValueError(f"{type(model).__name__} has no PEFT adapter support in diffusers; use --full_finetune.")
    if args.use_lora:
        model.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                     target_modules=args.lora_target_modules))
        cast_training_params(model, dtype=torch.float32)
    else:
        frozen_copy = copy.deepcopy(model).eval()
        model.requires_grad_(True).to(torch.float32)
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return pipeline, family, model, frozen_copy, VideoDenoising(family, args)


def step_logs(accelerator, window: list[dict[str, float]]) -> dict[str, float]:
    """The optimizer step's metrics: each micro-batch's averaged, then over processes; ``pairs`` is the total."""
    keys = [key for key in window[0] if key != "pairs"]
    local = torch.tensor([[m[key] for key in keys] for m in window], device=accelerator.device).mean(0)
    logs = dict(zip(keys, accelerator.reduce(local, reduction="mean").tolist()))
    pairs = torch.tensor(sum(m["pairs"] for m in window), device=accelerator.device)
    return {**logs, "pairs": int(accelerator.reduce(pairs, reduction="sum").item())}


def training_step(accelerator, model, frozen_copy, denoising, batch, args, dtype) -> dict[str, float]:
    """Forward + backward of one micro-batch of pairs (one shared noise draw per pair); returns its metrics."""
    latents = denoising.encode_videos(batch["pixels"], sample=args.latent_sampling == "sample").to(dtype)
    text = denoising.encode_captions(batch["captions"], accelerator.device, dtype)
    noisy, target, timesteps = denoising.draw(latents.shape[0] // 2, latents)
    inputs = (noisy, timesteps, text, target)
    with accelerator.autocast():
        model_losses = denoising.losses(model, *inputs)
    ref_losses = reference_losses(accelerator, model, frozen_copy, denoising, *inputs)
    output = diffusion_dpo_loss(model_losses, ref_losses, args.beta_dpo, args.loss_type)
    accelerator.backward(output.loss)
    return {**output.metrics(), "raw_model_loss": model_losses.mean().item(), "ref_loss": ref_losses.mean().item(),
            "pairs": latents.shape[0] // 2}


# ---------------------------------------------------------------------------------------------- saving / resuming
def save_lora(pipeline_class, denoiser_name: str, model, directory: str) -> None:
    """The LoRA in diffusers format (``pipe.load_lora_weights(directory)`` reads it)."""
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(model))
    pipeline_class.save_lora_weights(directory, **{f"{denoiser_name}_lora_layers": layers})


def register_checkpoint_hooks(accelerator, pipeline_class, denoiser_name: str, use_lora: bool) -> None:
    """With LoRA, checkpoints hold only the adapter (diffusers format) plus the optimizer state."""
    if not use_lora:
        return

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                save_lora(pipeline_class, denoiser_name, accelerator.unwrap_model(model), output_dir)
                weights.pop()

    def load_hook(models, input_dir):
        model = accelerator.unwrap_model(models.pop())
        prefix = f"{denoiser_name}."
        saved = load_file(os.path.join(input_dir, LORA_FILE))
        state = {key[len(prefix):]: value for key, value in saved.items() if key.startswith(prefix)}
        result = set_peft_model_state_dict(model, convert_unet_state_dict_to_peft(state), adapter_name="default")
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"Checkpoint {input_dir} has unexpected LoRA keys: {result.unexpected_keys[:5]}")
        cast_training_params(model, dtype=torch.float32)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def checkpoints(output_dir: str) -> list[str]:
    names = [n for n in os.listdir(output_dir) if n.startswith("checkpoint-")] if os.path.isdir(output_dir) else []
    return sorted(names, key=lambda n: int(n.split("-")[1]))


def metrics_line(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


@torch.no_grad()
def evaluate(accelerator, model, frozen_copy, denoising, dataloader, args, dtype) -> dict:
    """Held-out implicit accuracy on seeded (noise, timestep) draws, so before/after numbers are paired; each
    process scores its shard of ``dataloader`` (a prepared one) and the margins are gathered."""
    generator = torch.Generator().manual_seed(args.seed or 0)
    was_training = model.training
    model.eval()
    margins = []
    for batch in dataloader:
        latents = denoising.encode_videos(batch["pixels"], sample=False).to(dtype)
        text = denoising.encode_captions(batch["captions"], accelerator.device, dtype)
        num_pairs = latents.shape[0] // 2
        total = torch.zeros(num_pairs, device=accelerator.device)
        for _ in range(args.eval_noise_draws):
            noisy, target, timesteps = denoising.draw(num_pairs, latents, generator)
            inputs = (noisy, timesteps, text, target)
            with accelerator.autocast():
                model_losses = denoising.losses(model, *inputs)
            ref = reference_losses(accelerator, model, frozen_copy, denoising, *inputs)
            total += diffusion_dpo_loss(model_losses, ref, args.beta_dpo).margins
        margins.append(accelerator.gather_for_metrics(total / args.eval_noise_draws))  # every process's shard
    model.train(was_training)
    margins = torch.cat(margins)
    accuracy = ((margins > 0).float() + 0.5 * (margins == 0).float()).mean().item()
    return {"implicit_acc": accuracy, "margin": margins.mean().item(), "pairs": len(margins)}


# ------------------------------------------------------------------------------------------------------------ main
def main(args: argparse.Namespace) -> None:
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(args.output_dir, str(Path(args.output_dir, args.logging_dir))),
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    if args.seed is not None:
        set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)

    pipeline, family, model, frozen_copy, denoising = load_trainable(args, accelerator.device, weight_dtype)
    register_checkpoint_hooks(accelerator, type(pipeline), family.denoiser, args.use_lora)

    rows, root = load_pairs(args.dataset_name, args.dataset_split_name)
    rows = readable_pairs(rows, root)[: args.max_train_samples]
    if not rows:
        raise ValueError(f"No readable pairs in {args.dataset_name}:{args.dataset_split_name}.")
    train_dataloader = torch.utils.data.DataLoader(
        VideoPairs(rows, root, args.num_frames, args.height, args.width), batch_size=args.train_batch_size,
        shuffle=True, collate_fn=collate,
    )
    eval_dataloader = None
    if args.eval_split:
        eval_rows, eval_root = load_pairs(args.dataset_name, args.eval_split)
        eval_dataloader = torch.utils.data.DataLoader(
            VideoPairs(readable_pairs(eval_rows, eval_root), eval_root, args.num_frames, args.height, args.width),
            batch_size=args.train_batch_size, collate_fn=collate,
        )

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    # an epoch is each process's shard of the pairs (accelerate splits the batches over processes)
    shard_batches = math.ceil(len(train_dataloader) / accelerator.num_processes)
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * math.ceil(shard_batches / args.gradient_accumulation_steps)
    lr_scheduler = get_scheduler(
        args.lr_scheduler, optimizer=optimizer, num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, lr_scheduler
    )
    if eval_dataloader is not None:
        eval_dataloader = accelerator.prepare(eval_dataloader)
    steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    num_epochs = math.ceil(args.max_train_steps / steps_per_epoch)
    if accelerator.is_main_process:
        config = {key: value for key, value in vars(args).items() if not isinstance(value, list)}
        accelerator.init_trackers(args.tracker_name, config=config)
    logger.info(f"***** Video DPO: {family.name} ({type(pipeline).__name__}), {len(rows)} pairs, "
                f"{'Flow-DPO' if family.flow_matching else 'Diffusion-DPO'}, LoRA = {args.use_lora}, "
                f"{args.max_train_steps} steps, {accelerator.num_processes} processes *****")

    global_step, checkpoint = 0, args.resume_from_checkpoint
    if checkpoint == "latest":
        names = checkpoints(args.output_dir)
        checkpoint = os.path.join(args.output_dir, names[-1]) if names else None
    if checkpoint:
        logger.info(f"Resuming from {checkpoint}")
        accelerator.load_state(checkpoint)
        global_step = int(Path(checkpoint).name.split("-")[1])

    eval_results = {}
    if eval_dataloader is not None:
        eval_results["before"] = evaluate(
            accelerator, model, frozen_copy, denoising, eval_dataloader, args, weight_dtype
        )
        logger.info(f"Held-out implicit accuracy before training: {eval_results['before']}")

    metrics_path = Path(args.output_dir, "metrics.jsonl")
    progress = tqdm(range(args.max_train_steps), initial=global_step, desc="Steps",
                    disable=not accelerator.is_local_main_process)
    model.train()
    window, started = [], time.perf_counter()
    first_epoch = global_step // steps_per_epoch
    skip = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
    for epoch in range(first_epoch, num_epochs):
        batches = train_dataloader
        if epoch == first_epoch and skip:  # resume mid-epoch where the checkpoint left off
            batches = accelerator.skip_first_batches(train_dataloader, skip)
        for batch in batches:
            with accelerator.accumulate(model):
                window.append(training_step(accelerator, model, frozen_copy, denoising, batch, args, weight_dtype))
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            progress.update(1)
            logs = step_logs(accelerator, window)
            logs.update(lr=lr_scheduler.get_last_lr()[0], step_time=time.perf_counter() - started)
            window = []
            progress.set_postfix(loss=logs["loss"], implicit_acc=logs["implicit_acc"])
            accelerator.log(logs, step=global_step)
            if accelerator.is_main_process:
                metrics_line(metrics_path, {"step": global_step, **logs})
                if global_step % args.checkpointing_steps == 0:
                    if args.checkpoints_total_limit is not None:  # keep limit - 1, then save one
                        existing = checkpoints(args.output_dir)
                        for name in existing[: max(0, len(existing) - args.checkpoints_total_limit + 1)]:
                            shutil.rmtree(os.path.join(args.output_dir, name))
                    accelerator.save_state(os.path.join(args.output_dir, f"checkpoint-{global_step}"))
            started = time.perf_counter()
            if global_step >= args.max_train_steps:
                break
        if global_step >= args.max_train_steps:
            break

    accelerator.wait_for_everyone()
    if eval_dataloader is not None:
        eval_results["after"] = evaluate(
            accelerator, model, frozen_copy, denoising, eval_dataloader, args, weight_dtype
        )
        logger.info(f"Held-out implicit accuracy after training: {eval_results['after']}")
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        if args.use_lora:
            save_lora(type(pipeline), family.denoiser, trained, args.output_dir)
        else:
            trained.save_pretrained(os.path.join(args.output_dir, family.denoiser))
        if eval_results:
            Path(args.output_dir, "eval_results.json").write_text(json.dumps(eval_results, indent=2))
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
