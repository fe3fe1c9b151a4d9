"""GRPO a vision-language policy with UnifiedReward rewards (pointwise score + group win rate).

    accelerate launch examples/trl/grpo_unifiedreward.py \
        --policy Qwen/Qwen2.5-VL-3B-Instruct --reward-model CodeGoat24/UnifiedReward-qwen-7b \
        --prompts prompts.jsonl --output-dir runs/grpo --num-generations 8 --max-completion-length 512

``prompts.jsonl`` rows: ``{"question", "image"}`` (paths relative to the file). With a served judge use
``--reward-server http://localhost:8080/v1``. ``--toy-world DIR`` runs the offline toy policy and judge on
CPU (judge in logit mode). The same rewards work from TRL's CLI with no code:
``UNIFIEDREWARD_MODEL=... trl grpo --reward_funcs integrations.trl.rewards.pointwise_reward ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import integrations.trl  # noqa: F401  (trl<0.29 import-guard fix, before `import trl`)
from _common import apply_toy_world, load_reward_judge, read_jsonl, run_settings

logger = logging.getLogger("grpo_unifiedreward")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toy-world", help="toy world folder (built by `unifiedreward toy build`)")
    parser.add_argument("--policy")
    parser.add_argument("--reward-model")
    parser.add_argument("--reward-server")
    parser.add_argument("--prompts")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--num-prompts", type=int, default=None)
    parser.add_argument("--mode", choices=["generate", "logit"], default=None, help="judge mode (toy: logit)")
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-pairs", type=int, default=None, help="comparisons per group for the win rate")
    parser.add_argument("--pairing", choices=["round_robin", "pref_grpo", "sparse"], default=None,
                        help="win-rate pairs (default by mode: logit -> sparse, generate -> round_robin, both orders)")
    parser.add_argument("--k", type=int, default=4, help="opponents per completion with --pairing sparse")
    parser.add_argument("--max-completion-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=None, help="per device; default = num_generations")
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--learning-rate", type=float, default=1e-6)
    parser.add_argument("--use-cpu", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    apply_toy_world(args)
    if not (args.policy and args.prompts and (args.reward_model or args.reward_server)):
        parser.error("give --policy, --prompts and --reward-model/--reward-server, or --toy-world")
    return args


def load_prompts(path: Path, limit: int | None):
    """Conversational prompts with an ``image`` column, the layout TRL's VLM GRPO expects."""
    from datasets import Dataset, Image

    rows = read_jsonl(path)[:limit]
    records = [
        {"prompt": [{"role": "user", "content": row["question"]}], "image": str(path.parent / row["image"])}
        for row in rows
    ]
    return Dataset.from_list(records).cast_column("image", Image())


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from trl import GRPOConfig, GRPOTrainer

    from integrations.trl.rewards import get_pointwise_reward, get_winrate_reward

    judge = load_reward_judge(args)
    mode = args.mode or "generate"
    reward_funcs = [  # groups span processes under accelerate launch; a failed judgement gets its group's mean
        get_pointwise_reward(judge, mode=mode, name="unifiedreward_point"),
        get_winrate_reward(judge, mode=mode, max_pairs=args.max_pairs, pairing=args.pairing, k=args.k,
                           name="unifiedreward_winrate"),
    ]
    config = GRPOConfig(
        output_dir=args.output_dir,
        num_generations=args.num_generations,
        per_device_train_batch_size=args.batch_size or args.num_generations,
        max_completion_length=args.max_completion_length,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        **run_settings(args),
        seed=args.seed,
    )
    trainer = GRPOTrainer(
        model=args.policy,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=load_prompts(Path(args.prompts), args.num_prompts),
    )
    trainer.train()
    report = {
        "log_history": trainer.state.log_history,
        "failed": {f.__name__: f.failed for f in reward_funcs},
        "imputed": {f.__name__: f.imputed for f in reward_funcs},
        "judged": {f.__name__: f.items for f in reward_funcs},
    }
    (Path(args.output_dir) / "grpo_report.json").write_text(json.dumps(report, indent=2, default=str))
    logger.info("GRPO done: %d steps; reward items judged %s", trainer.state.global_step, report["judged"])


if __name__ == "__main__":
    main()
