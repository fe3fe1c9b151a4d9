"""A tiny, randomly initialised but real Qwen2.5-VL checkpoint (config, weights, processor, tokenizer)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .tokenization import save_qwen_tokenizer

logger = logging.getLogger(__name__)

# Byte-exact copy of the chat template shipped in Qwen/Qwen2.5-VL-7B-Instruct's chat_template.json.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class QwenSize:
    """Tunable size of the toy Qwen2.5-VL (text decoder and vision tower).

    Text head_dim is 32 (64 / 2 heads, mrope_section [4, 6, 6]): vLLM's CPU attention refuses 16.
    """

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vision_hidden_size: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate_size: int = 64


@dataclass(frozen=True)
class PixelLimits:
    """Processor pixel budgets, kept small so toy media become a handful of tokens."""

    image_min_pixels: int = 28 * 28 * 4
    image_max_pixels: int = 28 * 28 * 64
    video_min_pixels: int = 28 * 28 * 4
    video_max_pixels: int = 28 * 28 * 16


def mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (temporal, height, width) like Qwen's [16, 24, 24] for 128."""
    half = head_dim // 2
    temporal = half // 4
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


def qwen_config(tokenizer: Tokenizer, size: QwenSize):
    from transformers import Qwen2_5_VLConfig

    head_dim = size.hidden_size // size.num_heads
    token_id = tokenizer.token_to_id
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": tokenizer.get_vocab_size(),
            "hidden_size": size.hidden_size,
            "intermediate_size": size.intermediate_size,
            "num_hidden_layers": size.num_layers,
            "num_attention_heads": size.num_heads,
            "num_key_value_heads": size.num_kv_heads,
            "max_position_embeddings": 4096,
            "max_window_layers": size.num_layers,
            "rope_parameters": {
                "rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope_section(head_dim)
            },
            "bos_token_id": token_id("<|endoftext|>"),
            "eos_token_id": token_id("<|im_end|>"),
            "pad_token_id": token_id("<|endoftext|>"),
        },
        vision_config={
            "depth": size.vision_depth,
            "hidden_size": size.vision_hidden_size,
            "num_heads": size.vision_heads,
            "intermediate_size": size.vision_intermediate_size,
            "out_hidden_size": size.hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [size.vision_depth - 1],
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def save_qwen_processor(tokenizer: Tokenizer, out_dir: Path, pixels: PixelLimits) -> None:
    """Tokenizer files plus a real Qwen2_5_VLProcessor with the upstream chat template."""
    from transformers import AutoTokenizer, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    save_qwen_tokenizer(tokenizer, out_dir, QWEN2_5_VL_CHAT_TEMPLATE)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels.image_min_pixels, max_pixels=pixels.image_max_pixels),
        video_processor=Qwen2VLVideoProcessor(
            min_pixels=pixels.video_min_pixels, max_pixels=pixels.video_max_pixels, cap_pixels_per_frame=True
        ),
        tokenizer=AutoTokenizer.from_pretrained(out_dir),
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)


def _drop_vision_rope_parameters(config_path: Path) -> None:
    """Hub Qwen2.5-VL configs carry no vision ``rope_parameters``; older transformers (5.6) warn on the default one."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["vision_config"].pop("rope_parameters", None)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_qwen2_5_vl(
    out_dir: Path,
    tokenizer: Tokenizer,
    seed: int = 0,
    size: QwenSize = QwenSize(),
    pixels: PixelLimits = PixelLimits(),
) -> Path:
    """Write a loadable Qwen2.5-VL checkpoint (random init from ``seed``) to ``out_dir``."""
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = qwen_config(tokenizer, size)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.token_to_id("<|endoftext|>"),
        eos_token_id=[tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")],
        pad_token_id=tokenizer.token_to_id("<|endoftext|>"),
        do_sample=False,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    _drop_vision_rope_parameters(out_dir / "config.json")
    save_qwen_processor(tokenizer, out_dir, pixels)
    logger.info("toy Qwen2.5-VL (%d params) written to %s", model.num_parameters(), out_dir)
    return out_dir
