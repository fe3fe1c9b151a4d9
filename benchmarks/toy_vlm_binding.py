"""Can a toy Qwen2.5-VL trained from random weights *name* the shape's colour, and *verify* a claimed one?

    python benchmarks/toy_vlm_binding.py --task name --steps 1000 --json bench-out/name.json
    python benchmarks/toy_vlm_binding.py --task verify --steps 2000 --json bench-out/verify.json

Why it exists: ``make demo``'s understanding stage can only make answers more *correct* if the judge scores a
right colour above a wrong one for the same image, i.e. binds the answer's words to the pixels (issue 28).
This trains a toy checkpoint (fresh from ``unifiedreward.toy.qwen`` at the flags' sizes, or ``--base``) on
rendered toy scenes and prints held-out top-1 accuracy over the six colours (chance 1/6) as training goes:

* ``name``: SFT on "What colour is the shape?" -> "The shape is red." (what a policy has to learn);
  top-1 = the right colour's answer is the likeliest of the six.
* ``verify``: SFT on the sift's answer-quality prompt (``image_understanding.point_score.v1``) with a right
  (``Final Score: 100``) or a wrong (``Final Score: 0``) colour, half each (what the judge has to learn);
  top-1 = the right colour's response gets the likeliest ``Final Score: 100``.

``--image solid`` fills the whole image with the shape's colour (the easiest possible scene);
``--solid-steps N`` trains the first N steps on solid images and the rest on scenes, evaluating on scenes
throughout; ``--prompt short`` keeps only the template's last two lines ("Question: [...]", "Response: [...]");
``--base`` / ``--save`` chain runs into a curriculum (``unifiedreward.toy.vlm_pretrain`` builds the demo's base judge
with one, at the toy world's size and 56 px):

    python benchmarks/toy_vlm_binding.py --task verify --num-layers 2 --prompt short --image solid --steps 2000 --save a
    python benchmarks/toy_vlm_binding.py --task verify --prompt short --base a --steps 1200 --save b
    python benchmarks/toy_vlm_binding.py --task verify --base b --steps 600

``--steps 0`` only evaluates ``--base``, e.g. whether the demo's trained judge still checks colours:

    python benchmarks/toy_vlm_binding.py --task verify --base demo-work/reward-trained --image-size 56 --steps 0

Prompts and loss masking are the demo's (``reward_core.media.build_messages``, the chat template, answer tokens only).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from unifiedreward.toy.qwen import QwenSize, build_qwen2_5_vl  # noqa: E402
from unifiedreward.toy.scenes import COLOURS  # noqa: E402
from unifiedreward.toy.sft import encode  # noqa: E402
from unifiedreward.toy.tokenization import train_qwen_tokenizer  # noqa: E402
from unifiedreward.toy.vlm_pretrain import SceneImages, top1, training_rows  # noqa: E402

logger = logging.getLogger("toy_vlm_binding")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("name", "verify"), required=True)
    parser.add_argument("--image", choices=("scene", "solid", "mixed"), default="scene",
                        help="training images (mixed: solid or scene at random; evaluated on scenes)")
    parser.add_argument("--prompt", choices=("template", "short"), default="template",
                        help="verify: the whole point template, or only its Question / Response lines")
    parser.add_argument("--base", type=Path, help="start from this checkpoint instead of fresh random weights")
    parser.add_argument("--save", type=Path, help="save the trained checkpoint here")
    parser.add_argument("--image-size", type=int, default=112, help="pixels a side (the processor makes 28 px tokens)")
    parser.add_argument("--hidden-size", type=int, default=128, help="sizes of a fresh checkpoint (without --base)")
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--vision-hidden-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000, help="0: only evaluate (--base)")
    parser.add_argument("--solid-steps", type=int, default=0, help="train the first N steps on solid images")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--evals", type=int, default=5, help="evaluations spread over the run")
    parser.add_argument("--eval-images", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the settings and the accuracy curve here")
    return parser.parse_args(argv)


def row_kind(args: argparse.Namespace) -> str:
    """``colour_row``'s prompt kind for these flags: the policy's answer, or the judge's verdict in either prompt."""
    return "name" if args.task == "name" else args.prompt


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="toy-binding-") as tmp:
        size = QwenSize(hidden_size=args.hidden_size, num_layers=args.num_layers,
                        intermediate_size=2 * args.hidden_size, vision_hidden_size=args.vision_hidden_size,
                        vision_intermediate_size=2 * args.vision_hidden_size)
        checkpoint = args.base or build_qwen2_5_vl(Path(tmp) / "model", train_qwen_tokenizer(), seed=args.seed,
                                                   size=size)
        processor = AutoProcessor.from_pretrained(checkpoint)
        model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32).train()
        images = SceneImages(Path(tmp) / "images", args.image_size)
        eval_rng, rng = random.Random(f"eval:{args.seed}"), random.Random(f"train:{args.seed}")
        eval_set = [images.draw(eval_rng, "scene" if args.image == "mixed" else args.image)
                    for _ in range(args.eval_images)]
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
        curve, start, every = [], time.perf_counter(), max(1, args.steps // args.evals)
        if args.steps == 0:  # evaluate --base as it is (e.g. the demo's trained judge)
            curve.append({"step": 0, "loss": None, "seconds": 0.0,
                          "top1": top1(model, processor, images, eval_set, row_kind(args))})
        for step in range(1, args.steps + 1):
            kind = "solid" if step <= args.solid_steps else args.image
            rows = training_rows(images, rng, kind, row_kind(args), args.batch_size)
            loss = model(**encode(processor, rows, images.folder)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step % every == 0 or step == args.steps:
                accuracy = top1(model, processor, images, eval_set, row_kind(args))
                curve.append({"step": step, "loss": round(loss.item(), 4), "top1": accuracy,
                              "seconds": round(time.perf_counter() - start, 1)})
                logger.info("step %d/%d loss %.4f top-1 %.2f (chance %.2f)", step, args.steps, loss.item(), accuracy,
                            1 / len(COLOURS))
        if args.save:
            model.save_pretrained(args.save)
            processor.save_pretrained(args.save)
    result = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "chance": 1 / len(COLOURS), "curve": curve}
    model_text = f"from {args.base}" if args.base else f"hidden {args.hidden_size} x {args.num_layers} layers"
    curriculum = f"{args.solid_steps} solid steps, then " if args.solid_steps else ""
    print(f"{args.task} ({model_text}, {args.prompt} prompt, {curriculum}{args.image} {args.image_size}px, "
          f"lr {args.learning_rate}, batch {args.batch_size}): top-1 by step "
          + ", ".join(f"{c['step']}: {c['top1']:.2f}" for c in curve) + f" (chance {1 / len(COLOURS):.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
