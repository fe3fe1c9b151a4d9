"""TRL ``DPOTrainer`` on sifted pairs (``unifiedreward sift`` -> ``pairs.jsonl``), saving the aligned policy.

    python examples/demo_stages/policy_dpo.py --policy POLICY --pairs sift/pairs.jsonl --output-dir aligned

Same trainer (``integrations.trl.dpo``) and config as ``examples/trl/sift_then_dpo.py --pairs``; in addition
the trained model and its processor are saved to ``--output-dir`` and the per-step losses to ``dpo_report.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import integrations.trl  # noqa: F401  (trl<0.29 import-guard fix, before `import trl`)

logger = logging.getLogger("policy_dpo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", required=True, help="policy checkpoint to train")
    parser.add_argument("--pairs", required=True, help="TRL preference rows (images, prompt, chosen, rejected)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--num-train-epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=5e-7)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--use-cpu", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from trl import DPOConfig

    from integrations.trl.dpo import load_preference_pairs, vision_dpo_trainer

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    try:
        dataset = load_preference_pairs(args.pairs)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    config = DPOConfig(
        output_dir=str(output_dir),
        max_steps=args.max_steps,
        num_train_epochs=args.num_train_epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        beta=args.beta,
        max_length=None,  # never cut image tokens
        remove_unused_columns=False,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=False,
        use_cpu=args.use_cpu,
        seed=args.seed,
    )
    trainer = vision_dpo_trainer(args.policy, config, dataset)
    result = trainer.train()
    trainer.save_model(str(output_dir))
    trainer.processing_class.save_pretrained(str(output_dir))
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    report = {
        "pairs": len(dataset),
        "steps": trainer.state.global_step,
        "losses": losses,
        "reward_accuracies": [entry["rewards/accuracies"] for entry in history if "rewards/accuracies" in entry],
        "train_loss": result.training_loss,
        "finite": all(math.isfinite(x) for x in losses),
    }
    (output_dir / "dpo_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    logger.info("DPO on %d pairs: %d steps, final loss %s", report["pairs"], report["steps"], losses[-1:])
    return 0 if report["finite"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
