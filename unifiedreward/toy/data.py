"""Synthetic, seed-deterministic reward data on toy scenes.

Every ``make_*`` function writes its media under ``data_dir`` and returns JSON-ready records whose
media paths are relative to ``data_dir``. Records carry ``split`` ("train" or "test"); the last
``held_out`` fraction of each file is "test".
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from reward_core.media import write_video

from .scenes import (
    IMAGE_ATTRIBUTES,
    VIDEO_ATTRIBUTES,
    Scene,
    article,
    matching_attributes,
    mutate,
    random_scene,
    render_image,
    render_video,
)

DEFAULT_MISMATCH_WEIGHTS = {"colour": 1.0}


@dataclass(frozen=True)
class Question:
    """An understanding question about some scene attributes and how a correct answer reads."""

    text: str
    attributes: tuple[str, ...]
    answer_format: str

    def answer(self, scene: Scene) -> str:
        a_colour = f"{article(scene.colour)} {scene.colour}"
        return self.answer_format.format(colour=scene.colour, shape=scene.shape, place=scene.place, a_colour=a_colour)


QUESTIONS: tuple[Question, ...] = (
    Question("What colour is the shape?", ("colour",), "The shape is {colour}."),
    Question("What shape is in the image?", ("shape",), "It is a {shape}."),
    Question("Where is the shape?", ("position",), "The shape is {place}."),
    Question("Describe the image.", IMAGE_ATTRIBUTES, "It is {a_colour} {shape} {place}."),
)


def _split(index: int, count: int, held_out: float) -> str:
    """The last ``held_out`` share of ``count`` items is "test" (at least one item once there are two)."""
    num_test = round(count * held_out)
    if held_out > 0 and count >= 2:
        num_test = max(1, num_test)
    return "test" if index >= count - num_test else "train"


def _records(name: str, seed: int, num_items: int, held_out: float, make_item: Callable) -> list[dict]:
    """``{"id", **fields, "split"}`` per item; ``make_item(rng, stem)`` draws one item's fields from the
    file's seeded ``rng`` and names its media after ``stem`` (``"{name}/{index:05d}"``)."""
    rng = random.Random(f"{name}:{seed}")
    return [
        {"id": f"{name}-{index:05d}", **make_item(rng, f"{name}/{index:05d}"),
         "split": _split(index, num_items, held_out)}
        for index in range(num_items)
    ]


def _ordered_pair(target: Scene, weights: dict[str, float], rng: random.Random) -> tuple[tuple[Scene, Scene], int]:
    """``target`` and a loser that gets one attribute (drawn by ``weights``) wrong, in a random order + the winner."""
    names = sorted(weights)
    mismatch = rng.choices(names, weights=[weights[name] for name in names])[0]
    loser = mutate(target, (mismatch,), rng)
    winner = rng.choice((1, 2))
    return ((target, loser) if winner == 1 else (loser, target)), winner


def _partly_wrong(target: Scene, attributes: tuple[str, ...], rng: random.Random) -> tuple[Scene, int]:
    """``target`` with a random subset of ``attributes`` changed, and how many of them still match."""
    wrong = tuple(rng.sample(attributes, rng.randint(0, len(attributes))))
    shown = mutate(target, wrong, rng)
    return shown, matching_attributes(shown, target, attributes)


def _point_score(matches: int, total: int, low: float, high: float) -> int:
    return round(low + (high - low) * matches / total)


def _save_image(image: Image.Image, data_dir: Path, relative: str) -> str:
    path = data_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return relative


def _save_video(frames: list[Image.Image], data_dir: Path, relative: str, fps: int) -> str:
    write_video(frames, data_dir / relative, fps=fps)
    return relative


def make_image_pairs(
    data_dir: Path,
    num_items: int,
    seed: int = 0,
    held_out: float = 0.2,
    mismatch_weights: dict[str, float] | None = None,
    noise: float = 0.04,
    size: int = 64,
    name: str = "image_pairs",
) -> list[dict]:
    """Caption + two images; the winner matches the caption, the loser differs in one attribute.

    ``mismatch_weights`` picks which attribute the loser gets wrong (colour only by default, the
    easiest signal); raise ``noise`` or add shape/position weights to make the task harder.
    """
    weights = mismatch_weights or DEFAULT_MISMATCH_WEIGHTS

    def item(rng: random.Random, stem: str) -> dict:
        target = random_scene(rng)
        scenes, winner = _ordered_pair(target, weights, rng)
        images = [
            _save_image(render_image(scene, rng, size, noise), data_dir, f"{stem}_{slot}.png")
            for slot, scene in enumerate(scenes, start=1)
        ]
        return {"prompt": target.caption(), "images": images, "winner": winner}

    return _records(name, seed, num_items, held_out, item)


def make_image_points(
    data_dir: Path, num_items: int, seed: int = 0, held_out: float = 0.2, noise: float = 0.04, size: int = 64,
    name: str = "image_points",
) -> list[dict]:
    """Caption + one image scored 1-5 by how many of colour/shape/position match the caption."""

    def item(rng: random.Random, stem: str) -> dict:
        target = random_scene(rng)
        shown, matches = _partly_wrong(target, IMAGE_ATTRIBUTES, rng)
        image = _save_image(render_image(shown, rng, size, noise), data_dir, f"{stem}.png")
        return {"prompt": target.caption(), "image": image, "score": _point_score(matches, len(IMAGE_ATTRIBUTES), 1, 5)}

    return _records(name, seed, num_items, held_out, item)


def make_video_pairs(
    data_dir: Path, num_items: int, seed: int = 0, held_out: float = 0.2,
    mismatch_weights: dict[str, float] | None = None, num_frames: int = 8, fps: int = 4, size: int = 64,
    name: str = "video_pairs",
) -> list[dict]:
    """Caption ("a red circle moving left") + two videos; the loser differs in one attribute."""
    weights = mismatch_weights or DEFAULT_MISMATCH_WEIGHTS

    def item(rng: random.Random, stem: str) -> dict:
        target = random_scene(rng)
        scenes, winner = _ordered_pair(target, weights, rng)
        videos = [
            _save_video(render_video(scene, rng, num_frames, size), data_dir, f"{stem}_{slot}.mp4", fps)
            for slot, scene in enumerate(scenes, start=1)
        ]
        return {"prompt": target.video_caption(), "videos": videos, "winner": winner}

    return _records(name, seed, num_items, held_out, item)


def make_video_points(
    data_dir: Path, num_items: int, seed: int = 0, held_out: float = 0.2, num_frames: int = 8, fps: int = 4,
    size: int = 64, name: str = "video_points",
) -> list[dict]:
    """Caption + one video scored 1-5 by how many of colour/shape/direction match."""

    def item(rng: random.Random, stem: str) -> dict:
        target = random_scene(rng)
        shown, matches = _partly_wrong(target, VIDEO_ATTRIBUTES, rng)
        video = _save_video(render_video(shown, rng, num_frames, size), data_dir, f"{stem}.mp4", fps)
        return {"prompt": target.video_caption(), "video": video,
                "score": _point_score(matches, len(VIDEO_ATTRIBUTES), 1, 5)}

    return _records(name, seed, num_items, held_out, item)


def make_und_pairs(
    data_dir: Path, num_items: int, seed: int = 0, held_out: float = 0.2, noise: float = 0.04, size: int = 64,
    name: str = "und_pairs", questions: tuple[Question, ...] = QUESTIONS,
) -> list[dict]:
    """Image + question + a correct and a wrong answer (the wrong one describes a mutated scene)."""

    def item(rng: random.Random, stem: str) -> dict:
        scene = random_scene(rng)
        question = rng.choice(questions)
        wrong = mutate(scene, (rng.choice(question.attributes),), rng)
        winner = rng.choice((1, 2))
        good, bad = question.answer(scene), question.answer(wrong)
        answer1, answer2 = (good, bad) if winner == 1 else (bad, good)
        image = _save_image(render_image(scene, rng, size, noise), data_dir, f"{stem}.png")
        return {"image": image, "question": question.text, "answer1": answer1, "answer2": answer2, "winner": winner}

    return _records(name, seed, num_items, held_out, item)


def make_und_points(
    data_dir: Path, num_items: int, seed: int = 0, held_out: float = 0.2, noise: float = 0.04, size: int = 64,
    name: str = "und_points", off_topic: float = 0.0, questions: tuple[Question, ...] = QUESTIONS,
) -> list[dict]:
    """Image + question + response scored 0-100 by the share of asked-about attributes it gets right.

    The response answers the question about a partly wrong scene or, for an ``off_topic`` share of the rows, answers
    another question (about the same partly wrong scene): an attribute it does not name counts as wrong. ``scene`` and
    ``asks`` are the ground truth the score was computed from.
    """

    def item(rng: random.Random, stem: str) -> dict:
        scene = random_scene(rng)
        question = rng.choice(questions)
        claimed, _ = _partly_wrong(scene, question.attributes, rng)
        image = _save_image(render_image(scene, rng, size, noise), data_dir, f"{stem}.png")
        answered = question
        if off_topic and rng.random() < off_topic:
            answered = rng.choice([other for other in QUESTIONS if other is not question])
        right = sum(getattr(claimed, name) == getattr(scene, name)
                    for name in question.attributes if name in answered.attributes)
        return {"image": image, "question": question.text, "response": answered.answer(claimed),
                "score": _point_score(right, len(question.attributes), 0, 100),
                "scene": {name: getattr(scene, name) for name in IMAGE_ATTRIBUTES}, "asks": list(question.attributes)}

    return _records(name, seed, num_items, held_out, item)


def make_gen_prompts(num_items: int, seed: int = 0, held_out: float = 0.2, name: str = "gen_prompts") -> list[dict]:
    """Captions for text-to-image generation (no media)."""
    return _records(name, seed, num_items, held_out, lambda rng, stem: {"prompt": random_scene(rng).caption()})


def make_und_prompts(
    data_dir: Path, num_items: int, seed: int = 0, held_out: float = 0.2, noise: float = 0.04, size: int = 64,
    name: str = "und_prompts", questions: tuple[Question, ...] = QUESTIONS,
) -> list[dict]:
    """Image + question for a policy VLM; ``answer`` is the reference answer; ``scene`` (colour, shape, position)
    and ``asks`` (the attributes the question is about) are the ground truth an answer is checked against."""

    def item(rng: random.Random, stem: str) -> dict:
        scene = random_scene(rng)
        question = rng.choice(questions)
        image = _save_image(render_image(scene, rng, size, noise), data_dir, f"{stem}.png")
        return {"image": image, "question": question.text, "answer": question.answer(scene),
                "scene": {name: getattr(scene, name) for name in IMAGE_ATTRIBUTES},
                "asks": list(question.attributes)}

    return _records(name, seed, num_items, held_out, item)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def default_counts(num_items: int) -> dict[str, int]:
    """Records per file for a world of ``num_items``: videos are ten times fewer (at least 2)."""
    videos = max(2, num_items // 10)
    return {
        "image_pairs": num_items, "image_points": num_items, "und_pairs": num_items, "und_points": num_items,
        "und_prompts": num_items, "gen_prompts": num_items, "video_pairs": videos, "video_points": videos,
    }


def build_data(data_dir: Path, seed: int = 0, counts: dict[str, int] | None = None) -> dict[str, Path]:
    """Write every toy JSONL file (and its media) into ``data_dir``; returns name -> JSONL path."""
    data_dir = Path(data_dir)
    counts = {**default_counts(100), **(counts or {})}
    makers = {
        "image_pairs": lambda n: make_image_pairs(data_dir, n, seed),
        "image_points": lambda n: make_image_points(data_dir, n, seed),
        "video_pairs": lambda n: make_video_pairs(data_dir, n, seed),
        "video_points": lambda n: make_video_points(data_dir, n, seed),
        "und_pairs": lambda n: make_und_pairs(data_dir, n, seed),
        "und_points": lambda n: make_und_points(data_dir, n, seed),
        "und_prompts": lambda n: make_und_prompts(data_dir, n, seed),
        "gen_prompts": lambda n: make_gen_prompts(n, seed),
    }
    return {name: write_jsonl(data_dir / f"{name}.jsonl", make(counts[name])) for name, make in makers.items()}
