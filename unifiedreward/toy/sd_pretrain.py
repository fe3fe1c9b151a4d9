"""Briefly pre-train the toy Stable Diffusion on toy scenes, so that it draws scenes and its loss means something.

The toy world's SD (:mod:`unifiedreward.toy.sd`) is random: its decoder turns any latent into the same grey noise and
its UNet's denoising error hardly depends on the image, so there is no preference for Diffusion-DPO to learn. This
module writes a copy of that pipeline, trained for about half a minute on CPU on the world's scene renderer:

* the VAE **encoder stays random** (used deterministically: the posterior mode, i.e. ``--latent_sampling mode`` in
  ``train_diffusion_dpo.py``); the **decoder is fitted** to invert it, and ``scaling_factor`` is set so that scene
  latents have unit variance (what SD's ``0.18215`` does for its own VAE);
* the **UNet** is trained with the epsilon objective on those latents and their captions (10% empty captions, so
  classifier-free guidance works); ``sample_size`` is set to the training resolution.

Captions never name the background, so the pre-trained model draws white, beige, grey or black ones at random: a
brightness judge then has a clear preference to express, and DPO a clear one to learn. With ``--lighting_flaws 1``
(what ``make demo`` uses) the training scenes also have 0-4 of their quadrants in shadow, the flaw the demo's judge
is trained to penalise, so the base model draws badly lit quadrants about half the time.

    python -m unifiedreward.toy.sd_pretrain WORLD/sd OUT_DIR [--steps 120] [--seed 0]

The output is a ``StableDiffusionPipeline`` folder plus ``pretrain.json`` (settings and losses); a second call with
the same settings reuses it.
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
from .tasks import LIT_BACKGROUNDS, QUALITIES, render_quality_image

logger = logging.getLogger(__name__)

REPORT_NAME = "pretrain.json"
LOSS_WINDOW = 20


@dataclass(frozen=True)
class PretrainSettings:
    resolution: int = 32  # pixels; the toy VAE makes resolution / 4 latents
    num_scenes: int = 512
    decoder_steps: int = 80
    decoder_batch_size: int = 16
    decoder_learning_rate: float = 5e-3
    steps: int = 120
    batch_size: int = 32
    learning_rate: float = 1e-3
    caption_dropout: float = 0.1
    # 1: each scene has 0-4 of its quadrants shadowed (``tasks.render_quality_image``, lit backgrounds only), at
    # random and never named in the caption, so the model draws badly lit images as often as well-lit ones
    lighting_flaws: int = 0
    seed: int = 0


@dataclass
class PretrainReport:
    settings: dict
    scaling_factor: float
    decoder_loss: float  # reconstruction MSE (pixels in [-1, 1]) over the last decoder steps
    first_loss: float  # UNet denoising MSE over the first steps ...
    last_loss: float  # ... and over the last ones
    seconds: float


def render_scenes(settings: PretrainSettings) -> tuple[torch.Tensor, list[str]]:
    """``(N, 3, R, R)`` pixels in [-1, 1] and their captions, from the world's scene renderer (own seed)."""
    rng = random.Random(f"sd_pretrain:{settings.seed}")
    pixels, captions = [], []
    for _ in range(settings.num_scenes):
        if settings.lighting_flaws:
            scene = random_scene(rng, LIT_BACKGROUNDS)
            image = render_quality_image(scene, rng.choice(QUALITIES), rng, settings.resolution, flaw="shadow")
        else:
            scene = random_scene(rng)
            image = render_image(scene, rng, size=settings.resolution)
        pixels.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1))
        captions.append(scene.caption())
    return torch.stack(pixels), captions


@torch.no_grad()
def posterior_modes(vae, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    chunks = [vae.encode(pixels[i : i + batch_size]).latent_dist.mode() for i in range(0, len(pixels), batch_size)]
    return torch.cat(chunks)


@torch.no_grad()
def encode_text(tokenizer, text_encoder, captions: list[str]) -> torch.Tensor:
    ids = tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids)[0]


def mean_of(losses: list[float], first: bool) -> float:
    window = losses[:LOSS_WINDOW] if first else losses[-LOSS_WINDOW:]
    return float(np.mean(window)) if window else float("nan")


def fit_decoder(vae, modes: torch.Tensor, pixels: torch.Tensor, settings: PretrainSettings, progress: bool) -> float:
    """Fit the VAE decoder to invert the frozen random encoder's posterior mode; returns the final loss.

    ``post_quant_conv`` is first scaled by ``1 / std(modes)`` so that the decoder starts from unit-scale inputs
    (otherwise it sits on a plateau for the first ~80 steps).
    """
    vae.post_quant_conv.weight.data.mul_(1.0 / float(modes.std()))
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
    return mean_of(losses, first=False)


def train_unet(pipeline, latents: torch.Tensor, captions: list[str], settings: PretrainSettings, progress: bool):
    """Epsilon-prediction training of ``pipeline.unet``; returns the per-step losses."""
    from diffusers import DDPMScheduler

    unet = pipeline.unet
    vocabulary = sorted(set(captions)) + [""]  # the last one is the unconditional caption
    embeddings = encode_text(pipeline.tokenizer, pipeline.text_encoder, vocabulary)
    caption_rows = torch.tensor([vocabulary.index(caption) for caption in captions])
    noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(settings.seed)
    unet.train()
    losses = []
    for _ in tqdm(range(settings.steps), desc="toy UNet", disable=not progress):
        rows = torch.randint(0, len(latents), (settings.batch_size,), generator=generator)
        unconditional = torch.rand(settings.batch_size, generator=generator) < settings.caption_dropout
        conditioning = embeddings[torch.where(unconditional, len(vocabulary) - 1, caption_rows[rows])]
        noise = torch.randn(latents[rows].shape, generator=generator)
        timesteps = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (settings.batch_size,), generator=generator
        )
        noisy = noise_scheduler.add_noise(latents[rows], noise, timesteps)
        loss = F.mse_loss(unet(noisy, timesteps, conditioning).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    unet.eval().requires_grad_(False)
    return losses


def pretrain_stable_diffusion(
    base_dir: str | Path, out_dir: str | Path, settings: PretrainSettings = PretrainSettings(), progress: bool = False
) -> PretrainReport:
    """Write the pre-trained copy of the pipeline in ``base_dir`` to ``out_dir`` (reused if built alike)."""
    from diffusers import StableDiffusionPipeline

    out_dir = Path(out_dir)
    report_path = out_dir / REPORT_NAME
    if report_path.is_file():
        report = PretrainReport(**json.loads(report_path.read_text(encoding="utf-8")))
        if report.settings == asdict(settings):
            return report
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    pipeline = StableDiffusionPipeline.from_pretrained(base_dir)
    pixels, captions = render_scenes(settings)
    modes = posterior_modes(pipeline.vae, pixels)
    decoder_loss = fit_decoder(pipeline.vae, modes, pixels, settings, progress)
    scaling_factor = float(1.0 / modes.std())
    pipeline.vae.register_to_config(scaling_factor=scaling_factor)
    losses = train_unet(pipeline, modes * scaling_factor, captions, settings, progress)
    pipeline.unet.register_to_config(sample_size=settings.resolution // pipeline.vae_scale_factor)
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    report = PretrainReport(
        settings=asdict(settings),
        scaling_factor=scaling_factor,
        decoder_loss=decoder_loss,
        first_loss=mean_of(losses, first=True),
        last_loss=mean_of(losses, first=False),
        seconds=round(time.perf_counter() - started, 2),
    )
    report_path.write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")  # written last: marks completion
    logger.info(
        "toy SD pre-trained in %.1fs (decoder MSE %.3f, UNet loss %.3f -> %.3f) at %s",
        report.seconds, report.decoder_loss, report.first_loss, report.last_loss, out_dir,
    )
    return report


def main(argv: list[str] | None = None) -> PretrainReport:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_dir", help="The toy world's sd/ folder.")
    parser.add_argument("out_dir")
    for name, value in asdict(PretrainSettings()).items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    base_dir, out_dir = args.pop("base_dir"), args.pop("out_dir")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = pretrain_stable_diffusion(base_dir, out_dir, PretrainSettings(**args), progress=True)
    print(json.dumps(asdict(report), indent=2))
    return report


if __name__ == "__main__":
    main()
