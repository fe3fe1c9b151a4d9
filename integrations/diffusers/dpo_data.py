"""Diffusion-DPO preference pairs: the layouts people have, read without ever writing to them, and the pair transform.

Every reader yields Pick-a-Pic rows (``caption``, ``jpg_0``, ``jpg_1``, ``label_0``): ``label_0 == 1`` means ``jpg_0``
is preferred, ``0`` means ``jpg_1`` is; ties (``0.5``) carry no preference and are dropped, never trained on as if
``jpg_0`` had won. Image cells may be encoded bytes (Pick-a-Pic), a ``datasets`` Image cell, a PIL image, or a path
relative to the dataset's media folder.

Layouts (``load_preference_split``):

* ``save_to_disk`` folders, e.g. the output of ``integrations.diffusers.sift_images``;
* UnifiedReward's ``DiffusionDPO`` sift output: ``dpo_data.json`` + ``images_dpo/`` (one split, ``train``);
* a Hub dataset id (``yuvalkirstain/pickapic_v2``, ``kashif/pickascore``) or a local copy of one in the Hub layout
  (``data/<split>-00000-of-000NN.parquet``), through ``datasets.load_dataset`` (its cache goes to ``cache_dir``).

Nothing here maps, filters or shuffles a ``datasets.Dataset``: those write ``cache-*.arrow`` files next to the data,
after which diffusers' own scripts can no longer load a ``save_to_disk`` folder. Selection is a list of row indices.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("caption", "jpg_0", "jpg_1", "label_0")
UNIFIEDREWARD_JSON = "dpo_data.json"
UNIFIEDREWARD_IMAGES = "images_dpo"


@dataclass
class PreferenceSplit:
    """One split of preference rows and where its relative image paths live."""

    rows: Any  # a datasets.Dataset, only ever read
    media_root: Path | None
    layout: str  # "save_to_disk" | "unifiedreward" | "load_dataset"


def default_split(dataset_name: str) -> str:
    """``train`` for a local folder (what sift_images and UnifiedReward write), else diffusers' ``validation``."""
    return "train" if Path(dataset_name).is_dir() else "validation"


def _unifiedreward_rows(folder: Path):
    """UnifiedReward's ``dpo_data.json`` rows (scores are strings there, and unused here) as an in-memory dataset."""
    from datasets import Dataset

    records = json.loads((folder / UNIFIEDREWARD_JSON).read_text(encoding="utf-8"))
    rows = []
    for number, record in enumerate(records):
        caption = record.get("caption", record.get("prompt"))
        missing = [key for key in ("jpg_0", "jpg_1", "label_0") if key not in record] + ([] if caption else ["caption"])
        if missing:
            raise ValueError(f"{folder / UNIFIEDREWARD_JSON}: record {number} lacks {missing}.")
        rows.append({"caption": caption, "jpg_0": record["jpg_0"], "jpg_1": record["jpg_1"],
                     "label_0": float(record["label_0"]), "id": str(record.get("id", number))})
    return Dataset.from_list(rows)


def load_preference_split(dataset_name: str, split: str, cache_dir: str | None = None) -> PreferenceSplit:
    """A split of any supported layout (see the module docstring)."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(dataset_name)
    if path.is_dir() and (path / UNIFIEDREWARD_JSON).is_file():
        if split != "train":
            raise ValueError(f"{dataset_name} is UnifiedReward's sift layout, which has one split, 'train' (not {split!r}).")
        images = path / UNIFIEDREWARD_IMAGES
        result = PreferenceSplit(_unifiedreward_rows(path), images if images.is_dir() else path, "unifiedreward")
    elif path.is_dir() and any((path / name).exists() for name in ("dataset_dict.json", "state.json")):
        dataset = load_from_disk(str(path))
        if isinstance(dataset, DatasetDict):
            if split not in dataset:
                raise ValueError(f"Split {split!r} not in {dataset_name} (has {sorted(dataset)}).")
            dataset = dataset[split]
        result = PreferenceSplit(dataset, path, "save_to_disk")
    else:
        dataset = load_dataset(dataset_name, split=split, cache_dir=cache_dir)
        result = PreferenceSplit(dataset, path if path.is_dir() else None, "load_dataset")
    missing = [column for column in REQUIRED_COLUMNS if column not in result.rows.column_names]
    if missing:
        raise ValueError(f"{dataset_name}:{split} lacks the Diffusion-DPO columns {missing}.")
    return result


def strict_preference_indices(rows) -> tuple[list[int], int]:
    """Indices of rows with ``label_0`` in {0, 1}; returns ``(indices, number_of_ties_dropped)``."""
    labels = rows.with_format(None)["label_0"]
    kept = [index for index, label in enumerate(labels) if label in (0, 1)]
    dropped = len(labels) - len(kept)
    if dropped:
        logger.warning("Dropped %d tied pairs (label_0 not in {0, 1}) of %d.", dropped, len(labels))
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


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, index, ...), stable across processes and Python runs."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 % (1 << 64)
        value ^= value >> 31
    return value & ((1 << 63) - 1)


@dataclass
class TransformedPair:
    """A (chosen, rejected) pair as one ``(6, R, R)`` tensor plus each image's SDXL micro-conditioning."""

    pixel_values: torch.Tensor
    original_sizes: tuple[tuple[int, int], tuple[int, int]]  # (height, width) of chosen, rejected before resizing
    crop_top_lefts: tuple[tuple[int, int], tuple[int, int]]  # (top, left) of each crop in its resized image


class PairTransform:
    """Resize each image so its short side is ``resolution`` (aspect kept), flip both or neither, crop both at the
    same relative position; ``[-1, 1]`` pixels, chosen first.

    Images of the same size get the same crop box (diffusers' behaviour); images of different sizes or aspect
    ratios are neither padded nor distorted, and each keeps its own original size and crop for SDXL's ``time_ids``.
    """

    def __init__(self, resolution: int, random_crop: bool = False, random_flip: bool = True):
        self.resolution = resolution
        self.random_crop = random_crop
        self.random_flip = random_flip

    def _resize(self, image: Image.Image) -> Image.Image:
        """torchvision ``Resize(int)``: short side to ``resolution``, long side truncated to keep the aspect."""
        width, height = image.size
        short, long = sorted((width, height))
        new_long = max(self.resolution, int(self.resolution * long / short))
        size = (self.resolution, new_long) if width <= height else (new_long, self.resolution)
        return image.resize(size, Image.BILINEAR)

    def __call__(self, chosen: Image.Image, rejected: Image.Image, generator: torch.Generator | None = None):
        if self.random_crop:
            where_x, where_y = torch.rand(2, generator=generator).tolist()
        else:
            where_x = where_y = 0.5
        flip = self.random_flip and bool(torch.rand((), generator=generator) < 0.5)
        pixels, sizes, crops = [], [], []
        for image in (chosen, rejected):
            sizes.append((image.height, image.width))
            image = self._resize(image)
            if flip:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            left = int(round(where_x * (image.width - self.resolution)))
            top = int(round(where_y * (image.height - self.resolution)))
            crops.append((top, left))
            image = image.crop((left, top, left + self.resolution, top + self.resolution))
            array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
            pixels.append(torch.from_numpy(array).permute(2, 0, 1))
        return TransformedPair(torch.cat(pixels, dim=0), tuple(sizes), tuple(crops))


class EpochShuffleSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, position)`` keys in an order that depends only on ``(seed, epoch)``.

    A run resumed mid-epoch therefore sees the permutation the uninterrupted run saw, so skipping the batches already
    trained skips exactly those pairs. The epoch is set with ``start_epoch``, not ``set_epoch``: accelerate would call
    the latter with its own iteration counter, which restarts at 0 in a resumed process.
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True):
        self.length, self.seed, self.shuffle, self.epoch = length, seed, shuffle, 0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.length, generator=torch.Generator().manual_seed(mix_seed(self.seed, self.epoch)))
        else:
            order = torch.arange(self.length)
        for position in order.tolist():
            yield self.epoch, position


class PreferencePairs(torch.utils.data.Dataset):
    """Training items from the strict-preference rows of a split: transformed pixels, caption, micro-conditioning.

    An item's randomness (crop, flip, empty prompt) comes from a generator seeded by ``(seed, epoch, position)``, so
    it is the same in a resumed run, in any dataloader worker, on any process.
    """

    def __init__(self, split: PreferenceSplit, indices: list[int], transform: PairTransform, seed: int = 0,
                 proportion_empty_prompts: float = 0.0):
        self.split, self.indices, self.transform = split, indices, transform
        self.seed, self.proportion_empty_prompts = seed, proportion_empty_prompts

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key) -> dict[str, Any]:
        epoch, position = key if isinstance(key, tuple) else (0, key)
        row = self.split.rows[self.indices[position]]
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, position))
        image_0, image_1 = (open_image(row[c], self.split.media_root) for c in ("jpg_0", "jpg_1"))
        chosen, rejected = (image_0, image_1) if row["label_0"] == 1 else (image_1, image_0)
        pair = self.transform(chosen, rejected, generator)
        caption = row["caption"]
        if self.proportion_empty_prompts and float(torch.rand((), generator=generator)) < self.proportion_empty_prompts:
            caption = ""
        return {"pixel_values": pair.pixel_values, "caption": caption, "original_sizes": pair.original_sizes,
                "crop_top_lefts": pair.crop_top_lefts}


def collate_pairs(examples: list[dict]) -> dict[str, Any]:
    """Stack items; ``original_sizes`` / ``crop_top_lefts`` are laid out ``[chosen..., rejected...]`` like latents."""
    pixel_values = torch.stack([example["pixel_values"] for example in examples]).contiguous().float()
    return {
        "pixel_values": pixel_values,
        "captions": [example["caption"] for example in examples],
        "original_sizes": [e["original_sizes"][half] for half in (0, 1) for e in examples],
        "crop_top_lefts": [e["crop_top_lefts"][half] for half in (0, 1) for e in examples],
    }
