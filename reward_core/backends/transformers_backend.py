"""In-process backend: any Qwen2.5-VL / Qwen3-VL checkpoint through transformers.

Inputs are built exactly like upstream's ``inference_qwen`` scripts (one user turn, media first,
``apply_chat_template(..., add_generation_prompt=True)``, qwen-vl-utils ``process_vision_info``), but
items are encoded one by one (so a bad item fails alone), bucketed by prompt length and run in
left-padded batches. While the model runs one group of batches, a background thread encodes the
next (media decoding, chat template, processor). Decoding is greedy unless told otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from PIL import Image

from reward_core import logit
from reward_core.backends import tree_scoring
from reward_core.backends.base import AnswerLogprobs, BackendRequest, Generation, NodeProbs
from reward_core.backends.vision_cache import VisionCache, media_keys
from reward_core.media import MediaError, VideoSpec, build_messages

logger = logging.getLogger(__name__)

SEQUENCE_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")
# from_pretrained options that belong to the model loader, never to generate()
LOADER_KEYS = frozenset({
    "device_map", "max_memory", "offload_folder", "offload_state_dict", "quantization_config", "low_cpu_mem_usage",
    "revision", "cache_dir", "local_files_only", "token", "trust_remote_code", "variant", "subfolder", "use_safetensors",
    "tp_plan", "key_mapping",
})  # fmt: skip
BACKEND_KEYS = frozenset({"do_sample", "prefetch", "chat_template_kwargs", "generate_kwargs", "vision_cache"})
DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
    "half": torch.float16, "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}  # fmt: skip


def resolve_dtype(dtype: str | torch.dtype | None) -> str | torch.dtype:
    """``"auto"``, a torch dtype, or a name (``"bf16"``, ``"bfloat16"``, ``"torch.float16"``, ...) -> loader dtype."""
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return "auto" if dtype is None else dtype
    name = str(dtype).lower().removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto', a torch.dtype or one of {sorted(DTYPES)}")
    return DTYPES[name]


def split_from_pretrained_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(loader kwargs, backend kwargs)``; anything else raises ``TypeError`` (generation options go in
    ``generate_kwargs={...}`` so that a loader option can never reach ``generate()``)."""
    loader = {k: v for k, v in kwargs.items() if k in LOADER_KEYS}
    backend = {k: v for k, v in kwargs.items() if k in BACKEND_KEYS}
    unknown = sorted(set(kwargs) - set(loader) - set(backend))
    if unknown:
        raise TypeError(
            f"unknown from_pretrained option(s) {unknown}: loader options are {sorted(LOADER_KEYS)}; "
            "pass generation options as generate_kwargs={...}"
        )
    return loader, backend


@dataclass
class Encoded:
    """One request after the processor: a batch-of-one ``BatchFeature``-like dict of tensors, and the content
    keys of its images / videos (for the :class:`VisionCache`; empty without one)."""

    inputs: dict[str, Any]
    media_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.inputs["input_ids"].shape[1])

    def extend(self, token_ids: Sequence[int]) -> Encoded:
        """The same request with ``token_ids`` appended to the text (e.g. a prefilled answer)."""
        if not token_ids:
            return self
        extra = torch.tensor([list(token_ids)], dtype=self.inputs["input_ids"].dtype)
        inputs = dict(self.inputs)
        inputs["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
        if "attention_mask" in inputs:
            inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(extra)], dim=1)
        if "mm_token_type_ids" in inputs:
            inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(extra)], dim=1)
        return Encoded(inputs, self.media_keys)


@dataclass
class EncodeFailure:
    """Why one request could not be encoded; ``media`` when its media could not be decoded."""

    message: str
    media: bool = False

    @classmethod
    def of(cls, error: Exception) -> EncodeFailure:
        if isinstance(error, MediaError):
            return cls(str(error), media=True)
        return cls(f"{type(error).__name__}: {error}")


def resizes_once(processor: Any) -> bool:
    """Qwen3-VL / Qwen3.5 processors: media are resized once, by qwen-vl-utils, and the processor is told
    ``do_resize=False`` (Qwen2.5-VL keeps upstream ``inference_qwen``'s qwen-vl-utils + processor pair)."""
    return "Qwen3" in type(processor).__name__


def image_pixel_bounds(processor: Any) -> dict[str, int]:
    """The processor's own image pixel bounds (``size``'s ``shortest_edge`` / ``longest_edge``) as qwen-vl-utils'
    ``min_pixels`` / ``max_pixels``; empty when it has none (then qwen-vl-utils' defaults apply)."""
    size = getattr(processor.image_processor, "size", None) or {}
    bounds = {"min_pixels": size.get("shortest_edge"), "max_pixels": size.get("longest_edge")}
    return {key: int(value) for key, value in bounds.items() if value}


def vision_inputs(messages: list[dict[str, Any]], processor: Any) -> dict[str, Any]:
    """``process_vision_info`` on one conversation -> processor keyword arguments (images, videos, video kwargs).

    Uses the processor's patch size (14 for Qwen2.5-VL, 16 for Qwen3-VL), so ``smart_resize`` uses
    the model's factor (28 / 32). Videos carry qwen-vl-utils' frame metadata, from which transformers 5
    processors derive the sampled fps (a per-video ``fps`` list is no longer accepted).

    Qwen3-VL / Qwen3.5 (:func:`resizes_once`): one resize, as upstream's vLLM server (whose processor resizes
    each image once within its own ``size`` bounds): qwen-vl-utils resizes images within those bounds (its default
    minimum is 4 tokens, the processor's 256x256 px) and the processor gets ``do_resize=False`` for images and
    videos alike (the Qwen3-VL model card's recipe), so a small image gets the server's token grid.
    """
    from qwen_vl_utils import process_vision_info

    patch_size = getattr(processor.image_processor, "patch_size", 14)
    once = resizes_once(processor)
    if once:
        bounds = image_pixel_bounds(processor)  # an entry's own min_pixels / max_pixels win
        messages = [
            {**message, "content": [{**bounds, **e} if e.get("type") == "image" else e for e in message["content"]]}
            for message in messages
        ]
    images, videos, video_kwargs = process_vision_info(
        messages, return_video_kwargs=True, return_video_metadata=True, image_patch_size=patch_size
    )
    kwargs: dict[str, Any] = {"images": images, "videos": videos}
    if videos is not None:
        frames, metadata = zip(*videos)
        kwargs.update(videos=list(frames), video_metadata=list(metadata), **video_kwargs)
    if once and (images is not None or videos is not None):
        kwargs["do_resize"] = False
    return kwargs


MEDIA_FIELDS = frozenset({"image", "video", "image_url"})
PROMPT_CACHE_SIZE = 4096  # rendered prompts kept per backend (cleared when full)


def template_key(chat_template: Any, options: dict[str, Any], messages: list[dict[str, Any]]) -> tuple | None:
    """What a chat-templated prompt depends on: the template, its options and each message with its media values
    left out (their presence stays); None when a field cannot be a key (then the prompt is rendered every time)."""
    try:
        layout = tuple(
            (message["role"], tuple(
                tuple(sorted((k, "<media>" if k in MEDIA_FIELDS else v) for k, v in entry.items()))
                for entry in message["content"]
            ))
            for message in messages
        )  # fmt: skip
        key = (chat_template if isinstance(chat_template, str) else repr(chat_template), tuple(sorted(options.items())), layout)
        hash(key)
    except (TypeError, KeyError, AttributeError):
        return None
    return key


def collate(items: list[Encoded], pad_token_id: int) -> dict[str, Any]:
    """Left-pad the per-token tensors; concatenate the rest (patches, grids) in item order."""
    width = max(item.length for item in items)
    batch: dict[str, Any] = {}
    for key in items[0].inputs:
        values = [item.inputs[key] for item in items]
        if key in SEQUENCE_KEYS:
            fill = pad_token_id if key == "input_ids" else 0
            batch[key] = torch.cat(
                [torch.nn.functional.pad(v, (width - v.shape[1], 0), value=fill) for v in values], dim=0
            )
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.cat(values, dim=0)
        elif isinstance(values[0], list):
            batch[key] = [x for v in values for x in v]
        else:
            batch[key] = values[0]
    return batch


def split_batch(batch: dict[str, Any], counts: dict[str, list[int]]) -> list[Encoded]:
    """Inverse of :func:`collate` for a processor batch: ``counts`` gives each item's number of images / videos.
    Unknown keys raise ``KeyError`` (the caller then encodes item by item)."""
    grids = {"image": batch.get("image_grid_thw"), "video": batch.get("video_grid_thw")}
    patches = {kind: [] if grid is None else grid.prod(dim=-1).tolist() for kind, grid in grids.items()}
    per_item_key = {
        "pixel_values": ("image", patches["image"]),
        "image_grid_thw": ("image", None),
        "pixel_values_videos": ("video", patches["video"]),
        "video_grid_thw": ("video", None),
        "second_per_grid_ts": ("video", None),
    }
    mask = batch["attention_mask"].bool()
    items: list[dict[str, Any]] = [{} for _ in range(mask.shape[0])]
    for key, value in batch.items():
        if key in SEQUENCE_KEYS:
            for row, item in enumerate(items):
                item[key] = value[row][mask[row]].unsqueeze(0)
            continue
        kind, sizes = per_item_key[key]
        units = iter(sizes) if sizes is not None else None
        offset = 0
        for item, count in zip(items, counts[kind]):
            width = sum(next(units) for _ in range(count)) if units is not None else count
            if width or count:
                item[key] = value[offset : offset + width]
            offset += width
    return [Encoded(item) for item in items]


def size_hint(request: BackendRequest) -> tuple[int, int]:
    """A cheap stand-in for the encoded length, known before encoding: image pixels, then prompt characters."""
    pixels = sum(m.width * m.height for m in request.media if isinstance(m, Image.Image))
    return pixels, len(request.text)


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


class CandidateLogprobs:
    """Forward hook on a model's output embeddings while it generates: at each forward (one per generated token),
    the log-softmax of ``token_ids`` ({text: id}) at the last position, from the raw logits."""

    def __init__(self, token_ids: dict[str, int]):
        self.token_ids = dict(token_ids)
        self._ids: torch.Tensor | None = None
        self._steps: list[torch.Tensor] = []

    def __call__(self, module: Any, inputs: Any, logits: torch.Tensor) -> None:
        last = logits[:, -1].float()
        if self._ids is None:
            self._ids = torch.tensor(list(self.token_ids.values()), device=last.device)
        self._steps.append(last[:, self._ids] - torch.logsumexp(last, dim=-1, keepdim=True))

    def per_step(self) -> torch.Tensor | None:
        """(steps, rows, candidates) log-probabilities on the CPU; None when nothing was recorded."""
        return torch.stack(self._steps).cpu() if self._steps else None


class TransformersBackend:
    """Runs judge calls on a local ``AutoModelForImageTextToText`` with its ``AutoProcessor``."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        batch_size: int = 8,
        do_sample: bool = False,
        prefetch: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
        generate_kwargs: dict[str, Any] | None = None,
        vision_cache: bool | VisionCache = True,
    ):
        self.model = model.eval()
        if vision_cache is True:
            vision_cache = VisionCache()
        # each distinct image / video through the vision tower once (see reward_core.backends.vision_cache)
        self.vision_cache = vision_cache.install(self.model) if isinstance(vision_cache, VisionCache) else None
        self.chat_template_kwargs = dict(chat_template_kwargs or {})  # e.g. {"enable_thinking": False} (Qwen3.5)
        self._prompt_texts: dict[tuple, str] = {}  # template_key -> rendered prompt (see prompt_text)
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.batch_size = max(1, int(batch_size))
        self.do_sample = do_sample
        self.prefetch = prefetch  # encode the next group in a background thread while the model runs
        self._tokenizer_lock = threading.Lock()  # a fast tokenizer must not be used by two threads at once
        self.generate_kwargs = dict(generate_kwargs or {})
        self._tree_layouts: dict[tuple[str, tuple[str, ...]], tree_scoring.TreeLayout] = {}
        self._verdict_ids: dict[str, int] | None = None  # soft verdicts: see verdict_token_ids
        config = getattr(model, "generation_config", None)
        eos = getattr(config, "eos_token_id", None)
        self.eos_token_id = eos if eos is not None else self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos)

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        device: str | None = None,
        dtype: str | torch.dtype | None = "auto",
        batch_size: int = 8,
        attn_implementation: str | None = None,
        torch_dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> TransformersBackend:
        """Load a checkpoint (local path or hub id).

        Without ``device_map`` the weights load straight onto ``device`` (default: cuda when available);
        ``device_map="auto"`` (accelerate) shards a large judge over every visible GPU (and CPU / disk with
        ``max_memory`` / ``offload_folder``). ``dtype`` (or its old name ``torch_dtype``) takes ``"auto"``, a torch
        dtype or a name such as ``"bf16"``; ``attn_implementation``: ``"sdpa"``, ``"eager"``, ``"flash_attention_2"``.
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        loader, backend = split_from_pretrained_kwargs(kwargs)
        if torch_dtype is not None:
            if dtype not in (None, "auto") and resolve_dtype(dtype) != resolve_dtype(torch_dtype):
                raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass one")
            dtype = torch_dtype
        loader["dtype"] = resolve_dtype(dtype)
        if attn_implementation:
            loader["attn_implementation"] = attn_implementation
        if "device_map" in loader and device is not None:
            raise ValueError("pass device or device_map, not both")
        move_to = None
        if "device_map" not in loader:
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            if device != "cpu" and importlib.util.find_spec("accelerate") is not None:
                loader["device_map"] = device  # load onto the GPU directly, never a full copy in host memory first
            elif device != "cpu":
                move_to = device  # without accelerate: load in host memory, then move
        logger.info("loading %s with %s", path, {k: str(v) for k, v in loader.items() if k != "token"})
        model = AutoModelForImageTextToText.from_pretrained(path, **loader)
        if move_to is not None:
            model = model.to(move_to)
        processor = AutoProcessor.from_pretrained(path, **{k: loader[k] for k in ("revision", "cache_dir", "token", "local_files_only", "trust_remote_code") if k in loader})
        return cls(model, processor, batch_size=batch_size, **backend)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # --- encoding -------------------------------------------------------------------------------

    def prompt_text(self, request: BackendRequest) -> tuple[str, list[dict[str, Any]]]:
        """The chat-templated prompt (ending with the assistant header) and its messages.

        Rendered once per message layout (chat template, media kinds, text and the other non-media fields):
        the Qwen-VL templates read whether an entry is an image or a video, never its pixels or path."""
        messages = build_messages(request.media, request.text)
        key = template_key(getattr(self.processor, "chat_template", None), self.chat_template_kwargs, messages)
        text = self._prompt_texts.get(key) if key is not None else None
        if text is None:
            text = self.processor.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
            )
            if key is not None:
                if len(self._prompt_texts) >= PROMPT_CACHE_SIZE:
                    self._prompt_texts.clear()
                self._prompt_texts[key] = text
        return text, messages

    def _prepare(self, request: BackendRequest) -> tuple[str, dict[str, Any]]:
        """Prompt text and processor vision kwargs (raises :class:`MediaError` for unusable media)."""
        text, messages = self.prompt_text(request)
        try:
            vision = vision_inputs(messages, self.processor)
        except MediaError:
            raise
        except Exception as error:  # decoders raise many types; name the media in the message
            names = ", ".join(m.path if isinstance(m, VideoSpec) else type(m).__name__ for m in request.media)
            raise MediaError(names, f"cannot prepare media ({error})") from error
        return text, {k: v for k, v in vision.items() if v is not None}

    def encode(self, request: BackendRequest) -> Encoded:
        """Processor inputs for one request (raises :class:`MediaError` for unusable media)."""
        text, vision = self._prepare(request)
        with self._tokenizer_lock:
            return Encoded(dict(self.processor(text=[text], return_tensors="pt", **vision)))

    def _encode_all(self, requests: list[BackendRequest]) -> tuple[list[Encoded | None], list[EncodeFailure | None]]:
        """Encode every request: media one by one (a bad item fails alone), then one processor call for
        the good ones, split back per item (the processor's per-call overhead dominates on small inputs)."""
        encoded: list[Encoded | None] = [None] * len(requests)
        errors: list[EncodeFailure | None] = [None] * len(requests)
        prepared = {}
        for index, request in enumerate(requests):
            try:
                prepared[index] = self._prepare(request)
            except Exception as error:  # one bad item never stops the batch
                logger.warning("judge item failed to encode: %s", error)
                errors[index] = EncodeFailure.of(error)
        try:
            for index, item in zip(prepared, self._process_together(list(prepared.values()))):
                encoded[index] = item
        except Exception as error:  # unexpected processor output or a bad item: go one by one
            logger.debug("joint processor call failed (%s); encoding item by item", error)
            for index, (text, vision) in prepared.items():
                try:
                    with self._tokenizer_lock:
                        encoded[index] = Encoded(dict(self.processor(text=[text], return_tensors="pt", **vision)))
                except Exception as item_error:
                    errors[index] = EncodeFailure.of(item_error)
        if self.vision_cache is not None:
            for item in encoded:
                if item is not None:
                    item.media_keys = media_keys(item.inputs)
        return encoded, errors

    def _process_together(self, prepared: list[tuple[str, dict[str, Any]]]) -> list[Encoded]:
        """One processor call for many prompts, split back into per-item inputs (unpadded)."""
        if not prepared:
            return []
        images = [image for _, vision in prepared for image in vision.get("images", [])]
        videos = [video for _, vision in prepared for video in vision.get("videos", [])]
        extra = {k: v for _, vision in prepared for k, v in vision.items() if k not in ("images", "videos", "video_metadata")}
        kwargs: dict[str, Any] = dict(extra)
        if images:
            kwargs["images"] = images
        if videos:
            kwargs["videos"] = videos
            kwargs["video_metadata"] = [m for _, vision in prepared for m in vision.get("video_metadata", [])]
        with self._tokenizer_lock:
            batch = dict(self.processor(text=[text for text, _ in prepared], padding=True, return_tensors="pt", **kwargs))
        counts = {
            "image": [len(vision.get("images", [])) for _, vision in prepared],
            "video": [len(vision.get("videos", [])) for _, vision in prepared],
        }
        return split_batch(batch, counts)

    def _encoded_groups(
        self,
        requests: list[BackendRequest],
        consume: Callable[[list[int], list[Encoded | None], list[EncodeFailure | None]], None],
    ) -> None:
        """Encode ``requests`` in groups of about one batch, similar sizes together, and hand each group to
        ``consume(indices, encoded, errors)``; with ``prefetch`` the next group is encoded in a background
        thread meanwhile (media decoding and the processor overlap the model)."""
        order = sorted(range(len(requests)), key=lambda i: size_hint(requests[i]))
        groups = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        if not groups:
            return

        def encode(group: list[int]) -> tuple[list[Encoded | None], list[EncodeFailure | None]]:
            return self._encode_all([requests[i] for i in group])

        if not self.prefetch or len(groups) == 1:
            for group in groups:
                consume(group, *encode(group))
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unifiedreward-encode") as pool:
            pending = pool.submit(encode, groups[0])
            for position, group in enumerate(groups):
                encoded, errors = pending.result()
                if position + 1 < len(groups):
                    pending = pool.submit(encode, groups[position + 1])
                consume(group, encoded, errors)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        dtype = self.model.dtype
        moved = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(dtype)
            moved[key] = value
        return moved

    def _run_batched(self, items: list[Encoded], run: Callable[[dict[str, Any]], list[Any]]) -> list[Any | Exception]:
        """``run`` over length-bucketed batches; a failed batch is retried item by item."""
        order = sorted(range(len(items)), key=lambda i: items[i].length)
        results: list[Any | Exception] = [None] * len(items)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            try:
                outputs = self._run_chunk([items[i] for i in chunk], run)
                for i, output in zip(chunk, outputs):
                    results[i] = output
            except Exception as error:
                if len(chunk) == 1:
                    results[chunk[0]] = error
                    continue
                if is_out_of_memory(error) and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                logger.warning("batch of %d failed (%s); retrying one by one", len(chunk), error)
                for i in chunk:
                    try:
                        results[i] = self._run_chunk([items[i]], run)[0]
                    except Exception as item_error:
                        results[i] = item_error
        return results

    def _run_chunk(self, items: list[Encoded], run: Callable[[dict[str, Any]], list[Any]]) -> list[Any]:
        """``run`` on one padded batch of ``items``, telling the vision cache which media it holds."""
        batch = self._to_device(collate(items, self.pad_token_id))
        if self.vision_cache is None:
            return run(batch)
        self.vision_cache.expect({kind: [k for item in items for k in item.media_keys.get(kind, ())] for kind in ("image", "video")})
        try:
            return run(batch)
        finally:
            self.vision_cache.clear_pending()

    # --- Backend protocol ------------------------------------------------------------------------

    def generate(self, requests: list[BackendRequest], max_new_tokens: int) -> list[Generation]:
        """Greedy (by default) generation of each request's answer; ``soft_verdict`` requests also get each
        generated token's text and the verdict digits' log-probabilities at every step (`_generate_batch`)."""
        results = [Generation() for _ in requests]
        soft = any(request.soft_verdict for request in requests)

        def run_group(indices: list[int], encoded: list[Encoded | None], errors: list[EncodeFailure | None]) -> None:
            ready = [(index, item) for index, item in zip(indices, encoded) if item is not None]
            for index, error in zip(indices, errors):
                if error is not None:
                    results[index].error, results[index].media_error = error.message, error.media
            run = partial(self._generate_batch, max_new_tokens=max_new_tokens, soft=soft)
            for (index, _), output in zip(ready, self._run_batched([item for _, item in ready], run)):
                if isinstance(output, Exception):
                    results[index].error = f"{type(output).__name__}: {output}"
                else:
                    results[index] = output

        self._encoded_groups(requests, run_group)
        return results

    @torch.inference_mode()
    def _generate_batch(self, batch: dict[str, Any], max_new_tokens: int, soft: bool = False) -> list[Generation]:
        """One batch through ``generate``. With ``soft``, a forward hook on the output embeddings keeps, at every
        step, the log-probabilities of the verdict digits (`verdict_token_ids`) from the model's own logits
        (before any logits processor, like vLLM's logprobs): a (batch, 4) tensor per step, not the vocabulary."""
        sampling = {} if self.do_sample else {"temperature": None, "top_p": None, "top_k": None}
        recorder = CandidateLogprobs(self.verdict_token_ids()) if soft else None
        hook = self.model.get_output_embeddings().register_forward_hook(recorder) if recorder else None
        try:
            generated = self.model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=self.do_sample,
                eos_token_id=self.eos_token_id,
                pad_token_id=self.pad_token_id,
                **sampling,
                **self.generate_kwargs,
            )
        finally:
            if hook is not None:
                hook.remove()
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        with self._tokenizer_lock:
            texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        if recorder is None:
            return [Generation(text=text) for text in texts]
        steps = recorder.per_step()
        if steps is None or tuple(steps.shape[:2]) != (new_tokens.shape[1], new_tokens.shape[0]):
            shape = None if steps is None else tuple(steps.shape[:2])
            error = f"recorded {shape} (steps, rows) of log-probabilities for {tuple(new_tokens.shape)} generated tokens"
            return [Generation(text=text, logprobs_error=error) for text in texts]
        return [Generation(text=text, **self._token_logprobs(recorder.token_ids, steps[:, row], new_tokens[row]))
                for row, text in enumerate(texts)]  # fmt: skip

    def verdict_token_ids(self) -> dict[str, int]:
        """Token ids of the verdict digits, bare and after a space ("1", "2", " 1", " 2"), where each is one token."""
        if self._verdict_ids is None:
            with self._tokenizer_lock:
                encoded = {text: self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("1", "2", " 1", " 2")}
            self._verdict_ids = {text: ids[0] for text, ids in encoded.items() if len(ids) == 1}
        return self._verdict_ids

    def _token_logprobs(self, token_ids: dict[str, int], steps: torch.Tensor, generated: torch.Tensor) -> dict[str, Any]:
        """``Generation`` fields of one row: each generated token's text and, per step, the digits' log-probabilities."""
        with self._tokenizer_lock:
            tokens = self.tokenizer.batch_decode(generated.reshape(-1, 1), skip_special_tokens=True)
        return {"tokens": tokens, "token_logprobs": [dict(zip(token_ids, values)) for values in steps.tolist()]}

    def answer_logprobs(self, requests: list[BackendRequest], candidates: list[str]) -> list[AnswerLogprobs]:
        """Log P(candidate is the answer) after each request's ``answer_prefix``, from one batched forward pass."""
        results = [AnswerLogprobs() for _ in requests]
        layouts = {
            prefix: logit.candidate_paths(self.tokenizer, prefix, candidates)
            for prefix in dict.fromkeys(r.answer_prefix for r in requests if r.answer_prefix is not None)
        }

        def score_group(indices: list[int], encoded: list[Encoded | None], errors: list[EncodeFailure | None]) -> None:
            sequences: list[tuple[int, tuple[int, ...], Encoded]] = []  # (request index, branch, inputs)
            for index, item, error in zip(indices, encoded, errors):
                prefix = requests[index].answer_prefix
                if item is None:
                    results[index].error, results[index].media_error = error.message, error.media
                    continue
                if prefix is None:
                    results[index].error = "logit mode needs an answer_prefix"
                    continue
                layout = layouts[prefix]
                sequences += [(index, branch, item.extend(layout.shared + branch)) for branch in layout.branches()]
            keep = 1 + max((len(branch) for _, branch, _ in sequences), default=0)
            outputs = self._run_batched([s[2] for s in sequences], lambda batch: self._next_token_logprobs(batch, keep))
            node_logprobs: dict[int, dict[logit.Node, dict[int, float]]] = {}
            for (index, branch, _), output in zip(sequences, outputs):
                if isinstance(output, Exception):
                    results[index].error = f"{type(output).__name__}: {output}"
                    continue
                layout = layouts[requests[index].answer_prefix]
                nodes = node_logprobs.setdefault(index, {})
                positions = output[-(len(branch) + 1) :]  # distributions after context + branch[:i]
                for depth, distribution in enumerate(positions):
                    node = branch[:depth]
                    nodes[node] = {t: float(distribution[t]) for t in layout.children(node)}
            for index, nodes in node_logprobs.items():
                if results[index].error is None:
                    results[index].logprobs = logit.candidate_logprobs(layouts[requests[index].answer_prefix], nodes)

        self._encoded_groups(requests, score_group)
        return results

    def answer_node_probs(self, requests: list[BackendRequest], nodes: tuple[str, ...]) -> list[NodeProbs]:
        """P(next symbol) at every score-trie node after each request's answer prefix: one prefill per item
        (vision tower included) and one tree step over all nodes that reuses its KV cache."""
        results = [NodeProbs() for _ in requests]
        layouts: dict[str, tree_scoring.TreeLayout] = {}
        try:
            for prefix in dict.fromkeys(r.answer_prefix for r in requests if r.answer_prefix is not None):
                if (prefix, nodes) not in self._tree_layouts:  # hundreds of tokenizer calls: once per trie
                    with self._tokenizer_lock:
                        self._tree_layouts[prefix, nodes] = tree_scoring.tree_layout(self.tokenizer, prefix, nodes)
                layouts[prefix] = self._tree_layouts[prefix, nodes]
        except ValueError as error:
            return [NodeProbs(error=str(error)) for _ in requests]

        def score_group(indices: list[int], encoded: list[Encoded | None], errors: list[EncodeFailure | None]) -> None:
            by_prefix: dict[str, list[tuple[int, Encoded]]] = {}
            for index, item, error in zip(indices, encoded, errors):
                prefix = requests[index].answer_prefix
                if item is None:
                    results[index].error, results[index].media_error = error.message, error.media
                    continue
                if prefix is None:
                    results[index].error = "logit mode needs an answer_prefix"
                    continue
                by_prefix.setdefault(prefix, []).append((index, item.extend(layouts[prefix].shared)))
            for prefix, ready in by_prefix.items():
                run = partial(tree_scoring.node_log_probs, self.model, layout=layouts[prefix])
                for (index, _), output in zip(ready, self._run_batched([item for _, item in ready], run)):
                    if isinstance(output, Exception):
                        results[index].error = f"{type(output).__name__}: {output}"
                    else:
                        results[index].probs = {n: {k: math.exp(v) for k, v in d.items()} for n, d in output.items()}

        self._encoded_groups(requests, score_group)
        return results

    @torch.inference_mode()
    def _next_token_logprobs(self, batch: dict[str, Any], keep: int) -> torch.Tensor:
        """Log-softmax over the vocabulary at the last ``keep`` positions of each sequence (float32, CPU)."""
        logits = self.model(**batch, use_cache=False, logits_to_keep=keep).logits
        return torch.log_softmax(logits[:, -keep:].float(), dim=-1).cpu()
