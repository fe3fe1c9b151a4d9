"""OpenRLHF labels that carry a judge's media: one JSON object per sample.

OpenRLHF's reward protocol (``reward_func(queries, prompts, labels)``, and ``POST /get_reward``) carries text only,
so each sample's ``label`` (the dataset's ``--label_key`` column) is a JSON string::

    {"image": "<base64 | data:image/...;base64,... | path>", "question": "What colour is the shape?"}

- ``image`` (one) or ``images`` (a list, in template order): base64 of the image file's bytes (a ``data:`` URL too),
  or a path (ending in a media suffix, or ``file://``); ``video``: a path. With a media root
  (``unifiedreward serve --media-root``, ``UNIFIEDREWARD_MEDIA_ROOT`` for ``reward_func``), a path must lie under it.
- ``template`` (optional): a template key; every other key is a template field (``question``, ``prompt`` ...).

:func:`decode_label` turns one label into a :class:`Label`; a bad label raises ``ValueError`` naming the problem
(the caller fails that sample alone).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from reward_core.media import MediaError, VideoSpec
from unifiedreward.media_entries import decode_entry, path_under_root

MEDIA_KEYS = ("image", "images", "video")
END_MARKERS = re.compile(r"(?:\s*(?:<\|[^|<>\s]+\|>|</s>))+\s*$")  # <|im_end|>, <|endoftext|>, </s> ...


@dataclass
class Label:
    """One sample's media (decoded images as bytes, paths, or a :class:`VideoSpec`), template fields and template."""

    media: list[Any]
    fields: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    key: str = ""  # identifies the prompt row: samples with equal labels are one GRPO group


def completion_of(query: str, prompt: str | None) -> str:
    """The policy's completion: ``query`` after ``prompt`` (the whole query when the prompt is not in it), without
    trailing end-of-turn tokens."""
    if prompt and prompt in query:
        query = query[query.index(prompt) + len(prompt) :]
    return END_MARKERS.sub("", query).strip()


def decode_label(label: str | dict, media_root: str | os.PathLike | None = None, root_required: bool = False) -> Label:
    """One label (a JSON string or an already decoded dict) -> :class:`Label`. Media entries follow
    :mod:`unifiedreward.media_entries`; without a ``media_root`` paths are read as given unless ``root_required``
    (the service). Raises ``ValueError`` naming the problem."""
    raw = label if isinstance(label, str) else json.dumps(label, sort_keys=True, default=str)
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except json.JSONDecodeError as error:
            raise ValueError(f"label is not JSON ({error.msg} at {error.pos})") from None
    if not isinstance(label, dict):
        raise ValueError(f"label must be a JSON object, got {type(label).__name__}")
    media: list[Any] = []
    try:
        if "images" in label:
            if not isinstance(label["images"], list):
                raise ValueError("label images: expected a list")
            media += [decode_entry(image, media_root, root_required) for image in label["images"]]
        if "image" in label:
            media.append(decode_entry(label["image"], media_root, root_required))
        if "video" in label:
            if not isinstance(label["video"], str) or not label["video"]:
                raise ValueError("label video: expected a path")
            media.append(VideoSpec(path_under_root(label["video"], media_root, root_required)))
    except MediaError as error:
        raise ValueError(f"label media: {error}") from None
    if not media:
        raise ValueError("label has no media: give 'image', 'images' or 'video'")
    template = label.get("template")
    if template is not None and not isinstance(template, str):
        raise ValueError("label template: expected a template key")
    fields = {k: v for k, v in label.items() if k not in MEDIA_KEYS and k != "template"}
    return Label(media, fields, template, hashlib.blake2b(raw.encode(), digest_size=12).hexdigest())
