"""The calls TRL 0.24's ``examples/scripts/dpo_vlm.py`` makes, with ``vision_dpo_trainer_class()`` for ``DPOTrainer``.

TRL's examples are not in its wheel, so this replays the script's data and trainer calls (v0.24.0): the dataset
by path with ``load_dataset(dataset_name, name=None, streaming=False)`` and its ``train`` split, a policy and a
reference ``AutoModelForImageTextToText``, and ``DPOTrainer(model, ref_model, args=..., train_dataset=...,
eval_dataset=None, peft_config=None)`` with ``ref_model`` positional. One step on the toy policy, CPU.

    python tests/scripts/dpo_vlm_calls.py DATASET_DIR POLICY_DIR OUT_DIR   # prints RESULT {json}
"""

from __future__ import annotations

import json
import math
import sys

import integrations.trl  # noqa: F401  (trl<0.29 import-guard fix, before `import trl`)


def main(dataset_name: str, policy: str, out: str) -> None:
    from datasets import load_dataset
    from transformers import AutoModelForImageTextToText
    from trl import DPOConfig

    from integrations.trl.collator import vision_dpo_trainer_class

    model = AutoModelForImageTextToText.from_pretrained(policy, dtype="auto")
    ref_model = AutoModelForImageTextToText.from_pretrained(policy, dtype="auto")
    dataset = load_dataset(dataset_name, name=None, streaming=False)
    args = DPOConfig(output_dir=out, max_steps=1, per_device_train_batch_size=2, logging_steps=1, report_to=[],
                     bf16=False, use_cpu=True, save_strategy="no", gradient_checkpointing=False)
    trainer = vision_dpo_trainer_class()(
        model,
        ref_model,
        args=args,
        train_dataset=dataset["train"],
        eval_dataset=None,
        peft_config=None,
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print("RESULT " + json.dumps({"rows": len(dataset["train"]), "ref_model_is_given": trainer.ref_model is ref_model,
                                  "losses": losses, "finite": bool(losses) and all(math.isfinite(x) for x in losses)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
