"""Diffusion-DPO preference data in the Pick-a-Pic layout: ``caption``, ``jpg_0``, ``jpg_1``, ``label_0``.

``label_0 == 1`` means ``jpg_0`` is preferred, ``0`` means ``jpg_1`` is; ties (``0.5``) carry no preference and are
dropped, never trained on as if ``jpg_0`` had won. Image cells may be encoded bytes (Pick-a-Pic), a ``datasets``
Image cell, a PIL image, or a path (relative to the dataset folder).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("caption", "jpg_0", "jpg_1", "label_0")


def load_preference_split(dataset_name: str, split: str, cache_dir: str | None = None):
    """A split of a ``save_to_disk`` folder, a data folder, or a Hub dataset; returns ``(dataset, media_root)``."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(dataset_name)
    saved_to_disk = path.is_dir() and any((path / name).exists() for name in ("dataset_dict.json", "state.json"))
    if saved_to_disk:
        dataset = load_from_disk(str(path))
        if isinstance(dataset, DatasetDict):
            if split not in dataset:
                raise ValueError(f"Split {split!r} not in {dataset_name} (has {sorted(dataset)}).")
            dataset = dataset[split]
    else:
        dataset = load_dataset(dataset_name, split=split, cache_dir=cache_dir)
    missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
    if missing:
        raise ValueError(f"{dataset_name}:{split} lacks the Diffusion-DPO columns {missing}.")
    return dataset, (path if path.is_dir() else None)


def drop_ties(dataset):
    """Keep rows with a strict preference (``label_0`` in {0, 1}); returns ``(dataset, number_dropped)``."""
    kept = dataset.filter(lambda label: label in (0, 1), input_columns="label_0")
    dropped = len(dataset) - len(kept)
    if dropped:
        logger.warning("Dropped %d tied pairs (label_0 not in {0, 1}) of %d.", dropped, len(dataset))
    return kept, dropped


def open_image(cell: Any, media_root: Path | None = None) -> Image.Image:
    """Decode one image cell into an RGB PIL image."""
    if isinstance(cell, Image.Image):
        return cell.convert("RGB")
    if isinstance(cell, dict):  # an undecoded datasets.Image cell
        cell = cell.get("bytes") or cell.get("path")
    if isinstance(cell, (bytes, bytearray)):
        return Image.open(io.BytesIO(cell)).convert("RGB")
    if isinstance(cell, str):
        path = Path(cell)
        if not path.is_absolute() and media_root is not None:
            path = media_root / path
        return Image.open(path).convert("RGB")
    raise TypeError(f"Cannot read an image from a {type(cell).__name__} cell.")


class PairTransform:
    """Resize, crop and (jointly) flip a (chosen, rejected) pair into one ``(6, R, R)`` tensor in [-1, 1]."""

    def __init__(self, resolution: int, random_crop: bool = False, random_flip: bool = True):
        self.resolution = resolution
        self.random_crop = random_crop
        self.random_flip = random_flip

    def _resize(self, image: Image.Image) -> Image.Image:
        scale = self.resolution / min(image.size)
        size = (max(self.resolution, round(image.width * scale)), max(self.resolution, round(image.height * scale)))
        return image.resize(size, Image.BILINEAR)

    def __call__(self, chosen: Image.Image, rejected: Image.Image) -> torch.Tensor:
        chosen, rejected = self._resize(chosen), self._resize(rejected)
        pixels = []
        if self.random_crop:
            left = int(torch.randint(0, chosen.width - self.resolution + 1, ()).item())
            top = int(torch.randint(0, chosen.height - self.resolution + 1, ()).item())
        else:
            left, top = (chosen.width - self.resolution) // 2, (chosen.height - self.resolution) // 2
        flip = self.random_flip and bool(torch.rand(()) < 0.5)
        for image in (chosen, rejected):
            image = image.crop((left, top, left + self.resolution, top + self.resolution))
            if flip:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
            pixels.append(torch.from_numpy(array).permute(2, 0, 1))
        return torch.cat(pixels, dim=0)


def pair_preprocessor(transform: PairTransform, media_root: Path | None = None):
    """A ``Dataset.with_transform`` function producing ``pixel_values`` (chosen first) and ``caption``."""

    def preprocess(examples: dict[str, list]) -> dict[str, list]:
        pixel_values = []
        for cell_0, cell_1, label_0 in zip(examples["jpg_0"], examples["jpg_1"], examples["label_0"]):
            image_0, image_1 = open_image(cell_0, media_root), open_image(cell_1, media_root)
            chosen, rejected = (image_0, image_1) if label_0 == 1 else (image_1, image_0)
            pixel_values.append(transform(chosen, rejected))
        return {"pixel_values": pixel_values, "caption": list(examples["caption"])}

    return preprocess


def collate_pairs(examples: list[dict]) -> dict[str, Any]:
    pixel_values = torch.stack([example["pixel_values"] for example in examples]).contiguous().float()
    return {"pixel_values": pixel_values, "captions": [example["caption"] for example in examples]}
