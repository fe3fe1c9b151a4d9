"""Vision tokens per media item: LLaMA-Factory training (a recipe's pixel/fps settings) vs reward_core inference.

Run in the LLaMA-Factory env to see what a recipe trains on::

    .venv-llamafactory/bin/python -m integrations.llamafactory.vision_tokens \
        --recipe integrations/llamafactory/recipes/qwen2_5vl_full_sft.yaml --model CodeGoat24/UnifiedReward-qwen-7b \
        --image a.png --video clip.mp4

and :func:`inference_grids` in the main env for what the judge sees at inference; equal grids
mean equal vision tokens. Prints ``{"images": [[t, h, w], ...], "videos": [...], "tokens": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

# ModelArguments keys of a recipe that decide how media become vision tokens.
MEDIA_KEYS = ("image_max_pixels", "image_min_pixels", "video_max_pixels", "video_min_pixels", "video_fps",
              "video_maxlen")


def training_grids(recipe: dict[str, Any], model: str, images: list[str], videos: list[str | list[str]]) -> dict:
    """Grids LLaMA-Factory's multimodal plugin builds for ``recipe`` (the training side; LLaMA-Factory env)."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from llamafactory.model import load_tokenizer

    model_args = ModelArguments(model_name_or_path=model, trust_remote_code=False,
                                **{key: recipe[key] for key in MEDIA_KEYS if key in recipe})
    modules = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(modules["tokenizer"], DataArguments(template=recipe["template"]))
    inputs = template.mm_plugin._get_mm_inputs(images, videos, [], modules["processor"])
    return _grids(inputs, modules["processor"])


def inference_grids(model: str, images: list[str], videos: list[str]) -> dict:
    """Grids reward_core's transformers backend builds for the same media (the inference side; main env)."""
    from transformers import AutoProcessor

    from reward_core.backends.transformers_backend import vision_inputs
    from reward_core.media import VideoSpec, build_messages, load_image

    processor = AutoProcessor.from_pretrained(model)
    media = [load_image(path) for path in images] + [VideoSpec(path) for path in videos]
    kwargs = vision_inputs(build_messages(media, "x"), processor)
    text = processor.apply_chat_template(build_messages(media, "x"), tokenize=False, add_generation_prompt=True)
    return _grids(processor(text=[text], return_tensors="pt", **kwargs), processor)


def _grids(inputs: Any, processor: Any) -> dict:
    merge = getattr(processor.image_processor, "merge_size", 2) ** 2
    grids = {kind: [] if inputs.get(f"{kind}_grid_thw") is None else inputs[f"{kind}_grid_thw"].tolist()
             for kind in ("image", "video")}
    return {"images": grids["image"], "videos": grids["video"],
            "tokens": {kind: [t * h * w // merge for t, h, w in grid] for kind, grid in grids.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True, help="recipe YAML (its pixel/fps keys and template are used)")
    parser.add_argument("--model", required=True, help="model folder or id (its processor)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    parser.add_argument("--image", action="append", default=[])
    parser.add_argument("--video", action="append", default=[], help="a video file")
    args = parser.parse_args(argv)
    with open(args.recipe, encoding="utf-8") as handle:
        recipe = yaml.safe_load(handle)
    for item in args.set:
        key, _, value = item.partition("=")
        recipe[key] = yaml.safe_load(value)
    print(json.dumps(training_grids(recipe, args.model, args.image, args.video)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
