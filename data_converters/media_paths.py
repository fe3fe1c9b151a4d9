"""Rewrite media references of input rows into paths relative to LLaMA-Factory's ``media_dir``."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from reward_core.atomic_files import atomic_write_bytes

from .report import RowError


@dataclass(frozen=True)
class MediaResolver:
    """Map a media path found in a row onto a path relative to ``media_dir``.

    ``source_root`` is the folder that the row's relative paths are relative to (LLaVA's
    ``image_folder``); it defaults to ``media_dir``. A path whose text leaves ``source_root``
    (``../x``, an absolute path elsewhere) or that cannot be expressed inside ``media_dir`` is
    refused; symbolic links inside it are followed. With ``verify`` the file (or frame folder) must exist.
    """

    media_dir: str
    source_root: str | None = None
    verify: bool = True
    max_frames: int = 32  # frames kept per frame-folder video (upstream LLaVA's frames_upbound)
    extract_frames: bool = False  # video files -> extracted frame lists (to mix with frame-folder datasets)

    def resolve(self, reference: object) -> str:
        if not isinstance(reference, str) or not reference.strip():
            raise RowError(f"media path must be a non-empty string, got {reference!r}")
        if "\x00" in reference:
            raise RowError(f"media path {reference!r} contains a NUL byte")
        if "://" in reference:
            raise RowError(f"media path {reference!r} is a URL; remote URLs are not fetched (download the file first)")
        relative = self.relative_path(reference)
        full_path = os.path.join(self.media_dir, relative)
        if self.verify and not os.path.exists(full_path):
            raise RowError(f"media file not found: {full_path}")
        return relative

    def relative_path(self, reference: str) -> str:
        """``reference`` relative to ``media_dir``, judged by its text alone.

        Symbolic links are followed, not judged (a Hugging Face hub snapshot is all links into
        ``blobs/``): only ``..`` components or an absolute path that leave ``source_root`` are refused.
        """
        source_root = os.path.abspath(self.source_root or self.media_dir)
        media_dir = os.path.abspath(self.media_dir)
        full_path = os.path.normpath(os.path.join(source_root, reference))
        if not _is_inside(full_path, source_root):
            raise RowError(f"media path {reference!r} escapes the source root {source_root}")
        if not _is_inside(full_path, media_dir):
            # the two folders may be spelled through different links: compare their real locations
            real_root, real_media = os.path.realpath(source_root), os.path.realpath(media_dir)
            full_path = os.path.normpath(os.path.join(real_root, os.path.relpath(full_path, source_root)))
            media_dir = real_media
            if not _is_inside(full_path, media_dir):
                raise RowError(f"media path {reference!r} is outside media_dir {media_dir}")
        return os.path.relpath(full_path, media_dir)


def _is_inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def store_media_bytes(blob: bytes, media_dir: str, subdir: str, name_hint: str | None = None) -> str:
    """Write embedded media bytes (HF datasets' ``{"bytes": ..., "path": ...}``) under ``media_dir/subdir``.

    The file name is the content hash (plus the hint's extension), so reruns and duplicates reuse
    one file. Returns the path relative to ``media_dir``.
    """
    extension = os.path.splitext(name_hint or "")[1].lower() or ".png"
    relative = os.path.join(subdir, hashlib.sha1(blob).hexdigest()[:20] + extension)
    target = os.path.join(media_dir, relative)
    if not os.path.exists(target):
        atomic_write_bytes(target, blob)
    return relative
