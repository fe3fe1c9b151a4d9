"""Read the media columns of one input row (``image`` | ``images`` | ``video`` | ``videos``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .media_paths import MediaResolver, store_media_bytes
from .report import RowError

_MEDIA_KEYS = ("image", "images", "video", "videos")


@dataclass(frozen=True)
class RowMedia:
    images: list[str]
    videos: list[str]


def row_media(row: dict[str, Any], resolver: MediaResolver, extract_subdir: str = "extracted") -> RowMedia:
    """Resolve the row's media to paths relative to ``media_dir``.

    A ``video`` given as a list of frame paths becomes that many images (LLaVA's pre-extracted frames).
    Embedded media (``{"bytes": ..., "path": ...}`` from HF datasets parquet) are written under
    ``media_dir/extract_subdir``.
    """
    present = [key for key in _MEDIA_KEYS if row.get(key) not in (None, [], "")]
    if len(present) > 1:
        raise RowError(f"ambiguous media: row has both {present[0]!r} and {present[1]!r}")
    if not present:
        return RowMedia([], [])
    key = present[0]
    value = row[key]
    entries = value if isinstance(value, list) else [value]

    def resolve(entry: Any) -> str:
        if isinstance(entry, dict) and entry.get("bytes"):
            return store_media_bytes(entry["bytes"], resolver.media_dir, extract_subdir, entry.get("path"))
        if isinstance(entry, dict):
            entry = entry.get("path")
        return resolver.resolve(entry)

    paths = [resolve(entry) for entry in entries]
    if key in ("image", "images") or (key == "video" and isinstance(value, list)):
        return RowMedia(paths, [])
    return RowMedia([], paths)
