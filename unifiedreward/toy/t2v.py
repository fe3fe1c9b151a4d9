"""Tiny text-to-video pipelines for the toy world: AnimateDiff on the toy SD, and tiny Wan 2.1, CogVideoX and LTX-Video.

* :func:`build_animatediff` turns a toy Stable Diffusion folder (best the pre-trained one of
  :mod:`unifiedreward.toy.sd_pretrain`) into an ``AnimateDiffPipeline``: the SD UNet plus a tiny ``MotionAdapter``
  whose temporal attention output projections start at zero, as AnimateDiff's motion modules do (Guo et al. 2023,
  "zero_initialize"), so the video model starts as the image model drawn frame by frame: its clips are not
  temporally coherent (each frame is its own toy scene), but a clip-level judge (mean brightness) ranks them, and the
  UNet's denoising error depends on the frames' content, which is what Diffusion-DPO needs. (A brief motion-module
  pre-training on toy clips did not make frames coherent within CPU-seconds, so there is none.)
* :func:`build_text_to_video_sd` writes a ``TextToVideoSDPipeline`` (random ``UNet3DConditionModel``, v-prediction)
  on the toy SD's VAE and text encoder, for the UNet3D / v-prediction path of ``train_video_dpo.py``.
* :func:`build_wan` writes a randomly initialised tiny ``WanPipeline`` (flow matching, 3-D causal VAE, UMT5 text
  encoder with the toy CLIP tokenizer), for the flow-matching path of ``train_video_dpo.py``.
* :func:`build_cogvideox` writes a random tiny ``CogVideoXPipeline`` (3-D VAE, T5, 3-D rotary embeddings as
  CogVideoX-5B, v-prediction DDIM with CogVideoX's SNR shift), and :func:`build_ltx` a random tiny ``LTXPipeline``
  (3-D VAE with latent mean/std, T5, packed latents, flow matching).

All are loaded with ``DiffusionPipeline.from_pretrained`` like real checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .tokenization import CLIP_EOS, save_clip_tokenizer

logger = logging.getLogger(__name__)


def zero_motion_outputs(motion_adapter) -> int:
    """Zero the output projection of every temporal transformer; returns how many were zeroed."""
    count = 0
    for name, module in motion_adapter.named_modules():
        if name.endswith("proj_out") and isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
            count += 1
    return count


def build_animatediff(sd_dir: str | Path, out_dir: str | Path, seed: int = 0, max_frames: int = 16) -> Path:
    """Write an ``AnimateDiffPipeline`` made of the SD pipeline in ``sd_dir`` and a new tiny motion adapter."""
    from diffusers import AnimateDiffPipeline, MotionAdapter, StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(str(sd_dir))
    channels = tuple(sd.unet.config.block_out_channels)
    torch.manual_seed(seed)
    adapter = MotionAdapter(
        block_out_channels=channels,
        motion_layers_per_block=1,
        motion_num_attention_heads=4,
        motion_norm_num_groups=sd.unet.config.norm_num_groups,
        motion_max_seq_length=max_frames,
        use_motion_mid_block=False,
    )
    zeroed = zero_motion_outputs(adapter)
    pipeline = AnimateDiffPipeline(
        vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet, motion_adapter=adapter,
        scheduler=sd.scheduler, feature_extractor=None, image_encoder=None,
    )
    pipeline.save_pretrained(str(out_dir), safe_serialization=True)
    logger.info("toy AnimateDiff (%d zero-initialised motion outputs) written to %s", zeroed, out_dir)
    return Path(out_dir)


def _t5_text_encoder(out_dir: Path, captions: list[str], max_text_length: int, config_class=None, model_class=None):
    """The toy CLIP tokenizer (saved under ``out_dir/tokenizer``) and a random tiny T5-family encoder (T5 by
    default; Wan's UMT5) that reads it."""
    from transformers import CLIPTokenizer, T5Config, T5EncoderModel

    vocab_size = save_clip_tokenizer(out_dir / "tokenizer", captions, max_text_length)
    tokenizer = CLIPTokenizer.from_pretrained(out_dir / "tokenizer")
    config = (config_class or T5Config)(
        vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=tokenizer.convert_tokens_to_ids(CLIP_EOS),
    )
    return tokenizer, (model_class or T5EncoderModel)(config)


def build_wan(out_dir: str | Path, captions: list[str], seed: int = 0, max_text_length: int = 32) -> Path:
    """Write a random tiny ``WanPipeline`` (flow matching; frames must be ``4k + 1``, sizes multiples of 16)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer, text_encoder = _t5_text_encoder(out_dir, captions, max_text_length, UMT5Config, UMT5EncoderModel)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    pipeline = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                           scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipeline.save_pretrained(str(out_dir), safe_serialization=True)
    logger.info("toy Wan written to %s", out_dir)
    return out_dir


def build_text_to_video_sd(sd_dir: str | Path, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a ``TextToVideoSDPipeline`` (ModelScope layout): the toy SD's VAE and text encoder with a new random
    ``UNet3DConditionModel`` and a v-prediction DDIM scheduler."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, TextToVideoSDPipeline, UNet3DConditionModel

    sd = StableDiffusionPipeline.from_pretrained(str(sd_dir))
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(
        sample_size=sd.unet.config.sample_size, in_channels=4, out_channels=4,
        block_out_channels=tuple(sd.unet.config.block_out_channels), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=sd.text_encoder.config.hidden_size, attention_head_dim=8,
        norm_num_groups=sd.unet.config.norm_num_groups,
    )
    scheduler = DDIMScheduler.from_config(sd.scheduler.config, prediction_type="v_prediction")
    pipeline = TextToVideoSDPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=unet,
                                     scheduler=scheduler)
    pipeline.save_pretrained(str(out_dir), safe_serialization=True)
    logger.info("toy TextToVideoSD written to %s", out_dir)
    return Path(out_dir)



def build_cogvideox(out_dir: str | Path, captions: list[str], seed: int = 0, max_text_length: int = 32) -> Path:
    """Write a random tiny ``CogVideoXPipeline`` (frames ``8k + 1``, which its VAE decodes back to the same count, as
    CogVideoX's 49; sizes multiples of 16)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer, text_encoder = _t5_text_encoder(out_dir, captions, max_text_length)
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=16,
        text_embed_dim=32, num_layers=2, sample_width=4, sample_height=4, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=max_text_length, use_rotary_positional_embeddings=True,
    )
    scheduler = CogVideoXDDIMScheduler(prediction_type="v_prediction", snr_shift_scale=3.0, rescale_betas_zero_snr=True,
                                       timestep_spacing="trailing", beta_schedule="scaled_linear")
    pipeline = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                                 scheduler=scheduler)
    pipeline.save_pretrained(str(out_dir), safe_serialization=True)
    logger.info("toy CogVideoX written to %s", out_dir)
    return out_dir


def build_ltx(out_dir: str | Path, captions: list[str], seed: int = 0, max_text_length: int = 32) -> Path:
    """Write a random tiny ``LTXPipeline`` (frames ``4k + 1``, sizes multiples of 4 for this VAE; LTX-Video's own
    VAE compresses 8x in time and 32x in space)."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer, text_encoder = _t5_text_encoder(out_dir, captions, max_text_length)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False), decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, patch_size=1,
        patch_size_t=1,
    )
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=16,
        cross_attention_dim=32, num_layers=2, caption_channels=32,
    )
    pipeline = LTXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                           scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True))
    pipeline.save_pretrained(str(out_dir), safe_serialization=True)
    logger.info("toy LTX-Video written to %s", out_dir)
    return out_dir
