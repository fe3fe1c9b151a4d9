"""How each template's media reach the model, as data: native video or N frames, and in what encoding.

Upstream runs each prompt family through one script, and that script fixes the media protocol:

- 1.0 Qwen and Think-qwen (``inference_qwen``): whole videos through qwen-vl-utils (fps 2, its pixel budget).
- 2.0 pair score / APS (``UnifiedReward-2.0-inference``): 8 / 16 frames per video at ``int(i * n / N)``, read
  sequentially (a repeated index yields one frame), written as JPEG files (``cv2.imwrite``, quality 95), then
  re-encoded as JPEG q95 by ``vllm_request.py``.
- Think-qwen3 and Flex: 8 frames per video at ``np.linspace(0, n - 1, 8)`` (seek; repeats kept), JPEG q95 once.
  Their images also travel as JPEG q95, like every image of the 2.0 / Edit vLLM scripts.
- LLaVA prompts: 8 frames at ``np.linspace`` resized to 512x512 (``opencv_extract_frames``); benchmarks: 8 frames.
  VideoDPO's sift (``dpo.video_generation.*``) calls ``img.resize((512, 512))`` without keeping the result: its frames
  keep their size. Images are resized to 512x512 (PIL's default filter, bicubic) by Flow-GRPO / ``sglang_inference.py``
  (``*.sglang_v1.5``) and DiffusionDPO's sift (``dpo.image_generation.*``); no other script resizes them.
- Transparency: qwen-vl-utils (``inference_qwen``) composites an RGBA image on white; every other client calls
  ``convert("RGB")``, which drops the alpha channel and keeps the colours as stored.

:func:`apply_protocol` turns a request's validated media into what the model sees, before any backend, so
the transformers backend and the HTTP backend get the same frames: an image that upstream sent as JPEG is
encoded once here and decoded again (the pixels upstream's server saw); its JPEG bytes ride along in
``image.info[JPEG_INFO]`` and the HTTP backend sends those bytes unchanged.
Pairs of videos are frames of video 1, then video 2 ("first half = Video 1"). A :class:`VideoSpec` with its own
settings (``fps``, ``nframes``, ``max_pixels``, ``as_frames``) keeps them: an explicit choice wins.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from reward_core.media import DROP, WHITE, MediaError, VideoFrames, VideoSpec, load_video_frames, local_path, to_rgb
from reward_core.prompts import Template

NATIVE, FRAMES = "native", "frames"
JPEG_INFO = "unifiedreward_jpeg"  # PIL ``info`` key holding the JPEG bytes an image travels as
LINSPACE, STRIDE = "linspace", "stride"


@dataclass(frozen=True)
class MediaProtocol:
    """One template family's media protocol.

    ``video``: ``"native"`` (a video item; ``fps``/``nframes``/``max_pixels`` ``None`` = qwen-vl-utils defaults) or
    ``"frames"`` (``frames`` images per video picked by ``sampler``, resized to ``size`` when given).
    ``frame_file_quality``: frames first saved as JPEG files of this quality (upstream's 2.0 scripts).
    ``jpeg_quality``: images and frames travel as JPEG of this quality (upstream's vLLM client); ``None`` = as is.
    ``image_size``: images resized to this ``(width, height)`` (PIL's default filter) before anything else.
    ``alpha``: how an RGBA image becomes RGB: ``"white"`` (composited, qwen-vl-utils) or ``"drop"`` (``convert("RGB")``).
    """

    video: str = NATIVE
    frames: int = 8
    sampler: str = LINSPACE
    size: tuple[int, int] | None = None
    frame_file_quality: int | None = None
    jpeg_quality: int | None = None
    fps: float | None = None
    nframes: int | None = None
    max_pixels: int | None = None
    image_size: tuple[int, int] | None = None
    alpha: str = DROP
    source: str = ""  # the upstream script family this follows

    def indices(self, total_frames: int) -> list[int]:
        """Frame indices upstream's script reads from a ``total_frames`` video, in order."""
        if total_frames <= 0:
            raise ValueError("video has no frames")
        if self.sampler == STRIDE:  # sequential read: each selected index is read once
            return sorted({int(i * total_frames / self.frames) for i in range(self.frames)})
        return np.linspace(0, total_frames - 1, self.frames).astype(int).tolist()

    def image(self, image: Image.Image) -> Image.Image:
        """An RGB or RGBA image as the model receives it: resized to ``image_size`` (in its own mode, as upstream
        resizes the opened file), made RGB by the ``alpha`` rule, then JPEG-transported when the protocol says so
        (see :func:`as_jpeg`). An image already encoded, or one needing none of this, is returned as is."""
        if JPEG_INFO in image.info:
            return image
        if self.image_size is not None:
            image = image.resize(self.image_size)
        image = to_rgb(image, self.alpha)
        return as_jpeg(image, self.jpeg_quality) if self.jpeg_quality else image


QWEN_NATIVE = MediaProtocol(alpha=WHITE, source="inference_qwen (transformers + qwen-vl-utils)")
V2_FRAMES_8 = MediaProtocol(FRAMES, 8, STRIDE, frame_file_quality=95, jpeg_quality=95, source="UnifiedReward-2.0-inference")
V2_FRAMES_16 = MediaProtocol(FRAMES, 16, STRIDE, frame_file_quality=95, jpeg_quality=95, source="UnifiedReward-2.0-inference (APS)")
VLLM_FRAMES_8 = MediaProtocol(FRAMES, 8, LINSPACE, jpeg_quality=95, source="Think-qwen3 / Flex (vLLM)")
VLLM_IMAGES = MediaProtocol(jpeg_quality=95, source="vLLM client (JPEG q95)")
LLAVA_FRAMES_8 = MediaProtocol(FRAMES, 8, LINSPACE, size=(512, 512), source="LLaVA opencv_extract_frames")
BENCH_FRAMES_8 = MediaProtocol(FRAMES, 8, LINSPACE, source="benchmarks (decord linspace)")
IMAGES_512 = MediaProtocol(image_size=(512, 512), source="Flow-GRPO / sglang_inference.py, DiffusionDPO sift: resize 512x512")
VIDEO_DPO_FRAMES_8 = MediaProtocol(FRAMES, 8, LINSPACE, source="VideoDPO sift (opencv_extract_frames; its resize is discarded)")

_BY_KEY = {
    "video_generation.pair_score.v2": V2_FRAMES_8,
    "video_generation.point_score_aps.v2": V2_FRAMES_16,
    "image_generation.pair_score.v2": VLLM_IMAGES,
    "image_generation.point_score_acs.v2": VLLM_IMAGES,
}


def protocol_for(template: Template) -> MediaProtocol:
    """The media protocol of ``template`` (by key, then by family prefix; 1.0 Qwen native otherwise)."""
    key = template.key
    if key in _BY_KEY:
        return _BY_KEY[key]
    if key.startswith(("think.qwen3.", "flex.")):
        return VLLM_FRAMES_8
    if key.startswith("edit."):
        return VLLM_IMAGES
    if key.startswith("bench."):
        return BENCH_FRAMES_8
    if key.startswith("dpo.image_generation.") or "sglang" in key:
        return IMAGES_512
    if key.startswith("dpo.video_generation."):
        return VIDEO_DPO_FRAMES_8
    if key.endswith(".llava") or key.startswith("preference."):
        return LLAVA_FRAMES_8
    return QWEN_NATIVE


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def as_jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` encoded as JPEG and decoded again (RGB), its bytes kept in ``info[JPEG_INFO]``."""
    data = jpeg_bytes(image, quality)
    with Image.open(io.BytesIO(data)) as opened:
        decoded = opened.convert("RGB")
    decoded.info[JPEG_INFO] = data
    return decoded


def _jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    decoded = as_jpeg(image, quality)
    decoded.info.pop(JPEG_INFO)
    return decoded


def _finish_frames(images: list[Image.Image], protocol: MediaProtocol) -> list[Image.Image]:
    """Picked RGB frames as upstream's script leaves them: resized to ``size``, then saved as JPEG files."""
    if protocol.size is not None:
        images = [image.resize(protocol.size) for image in images]
    if protocol.frame_file_quality is not None:
        images = [_jpeg_roundtrip(image, protocol.frame_file_quality) for image in images]
    return images


def read_frames(spec: VideoSpec, protocol: MediaProtocol) -> list[Image.Image]:
    """The RGB frames upstream's script takes from one video (before any transport encoding)."""
    import decord

    path = local_path(spec.path, kind="video")
    try:
        reader = decord.VideoReader(path)
        indices = protocol.indices(len(reader))
        frames = reader.get_batch(indices).asnumpy()
    except Exception as error:  # decord raises its own DECORDError / RuntimeError
        raise MediaError(spec, f"cannot decode frames ({error})") from None
    return _finish_frames([Image.fromarray(frame).convert("RGB") for frame in frames], protocol)


def pick_frames(video: VideoFrames, protocol: MediaProtocol) -> list[Image.Image]:
    """The frames upstream's script would take from ``video`` had it been a file of those frames."""
    return _finish_frames([video.frames[index] for index in protocol.indices(len(video.frames))], protocol)


def _transported(frames: list[Image.Image], protocol: MediaProtocol) -> list[Image.Image]:
    return [as_jpeg(f, protocol.jpeg_quality) for f in frames] if protocol.jpeg_quality else frames


def _explicit(spec: VideoSpec) -> bool:
    return spec.as_frames or any(v is not None for v in (spec.fps, spec.nframes, spec.max_pixels))


def apply_protocol(template: Template, media: list[Any], protocol: MediaProtocol | None = None) -> list[Any]:
    """A request's validated media (RGB / RGBA images, :class:`VideoSpec`, :class:`VideoFrames`) as the model receives
    them under ``protocol`` (default: the template's): RGB images (see :meth:`MediaProtocol.image`); JPEG-transported images and frames are
    decoded JPEGs (see :func:`as_jpeg`)."""
    protocol = protocol or protocol_for(template)
    out: list[Any] = []
    for item in media:
        if isinstance(item, VideoFrames):
            if protocol.video != FRAMES:
                raise MediaError(item, f"{template.key} sends videos natively ({protocol.source}), which needs a video "
                                 "file; an in-memory video needs a template whose protocol sends frames")
            out += _transported(pick_frames(item, protocol), protocol)
        elif isinstance(item, VideoSpec):
            if _explicit(item):
                frames = load_video_frames(item) if item.as_frames else None
                out += frames if frames is not None else [item]
            elif protocol.video == FRAMES:
                out += _transported(read_frames(item, protocol), protocol)
            else:
                out.append(VideoSpec(item.path, fps=protocol.fps, nframes=protocol.nframes, max_pixels=protocol.max_pixels))
        elif isinstance(item, Image.Image):
            out.append(protocol.image(item))
        else:
            out.append(item)
    return out
