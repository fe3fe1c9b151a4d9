"""Each medium through the vision tower once: a content-keyed cache of vision-encoder outputs.

A sift item ranks and scores the same images in several calls (pair ranks, point scores, both orders with
swap; understanding prompts share one image in every call), a GRPO group scores each image once per reward
template, and logit mode runs one sequence per answer branch. The tower's output for an image depends on its
pixels and grid only, so :class:`VisionCache` wraps the model's ``get_image_features`` /
``get_video_features`` and runs the tower on the media it has not seen yet, in one call.

Keys are SHA-256 digests of each medium's processor output (patches + grid), computed on the host by the encoding
thread (:func:`media_keys`) and handed over with each batch (:meth:`VisionCache.expect`); a call without keys
(another user of the same model, e.g. a trainer) goes straight to the model. Entries live on the model's
device, least recently used dropped first past ``max_bytes``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

KINDS = {"image": ("pixel_values", "image_grid_thw"), "video": ("pixel_values_videos", "video_grid_thw")}
HOOKS = {"image": "get_image_features", "video": "get_video_features"}


def media_keys(inputs: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """One content digest per image / video of one encoded request (host tensors), in processor order."""
    keys: dict[str, tuple[str, ...]] = {}
    for kind, (pixels_key, grid_key) in KINDS.items():
        pixels, grid = inputs.get(pixels_key), inputs.get(grid_key)
        if pixels is None or grid is None:
            continue
        digests, offset = [], 0
        for row in grid.tolist():
            size = row[0] * row[1] * row[2]
            chunk = pixels[offset : offset + size].detach().cpu().contiguous()
            offset += size
            digest = hashlib.sha256()  # ~2x blake2b's throughput on CPUs with SHA extensions
            digest.update(repr((kind, row, str(chunk.dtype), tuple(chunk.shape))).encode())
            digest.update(chunk.view(torch.uint8).numpy().data if chunk.numel() else b"")
            digests.append(digest.hexdigest()[:32])
        keys[kind] = tuple(digests)
    return keys


@dataclass
class VisionStats:
    """Counters since the last :meth:`VisionCache.reset_stats`."""

    tower_calls: int = 0  # calls into the vision tower
    media_encoded: int = 0  # images / videos that went through the tower
    media_requested: int = 0  # images / videos the language model consumed
    hits: int = 0  # media served from the cache (earlier batch or the same batch)

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class _Entry:
    pooled: torch.Tensor
    deepstack: tuple[torch.Tensor, ...] | None  # Qwen3-VL: one tensor per deepstack layer
    nbytes: int


class VisionCache:
    """Content-keyed vision-tower outputs for one model (installed with :meth:`install`)."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = int(max_bytes)
        self.stats = VisionStats()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._pending: dict[str, list[str]] = {}
        self._output_types: dict[str, type] = {}
        self._inside = False  # Qwen3-VL's get_video_features calls get_image_features: count the outer call only

    # --- wiring ----------------------------------------------------------------------------------

    def install(self, model: Any) -> VisionCache:
        """Wrap the feature functions of ``model`` (the ``...ForConditionalGeneration`` or its inner model);
        returns the cache now in place (an earlier one when ``model`` already has one)."""
        inner = getattr(model, "model", model)
        for name in HOOKS.values():
            existing = getattr(getattr(inner, name, None), "_unifiedreward_cache", None)
            if existing is not None:
                return existing
        for kind, name in HOOKS.items():
            original = getattr(inner, name, None)
            if original is None:
                continue
            wrapped = self._wrap(kind, original)
            wrapped._unifiedreward_cache = self  # type: ignore[attr-defined]
            setattr(inner, name, wrapped)
        return self

    def expect(self, keys: dict[str, list[str]]) -> None:
        """Keys (in processor order) of the media in the next model call."""
        self._pending = {kind: list(values) for kind, values in keys.items() if values}

    def clear_pending(self) -> None:
        self._pending = {}

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def reset_stats(self) -> None:
        self.stats = VisionStats()

    @property
    def size(self) -> int:
        """Cached media."""
        return len(self._entries)

    # --- the wrapped call ------------------------------------------------------------------------

    def _wrap(self, kind: str, original: Any) -> Any:
        pixels_name, grid_name = KINDS[kind]

        @functools.wraps(original)  # generate() reads the signature to pick its arguments
        def features(*args: Any, **kwargs: Any) -> Any:
            args = list(args)
            pixel_values = args.pop(0) if args else kwargs.pop(pixels_name)
            grid_thw = args.pop(0) if args else kwargs.pop(grid_name, None)
            if self._inside:
                return original(pixel_values, grid_thw, *args, **kwargs)
            keys = self._pending.pop(kind, None)
            if args or keys is None or grid_thw is None or len(keys) != grid_thw.shape[0]:
                if keys is not None:
                    logger.debug("vision cache: %d keys for %s media; running the tower uncached", len(keys), kind)
                self.stats.tower_calls += 1
                count = 0 if grid_thw is None else int(grid_thw.shape[0])
                self.stats.media_encoded += count
                self.stats.media_requested += count
                return self._call(original, pixel_values, grid_thw, kwargs, args)
            return self._cached(kind, original, pixel_values, grid_thw, keys, kwargs)

        return features

    def _cached(self, kind, original, pixel_values, grid_thw, keys, kwargs) -> Any:
        sizes = grid_thw.prod(-1).tolist()
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.stats.media_requested += len(keys)
        missing: dict[str, int] = {}  # key -> first position in this call
        for position, key in enumerate(keys):
            if key not in self._entries and key not in missing:
                missing[key] = position
        self.stats.hits += len(keys) - len(missing)
        fresh: dict[str, _Entry] = {}
        output = None
        if missing:
            positions = list(missing.values())
            pixels = torch.cat([pixel_values[starts[p] : starts[p] + sizes[p]] for p in positions])
            output = self._call(original, pixels, grid_thw[positions], kwargs)
            self.stats.tower_calls += 1
            self.stats.media_encoded += len(positions)
            self._output_types[kind] = type(output)
            deepstack = getattr(output, "deepstack_features", None)
            for index, key in enumerate(missing):  # copies, so that a dropped entry frees its memory
                layers = None if deepstack is None else tuple(layer[index].clone() for layer in deepstack)
                pooled = output.pooler_output[index].clone()
                tensors = (pooled, *(layers or ()))
                fresh[key] = _Entry(pooled, layers, sum(t.numel() * t.element_size() for t in tensors))
        entries = [fresh[key] if key in fresh else self._entries[key] for key in keys]
        for key in keys:
            if key in self._entries:
                self._entries.move_to_end(key)
        for key, entry in fresh.items():
            self._store(key, entry)
        pooled = tuple(entry.pooled for entry in entries)
        has_deepstack = entries[0].deepstack is not None
        if has_deepstack:
            deepstack = [tuple(e.deepstack[i] for e in entries) for i in range(len(entries[0].deepstack))]
        result = output if output is not None else self._output_types[kind](pooler_output=pooled)
        result.pooler_output = pooled
        result.last_hidden_state = None  # per-patch states are not cached; the language model reads pooler_output
        if has_deepstack:
            result.deepstack_features = deepstack
        return result

    def _call(self, original: Any, pixel_values: torch.Tensor, grid_thw: Any, kwargs: dict[str, Any], args=()) -> Any:
        self._inside = True
        try:
            return original(pixel_values, grid_thw, *args, **kwargs)
        finally:
            self._inside = False

    def _store(self, key: str, entry: _Entry) -> None:
        if entry.nbytes > self.max_bytes:
            return
        self._entries[key] = entry
        self._bytes += entry.nbytes
        while self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.nbytes
