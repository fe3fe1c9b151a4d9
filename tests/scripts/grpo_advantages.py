"""TRL's own advantages for one GRPO batch with UnifiedReward rewards and an injected judge failure.

Run in either environment (TRL 0.24 or 1.x): builds a real ``GRPOTrainer`` on the toy policy, draws one
batch from its dataloader, and calls the trainer's ``_generate_and_score_completions`` (generation,
``_calculate_rewards``, group advantages). The judge is scripted (a toy judge's verdicts are noise): the
pointwise judge fails on the 2nd completion of every group and scores the others 0.9, 0.3, 0.45;;
the win-rate judge prefers the longer completion. One or two reward functions, with and without imputation.

    python tests/scripts/grpo_advantages.py TOY_WORLD_DIR   # prints RESULT [{funcs, impute, advantages, rewards}]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import integrations.trl  # noqa: F401  (trl<0.29 import-guard fix, before `import trl`)
from toy_vqa import toy_vqa_dataset
from reward_core import RewardResult, Status

SCORES = [90.0, None, 30.0, 45.0]  # per position in a group of 4, on the template's 0-100 scale


class ScriptedPointJudge:
    """Mocked judge (its verdicts must be known): scores by position within each group, fails on position 1."""

    def score_batch(self, template, items, mode="generate"):
        out = []
        for index, _ in enumerate(items):
            score = SCORES[index % len(SCORES)]
            out.append(RewardResult.failure(Status.PARSE_ERROR, "injected") if score is None else RewardResult(Status.OK, score=score))
        return out


class ScriptedPairJudge:
    """Mocked judge: the longer answer wins, equal lengths tie."""

    def compare_batch(self, template, items, swap=False, mode="generate"):
        out = []
        for item in items:
            a, b = len(item.fields["answer1"]), len(item.fields["answer2"])
            out.append(RewardResult(Status.OK, winner=1 if a > b else 2 if b > a else 0))
        return out


class Recorder:
    """Keeps what a reward function returned (TRL only keeps the gathered tensor)."""

    def __init__(self, func):
        self.func, self.__name__, self.outputs = func, func.__name__, []

    def __call__(self, *args, **kwargs):
        out = self.func(*args, **kwargs)
        self.outputs.append(list(out))
        return out


def main(world: str) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOConfig, GRPOTrainer

    from integrations.trl._compat import ensure_warnings_issued
    from integrations.trl.rewards import PairwiseWinRateReward, PointwiseReward

    manifest, dataset = toy_vqa_dataset(world, 2)
    config = GRPOConfig(output_dir=str(Path(world) / "grpo-advantages"), num_generations=4, per_device_train_batch_size=8,
                        max_completion_length=6, report_to=[], bf16=False, use_cpu=True, seed=0, save_strategy="no")
    policy = ensure_warnings_issued(AutoModelForImageTextToText.from_pretrained(manifest["policy_model"]))
    processor = AutoProcessor.from_pretrained(manifest["policy_model"])
    placeholder = PointwiseReward(ScriptedPointJudge(), name="point")
    trainer = GRPOTrainer(model=policy, reward_funcs=[placeholder, placeholder], args=config, train_dataset=dataset,
                          processing_class=processor)
    trainer.model.eval()
    batch = next(iter(trainer.get_train_dataloader()))
    runs = []
    for funcs in ("one", "two"):
        for impute in ("group_mean", None):
            rewards = [Recorder(PointwiseReward(ScriptedPointJudge(), name="point", impute=impute))]
            if funcs == "two":
                rewards.append(Recorder(PairwiseWinRateReward(ScriptedPairJudge(), name="winrate", impute=impute)))
            trainer.reward_funcs, trainer.reward_func_names = rewards, [r.__name__ for r in rewards]
            trainer.reward_processing_classes = [None] * len(rewards)
            trainer.reward_weights = torch.ones(len(rewards))
            output = trainer._generate_and_score_completions(batch)
            runs.append({"funcs": funcs, "impute": impute, "advantages": output["advantages"].tolist(),
                         "rewards": {r.__name__: r.outputs[-1] for r in rewards}})
    print("RESULT " + json.dumps(runs))


if __name__ == "__main__":
    main(*sys.argv[1:])
