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
import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from reward_core.media import load_image

from ._compat import TRL_HAS_VISION_DPO, ensure_warnings_issued

logger = logging.getLogger(__name__)


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
    ``max_length`` bounds prompt + completion by cutting the completions only: the prompt (with its
    image tokens) is never cut, and a completion keeps at least one token.
    """

    processor: Any
    max_completion_length: int | None = None
    max_length: int | None = None

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
        budget = self.max_completion_length
        if self.max_length is not None:
            room = self.max_length - batch["prompt_input_ids"].shape[1]
            if room < 1:
                logger.warning("prompt with image tokens (%d) exceeds max_length=%d; kept whole, completions cut to 1 token",
                               batch["prompt_input_ids"].shape[1], self.max_length)
            room = max(room, 1)
            budget = room if budget is None else min(budget, room)
        for key, texts in (("chosen", chosens), ("rejected", rejecteds)):
            tokens = tokenizer(
                texts,
                padding=True,
                padding_side="right",
                return_tensors="pt",
                add_special_tokens=False,
                truncation=budget is not None,
                max_length=budget,
            )
            batch[f"{key}_input_ids"] = tokens["input_ids"]
            batch[f"{key}_attention_mask"] = tokens["attention_mask"]
        return batch


def _image_safe_collator_class() -> type:
    """TRL >= 0.29's ``DataCollatorForVisionPreference`` whose ``max_length`` never cuts into the prompt."""
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    @dataclass
    class ImageSafeVisionPreferenceCollator(DataCollatorForVisionPreference):
        """TRL's collator cuts every row at ``max_length`` from the right, image tokens included when the prompt
        is long; this one cuts the completions only (the prompt of every row is kept whole)."""

        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            limit, self.max_length = self.max_length, None
            try:
                batch = super().torch_call(examples)
            finally:
                self.max_length = limit
            if limit is None:
                return batch
            prompt = batch["attention_mask"].bool() & ~batch["completion_mask"].bool()
            columns = prompt.any(dim=0).nonzero()
            keep = int(columns.max()) + 2 if len(columns) else 0  # the prompt and at least one completion token
            if keep > limit:
                logger.warning("prompt with image tokens (%d) exceeds max_length=%d; kept whole", keep - 1, limit)
            length = max(limit, keep)
            for key in ("input_ids", "attention_mask", "completion_mask", "token_type_ids", "mm_token_type_ids"):
                if key in batch:
                    batch[key] = batch[key][:, :length]
            return batch

    return ImageSafeVisionPreferenceCollator


def vision_preference_collator(processor: Any, **kwargs: Any) -> Any:
    """TRL's vision preference collator (TRL >= 0.29), else :class:`QwenVLPreferenceCollator`; ``max_length``
    (e.g. ``DPOConfig.max_length``) cuts completions, never the prompt's image tokens."""
    if TRL_HAS_VISION_DPO:
        return _image_safe_collator_class()(processor, **kwargs)
    return QwenVLPreferenceCollator(processor, **kwargs)


def _load_model(model: Any) -> Any:
    """A model path becomes the model (``AutoModelForImageTextToText``); a model (or None) stays as given."""
    if not isinstance(model, str):
        return model
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(model, dtype="auto")


def _load_policy(model: Any, processing_class: Any) -> tuple[Any, Any]:
    """A model path becomes the model (:func:`_load_model`) and, if none is given, its processor."""
    from transformers import AutoProcessor

    if isinstance(model, str):
        processing_class = processing_class or AutoProcessor.from_pretrained(model)
        model = _load_model(model)
    elif processing_class is None:
        processing_class = AutoProcessor.from_pretrained(model.config._name_or_path)
    return model, processing_class


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
    """``DPOTrainer`` that trains Qwen2.5-VL preference rows correctly on this TRL version.

    Both take ``DPOTrainer``'s arguments in its order, so ``cls(model, ref_model, args=...)`` (TRL's
    ``examples/scripts/dpo_vlm.py``) works; both accept a model path (loaded with ``AutoModelForImageTextToText``, processor from the same path) and
    default to :func:`vision_preference_collator` with ``args.max_length`` (completions cut, never image tokens).
    On TRL < 0.29 the config is adjusted for vision rows: ``remove_unused_columns=False`` (the collator needs
    ``images``), and TRL's own truncation (``max_length`` / ``max_prompt_length``, which would cut image tokens:
    "Image features and image tokens do not match") is handed to the collator.
    """
    from trl import DPOTrainer

    if TRL_HAS_VISION_DPO:

        class VisionDPOTrainer(DPOTrainer):
            """TRL's ``DPOTrainer`` with a model path and an image-safe ``max_length`` by default."""

            def __init__(self, model, ref_model=None, args=None, data_collator=None, train_dataset=None,
                         eval_dataset=None, processing_class=None, **kwargs):
                model, processing_class = _load_policy(model, processing_class)
                if data_collator is None:
                    data_collator = vision_preference_collator(processing_class, max_length=getattr(args, "max_length", None))
                super().__init__(model, _load_model(ref_model), args=args, data_collator=data_collator,
                                 train_dataset=train_dataset, eval_dataset=eval_dataset,
                                 processing_class=processing_class, **kwargs)

        return VisionDPOTrainer

    class QwenVLDPOTrainer(DPOTrainer):
        """TRL < 0.29 ``DPOTrainer`` fed by :class:`QwenVLPreferenceCollator`, with vision-safe config values."""

        def __init__(self, model, ref_model=None, args=None, data_collator=None, train_dataset=None,
                     eval_dataset=None, processing_class=None, **kwargs):
            model, processing_class = _load_policy(model, processing_class)
            ensure_warnings_issued(model)
            if args is not None:
                args = vision_dpo_args(args)
            if data_collator is None:
                data_collator = QwenVLPreferenceCollator(processing_class, args.max_completion_length if args else None,
                                                         getattr(args, "vision_max_length", None))
            super().__init__(model, _load_model(ref_model), args=args, data_collator=data_collator,
                             train_dataset=train_dataset, eval_dataset=eval_dataset,
                             processing_class=processing_class, **kwargs)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # processed per batch by the collator

        def concatenated_forward(self, model, batch, is_ref_model: bool = False):
            grid = batch.get("image_grid_thw")
            grid = None if grid is None else torch.cat([grid, grid])  # chosen rows, then rejected rows
            with forward_kwargs(model, grid):
                return super().concatenated_forward(model, batch, is_ref_model=is_ref_model)

    return QwenVLDPOTrainer


def vision_dpo_args(args: Any) -> Any:
    """TRL < 0.29 ``DPOConfig`` values for vision rows (a copy): keep the image columns, no truncation by TRL.

    The user's ``max_length`` moves to ``vision_max_length`` for :class:`QwenVLPreferenceCollator`.
    """
    changes = {}
    if args.remove_unused_columns:
        changes["remove_unused_columns"] = False
    for key in ("max_length", "max_prompt_length"):
        if getattr(args, key, None) is not None:
            changes[key] = None
    if changes:
        logger.info("vision DPO on TRL < 0.29: %s", ", ".join(f"{k}={v}" for k, v in changes.items()))
    vision_max_length = args.max_length
    args = copy.copy(args)
    for key, value in changes.items():
        setattr(args, key, value)
    args.vision_max_length = vision_max_length
    return args
