"""A toy reward task that a tiny Qwen2.5-VL can learn in minutes on a CPU: visual *quality*.

Each image is a toy scene (``scenes.py``) whose quadrants are corrupted by a fixed high-frequency
stripe artifact: a quality-``q`` image has ``5 - q`` of its four quadrants striped (chosen at
random), so quality 5 is clean and quality 1 is striped all over. With the toy processor a 56x56
image becomes four vision tokens, one per quadrant, so quality is "how many of my image tokens
carry the artifact": five well separated levels that do not depend on colour, shape or background.
(An earlier version blended the whole image at strength ``(5 - q) / 4``; the tiny model could rank
those images but not tell neighbouring levels apart: pointwise exact accuracy stayed near 65%.)

A second flaw, ``shadow`` (the quadrant underexposed to a quarter of its light), can replace the stripes
(``flaws=("stripes", "shadow")``: one flaw per image or pair), so that a judge also learns that well-lit is
better, a preference that a toy text-to-image model's own images (light and dark backgrounds) can express.

* ``quality_points``: caption + one image, target score = quality (1-5).
* ``quality_pairs``: caption + two images of the caption's scene whose qualities differ by at
  least ``min_gap``; the winner is the higher-quality image. Training pairs are written in both
  orders (``(A, B) -> 1`` and ``(B, A) -> 2``) so that the only way to fit them is to tell the
  first image from the second, the skill the caption-matching toy task failed to teach.

Records use the same schema as ``data.py`` (``image_pairs``/``image_points``), so the toy-judge
converter turns them into UnifiedReward SFT data unchanged.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .data import _save_image, _split
from .scenes import random_scene, render_image

QUALITIES = (1, 2, 3, 4, 5)
FLAWS = ("stripes", "shadow")
ARTIFACT_STRENGTH = 0.85  # a striped quadrant keeps a faint view of the scene
SHADOW_LIGHT = 0.25  # a shadowed quadrant keeps a quarter of its light
# backgrounds on which a shadow shows (a black background is as dark lit as shadowed)
LIT_BACKGROUNDS = ("white", "gray", "beige")


def stripe_artifact(size: int) -> np.ndarray:
    """Magenta/green vertical stripes, two pixels wide: far from any toy scene's colours."""
    columns = (np.arange(size) // 2) % 2
    row = np.where(columns[:, None] == 0, (255, 0, 255), (0, 255, 0)).astype(np.float32)
    return np.broadcast_to(row[None, :, :], (size, size, 3))


def artifact_mask(quality: int, rng: random.Random, size: int) -> np.ndarray:
    """``size x size`` mask (1 = striped) covering ``5 - quality`` randomly chosen quadrants."""
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
    mask = np.zeros((size, size, 1), dtype=np.float32)
    half = size // 2
    for quadrant in rng.sample(range(4), 5 - quality):
        row, column = divmod(quadrant, 2)
        mask[row * half:(row + 1) * half, column * half:(column + 1) * half] = 1.0
    return mask


def render_quality_image(
    scene, quality: int, rng: random.Random, size: int = 56, flaw: str = "stripes", blur: float = 0.0
) -> Image.Image:
    """The scene drawn cleanly, with ``flaw`` over ``5 - quality`` of its quadrants: the stripe artifact, or a
    shadow (the quadrant darkened to ``SHADOW_LIGHT`` of its light, i.e. underexposed); ``blur`` (a Gaussian
    radius in pixels) softens the result, as a small text-to-image model draws."""
    if flaw not in FLAWS:
        raise ValueError(f"flaw must be one of {FLAWS}, got {flaw!r}")
    clean = np.asarray(render_image(scene, rng, size, noise=0.02), dtype=np.float32)
    mask = artifact_mask(quality, rng, size)
    if flaw == "stripes":
        strength = ARTIFACT_STRENGTH * mask
        pixels = (1 - strength) * clean + strength * stripe_artifact(size)
    else:
        pixels = clean * (1 - (1 - SHADOW_LIGHT) * mask)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else image


def pick_flaw(flaws: tuple[str, ...], rng: random.Random) -> str:
    """One of ``flaws`` (a single flaw draws nothing from ``rng``, so stripe-only data stay as they were)."""
    return flaws[0] if len(flaws) == 1 else rng.choice(flaws)


def make_quality_points(
    data_dir: Path, num_items: int, seed: int = 0, held_out: float = 0.2, size: int = 56,
    name: str = "quality_points", flaws: tuple[str, ...] = ("stripes",), backgrounds: tuple[str, ...] | None = None,
    blur: float = 0.0,
) -> list[dict]:
    """Caption + one image scored 1-5 by its quality (qualities are balanced); each image has one of ``flaws``;
    ``backgrounds`` restricts the scenes' backgrounds (e.g. ``LIT_BACKGROUNDS`` for shadows)."""
    rng = random.Random(f"{name}:{seed}")
    records = []
    for index in range(num_items):
        scene = random_scene(rng, backgrounds)
        quality = QUALITIES[index % len(QUALITIES)]
        image = render_quality_image(scene, quality, rng, size, pick_flaw(flaws, rng), blur)
        image = _save_image(image, data_dir, f"{name}/{index:05d}.png")
        records.append(
            {"id": f"{name}-{index:05d}", "prompt": scene.caption(), "image": image, "score": quality,
             "split": _split(index, num_items, held_out)}
        )
    return records


def make_quality_pairs(
    data_dir: Path, num_items: int, seed: int = 0, held_out: float = 0.2, size: int = 56, min_gap: int = 2,
    name: str = "quality_pairs", flaws: tuple[str, ...] = ("stripes",), backgrounds: tuple[str, ...] | None = None,
    blur: float = 0.0,
) -> list[dict]:
    """Caption + two renderings of its scene with the same one of ``flaws``; the higher quality wins.

    Train pairs appear in both orders (two records each); test pairs once, in a random order.
    """
    rng = random.Random(f"{name}:{seed}")
    options = [(a, b) for a in QUALITIES for b in QUALITIES if a - b >= min_gap]
    records = []
    for index in range(num_items):
        scene = random_scene(rng, backgrounds)
        better, worse = rng.choice(options)
        split = _split(index, num_items, held_out)
        flaw = pick_flaw(flaws, rng)
        images = [render_quality_image(scene, quality, rng, size, flaw, blur) for quality in (better, worse)]
        paths = [_save_image(image, data_dir, f"{name}/{index:05d}_{slot}.png") for slot, image in zip("ab", images)]
        orders = [(paths, 1), (paths[::-1], 2)] if split == "train" else [rng.choice([(paths, 1), (paths[::-1], 2)])]
        for images, winner in orders:
            records.append(
                {"id": f"{name}-{index:05d}-{winner}", "prompt": scene.caption(), "images": images,
                 "winner": winner, "split": split}
            )
    return records
