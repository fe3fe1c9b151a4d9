"""Qwen2.5-VL preference batches for ``DPOTrainer`` on TRL 0.24 and 1.x.

TRL >= 0.29 processes vision preference rows on the fly with ``DataCollatorForVisionPreference``
(all ``pixel_values`` rows, ``image_grid_thw``, ``mm_token_type_ids``): there
:func:`vision_preference_collator` returns TRL's own collator and :func:`vision_dpo_trainer_class`
TRL's ``DPOTrainer``. TRL 0.24-0.28 pre-tokenizes rows and keeps only the first ``pixel_values`` row
and no ``image_grid_thw`` (huggingface/trl #2660, #4071), so there this module supplies
:class:`QwenVLPreferenceCollator` (rows processed per batch, every patch row kept, prompt shared by
chosen and rejected) and a ``DPOTrainer`` subclass that skips the pre-tokenization and hands
``image_grid_thw`` / ``mm_token_type_ids`` to the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from reward_core.media import load_image

from ._compat import TRL_HAS_VISION_DPO, ensure_warnings_issued


def _images_of(row: dict[str, Any]) -> list[Any]:
    if row.get("images") is not None:
        return [load_image(image) for image in row["images"]]
    if row.get("image") is not None:
        return [load_image(row["image"])]
    return []


def _with_image_parts(messages: list[dict[str, Any]], num_images: int) -> list[dict[str, Any]]:
    """String user content gets one ``{"type": "image"}`` per image before the text (as TRL 1.x does)."""
    out, placed = [], False
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
            if message["role"] == "user" and not placed:
                parts = [{"type": "image"}] * num_images + parts
                placed = True
            message = {**message, "content": parts}
        out.append(message)
    return out


@dataclass
class QwenVLPreferenceCollator:
    """Processes conversational preference rows (``images``, ``prompt``, ``chosen``, ``rejected``) per batch.

    Output keys follow TRL 0.24's ``DPOTrainer``: ``prompt_input_ids`` (left-padded, shared by chosen
    and rejected), ``chosen_input_ids`` / ``rejected_input_ids`` (right-padded) with their masks,
    ``pixel_values`` (every patch row of every image, row order) and ``image_grid_thw``.
    """

    processor: Any
    max_completion_length: int | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        images = [_images_of(row) for row in rows]
        prompts, chosens, rejecteds = [], [], []
        for row, row_images in zip(rows, images):
            prompt = _with_image_parts(row["prompt"], len(row_images))
            prompt_text = self.processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            prompts.append(prompt_text)
            for key, bucket in (("chosen", chosens), ("rejected", rejecteds)):
                full = self.processor.apply_chat_template(prompt + _with_image_parts(row[key], 0), tokenize=False)
                if not full.startswith(prompt_text):
                    raise ValueError(f"chat template of prompt + {key} does not extend the prompt")
                bucket.append(full[len(prompt_text) :])
        flat_images = [image for row_images in images for image in row_images]
        prompt_batch = self.processor(
            images=flat_images or None,
            text=prompts,
            padding=True,
            padding_side="left",
            return_tensors="pt",
            add_special_tokens=False,
        )
        batch = {
            "prompt_input_ids": prompt_batch["input_ids"],
            "prompt_attention_mask": prompt_batch["attention_mask"],
        }
        if flat_images:
            batch["pixel_values"] = prompt_batch["pixel_values"]
            batch["image_grid_thw"] = prompt_batch["image_grid_thw"]
        tokenizer = self.processor.tokenizer
        for key, texts in (("chosen", chosens), ("rejected", rejecteds)):
            tokens = tokenizer(
                texts,
                padding=True,
                padding_side="right",
                return_tensors="pt",
                add_special_tokens=False,
                truncation=self.max_completion_length is not None,
                max_length=self.max_completion_length,
            )
            batch[f"{key}_input_ids"] = tokens["input_ids"]
            batch[f"{key}_attention_mask"] = tokens["attention_mask"]
        return batch


def vision_preference_collator(processor: Any, **kwargs: Any) -> Any:
    """TRL's ``DataCollatorForVisionPreference`` on TRL >= 0.29, else :class:`QwenVLPreferenceCollator`."""
    if TRL_HAS_VISION_DPO:
        from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

        return DataCollatorForVisionPreference(processor, **kwargs)
    return QwenVLPreferenceCollator(processor, **kwargs)


@contextlib.contextmanager
def forward_kwargs(model: torch.nn.Module, image_grid_thw: torch.Tensor | None) -> Iterator[None]:
    """Adds ``image_grid_thw`` and ``mm_token_type_ids`` (rebuilt from the final ``input_ids``) to ``model``'s calls."""
    if image_grid_thw is None:
        yield
        return
    config = getattr(model, "config", None)
    image_id, video_id = getattr(config, "image_token_id", None), getattr(config, "video_token_id", None)

    def add_vision_kwargs(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        extra: dict[str, Any] = {"image_grid_thw": image_grid_thw}
        input_ids = kwargs.get("input_ids")
        if input_ids is not None and image_id is not None:
            types = torch.zeros_like(input_ids, dtype=torch.int)
            types[input_ids == image_id] = 1
            if video_id is not None:
                types[input_ids == video_id] = 2
            extra["mm_token_type_ids"] = types
        return args, {**kwargs, **extra}

    handle = model.register_forward_pre_hook(add_vision_kwargs, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def vision_dpo_trainer_class() -> type:
    """``DPOTrainer`` that trains Qwen2.5-VL preference rows correctly on this TRL version."""
    from trl import DPOTrainer

    if TRL_HAS_VISION_DPO:
        return DPOTrainer

    class QwenVLDPOTrainer(DPOTrainer):
        """TRL < 0.29 ``DPOTrainer`` fed by :class:`QwenVLPreferenceCollator` (pass it as ``data_collator``)."""

        def __init__(self, model, *args, **kwargs):
            if isinstance(model, torch.nn.Module):
                ensure_warnings_issued(model)
            super().__init__(model, *args, **kwargs)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # processed per batch by the collator

        def concatenated_forward(self, model, batch, is_ref_model: bool = False):
            grid = batch.get("image_grid_thw")
            grid = None if grid is None else torch.cat([grid, grid])  # chosen rows, then rejected rows
            with forward_kwargs(model, grid):
                return super().concatenated_forward(model, batch, is_ref_model=is_ref_model)

    return QwenVLDPOTrainer
