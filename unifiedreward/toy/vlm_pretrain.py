"""Pre-train a toy Qwen2.5-VL to *see* the shape's colour: the base policy and base judge of ``make demo``.

    python -m unifiedreward.toy.vlm_pretrain policy OUT_DIR
    python -m unifiedreward.toy.vlm_pretrain judge OUT_DIR

A real run starts from models that already see: the policy from a VLM such as Qwen2.5-VL-Instruct, the judge from
UnifiedReward-qwen-7b. The toy world's checkpoints are random, and a random toy VLM does not learn to check a stated
colour against the pixels from the demo's few hundred reward steps (docs/demo.md, ``benchmarks/toy_vlm_binding.py``).
This module gives the demo bases that do, on rendered toy scenes (56 px, the demo's judge resolution):

* ``policy``: SFT on "What colour is the shape?" -> "The shape is red.";
* ``judge``: the answer check, "Final Score: 100" for the right colour and "Final Score: 0" for a wrong one (half
  each), learnt through a curriculum: first with only the question and response lines of the point template
  (``short``) on one-colour images, then on a mix of those and scenes, then on scenes, and last in the full
  ``image_understanding.point_score.v1`` template the sift scores answers with. Straight in the template, or straight
  on scenes, a random toy VLM stays at chance.

Each phase is a run of the same loop (fresh AdamW, lr 3e-4, batch 8, the scene sampler reseeded), one CPU thread; the
result does not depend on the demo's seed, as a downloaded base model would not. The output is a checkpoint folder
plus ``pretrain.json`` (settings and the held-out top-1 over the six colours after each phase, chance 1/6); a second
call with the same settings reuses it.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from reward_core.prompts import get_template

from .data import QUESTIONS
from .qwen import QwenSize, build_qwen2_5_vl
from .scenes import COLOURS, Scene, random_scene, render_image
from .sft import answer_log_likelihood, encode
from .tokenization import train_qwen_tokenizer

logger = logging.getLogger(__name__)

COLOUR_QUESTION = QUESTIONS[0]  # "What colour is the shape?" -> "The shape is {colour}."
JUDGE_TEMPLATE = "image_understanding.point_score.v1"
IMAGE_SIZE = 56


@dataclass(frozen=True)
class Phase:
    """``steps`` of training on ``images`` ("solid", "mixed" or "scene") with ``prompt`` ("name" for the policy,
    "short" or "template" for the judge)."""

    images: str
    prompt: str
    steps: int


PHASES: dict[str, tuple[Phase, ...]] = {
    "policy": (Phase("scene", "name", 1000),),
    "judge": (Phase("solid", "short", 2000), Phase("mixed", "short", 1500), Phase("scene", "short", 1500),
              Phase("scene", "template", 600)),
}


@dataclass(frozen=True)
class Settings:
    role: str
    phases: tuple[Phase, ...]
    learning_rate: float = 3e-4
    batch_size: int = 8
    eval_images: int = 30
    seed: int = 0


class SceneImages:
    """Toy scenes drawn as PNGs into one folder (``encode`` reads rows' images from it)."""

    def __init__(self, folder: Path, size: int = IMAGE_SIZE):
        self.folder, self.size, self.count = folder, size, 0
        folder.mkdir(parents=True, exist_ok=True)

    def draw(self, rng: random.Random, kind: str) -> tuple[Scene, str]:
        """A random scene and its image's file name; ``solid`` fills the image with the shape's colour, ``mixed`` is
        solid or a scene at random."""
        if kind == "mixed":
            kind = rng.choice(("solid", "scene"))
        scene = random_scene(rng)
        image = (Image.new("RGB", (self.size, self.size), COLOURS[scene.colour]) if kind == "solid"
                 else render_image(scene, rng, size=self.size))
        name = f"{self.count:06d}.png"
        image.save(self.folder / name)
        self.count += 1
        return scene, name


def colour_row(prompt: str, image: str, claimed: str, right: bool) -> dict:
    """A training or scoring row about the colour question: the policy's answer (``name``), or the judge's verdict on
    an answer claiming ``claimed`` (``short`` or ``template``)."""
    answer = COLOUR_QUESTION.answer(Scene(colour=claimed, shape="circle"))
    if prompt == "name":
        return {"image": image, "question": COLOUR_QUESTION.text, "answer": answer}
    if prompt == "short":
        text = f"Question: [{COLOUR_QUESTION.text}]\nResponse: [{answer}]"
    else:
        text = get_template(JUDGE_TEMPLATE).render(question=COLOUR_QUESTION.text, response=answer)
    return {"image": image, "question": text, "answer": f"Final Score: {100 if right else 0}"}


def training_rows(images: SceneImages, rng: random.Random, kind: str, prompt: str, count: int) -> list[dict]:
    """``count`` fresh ``kind`` images and their rows: the right answer (policy), or a right or a wrong colour, half
    each, with its verdict (judge)."""
    rows = []
    for _ in range(count):
        scene, image = images.draw(rng, kind)
        right = prompt == "name" or rng.random() < 0.5
        claimed = scene.colour if right else rng.choice([c for c in COLOURS if c != scene.colour])
        rows.append(colour_row(prompt, image, claimed, right))
    return rows


def top1(model, processor, images: SceneImages, eval_set: list[tuple[Scene, str]], prompt: str) -> float:
    """Share of ``eval_set`` whose right colour is the likeliest answer (policy) or "Final Score: 100" (judge)."""
    import torch

    model.eval()
    hits = 0
    with torch.no_grad():
        for scene, image in eval_set:
            rows = [colour_row(prompt, image, colour, right=True) for colour in COLOURS]
            scores = answer_log_likelihood(model, encode(processor, rows, images.folder))
            hits += list(COLOURS)[int(scores.argmax())] == scene.colour
    model.train()
    return hits / len(eval_set)


def train_phase(model, processor, phase: Phase, settings: Settings, images: SceneImages,
                eval_set: list[tuple[Scene, str]]) -> dict:
    """One phase: fresh AdamW, reseeded sampler; returns its last loss, held-out top-1 and seconds."""
    import torch

    torch.manual_seed(settings.seed)
    rng = random.Random(f"train:{settings.seed}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    start, loss = time.perf_counter(), None
    for step in range(1, phase.steps + 1):
        rows = training_rows(images, rng, phase.images, phase.prompt, settings.batch_size)
        loss = model(**encode(processor, rows, images.folder)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0:
            logger.info("%s %s/%s: step %d/%d loss %.4f", settings.role, phase.images, phase.prompt, step,
                        phase.steps, loss.item())
    accuracy = top1(model, processor, images, eval_set, phase.prompt)
    logger.info("%s %s/%s done: held-out top-1 %.2f (chance %.2f)", settings.role, phase.images, phase.prompt,
                accuracy, 1 / len(COLOURS))
    return {**asdict(phase), "loss": None if loss is None else round(loss.item(), 4), "top1": accuracy,
            "seconds": round(time.perf_counter() - start, 1)}


def pretrain(out_dir: Path, settings: Settings, threads: int = 1) -> dict:
    """``out_dir``'s base for ``settings``: reused when it was built with them, else built now. Builders of one base
    take turns (a lock file beside it), so demos started together build it once."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report_path = out_dir / "pretrain.json"
        if report_path.exists():
            report = json.loads(report_path.read_text(encoding="utf-8"))
            if report.get("settings") == json.loads(json.dumps(asdict(settings))):
                logger.info("reusing %s (same settings)", out_dir)
                return report
        return build(out_dir, settings, threads)


def build(out_dir: Path, settings: Settings, threads: int = 1) -> dict:
    """Build a fresh toy Qwen2.5-VL (the toy world's size), train ``settings.phases``, save it to ``out_dir``."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="toy-vlm-") as tmp:
        initial = build_qwen2_5_vl(Path(tmp) / "initial", train_qwen_tokenizer(), seed=settings.seed, size=QwenSize())
        processor = AutoProcessor.from_pretrained(initial)
        model = AutoModelForImageTextToText.from_pretrained(initial, dtype=torch.float32).train()
        images = SceneImages(Path(tmp) / "images")
        eval_rng = random.Random(f"eval:{settings.seed}")
        eval_kinds = {phase.images: "scene" if phase.images == "mixed" else phase.images for phase in settings.phases}
        eval_sets = {kind: [images.draw(eval_rng, kind) for _ in range(settings.eval_images)]
                     for kind in dict.fromkeys(eval_kinds.values())}
        phases = [train_phase(model, processor, phase, settings, images, eval_sets[eval_kinds[phase.images]])
                  for phase in settings.phases]
        report = {"settings": json.loads(json.dumps(asdict(settings))), "phases": phases, "chance": 1 / len(COLOURS)}
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))  # renamed into place whole
    model.save_pretrained(staged)
    processor.save_pretrained(staged)
    (staged / "pretrain.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(staged, out_dir)
    return report


def scaled(phases: tuple[Phase, ...], scale: float) -> tuple[Phase, ...]:
    """``phases`` with their step counts multiplied by ``scale`` (at least one step each; tests run tiny ones)."""
    return tuple(Phase(p.images, p.prompt, max(1, round(p.steps * scale))) for p in phases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=sorted(PHASES))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every phase's steps (tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings(role=args.role, phases=scaled(PHASES[args.role], args.steps_scale), seed=args.seed)
    report = pretrain(args.out_dir, settings, args.threads)
    logger.info("%s base in %s: held-out top-1 by phase %s (chance %.2f)", args.role, args.out_dir,
                ", ".join(f"{p['images']}/{p['prompt']} {p['top1']:.2f}" for p in report["phases"]), report["chance"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
