"""Small JPEG thumbnails of images and videos (a strip of frames) for the HTML reports.

A thumbnail is named by a hash of its source (path, size and mtime, or the bytes), so re-rendering a
report reuses the thumbnails already made. A medium that cannot be decoded gives a `Thumb` with the
reason instead of a file: the page shows the reason, never a broken image.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from reward_core.media import MediaError, VideoSpec, load_image, load_video_frames

THUMB_SIZE = 160  # longest side of an image thumbnail, in pixels
STRIP_FRAMES = 4  # frames in a video's strip
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class Thumb:
    """A thumbnail file (``src``, relative to the report folder) or the reason there is none."""

    src: str | None
    width: int = 0
    height: int = 0
    error: str | None = None
    original: str | None = None  # link target for the full-size medium (relative to the report), if a file


def is_video(source: Any) -> bool:
    if isinstance(source, VideoSpec):
        return True
    return isinstance(source, (str, os.PathLike)) and os.fspath(source).lower().endswith(VIDEO_SUFFIXES)


def _key(source: Any) -> str:
    digest = hashlib.sha1()
    if isinstance(source, (bytes, bytearray)):
        digest.update(bytes(source))
    elif isinstance(source, Image.Image):
        digest.update(f"{source.mode}:{source.size}".encode() + source.tobytes())
    else:
        path = os.fspath(source.path if isinstance(source, VideoSpec) else source)
        digest.update(os.path.abspath(path).encode("utf-8", "surrogateescape"))
        try:
            stat = os.stat(path)
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        except OSError:
            pass
    digest.update(f"{THUMB_SIZE}:{STRIP_FRAMES}".encode())
    return digest.hexdigest()[:20]


def _strip(frames: list[Image.Image]) -> Image.Image:
    height = THUMB_SIZE // 2
    frames = [frame.resize((max(1, round(frame.width * height / frame.height)), height)) for frame in frames]
    strip = Image.new("RGB", (sum(frame.width for frame in frames) + 2 * (len(frames) - 1), height), "white")
    x = 0
    for frame in frames:
        strip.paste(frame, (x, 0))
        x += frame.width + 2
    return strip


def _render(source: Any) -> Image.Image:
    if is_video(source):
        return _strip(load_video_frames(source, count=STRIP_FRAMES))
    image = load_image(source)
    image.thumbnail((THUMB_SIZE, THUMB_SIZE))
    return image


def _original(source: Any, report_dir: Path) -> str | None:
    if not isinstance(source, (str, os.PathLike, VideoSpec)):
        return None
    path = os.fspath(source.path if isinstance(source, VideoSpec) else source)
    if not os.path.isfile(path):
        return None
    return Path(os.path.relpath(os.path.abspath(path), report_dir)).as_posix()


def make_thumb(source: Any, report_dir: str | os.PathLike, media_root: str | os.PathLike | None = None) -> Thumb:
    """The thumbnail of ``source`` (path, bytes, PIL image or `VideoSpec`) under ``report_dir/thumbs/``."""
    report_dir = Path(report_dir)
    if isinstance(source, (str, os.PathLike)) and media_root is not None and not os.path.isabs(source):
        source = os.path.join(media_root, source)
    if source is None:
        return Thumb(None, error="no medium recorded")
    try:
        name = f"thumbs/{_key(source)}.jpg"
        target = report_dir / name
        if not target.is_file():
            image = _render(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=80)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(buffer.getvalue())
            os.replace(tmp, target)
        with Image.open(target) as done:
            width, height = done.size
    except MediaError as error:
        return Thumb(None, error=str(error))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return Thumb(None, error=f"cannot make a thumbnail ({type(error).__name__}: {error})")
    return Thumb(name, width, height, original=_original(source, report_dir))
