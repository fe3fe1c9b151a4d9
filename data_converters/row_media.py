"""Read the media columns of one input row (``image`` | ``images`` | ``video`` | ``videos``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from .media_paths import MediaResolver, store_media_bytes
from .report import RowError
from .video_frames import extract_video_frames

_MEDIA_KEYS = ("image", "images", "video", "videos")


@dataclass(frozen=True)
class RowMedia:
    images: list[str]
    videos: list[str | list[str]]  # a video file, or a frame folder as its list of frames

    @property
    def count(self) -> int:
        return len(self.images) + len(self.videos)


def row_media(row: dict[str, Any], resolver: MediaResolver, extract_subdir: str = "extracted") -> RowMedia:
    """Resolve the row's media to paths relative to ``media_dir``.

    A ``video`` given as a list of frame paths becomes that many images (LLaVA's pre-extracted frames).
    A video path naming a folder of frames (ShareGPTVideo, VideoFeedback) becomes LLaMA-Factory's
    nested ``videos: [[frame, ...]]`` (:func:`frame_folder_video`); with ``resolver.extract_frames``
    video files become frame lists too (:func:`extract_video_frames`).
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
    videos = [frame_folder_video(path, resolver) for path in paths]
    if resolver.extract_frames:
        videos = [extract_video_frames(video, resolver.media_dir) if isinstance(video, str) else video
                  for video in videos]
    return RowMedia([], videos)


FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def frame_folder_video(path: str, resolver: MediaResolver) -> str | list[str]:
    """A video path as LLaMA-Factory reads it: a file stays a path; a folder becomes its frames.

    Frames are the folder's image files in natural order (``frame_2`` before ``frame_10``),
    sampled evenly (``np.linspace``, as upstream's LLaVA loader) down to ``resolver.max_frames``
    and to an even count (Qwen's temporal patch is 2 frames). Without ``verify`` nothing is read
    and the path stays as given.
    """
    folder = os.path.join(resolver.media_dir, path)
    if not resolver.verify or not os.path.isdir(folder):
        return path
    names = sorted((name for name in os.listdir(folder) if name.lower().endswith(FRAME_SUFFIXES)), key=_natural_key)
    if len(names) < 2:
        raise RowError(f"frame folder {path!r} holds {len(names)} image frame(s); a video needs at least 2")
    count = min(len(names), resolver.max_frames)
    count -= count % 2
    indices = sorted({round(i * (len(names) - 1) / (count - 1)) for i in range(count)})
    return [os.path.join(path, names[i]) for i in indices]


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
