"""Media loading and the upstream (``inference_qwen``) chat-message layout.

Images become RGB ``PIL.Image`` (:func:`decode_image` keeps RGBA for the template's media protocol: its upstream
client decides how transparency is flattened, see :func:`to_rgb`); videos stay :class:`VideoSpec` until the
backend decodes them with qwen-vl-utils (``process_vision_info``), so frame sampling and ``smart_resize`` match
upstream.
``VideoSpec(as_frames=True)`` instead feeds 8 frames per video as separate images, like the 2.0 /
vLLM path and the benchmarks (``np.linspace(0, n - 1, 8)``).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FRAMES_PER_VIDEO = 8
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v")
MIN_VIDEO_FRAMES = 2  # qwen-vl-utils samples a multiple of FRAME_FACTOR = 2 frames
MAX_ASPECT_RATIO = 200  # qwen-vl-utils' smart_resize rejects longer/shorter sides beyond this ratio
REMOTE_SCHEMES = ("http://", "https://", "ftp://", "s3://", "gs://", "hf://")


class MediaError(ValueError):
    """A media item that cannot be used; ``source`` names it, ``reason`` says why."""

    def __init__(self, source: Any, reason: str):
        self.source = describe(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


@dataclass(frozen=True)
class VideoSpec:
    """A video file and how to sample it (``None`` = qwen-vl-utils defaults, as upstream)."""

    path: str
    fps: float | None = None
    nframes: int | None = None
    max_pixels: int | None = None
    as_frames: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", os.fspath(self.path))
        if self.fps is not None and self.nframes is not None:
            raise ValueError("VideoSpec takes fps or nframes, not both")


def describe(source: Any) -> str:
    """A short human-readable name for a media item (its path when it has one)."""
    if isinstance(source, VideoSpec):
        return source.path
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    shape = getattr(source, "shape", None) or getattr(source, "size", None)
    return f"<{type(source).__name__} {tuple(shape) if shape is not None else ''}>".replace(" >", ">")


WHITE, DROP = "white", "drop"  # an RGBA image made RGB: composited on white / its alpha channel dropped


def rgb_or_rgba(image: Image.Image) -> Image.Image:
    """A copy in RGB, or in RGBA when ``image`` is RGBA (its alpha is flattened later, per template: :func:`to_rgb`).

    16-bit grayscale (``I;16*``) is scaled to 8 bits first (PIL's own conversion clips it to white).
    """
    if image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8))
    return image.convert("RGBA" if image.mode == "RGBA" else "RGB")


def to_rgb(image: Image.Image, alpha: str = WHITE) -> Image.Image:
    """RGB. An RGBA image is composited on white (``alpha="white"``: qwen-vl-utils' ``to_rgb``, which upstream's
    ``inference_qwen`` scripts go through) or loses its alpha channel, colours as stored (``"drop"``: PIL's
    ``convert("RGB")``, what upstream's vLLM and LLaVA clients call); an RGB image is returned as is."""
    if image.mode not in ("RGB", "RGBA"):
        image = rgb_or_rgba(image)
    if image.mode == "RGBA" and alpha == WHITE:
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.split()[3])
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def check_image_size(width: int, height: int, source: Any) -> None:
    """Reject sizes no Qwen-VL processor accepts (empty, or an aspect ratio above ``MAX_ASPECT_RATIO``) and
    more pixels than PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``; ``None`` lifts it)."""
    if width < 1 or height < 1:
        raise MediaError(source, f"image has no pixels ({width}x{height})")
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise MediaError(
            source, f"refused: decompression bomb: {width}x{height} pixels is above PIL.Image.MAX_IMAGE_PIXELS ({limit})"
        )
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise MediaError(source, f"aspect ratio {width}x{height} is above {MAX_ASPECT_RATIO}:1 (Qwen-VL's limit)")


def _open_image(data: str | bytes, source: Any) -> Image.Image:
    """Decode one image file or byte string. The one place image decoding happens: every failure,
    whatever the decoder raises (corrupt data, a decompression bomb, an unsupported mode), is a
    :class:`MediaError` with the reason."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as opened:
            check_image_size(*opened.size, source)  # before decoding: a bomb is refused from its header
            opened.load()
            return rgb_or_rgba(opened)
    except MediaError:
        raise
    except FileNotFoundError:
        raise MediaError(source, "file not found") from None
    except Image.DecompressionBombError as error:
        raise MediaError(source, f"refused: decompression bomb ({error})") from None
    except MemoryError:
        raise MediaError(source, "out of memory decoding the image") from None
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error ... for bad data
        raise MediaError(source, f"cannot decode image ({type(error).__name__}: {error})") from None


def local_path(source: str | os.PathLike, kind: str = "image") -> str:
    """A local media path (``file://`` stripped), or :class:`MediaError` saying why it is not one."""
    path = os.fspath(source)
    path = path[len("file://"):] if path.startswith("file://") else path
    if "\x00" in path:
        raise MediaError(repr(path), "path contains a NUL byte")
    if path.lower().startswith(REMOTE_SCHEMES):
        raise MediaError(source, f"remote URLs are not fetched; download the {kind} first")
    reason = _not_a_file_reason(path)
    if reason:
        raise MediaError(source, reason)
    return path


_SPECIAL_FILES = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                  (stat.S_ISSOCK, "socket"))


def _not_a_file_reason(path: str) -> str | None:
    """Why ``path`` is not a regular file that can be read (``None`` when it is one), found without opening
    it: a FIFO or a device would block or never end."""
    link = f"a symlink to {os.path.realpath(path)}" if os.path.islink(path) else ""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return f"file not found ({link}, which does not exist)" if link else "file not found"
    except OSError as error:  # a symlink loop, a name too long, no permission
        reason = f"cannot access the file: {error.strerror}"
    else:
        if stat.S_ISREG(mode):
            return None
        if stat.S_ISDIR(mode):
            return "is a directory, not a file"
        reason = "not a regular file: " + next((name for is_kind, name in _SPECIAL_FILES if is_kind(mode)),
                                               "special file")
    return f"{reason} ({link})" if link else reason


def _array_to_image(array: np.ndarray, source: Any) -> Image.Image:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise MediaError(source, f"expected an HWC image array with 1, 3 or 4 channels, got shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise MediaError(source, f"expected uint8 or float pixels, got {array.dtype}")
        if not np.isfinite(array).all():
            raise MediaError(source, "image has NaN/inf pixels")
        array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return rgb_or_rgba(Image.fromarray(np.ascontiguousarray(array)))


def load_image(source: Any) -> Image.Image:
    """Any image input -> RGB PIL image (:func:`decode_image`, an alpha channel composited on white)."""
    return to_rgb(decode_image(source))


def decode_image(source: Any) -> Image.Image:
    """Any image input -> RGB PIL image, or RGBA when it is RGBA (see :func:`rgb_or_rgba`).

    Accepts a path (``str``/``Path``, optional ``file://``), encoded ``bytes``, a ``PIL.Image``,
    a numpy array (HWC; uint8, or float in [0, 1]) or a torch tensor (CHW; uint8, or float in [0, 1]).
    Raises :class:`MediaError` naming the item when it cannot be used.
    """
    if isinstance(source, Image.Image):
        check_image_size(*source.size, source)
        try:
            return rgb_or_rgba(source)
        except Exception as error:  # a lazily loaded PIL image decodes here
            raise MediaError(source, f"cannot decode image ({type(error).__name__}: {error})") from None
    if isinstance(source, (bytes, bytearray)):
        return _open_image(bytes(source), source)
    if isinstance(source, (str, os.PathLike)):
        return _open_image(local_path(source), source)
    if isinstance(source, np.ndarray):
        image = _array_to_image(source, source)
    elif type(source).__module__.startswith("torch"):
        tensor = source.detach().cpu()
        if tensor.ndim != 3:
            raise MediaError(source, f"expected a CHW image tensor, got shape {tuple(tensor.shape)}")
        tensor = tensor.float() if tensor.is_floating_point() else tensor
        image = _array_to_image(tensor.permute(1, 2, 0).numpy(), source)
    else:
        raise MediaError(source, f"unsupported image type {type(source).__name__}")
    check_image_size(*image.size, source)
    return image


def as_video_spec(source: Any) -> VideoSpec:
    """A path or :class:`VideoSpec` -> :class:`VideoSpec` (other types raise :class:`MediaError`)."""
    if isinstance(source, VideoSpec):
        return source
    if isinstance(source, (str, os.PathLike)):
        return VideoSpec(os.fspath(source))
    if isinstance(source, (bytes, bytearray, Image.Image, np.ndarray)):
        raise MediaError(source, f"a video must be a path or VideoSpec, got {type(source).__name__} (an image?)")
    raise MediaError(source, f"a video must be a path or VideoSpec, got {type(source).__name__}")


def _video_reader(spec: VideoSpec):
    import decord

    path = local_path(spec.path, kind="video")
    if os.path.getsize(path) == 0:
        raise MediaError(spec, "empty file (0 bytes)")
    try:
        reader = decord.VideoReader(path)
        frames = len(reader)
        if frames > 0:
            height, width = reader[0].shape[:2]
    except Exception as error:  # decord raises its own DECORDError and RuntimeError
        raise MediaError(spec, f"cannot decode video ({type(error).__name__}: {error})") from None
    if frames == 0:
        raise MediaError(spec, "video has no frames")
    check_image_size(width, height, spec)
    return reader


def frame_indices(total_frames: int, count: int = FRAMES_PER_VIDEO) -> list[int]:
    """``count`` evenly spaced frame indices (``np.linspace(0, n - 1, count)``, as upstream's 8-frame path)."""
    return np.linspace(0, total_frames - 1, count).astype(int).tolist()


def load_video_frames(spec: VideoSpec | str, count: int | None = None) -> list[Image.Image]:
    """Decode ``count`` (default ``spec.nframes`` or 8) evenly spaced RGB frames of a video."""
    spec = as_video_spec(spec)
    reader = _video_reader(spec)
    indices = frame_indices(len(reader), count or spec.nframes or FRAMES_PER_VIDEO)
    try:
        frames = reader.get_batch(indices).asnumpy()
        images = [Image.fromarray(frame).convert("RGB") for frame in frames]
    except Exception as error:
        raise MediaError(spec, f"cannot decode frames ({type(error).__name__}: {error})") from None
    if spec.max_pixels:
        images = [_limit_pixels(image, spec.max_pixels) for image in images]
    return images


def write_video(frames: list[Image.Image], path: str | os.PathLike, fps: float = 8) -> None:
    """Encode RGB frames as an MPEG-4 Part 2 ``.mp4`` (readable by decord, PyAV and torchvision); sizes must be even."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 2_000_000
        stream.thread_count = 1
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(to_rgb(image))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _limit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = (max_pixels / (width * height)) ** 0.5
    return image.resize((max(1, int(width * scale)), max(1, int(height * scale))))


def check_video(spec: VideoSpec) -> int:
    """Open a video to fail early on a missing/corrupt file; returns its frame count."""
    return len(_video_reader(spec))


def prepare_media(entries: list[Any], kind: str, count: int) -> list[Image.Image | VideoSpec]:
    """Validate one item's media for a template: ``kind`` is ``"image"`` or ``"video"``, ``count`` how many.

    Images are decoded to RGB (RGBA when they have an alpha channel: the template's media protocol flattens it)
    PIL; videos are checked and kept as :class:`VideoSpec`.
    Raises :class:`MediaError` for a wrong count or an unusable item.
    """
    entries = list(entries)
    if len(entries) != count:
        noun = "item" if count == 1 else "items"
        raise MediaError(f"<{len(entries)} media>", f"this template takes {count} {kind} {noun}, got {len(entries)}")
    if kind == "image":
        return [decode_image(entry) for entry in entries]
    if kind == "video":
        specs = [as_video_spec(entry) for entry in entries]
        for spec in specs:
            frames = check_video(spec)
            if frames < MIN_VIDEO_FRAMES and not spec.as_frames:
                raise MediaError(
                    spec, f"video has {frames} frame; Qwen-VL video input needs at least {MIN_VIDEO_FRAMES} "
                    "(as_frames=True feeds it as images)"
                )
        return specs
    raise ValueError(f"unknown media kind {kind!r}")


def _video_content(spec: VideoSpec) -> dict[str, Any]:
    content: dict[str, Any] = {"type": "video", "video": spec.path}
    for key in ("fps", "nframes", "max_pixels"):
        if getattr(spec, key) is not None:
            content[key] = getattr(spec, key)
    return content


def build_messages(media: list[Image.Image | VideoSpec], text: str) -> list[dict[str, Any]]:
    """One user turn, media first then the prompt text (upstream ``inference_qwen`` order).

    ``VideoSpec(as_frames=True)`` expands to its frames as separate image items.
    """
    content: list[dict[str, Any]] = []
    for item in media:
        if isinstance(item, VideoSpec) and item.as_frames:
            content += [{"type": "image", "image": frame} for frame in load_video_frames(item)]
        elif isinstance(item, VideoSpec):
            content.append(_video_content(item))
        else:
            content.append({"type": "image", "image": load_image(item)})
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]
