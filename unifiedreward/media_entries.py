"""Media sent as text (the reward service's requests, OpenRLHF labels): base64 file bytes, or paths.

Decoding here only turns an entry into what `reward_core` takes (``bytes`` or a path); every media rule
(formats, corrupt files, decompression bombs, sizes, frame counts) is `reward_core.media`'s, applied by the judge,
and each failure is that item's ``media_error``. An entry is

- ``{"base64": "..."}``, a ``data:...;base64,...`` URL, or any other string: base64 of the file's bytes;
- ``{"path": "..."}``, or a string ending in an image / video suffix (``.png``, ``.mp4`` ...; base64 never
  contains a dot) or starting with ``file://``: a file under the media root (``unifiedreward serve --media-root``).
  A path that leaves the root (``..``, an absolute path elsewhere, a symlink out) is refused; without a root every
  path is refused, unless the caller reads its own files (``root_required=False``: an in-process reward function).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

from reward_core.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, MediaError

MEDIA_SUFFIXES = IMAGE_SUFFIXES + VIDEO_SUFFIXES


def decode_base64(text: Any, source: str = "<base64>") -> bytes:
    """The bytes of a base64 string (a ``data:`` URL's payload too); :class:`MediaError` when it is not base64."""
    if not isinstance(text, str):
        raise MediaError(source, f"expected a base64 string, got {type(text).__name__}")
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise MediaError(source, "a data: URL must be 'data:<type>;base64,<data>'")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise MediaError(source, f"invalid base64 ({error})") from None
    if not data:
        raise MediaError(source, "empty media (no bytes)")
    return data


def path_under_root(path: Any, media_root: str | os.PathLike | None, root_required: bool = True) -> str:
    """The absolute path of ``path`` (relative to ``media_root``, or absolute inside it); :class:`MediaError` when
    the path, symlinks resolved, is outside the root, or there is no root and ``root_required``."""
    if not isinstance(path, str) or not path:
        raise MediaError(repr(path), "a media path must be a non-empty string")
    if "\x00" in path:
        raise MediaError(repr(path), "path contains a NUL byte")
    relative = path[len("file://"):] if path.startswith("file://") else path
    if media_root is None:
        if root_required:
            raise MediaError(path, "media paths are refused: the service was started without --media-root")
        return relative
    root = Path(media_root).resolve()
    resolved = (root / relative).resolve()
    if not resolved.is_relative_to(root):
        raise MediaError(path, "refused: the path is outside the media root")
    return os.fspath(resolved)


def decode_entry(entry: Any, media_root: str | os.PathLike | None, root_required: bool = True) -> bytes | str:
    """One media entry -> bytes or a checked path (see the module doc)."""
    if isinstance(entry, dict):
        if set(entry) == {"base64"}:
            return decode_base64(entry["base64"])
        if set(entry) == {"path"}:
            return path_under_root(entry["path"], media_root, root_required)
        raise MediaError(f"<object with keys {sorted(entry)}>", "a media object is {'base64': ...} or {'path': ...}")
    if isinstance(entry, str):
        if entry.startswith("file://") or entry.lower().endswith(MEDIA_SUFFIXES):
            return path_under_root(entry, media_root, root_required)
        return decode_base64(entry)
    raise MediaError(f"<{type(entry).__name__}>", "a media entry is a base64 string, a path or {'base64'|'path': ...}")


def decode_media(entries: Any, media_root: str | None) -> list[bytes | str]:
    """An item's media (one entry or a list) -> bytes / paths; raises :class:`MediaError` for the first bad entry."""
    entries = entries if isinstance(entries, list) else [entries]
    return [decode_entry(entry, media_root) for entry in entries]
