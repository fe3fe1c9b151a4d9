"""How each family of diffusers text-to-video denoisers is encoded, conditioned and called, for ``train_video_dpo.py``.

Every family maps ``(N, F, 3, H, W)`` clips in [-1, 1] to latents laid out ``(N, C, f, h, w)``, captions to the
denoiser's text keyword arguments, and ``(noisy latents, timesteps, text)`` to a prediction in the latents' layout,
so the noising and the DPO loss are shared. Each follows its pipeline's own ``encode_prompt`` and denoising call.

* ``UNetMotionModel`` (AnimateDiff) and ``UNet3DConditionModel`` (TextToVideoSD / ModelScope, Zeroscope): the image
  VAE frame by frame, CLIP text, DDPM epsilon or v-prediction.
* ``CogVideoXTransformer3DModel`` (CogVideoX 2B / 5B / 1.5): 3-D VAE, T5 text, 3-D rotary embeddings where the model
  uses them, v-prediction on the pipeline's own scheduler (CogVideoX's SNR-shifted schedule).
* ``WanTransformer3DModel`` (Wan 2.1 / 2.2 T2V) and ``LTXVideoTransformer3DModel`` (LTX-Video): 3-D VAE with its
  latent mean / std, T5-family text, rectified flow (velocity ``noise - latents``).
"""

from __future__ import annotations

import torch

from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler


class VideoFamily:
    """A frame-wise UNet family (TextToVideoSD); the base of the others."""

    name = "text_to_video_sd"
    denoiser = "unet"  # the pipeline attribute that is trained
    flow_matching = False

    def __init__(self, pipeline, frame_rate: float = 25.0):
        self.pipeline, self.frame_rate = pipeline, frame_rate

    def training_scheduler(self, flow_shift: float | None = None):
        """The noise schedule training draws from (diffusers' training scripts: DDPM on the pipeline's config)."""
        return DDPMScheduler.from_config(self.pipeline.scheduler.config)

    def encode_videos(self, clips: torch.Tensor, sample: bool) -> torch.Tensor:
        vae = self.pipeline.vae
        distribution = vae.encode(clips.flatten(0, 1)).latent_dist  # frame by frame through the image VAE
        latents = (distribution.sample() if sample else distribution.mode()) * vae.config.scaling_factor
        return latents.unflatten(0, clips.shape[:2]).transpose(1, 2)

    def encode_text(self, captions: list[str], device) -> dict[str, torch.Tensor]:
        embeds, _ = self.pipeline.encode_prompt(captions, device, 1, False)
        return {"encoder_hidden_states": embeds}

    def predict(self, model, noisy: torch.Tensor, timesteps: torch.Tensor, text: dict) -> torch.Tensor:
        return model(noisy, timesteps, **text).sample


class AnimateDiff(VideoFamily):
    name = "animatediff"

    def predict(self, model, noisy, timesteps, text):
        # UNetMotionModel takes one text row per frame, as its pipeline passes them
        states = text["encoder_hidden_states"].repeat_interleave(noisy.shape[2], dim=0)
        return model(noisy, timesteps, encoder_hidden_states=states).sample


class FlowMatchingFamily(VideoFamily):
    """Rectified-flow transformers: training sigmas on a ``FlowMatchEulerDiscreteScheduler`` with a fixed shift."""

    denoiser = "transformer"
    flow_matching = True

    def training_scheduler(self, flow_shift=None):
        config = dict(self.pipeline.scheduler.config)
        shift = flow_shift or config.get("flow_shift") or config.get("shift") or 1.0
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=config.get("num_train_timesteps", 1000), shift=shift)

    @staticmethod
    def normalized(latents: torch.Tensor, mean, std, scaling_factor: float = 1.0) -> torch.Tensor:
        """Per-channel ``(latents - mean) * scaling_factor / std``, as the pipelines' VAEs expect."""
        mean = torch.as_tensor(mean, device=latents.device).view(1, -1, 1, 1, 1)
        std = torch.as_tensor(std, device=latents.device).view(1, -1, 1, 1, 1)
        return ((latents - mean) * scaling_factor / std).to(latents.dtype)

    def encode_text(self, captions, device):
        embeds, _ = self.pipeline.encode_prompt(captions, do_classifier_free_guidance=False, device=device)
        return {"encoder_hidden_states": embeds}


class Wan(FlowMatchingFamily):
    name = "wan"

    def encode_videos(self, clips, sample):
        vae = self.pipeline.vae
        distribution = vae.encode(clips.transpose(1, 2)).latent_dist  # the 3-D VAE takes (N, 3, F, H, W)
        latents = distribution.sample() if sample else distribution.mode()
        return self.normalized(latents, vae.config.latents_mean, vae.config.latents_std)

    def predict(self, model, noisy, timesteps, text):
        return model(hidden_states=noisy, timestep=timesteps, return_dict=False, **text)[0]


class LTXVideo(FlowMatchingFamily):
    """LTX-Video: packed latent tokens, a text attention mask, and RoPE scaled by the clips' frame rate."""

    name = "ltx"

    def encode_videos(self, clips, sample):
        vae = self.pipeline.vae
        distribution = vae.encode(clips.transpose(1, 2)).latent_dist
        latents = distribution.sample() if sample else distribution.mode()
        return self.normalized(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)

    def encode_text(self, captions, device):
        embeds, mask, _, _ = self.pipeline.encode_prompt(captions, do_classifier_free_guidance=False, device=device)
        return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask}

    def predict(self, model, noisy, timesteps, text):
        pipeline, config = self.pipeline, self.pipeline.transformer.config  # ``model`` may be DDP-wrapped
        frames, height, width = noisy.shape[2:]
        packed = pipeline._pack_latents(noisy, config.patch_size, config.patch_size_t)
        spatial = pipeline.vae_spatial_compression_ratio
        prediction = model(
            hidden_states=packed, timestep=timesteps, num_frames=frames, height=height, width=width,
            rope_interpolation_scale=(pipeline.vae_temporal_compression_ratio / self.frame_rate, spatial, spatial),
            return_dict=False, **text,
        )[0]
        return pipeline._unpack_latents(prediction, frames, height, width, config.patch_size, config.patch_size_t)


class CogVideoX(VideoFamily):
    """CogVideoX: ``(N, f, C, h, w)`` transformer layout, v-prediction on the pipeline's own SNR-shifted scheduler."""

    name = "cogvideox"
    denoiser = "transformer"

    def training_scheduler(self, flow_shift=None):
        return type(self.pipeline.scheduler).from_config(self.pipeline.scheduler.config)

    def encode_videos(self, clips, sample):
        vae = self.pipeline.vae
        distribution = vae.encode(clips.transpose(1, 2)).latent_dist
        latents = (distribution.sample() if sample else distribution.mode()) * vae.config.scaling_factor
        patch_t = self.pipeline.transformer.config.patch_size_t
        if patch_t and latents.shape[2] % patch_t:  # CogVideoX 1.5 patches time in pairs
            raise ValueError(f"{latents.shape[2]} latent frames are not a multiple of patch_size_t={patch_t}: "
                             f"choose --num_frames so that (num_frames - 1) / 4 + 1 is.")
        return latents

    def encode_text(self, captions, device):
        embeds, _ = self.pipeline.encode_prompt(captions, do_classifier_free_guidance=False, device=device)
        return {"encoder_hidden_states": embeds}

    def predict(self, model, noisy, timesteps, text):
        pipeline = self.pipeline
        hidden = noisy.transpose(1, 2)  # (N, f, C, h, w)
        rotary = None
        if pipeline.transformer.config.use_rotary_positional_embeddings:
            scale = pipeline.vae_scale_factor_spatial
            rotary = pipeline._prepare_rotary_positional_embeddings(
                noisy.shape[3] * scale, noisy.shape[4] * scale, hidden.shape[1], noisy.device
            )
        prediction = model(hidden_states=hidden, timestep=timesteps, image_rotary_emb=rotary, return_dict=False,
                           **text)[0]
        return prediction.transpose(1, 2)


FAMILIES: dict[str, type[VideoFamily]] = {
    "UNetMotionModel": AnimateDiff,
    "UNet3DConditionModel": VideoFamily,
    "CogVideoXTransformer3DModel": CogVideoX,
    "WanTransformer3DModel": Wan,
    "LTXVideoTransformer3DModel": LTXVideo,
}


def detect_family(pipeline, frame_rate: float = 25.0) -> VideoFamily:
    """The family of ``pipeline``'s denoiser; ``NotImplementedError`` naming the supported ones otherwise."""
    for attribute in ("unet", "transformer"):
        model = getattr(pipeline, attribute, None)
        if model is not None and type(model).__name__ in FAMILIES:
            return FAMILIES[type(model).__name__](pipeline, frame_rate)
    names = [type(getattr(pipeline, a)).__name__ for a in ("unet", "transformer") if getattr(pipeline, a, None)]
    raise NotImplementedError(
        f"{type(pipeline).__name__} ({', '.join(names)}) is not supported; supported denoisers: {', '.join(FAMILIES)}."
    )
