"""Briefly pre-train the toy Stable Diffusion's UNet on toy scenes, so its denoising loss means something.

The toy world's SD (:mod:`reward_core.toy.sd`) is random: its denoising error hardly depends on the image, so a
preference learned by Diffusion-DPO at one (noise, timestep) draw does not carry over to the next. This module
writes a copy of that pipeline whose UNet has learned the toy scenes for a few hundred steps on CPU:

* the VAE is kept (random weights) and used deterministically (posterior mode); its ``scaling_factor`` is
  re-calibrated so that scene latents have unit variance, as SD's ``0.18215`` does for its own VAE;
* the UNet is trained with the usual epsilon objective on scene latents and their captions (10% empty captions,
  so classifier-free guidance works).

    python -m reward_core.toy.sd_pretrain WORLD/sd OUT_DIR [--steps 300]

The output is a normal ``StableDiffusionPipeline`` folder plus ``pretrain.json`` (settings and losses); calling
:func:`pretrain_stable_diffusion` again with the same settings reuses it.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .scenes import random_scene, render_image

logger = logging.getLogger(__name__)

REPORT_NAME = "pretrain.json"


@dataclass(frozen=True)
class PretrainSettings:
    resolution: int = 32  # pixels; latents are resolution / 4 with the toy VAE
    num_scenes: int = 512
    decoder_steps: int = 150
    decoder_batch_size: int = 16
    decoder_learning_rate: float = 3e-3
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 1e-3
    caption_dropout: float = 0.1
    seed: int = 0


@dataclass
class PretrainReport:
    settings: dict
    scaling_factor: float
    decoder_loss: float  # reconstruction MSE (pixels in [-1, 1]) of the last 20 decoder steps
    first_losses: float  # mean denoising loss of the first 20 steps
    last_losses: float  # ... and of the last 20
    seconds: float


def render_scenes(settings: PretrainSettings) -> tuple[torch.Tensor, list[str]]:
    """``(N, 3, R, R)`` pixels in [-1, 1] and their captions (the world's scene generator, own seed)."""
    rng = random.Random(f"sd_pretrain:{settings.seed}")
    pixels, captions = [], []
    for _ in range(settings.num_scenes):
        scene = random_scene(rng)
        image = render_image(scene, rng, size=settings.resolution)
        pixels.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1))
        captions.append(scene.caption())
    return torch.stack(pixels), captions


@torch.no_grad()
def encode_text(tokenizer, text_encoder, captions: list[str]) -> torch.Tensor:
    ids = tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids)[0]


@torch.no_grad()
def posterior_modes(vae, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([vae.encode(pixels[i : i + batch_size]).latent_dist.mode() for i in range(0, len(pixels), batch_size)])


def fit_decoder(vae, modes: torch.Tensor, pixels: torch.Tensor, settings: PretrainSettings, progress: bool) -> float:
    """Fit the VAE decoder to invert the (random, frozen) encoder's posterior mode; returns the final loss."""
    params = [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=settings.decoder_learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(settings.seed + 1)
    losses = []
    for _ in tqdm(range(settings.decoder_steps), desc="toy VAE decoder", disable=not progress):
        rows = torch.randint(0, len(modes), (settings.decoder_batch_size,), generator=generator)
        loss = F.mse_loss(vae.decode(modes[rows]).sample, pixels[rows])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    vae.requires_grad_(False)
    return float(np.mean(losses[-20:])) if losses else float("nan")


def pretrain_stable_diffusion(
    base_dir: str | Path, out_dir: str | Path, settings: PretrainSettings = PretrainSettings(), progress: bool = False
) -> PretrainReport:
    """Write the pre-trained pipeline to ``out_dir`` (reused when it was built with the same settings)."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    out_dir = Path(out_dir)
    report_path = out_dir / REPORT_NAME
    if report_path.is_file():
        report = PretrainReport(**json.loads(report_path.read_text(encoding="utf-8")))
        if report.settings == asdict(settings):
            return report
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    pipeline = StableDiffusionPipeline.from_pretrained(base_dir)
    vae, unet = pipeline.vae, pipeline.unet
    pixels, captions = render_scenes(settings)
    modes = posterior_modes(vae, pixels)
    decoder_loss = fit_decoder(vae, modes, pixels, settings, progress)
    scaling_factor = float(1.0 / modes.std())
    vae.register_to_config(scaling_factor=scaling_factor)
    latents = modes * scaling_factor
    unique_captions = sorted(set(captions)) + [""]
    embeddings = encode_text(pipeline.tokenizer, pipeline.text_encoder, unique_captions)
    caption_index = torch.tensor([unique_captions.index(caption) for caption in captions])
    empty_index = len(unique_captions) - 1

    noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(settings.seed)
    unet.train()
    losses = []
    for _ in tqdm(range(settings.steps), desc="toy SD pre-training", disable=not progress):
        rows = torch.randint(0, len(latents), (settings.batch_size,), generator=generator)
        dropped = torch.rand(settings.batch_size, generator=generator) < settings.caption_dropout
        conditioning = embeddings[torch.where(dropped, empty_index, caption_index[rows])]
        noise = torch.randn(latents[rows].shape, generator=generator)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (settings.batch_size,), generator=generator)
        noisy = noise_scheduler.add_noise(latents[rows], noise, timesteps)
        loss = F.mse_loss(unet(noisy, timesteps, conditioning).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    unet.eval()
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    window = min(20, len(losses))
    report = PretrainReport(
        settings=asdict(settings),
        scaling_factor=scaling_factor,
        decoder_loss=decoder_loss,
        first_losses=float(np.mean(losses[:window])),
        last_losses=float(np.mean(losses[-window:])),
        seconds=round(time.perf_counter() - started, 2),
    )
    report_path.write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    logger.info("toy SD pre-trained in %.1fs (loss %.3f -> %.3f) at %s", report.seconds, report.first_losses,
                report.last_losses, out_dir)
    return report


def main(argv: list[str] | None = None) -> PretrainReport:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_dir", help="The toy world's sd/ folder.")
    parser.add_argument("out_dir")
    defaults = PretrainSettings()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    base_dir, out_dir = args.pop("base_dir"), args.pop("out_dir")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = pretrain_stable_diffusion(base_dir, out_dir, PretrainSettings(**args), progress=True)
    print(json.dumps(asdict(report), indent=2))
    return report


if __name__ == "__main__":
    main()
