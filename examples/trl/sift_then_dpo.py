"""Sift DPO pairs with UnifiedReward, then train the policy on them with TRL's DPOTrainer.

    # 1. candidates from the policy, pair-rank + point-sift by the judge (resumable; shards under accelerate)
    # 2. DPOTrainer on the kept pairs (Qwen2.5-VL batches built correctly on TRL 0.24 and 1.x)
    python examples/trl/sift_then_dpo.py \
        --policy Qwen/Qwen2.5-VL-7B-Instruct --reward-model CodeGoat24/UnifiedReward-qwen-7b \
        --prompts prompts.jsonl --output-dir runs/sift-dpo --num-candidates 10 --max-steps 1000

``prompts.jsonl`` rows: ``{"id", "question", "image"}`` (paths relative to the file). On the offline toy
world (CPU, seconds): ``--toy-world DIR`` fills in the toy policy, judge and prompts, with the judge in
logit mode (a random toy judge writes no parseable verdict text). ``--pairs pairs.jsonl`` skips the sift
and trains on existing pairs (e.g. under the LLaMA-Factory env's TRL 0.24). The trained policy and its
processor are saved to ``OUTPUT_DIR/dpo``, the losses to ``OUTPUT_DIR/dpo_report.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import integrations.trl  # noqa: F401  (trl<0.29 import-guard fix, before `import trl`)
from _common import apply_toy_world, run_settings

logger = logging.getLogger("sift_then_dpo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toy-world", help="toy world folder (built by `unifiedreward toy build`)")
    parser.add_argument("--policy", help="policy checkpoint to sample candidates from and to train")
    parser.add_argument("--reward-model", help="UnifiedReward checkpoint (or use --reward-server)")
    parser.add_argument("--reward-server", help="OpenAI-compatible URL serving UnifiedReward")
    parser.add_argument("--prompts", help="JSONL of {id, question, image}")
    parser.add_argument("--pairs", help="train on this pairs.jsonl instead of sifting")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--num-prompts", type=int, default=None, help="use the first N prompts")
    parser.add_argument("--num-candidates", type=int, default=10)
    parser.add_argument("--candidate-tokens", type=int, default=256)
    parser.add_argument("--mode", choices=["generate", "logit"], default=None, help="judge mode (toy: logit)")
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--num-train-epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=5e-7)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--sft-weight", type=float, default=0.0,
                        help="add TRL's 'sft' loss on the chosen answers with this weight (RPO); 0 = plain DPO")
    parser.add_argument("--use-cpu", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    apply_toy_world(args)
    if not args.policy or not (args.pairs or args.prompts):
        parser.error("give --policy and --prompts (or --pairs), or --toy-world")
    return args


def sift(args: argparse.Namespace) -> Path:
    """Runs ``unifiedreward sift`` (the same code as the console command) into ``output_dir/sift``."""
    from unifiedreward.cli.sift import main as sift_main

    prompts = Path(args.prompts)
    if args.num_prompts:
        rows = [line for line in prompts.read_text().splitlines() if line.strip()][: args.num_prompts]
        subset = Path(args.output_dir) / "prompts.jsonl"
        subset.parent.mkdir(parents=True, exist_ok=True)
        subset.write_text("\n".join(rows) + "\n")
        media_dir, prompts = prompts.parent, subset
    else:
        media_dir = prompts.parent
    out = Path(args.output_dir) / "sift"
    reward = ["--reward-server", args.reward_server] if args.reward_server else ["--reward-model", args.reward_model]
    sift_main(
        ["--input", str(prompts), "--media-dir", str(media_dir), "--output-dir", str(out), *reward,
         "--policy", args.policy, "--num-candidates", str(args.num_candidates),
         "--max-new-tokens", str(args.candidate_tokens), "--mode", args.mode or "generate",
         "--seed", str(args.seed), "--no-progress"]
        + (["--device", "cpu"] if args.use_cpu else [])
    )
    return out / "pairs.jsonl"


def train(args: argparse.Namespace, pairs: Path) -> dict:
    from trl import DPOConfig

    from integrations.trl.dpo import load_preference_pairs, vision_dpo_trainer

    try:
        dataset = load_preference_pairs(pairs)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    loss = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, args.sft_weight]} if args.sft_weight else {}
    config = DPOConfig(
        output_dir=str(Path(args.output_dir) / "dpo"),
        max_steps=args.max_steps,
        num_train_epochs=args.num_train_epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        beta=args.beta,
        **loss,
        max_length=None,  # never cut image tokens
        remove_unused_columns=False,
        gradient_checkpointing=False,
        **run_settings(args),
        seed=args.seed,
    )
    trainer = vision_dpo_trainer(args.policy, config, dataset)
    result = trainer.train()
    trainer.save_model(config.output_dir)
    trainer.processing_class.save_pretrained(config.output_dir)
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    report = {"pairs": len(dataset), "steps": trainer.state.global_step, "losses": losses,
              "reward_accuracies": [entry["rewards/accuracies"] for entry in history if "rewards/accuracies" in entry],
              "train_loss": result.training_loss, "finite": all(math.isfinite(x) for x in losses),
              "model_dir": config.output_dir, "log_history": history}
    (Path(args.output_dir) / "dpo_report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    pairs = Path(args.pairs) if args.pairs else sift(args)
    report = train(args, pairs)
    logger.info("DPO on %d pairs: %d steps, losses %s", report["pairs"], report["steps"], report["losses"])


if __name__ == "__main__":
    main()
