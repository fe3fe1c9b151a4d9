"""Toy scenes: one coloured shape on a background, as specs, captions and pixels."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 180),
    "orange": (240, 140, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
POSITIONS: tuple[str, ...] = ("left", "center", "right")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "black": (20, 20, 20),
    "beige": (225, 210, 180),
}
IMAGE_ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "position")
VIDEO_ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "direction")
_CHOICES = {"colour": tuple(COLOURS), "shape": SHAPES, "position": POSITIONS, "direction": DIRECTIONS}


@dataclass(frozen=True)
class Scene:
    """One shape; `position` is used by images, `direction` by videos."""

    colour: str
    shape: str
    position: str = "center"
    direction: str = "right"
    background: str = "white"

    @property
    def place(self) -> str:
        return "in the center" if self.position == "center" else f"on the {self.position}"

    def caption(self) -> str:
        return f"{article(self.colour)} {self.colour} {self.shape} {self.place}"

    def video_caption(self) -> str:
        return f"{article(self.colour)} {self.colour} {self.shape} moving {self.direction}"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def random_scene(rng: random.Random, backgrounds: tuple[str, ...] | None = None) -> Scene:
    """A random scene; ``backgrounds`` restricts the background (default: any of ``BACKGROUNDS``)."""
    return Scene(
        colour=rng.choice(tuple(COLOURS)),
        shape=rng.choice(SHAPES),
        position=rng.choice(POSITIONS),
        direction=rng.choice(DIRECTIONS),
        background=rng.choice(backgrounds or tuple(BACKGROUNDS)),
    )


def mutate(scene: Scene, attributes: tuple[str, ...], rng: random.Random) -> Scene:
    """Return `scene` with every attribute in `attributes` changed to a different value."""
    changes = {}
    for name in attributes:
        current = getattr(scene, name)
        changes[name] = rng.choice([value for value in _CHOICES[name] if value != current])
    return replace(scene, **changes)


def matching_attributes(scene: Scene, target: Scene, attributes: tuple[str, ...]) -> int:
    return sum(getattr(scene, name) == getattr(target, name) for name in attributes)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, fill) -> None:
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _add_noise(image: Image.Image, noise: float, rng: random.Random) -> Image.Image:
    if noise <= 0:
        return image
    pixels = np.asarray(image, dtype=np.float32)
    generator = np.random.default_rng(rng.getrandbits(32))
    pixels = pixels + generator.normal(0.0, noise * 255.0, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _frame(scene: Scene, size: int, cx: float, cy: float, radius: float, noise: float, rng) -> Image.Image:
    image = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
    _draw_shape(ImageDraw.Draw(image), scene.shape, cx, cy, radius, COLOURS[scene.colour])
    return _add_noise(image, noise, rng)


def render_image(scene: Scene, rng: random.Random, size: int = 64, noise: float = 0.04) -> Image.Image:
    """Draw the scene; the shape's size and height jitter with `rng`."""
    radius = size * rng.uniform(0.14, 0.2)
    column = {"left": 0.22, "center": 0.5, "right": 0.78}[scene.position]
    cx = size * column + rng.uniform(-0.04, 0.04) * size
    cy = size * rng.uniform(0.35, 0.65)
    return _frame(scene, size, cx, cy, radius, noise, rng)


def render_video(
    scene: Scene, rng: random.Random, num_frames: int = 8, size: int = 64, noise: float = 0.03
) -> list[Image.Image]:
    """Frames of the shape travelling across the canvas in `scene.direction`."""
    radius = size * rng.uniform(0.12, 0.17)
    start, end = 0.22 * size, 0.78 * size
    across = size * rng.uniform(0.4, 0.6)
    frames = []
    for index in range(num_frames):
        t = index / max(num_frames - 1, 1)
        travel = start + (end - start) * t
        cx, cy = {
            "right": (travel, across),
            "left": (size - travel, across),
            "down": (across, travel),
            "up": (across, size - travel),
        }[scene.direction]
        frames.append(_frame(scene, size, cx, cy, radius, noise, rng))
    return frames
