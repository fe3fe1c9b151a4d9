"""Decode each benchmark media item once, however many pairs share it (VideoAlign's pair -> unique trick)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from reward_core.media import MediaError, VideoSpec, check_video, decode_image


def content_key(value: Any) -> str | None:
    """Cache key of a media reference: its path, a digest of embedded bytes; None = not cacheable."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return "sha1:" + hashlib.sha1(value).hexdigest()
    return None


class MediaCache:
    """LRU cache of prepared media, failures included (a broken file is reported, not re-read).

    Images are decoded to RGB PIL images (RGBA kept: the template's media protocol flattens it). Videos are
    opened once to validate them and passed on as :class:`VideoSpec`: the model decodes frames itself
    (qwen-vl-utils sampling), so a video's frames are not held here.
    """

    def __init__(self, capacity: int = 256, video_options: dict[str, Any] | None = None) -> None:
        self.capacity = capacity
        self.video_options = dict(video_options or {})
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def image(self, ref: Any) -> Any:
        return self._get(ref, "image", decode_image)

    def video(self, ref: Any) -> VideoSpec:
        return self._get(ref, "video", self._open_video)

    def _open_video(self, ref: Any) -> VideoSpec:
        if isinstance(ref, VideoSpec):
            spec = ref
        elif isinstance(ref, str):
            spec = VideoSpec(ref, **self.video_options)
        else:
            raise MediaError(ref, f"a video must be a file path, got {type(ref).__name__}")
        check_video(spec)
        return spec

    def _get(self, ref: Any, kind: str, prepare) -> Any:
        key = content_key(ref)
        if key is None:
            return prepare(ref)
        key = f"{kind}:{key}"
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            entry = self._entries[key]
        else:
            self.misses += 1
            try:
                entry = prepare(ref)
            except MediaError as error:
                entry = error
            self._entries[key] = entry
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        if isinstance(entry, MediaError):
            raise entry
        return entry
