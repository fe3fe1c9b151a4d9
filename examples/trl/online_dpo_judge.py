"""UnifiedReward as the judge of TRL 0.24's OnlineDPOTrainer (TRL < 1.1 only: judges were removed in 1.1).

    python examples/trl/online_dpo_judge.py --policy Qwen/Qwen2.5-VL-3B-Instruct \
        --reward-model CodeGoat24/UnifiedReward-qwen-7b --prompts prompts.jsonl --output-dir runs/online-dpo

TRL 0.24 hands judges the rendered prompt text and the two completions, never the image column, and
its judge path cannot render VLM chat prompts. So the policy gets text-only prompts here, and the
judge finds each prompt's image through a prompt->media lookup built from the dataset. If the policy
must see the image, use GRPO/RLOO with the reward functions (examples/trl/grpo_unifiedreward.py).
``--toy-world DIR`` runs the offline toy policy and judge on CPU (judge in logit mode).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import integrations.trl  # noqa: F401  (trl<0.29 import-guard fix, before `import trl`)
from _common import apply_toy_world, load_reward_judge, read_jsonl, run_settings

logger = logging.getLogger("online_dpo_judge")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toy-world")
    parser.add_argument("--policy")
    parser.add_argument("--reward-model")
    parser.add_argument("--reward-server")
    parser.add_argument("--prompts", help="JSONL of {question, image}")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--num-prompts", type=int, default=None)
    parser.add_argument("--mode", choices=["generate", "logit"], default=None)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--use-cpu", action="store_true")
    args = parser.parse_args(argv)
    apply_toy_world(args)
    if not (args.policy and args.prompts and (args.reward_model or args.reward_server)):
        parser.error("give --policy, --prompts and --reward-model/--reward-server, or --toy-world")
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoTokenizer
    from trl import OnlineDPOConfig, OnlineDPOTrainer

    from integrations.trl._compat import ensure_nested_gather, ensure_warnings_issued
    from integrations.trl.judge import PromptMediaLookup, UnifiedRewardPairwiseJudge

    path = Path(args.prompts)
    rows = read_jsonl(path)
    unique = {}  # the judge finds media by prompt text, so keep one image per question
    for row in rows:
        unique.setdefault(row["question"], row)
    rows = list(unique.values())[: args.num_prompts]
    lookup = PromptMediaLookup.from_rows(
        {"prompt": row["question"], "image": str(path.parent / row["image"])} for row in rows
    )
    judge = UnifiedRewardPairwiseJudge(
        load_reward_judge(args),
        mode=args.mode or "generate",
        media_lookup=lookup,
        seed=0,
    )
    calls = []
    judge_fn = judge.judge

    def counted_judge(prompts, completions, shuffle_order=True, **kwargs):
        ranks = judge_fn(prompts, completions, shuffle_order, **kwargs)
        calls.append(ranks)
        return ranks

    judge.judge = counted_judge
    tokenizer = AutoTokenizer.from_pretrained(args.policy)
    model = ensure_warnings_issued(AutoModelForImageTextToText.from_pretrained(args.policy))
    config = OnlineDPOConfig(
        output_dir=args.output_dir,
        per_device_train_batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        max_steps=args.max_steps,
        **run_settings(args),
    )
    dataset = Dataset.from_list([{"prompt": row["question"]} for row in rows])
    trainer = OnlineDPOTrainer(model=model, judge=judge, args=config, train_dataset=dataset, processing_class=tokenizer)
    ensure_nested_gather(trainer).train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    report = {"judge_calls": calls, "losses": losses, "finite": all(math.isfinite(x) for x in losses),
              "lookup_size": len(lookup)}
    (Path(args.output_dir) / "online_dpo_report.json").write_text(json.dumps(report, indent=2))
    logger.info("OnlineDPO with the UnifiedReward judge: judge ranks %s, losses %s", calls, losses)


if __name__ == "__main__":
    main()
