"""A tiny, randomly initialised Stable Diffusion pipeline (UNet, VAE, CLIP text encoder, own tokenizer)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .tokenization import CLIP_BOS, CLIP_EOS, save_clip_tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SDSize:
    """Tunable size of the toy pipeline; images are ``latent_size * 2 ** (len(vae_channels) - 1)`` pixels."""

    unet_channels: tuple[int, ...] = (32, 64)
    vae_channels: tuple[int, ...] = (32, 32, 32)
    latent_size: int = 16
    text_hidden_size: int = 32
    text_layers: int = 2
    text_heads: int = 4
    max_text_length: int = 77


def build_stable_diffusion(out_dir: Path, captions: list[str], seed: int = 0, size: SDSize = SDSize()) -> Path:
    """Write a ``StableDiffusionPipeline`` directory (no safety checker) to ``out_dir``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out_dir = Path(out_dir)
    tokenizer_dir = out_dir / "tokenizer"
    vocab_size = save_clip_tokenizer(tokenizer_dir, captions, size.max_text_length)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=size.text_hidden_size,
            intermediate_size=size.text_hidden_size * 2,
            num_hidden_layers=size.text_layers,
            num_attention_heads=size.text_heads,
            max_position_embeddings=size.max_text_length,
            projection_dim=size.text_hidden_size,
            bos_token_id=tokenizer.convert_tokens_to_ids(CLIP_BOS),
            eos_token_id=tokenizer.convert_tokens_to_ids(CLIP_EOS),
            pad_token_id=tokenizer.convert_tokens_to_ids(CLIP_EOS),
        )
    )
    unet = UNet2DConditionModel(
        sample_size=size.latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=size.unet_channels,
        layers_per_block=1,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(size.unet_channels) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(size.unet_channels) - 1) + ("UpBlock2D",),
        cross_attention_dim=size.text_hidden_size,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(size.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(size.vae_channels),
        block_out_channels=size.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=size.latent_size * 2 ** (len(size.vae_channels) - 1),
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    logger.info("toy Stable Diffusion written to %s", out_dir)
    return out_dir
