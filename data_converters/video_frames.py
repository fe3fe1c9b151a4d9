"""Video files -> extracted frames, so file videos and frame-folder videos can train in one run.

LLaMA-Factory loads each dataset's ``videos`` column with one Arrow type and cannot merge datasets
whose videos are files (``["a.mp4"]``) with datasets whose videos are frame lists
(``[["f0.jpg", ...]]``). Extracting the frames of file videos makes every video a frame list. The
frames are the ones reward_core's inference feeds the judge: qwen-vl-utils' ``smart_nframes`` at
its default 2 fps, indices ``linspace(0, n - 1, k).round()``.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from PIL import Image

from reward_core.atomic_files import atomic_write_text

from .report import RowError

FRAMES_SUBDIR = os.path.join("extracted", "frames")


def extract_video_frames(relative: str, media_dir: str) -> list[str]:
    """Frames of the video at ``media_dir/relative`` as PNG files under ``media_dir/extracted/frames/``.

    Returns their paths relative to ``media_dir``. A folder already complete from an earlier run is
    reused (its ``.complete`` marker holds the frame count).
    """
    folder = os.path.join(FRAMES_SUBDIR, hashlib.sha1(relative.encode("utf-8")).hexdigest()[:20])
    target, marker = os.path.join(media_dir, folder), os.path.join(media_dir, folder, ".complete")
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as handle:
            count = int(handle.read())
        return [os.path.join(folder, f"frame_{index:04d}.png") for index in range(count)]
    frames = _decode_inference_frames(os.path.join(media_dir, relative))
    os.makedirs(target, exist_ok=True)
    names = []
    for index, frame in enumerate(frames):
        names.append(os.path.join(folder, f"frame_{index:04d}.png"))
        Image.fromarray(frame).save(os.path.join(media_dir, names[-1]))
    atomic_write_text(marker, str(len(names)))  # last, and whole: a killed run leaves no marker
    return names


def _decode_inference_frames(path: str) -> np.ndarray:
    import decord
    from qwen_vl_utils.vision_process import smart_nframes

    try:
        reader = decord.VideoReader(path)
        total = len(reader)
        count = smart_nframes({}, total_frames=total, video_fps=reader.get_avg_fps())
        indices = np.linspace(0, total - 1, count).round().astype(int).tolist()
        return reader.get_batch(indices).asnumpy()
    except Exception as error:  # decord raises DECORDError / RuntimeError; qwen-vl-utils ValueError
        raise RowError(f"cannot extract frames from video {path}: {error}") from None
