"""Ground truth for the toy world, from scene records and pixels: what a judge's scores are checked against.

Nothing here imports the judge (``reward_core``) or any model: answers are checked word by word against the scene
they are about, and images are measured from their pixels. The demo (``examples/demo.py``) uses it to say whether
the aligned models got *better*, not only whether the judge that made their training pairs likes them more.

* :func:`answer_correctness`: the share of the asked-about attributes (colour, shape, position) that an answer
  names correctly (right value named, no other value of that attribute named);
* :func:`lit_quadrants` / :func:`exposure`: how many of an image's four quadrants are well lit (the toy preference
  data penalises shadowed quadrants: a shadow keeps a quarter of the light, which no lit background has).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from .scenes import COLOURS, POSITIONS, SHAPES

# the words that name each attribute's values in an answer ("in the center", "on the left")
ATTRIBUTE_WORDS: dict[str, tuple[str, ...]] = {"colour": tuple(COLOURS), "shape": SHAPES, "position": POSITIONS}
# median luminance (0-255) above which a quadrant counts as lit: the lit backgrounds are 128 (gray) to 245 (white),
# their shadowed versions (a quarter of the light) 32 to 61
LIT_LUMINANCE = 90.0


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def attribute_correct(answer: str, attribute: str, value: str) -> bool:
    """The answer names ``value`` for ``attribute`` and no other value of it."""
    named = _words(answer) & set(ATTRIBUTE_WORDS[attribute])
    return named == {value}


def answer_correctness(answer: str, scene: dict[str, str], attributes: list[str] | tuple[str, ...]) -> float:
    """Share (0-1) of ``attributes`` that ``answer`` gets right about ``scene`` (a scene record's fields)."""
    if not attributes:
        raise ValueError("no attributes asked about")
    return sum(attribute_correct(answer, name, scene[name]) for name in attributes) / len(attributes)


def luminance(image: Image.Image) -> np.ndarray:
    """ITU-R 601 luma of an RGB image, 0-255."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def lit_quadrants(image: Image.Image, threshold: float = LIT_LUMINANCE) -> int:
    """How many of the image's four quadrants have a median luminance of at least ``threshold``."""
    luma = luminance(image)
    rows, columns = luma.shape
    half_r, half_c = rows // 2, columns // 2
    quadrants = (luma[:half_r, :half_c], luma[:half_r, half_c:], luma[half_r:, :half_c], luma[half_r:, half_c:])
    return sum(float(np.median(quadrant)) >= threshold for quadrant in quadrants)


def exposure(path: str | Path) -> float:
    """Share (0-1) of the image file's quadrants that are well lit."""
    with Image.open(path) as image:
        return lit_quadrants(image) / 4
