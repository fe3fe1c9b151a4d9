"""OpenAI chat-completions payloads for judge requests, and reading their answers.

Media go first, then the prompt text, in one user message (upstream order). Images travel as
``data:`` URLs (JPEG q95 RGB like upstream's ``vllm_request.py``, or lossless PNG); a video is sent
as 8 frames-as-images (upstream's vLLM path) or, when asked, as one ``video_url`` part.
"""

from __future__ import annotations

import base64
import io
import math
import mimetypes
from pathlib import Path
from typing import Any

from PIL import Image

from reward_core.media import FRAMES_PER_VIDEO, VideoSpec, load_image, load_video_frames, local_path
from reward_core.media_protocol import JPEG_INFO
from reward_core.soft_verdict import normalize_token

IMAGE_FORMATS = {"jpeg": "image/jpeg", "png": "image/png"}
VIDEO_MODES = ("frames", "video_url")


def image_data_url(image: Image.Image, image_format: str = "jpeg", jpeg_quality: int = 95) -> str:
    """An RGB image as a base64 ``data:`` URL."""
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        image.convert("RGB").save(buffer, format="PNG")
    return f"data:{IMAGE_FORMATS[image_format]};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def video_data_url(spec: VideoSpec) -> str:
    """The video file's bytes as a base64 ``data:`` URL (for servers that accept ``video_url``)."""
    path = Path(local_path(spec.path, kind="video"))
    mime = mimetypes.guess_type(path.name)[0] or "video/mp4"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def media_parts(
    media: list[Any],
    image_format: str = "jpeg",
    jpeg_quality: int = 95,
    video_mode: str = "frames",
    frames_per_video: int = FRAMES_PER_VIDEO,
) -> list[dict[str, Any]]:
    """Content parts for one request's media; raises `MediaError` naming the first unusable item."""
    parts: list[dict[str, Any]] = []
    for item in media:
        if isinstance(item, VideoSpec) and video_mode == "video_url" and not item.as_frames:
            parts.append({"type": "video_url", "video_url": {"url": video_data_url(item)}})
        elif isinstance(item, VideoSpec):
            frames = load_video_frames(item, item.nframes or frames_per_video)
            parts += [_image_part(frame, image_format, jpeg_quality) for frame in frames]
        elif isinstance(item, Image.Image) and JPEG_INFO in item.info:  # encoded by the media protocol: send as is
            url = f"data:image/jpeg;base64,{base64.b64encode(item.info[JPEG_INFO]).decode('ascii')}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            parts.append(_image_part(load_image(item), image_format, jpeg_quality))
    return parts


def _image_part(image: Image.Image, image_format: str, jpeg_quality: int) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": image_data_url(image, image_format, jpeg_quality)}}


def chat_messages(parts: list[dict[str, Any]], text: str, assistant_prefill: str | None = None) -> list[dict]:
    """One user turn (media parts, then text), plus an assistant prefill to continue when given."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]
    if assistant_prefill is not None:
        messages.append({"role": "assistant", "content": assistant_prefill})
    return messages


def _only_choice(body: Any) -> dict[str, Any]:
    """The single choice of a chat completion; raises `ValueError` for none or several (we ask for n=1)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError(f"malformed chat completion (no choices[0]): {str(body)[:200]}")
    if len(choices) > 1:
        raise ValueError(f"malformed chat completion: {len(choices)} choices for one request")
    return choices[0]


def completion_text(body: dict[str, Any]) -> str:
    """The assistant text of a chat-completions answer; raises `ValueError` when it is missing or not a string."""
    message = _only_choice(body).get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if content is None:
        raise ValueError("chat completion has empty content")
    if not isinstance(content, str):
        raise ValueError(f"malformed chat completion: content is a {type(content).__name__}, not text")
    return content


def first_token_logprobs(body: dict[str, Any]) -> dict[str, float]:
    """Top-k log-probabilities of the first generated token (vLLM / OpenAI shape), keyed by normalized text.

    Tokens that normalize to the same text ("1", " 1") are merged (log-sum-exp of their probabilities).
    Raises `ValueError` when the answer carries no logprobs.
    """
    merged: dict[str, float] = {}
    for token, logprob in _first_token_entries(body):
        key = normalize_token(token)
        merged[key] = logprob if key not in merged else _logaddexp(merged[key], logprob)
    return merged


def token_id_logprobs(body: dict[str, Any], token_ids: dict[str, int]) -> dict[str, float]:
    """Log-probabilities of exactly ``token_ids`` ({text: id}) in an answer to ``logprob_token_ids`` with
    ``return_tokens_as_token_ids`` (tokens named ``token_id:N``). Raises `ValueError` when one is missing:
    the server ignored the ids."""
    by_id: dict[int, float] = {}
    for token, logprob in _first_token_entries(body):
        if token.startswith("token_id:") and token[9:].isdigit():
            by_id[int(token[9:])] = logprob
    missing = {text: i for text, i in token_ids.items() if i not in by_id}
    if missing:
        raise ValueError(f"the answer lacks the log-probabilities of token ids {missing} (logprob_token_ids ignored?)")
    return {text: by_id[i] for text, i in token_ids.items()}


def generated_token_logprobs(body: dict[str, Any]) -> tuple[list[str], list[dict[str, float]]]:
    """Each generated token's text and its top-k alternatives ({token text: logprob}, the token itself
    included), from an answer to ``logprobs: true, top_logprobs: k``. Raises `ValueError` when the answer
    carries no per-token logprobs."""
    try:
        entries = _only_choice(body)["logprobs"]["content"]
        tokens = [str(entry["token"]) for entry in entries]
        alternatives = []
        for entry in entries:
            listed = {str(top["token"]): float(top["logprob"]) for top in entry.get("top_logprobs") or []}
            listed.setdefault(str(entry["token"]), float(entry["logprob"]))
            alternatives.append(listed)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise ValueError("the answer carries no token logprobs (choices[0].logprobs.content is missing)") from None
    if not tokens:
        raise ValueError("the answer carries an empty token logprobs list")
    return tokens, alternatives


def _first_token_entries(body: Any) -> list[tuple[str, float]]:
    """``(token, logprob)`` of the first generated token's top list (or the token itself); raises
    `ValueError` for a missing, empty or non-finite list, or one that lists a token twice (its
    probability would count twice). Distinct byte tokens that each decode to U+FFFD share that text
    in a real vLLM answer: those may repeat."""
    choice = _only_choice(body)
    try:
        entry = choice["logprobs"]["content"][0]
        top = entry.get("top_logprobs") or [entry]
        pairs = [(str(candidate["token"]), float(candidate["logprob"])) for candidate in top]
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise ValueError("the response carries no logprobs (choices[0].logprobs.content is missing)") from None
    if not pairs:
        raise ValueError("the response carries an empty logprobs list")
    bad = [(t, lp) for t, lp in pairs if not math.isfinite(lp) or lp > 1e-4]  # a log-probability is <= 0
    if bad:
        raise ValueError(f"the response carries invalid log-probabilities {bad[:3]}")
    seen: set[str] = set()
    for token, _ in pairs:
        if token in seen and "\ufffd" not in token:
            raise ValueError(f"the response lists token {token!r} twice in one top-logprobs list")
        seen.add(token)
    return pairs


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))
