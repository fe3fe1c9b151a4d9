"""OpenRLHF labels that carry a judge's media: one JSON object per sample.

OpenRLHF's reward protocol (``reward_func(queries, prompts, labels)``, and ``POST /get_reward``) carries text only,
so each sample's ``label`` (the dataset's ``--label_key`` column) is a JSON string::

    {"image": "<base64 | data:image/...;base64,... | path>", "question": "What colour is the shape?"}

- ``image`` (one) or ``images`` (a list, in template order): base64 of the image file's bytes (a ``data:`` URL too),
  or a path; ``video``: a path. With a media root (``unifiedreward serve --media-root``), a path must lie under it.
- ``template`` (optional): a template key; every other key is a template field (``question``, ``prompt`` ...).

:func:`decode_label` turns one label into a :class:`Label`; a bad label raises ``ValueError`` naming the problem
(the caller fails that sample alone).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reward_core.media import VideoSpec

MEDIA_KEYS = ("image", "images", "video")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")


@dataclass
class Label:
    """One sample's media (decoded images as bytes, paths, or a :class:`VideoSpec`), template fields and template."""

    media: list[Any]
    fields: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    key: str = ""  # identifies the prompt row: samples with equal labels are one GRPO group


def _media(value: Any, media_root: Path | None, what: str) -> Any:
    if not isinstance(value, str) or not value:
        raise ValueError(f"label {what}: expected a base64 string or a path, got {type(value).__name__}")
    if value.startswith("data:"):
        head, _, payload = value.partition("base64,")
        if not payload:
            raise ValueError(f"label {what}: a data URL must be base64 ({head[:40]!r})")
        value = payload
    elif not _BASE64.fullmatch(value) or len(value) < 16 or os.path.exists(value):
        return _path(value, media_root, what)
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as error:
        raise ValueError(f"label {what}: not valid base64 ({error})") from None


def _path(value: str, media_root: Path | None, what: str) -> str:
    if media_root is None:
        return value
    path = Path(media_root, value).resolve()
    if not path.is_relative_to(media_root.resolve()):
        raise ValueError(f"label {what}: path {value!r} is outside the media root")
    return str(path)


def decode_label(label: str | dict, media_root: str | os.PathLike | None = None) -> Label:
    """One label (a JSON string or an already decoded dict) -> :class:`Label`."""
    raw = label if isinstance(label, str) else json.dumps(label, sort_keys=True, default=str)
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except json.JSONDecodeError as error:
            raise ValueError(f"label is not JSON ({error.msg} at {error.pos})") from None
    if not isinstance(label, dict):
        raise ValueError(f"label must be a JSON object, got {type(label).__name__}")
    root = None if media_root is None else Path(media_root)
    media: list[Any] = []
    if "images" in label:
        images = label["images"]
        if not isinstance(images, list):
            raise ValueError("label images: expected a list")
        media += [_media(image, root, f"images[{i}]") for i, image in enumerate(images)]
    if "image" in label:
        media.append(_media(label["image"], root, "image"))
    if "video" in label:
        video = label["video"]
        if not isinstance(video, str) or not video:
            raise ValueError("label video: expected a path")
        media.append(VideoSpec(_path(video, root, "video")))
    if not media:
        raise ValueError("label has no media: give 'image', 'images' or 'video'")
    template = label.get("template")
    if template is not None and not isinstance(template, str):
        raise ValueError("label template: expected a template key")
    fields = {k: v for k, v in label.items() if k not in MEDIA_KEYS and k != "template"}
    return Label(media, fields, template, hashlib.blake2b(raw.encode(), digest_size=12).hexdigest())
