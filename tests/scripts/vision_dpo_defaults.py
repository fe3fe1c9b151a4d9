"""One DPO step through ``vision_dpo_trainer_class()`` with the model given as a path and ``DPOConfig``'s defaults
(``remove_unused_columns=True``, ``max_prompt_length``, ``truncation_mode``) except ``max_length=100``, in either env.

    python tests/scripts/vision_dpo_defaults.py TOY_WORLD_DIR OUT_DIR

The toy processor turns each image into 64 image tokens (a real checkpoint's 1024x1024 image gives ~1300, more than
the default ``max_length=1024``), so the prompt is ~90 tokens and ``max_length=100`` must cut the (long) chosen
answer, not the prompt: truncation that reaches the image tokens breaks the forward pass ("Image features and image
tokens do not match"). Also collates with ``max_length=48``, shorter than the prompt. Prints ``RESULT {json}``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import integrations.trl  # noqa: F401  (trl<0.29 import-guard fix, before `import trl`)


def main(world: str, out: str) -> None:
    import numpy as np
    from datasets import Dataset, Image, Sequence
    from PIL import Image as PILImage
    from trl import DPOConfig

    from integrations.trl.collator import vision_dpo_trainer_class, vision_preference_collator

    manifest = json.loads((Path(world) / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    paths = []
    for index in range(2):
        path = Path(out) / f"big{index}.png"
        PILImage.fromarray(rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    long_answer = " ".join(["The shape is red and round."] * 40)
    rows = [{"images": [path], "prompt": [{"role": "user", "content": "What colour is the shape?"}],
             "chosen": [{"role": "assistant", "content": long_answer}],
             "rejected": [{"role": "assistant", "content": "Blue."}]} for path in paths]
    dataset = Dataset.from_list(rows).cast_column("images", Sequence(Image()))
    config = DPOConfig(output_dir=str(Path(out) / "dpo"), max_steps=1, per_device_train_batch_size=2, report_to=[],
                       bf16=False, use_cpu=True, save_strategy="no", logging_steps=1, gradient_checkpointing=False,
                       max_length=100)
    trainer = vision_dpo_trainer_class()(model=manifest["policy_model"], args=config, train_dataset=dataset)
    image_token = trainer.model.config.image_token_id
    merge = trainer.processing_class.image_processor.merge_size ** 2

    def shape(batch):
        ids = batch["input_ids"] if "input_ids" in batch else batch["prompt_input_ids"]
        length = ids.shape[1] + (batch["chosen_input_ids"].shape[1] if "chosen_input_ids" in batch else 0)
        return {"image_tokens": int((ids[0] == image_token).sum()), "length": int(length),
                "expected_image_tokens": int(batch["image_grid_thw"][0].prod()) // merge}

    collated = shape(trainer.data_collator([dataset[0], dataset[1]]))
    short = vision_preference_collator(trainer.processing_class, max_length=48)
    collated_short = shape(short([dataset[0], dataset[1]]))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print("RESULT " + json.dumps({"collated": collated, "collated_48": collated_short, "losses": losses,
                                  "finite": bool(losses) and all(math.isfinite(x) for x in losses)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
