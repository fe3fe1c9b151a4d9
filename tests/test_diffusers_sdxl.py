"""SDXL / SDXL-Turbo path of train_diffusion_dpo.py on a tiny random SDXL pipeline built from the toy SD parts."""

import io
import json
import shutil
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from integrations.diffusers import train_diffusion_dpo as script


@pytest.fixture(scope="module")
def tiny_sdxl(toy_world, tmp_path_factory):
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(toy_world["sd_model"], subfolder="tokenizer")
    torch.manual_seed(0)
    config = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length, projection_dim=32)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=8, norm_num_groups=16, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8,
    )
    vae = AutoencoderKL(block_out_channels=(16, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=16)
    pipeline = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**config)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**config)), tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=DDPMScheduler(), add_watermarker=False,
    )
    path = tmp_path_factory.mktemp("tiny-sdxl")
    pipeline.save_pretrained(path)
    return path


def pair_data(folder):
    """Pairs of mixed sizes (and a tie, dropped) in a save_to_disk folder."""
    from datasets import Dataset

    def png(value, size=(16, 16)):
        buffer = io.BytesIO()
        Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()

    rows = {"caption": ["a red circle", "a blue square", "tie"], "jpg_0": [png(200), png(30, (24, 16)), png(90)],
            "jpg_1": [png(40, (16, 20)), png(220), png(90)], "label_0": [1, 0, 0.5]}
    Dataset.from_dict(rows).save_to_disk(str(folder))
    return folder


def test_diffusers_readme_sdxl_turbo_command_trains_saves_and_loads(tiny_sdxl, tmp_path, monkeypatch):
    """diffusers' README "SDXL Turbo training command" with toy paths and sizes, 2 steps, in-process.

    Changed besides paths and sizes: --report_to none (wandb is absent), no --push_to_hub (no Hub here; its error is
    tested in test_diffusion_dpo_script.py), --mixed_precision no (other in-process tests share accelerate's state;
    the fp16 SD command runs under `accelerate launch` there). bitsandbytes (CUDA only) is a stand-in module."""
    from diffusers import DiffusionPipeline

    from test_diffusion_dpo_script import DIFFUSERS_SDXL_TURBO_README, command_line

    built = []

    class AdamW8bit(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(kwargs)

    stand_in = types.SimpleNamespace(optim=types.SimpleNamespace(AdamW8bit=AdamW8bit))
    build_optimizer = script.build_optimizer

    def build_with_stand_in(args, params):  # the stand-in exists only while the optimizer is built (peft and
        with monkeypatch.context() as patch:  # diffusers probe for bitsandbytes elsewhere and would use it)
            patch.setitem(sys.modules, "bitsandbytes", stand_in)
            return build_optimizer(args, params)

    monkeypatch.setattr(script, "build_optimizer", build_with_stand_in)
    output_dir = tmp_path / "out"
    args = script.parse_args(command_line(DIFFUSERS_SDXL_TURBO_README, {
        "--pretrained_model_name_or_path": str(tiny_sdxl), "--pretrained_vae_model_name_or_path": str(tiny_sdxl / "vae"),
        "--dataset_name": str(pair_data(tmp_path / "data")), "--output_dir": str(output_dir), "--resolution": "16",
        "--train_batch_size": "2", "--max_train_steps": "2", "--report_to": "none", "--mixed_precision": "no",
    }, drop=("--push_to_hub",)))
    assert args.is_turbo and args.rescale_betas_zero_snr and args.use_8bit_adam
    script.main(args)
    assert built and built[0]["lr"] == 1e-5
    metrics = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all(np.isfinite(m["loss"]) for m in metrics)
    assert len(list((output_dir / "validation" / "step-2").glob("*.png"))) == 4  # the final validation

    pipeline = DiffusionPipeline.from_pretrained(tiny_sdxl)
    pipeline.load_lora_weights(str(output_dir))
    assert pipeline.get_active_adapters()
    image = pipeline("a red circle", num_inference_steps=1, guidance_scale=0.0, height=16, width=16,
                     output_type="np").images
    assert image.shape == (1, 16, 16, 3) and np.isfinite(image).all()


def test_unifiedreward_turbo_launcher_trains_the_full_unet_with_adafactor(tiny_sdxl, tmp_path, monkeypatch):
    """UnifiedReward's launchers/turbo_dpo.sh flags (toy paths and sizes) + --full_finetune, its train.py's mode."""
    from test_diffusion_dpo_script import UNIFIEDREWARD_TURBO_LAUNCHER, command_line

    turbo = tmp_path / "toy-sdxl-turbo"  # upstream keys its turbo settings on the name
    shutil.copytree(tiny_sdxl, turbo)
    output_dir = tmp_path / "out"
    args = script.parse_args(command_line(UNIFIEDREWARD_TURBO_LAUNCHER, {
        "--pretrained_model_name_or_path": str(turbo), "--pretrained_vae_model_name_or_path": str(turbo / "vae"),
        "--dataset_name": str(pair_data(tmp_path / "data")), "--output_dir": str(output_dir), "--resolution": "16",
        "--train_batch_size": "2", "--gradient_accumulation_steps": "1", "--max_train_steps": "2",
        "--cache_dir": str(tmp_path / "cache"), "--mixed_precision": "no", "--report_to": "none",
        "--full_finetune": "",
    }))
    assert args.use_adafactor and args.is_turbo and not args.use_lora
    script.main(args)
    assert (output_dir / "unet" / "config.json").is_file()
    assert len((output_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_sdxl_conditioning_has_pooled_embeds_and_per_image_time_ids(tiny_sdxl):
    args = script.parse_args(["--pretrained_model_name_or_path", str(tiny_sdxl), "--dataset_name", "x"])
    _, _, _, conditioner = script.load_components(args)
    batch = {"captions": ["a", "b"], "original_sizes": [(24, 24), (16, 32), (48, 16), (24, 24)],
             "crop_top_lefts": [(0, 0), (0, 8), (16, 0), (0, 0)]}
    hidden, added = script.batch_conditioning(conditioner, batch, 24, "cpu", torch.float32)
    assert conditioner.is_sdxl and hidden.shape[0] == 4 and hidden.shape[-1] == 64
    assert added["text_embeds"].shape == (4, 32)
    assert added["time_ids"].tolist() == [[24, 24, 0, 0, 24, 24], [16, 32, 0, 8, 24, 24], [48, 16, 16, 0, 24, 24],
                                          [24, 24, 0, 0, 24, 24]]
