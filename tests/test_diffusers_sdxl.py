"""SDXL / SDXL-Turbo path of train_diffusion_dpo.py on a tiny random SDXL pipeline built from the toy SD parts."""

import io
import json

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
    from datasets import Dataset

    def png(value):
        buffer = io.BytesIO()
        Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()

    rows = {"caption": ["a red circle", "a blue square", "tie"], "jpg_0": [png(200), png(30), png(90)],
            "jpg_1": [png(40), png(220), png(90)], "label_0": [1, 0, 0.5]}
    Dataset.from_dict(rows).save_to_disk(str(folder))
    return folder


def test_sdxl_turbo_lora_trains_saves_and_loads(tiny_sdxl, tmp_path):
    from diffusers import DiffusionPipeline

    output_dir = tmp_path / "out"
    args = script.parse_args([
        "--pretrained_model_name_or_path", str(tiny_sdxl), "--dataset_name", str(pair_data(tmp_path / "data")),
        "--output_dir", str(output_dir), "--resolution", "16", "--train_batch_size", "2", "--max_train_steps", "2",
        "--learning_rate", "1e-3", "--mixed_precision", "no", "--seed", "0", "--is_turbo", "--report_to", "none",
        "--checkpointing_steps", "100", "--validation_prompts", "a red circle", "--validation_inference_steps", "1",
    ])
    script.main(args)
    metrics = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all(np.isfinite(m["loss"]) for m in metrics)
    assert (output_dir / "validation" / "step-2" / "000.png").is_file()

    pipeline = DiffusionPipeline.from_pretrained(tiny_sdxl)
    pipeline.load_lora_weights(str(output_dir))
    assert pipeline.get_active_adapters()
    image = pipeline("a red circle", num_inference_steps=1, guidance_scale=0.0, height=16, width=16,
                     output_type="np").images
    assert image.shape == (1, 16, 16, 3) and np.isfinite(image).all()


def test_sdxl_conditioning_has_pooled_embeds_and_time_ids(tiny_sdxl):
    args = script.parse_args(["--pretrained_model_name_or_path", str(tiny_sdxl), "--dataset_name", "x",
                              "--resolution", "24"])
    _, _, _, conditioner = script.load_components(args)
    hidden, added = conditioner(["a", "b"], "cpu", torch.float32)
    assert conditioner.is_sdxl and hidden.shape[-1] == 64
    assert added["text_embeds"].shape == (2, 32)
    assert added["time_ids"].tolist() == [[24, 24, 0, 0, 24, 24]] * 2
