"""A real multi-process GRPO run with UnifiedReward rewards; every reward call's global batch is recorded.

    torchrun --nproc_per_node 2 tests/scripts/grpo_two_process.py TOY_WORLD_DIR OUT_DIR

``GRPOTrainer`` (TRL's own sampler and gather, gloo on CPU) trains the toy policy for 2 steps with the toy
judge (logit mode): pointwise score + group win rate, ``num_generations=4`` and ``per_device_train_batch_size=6``,
so each step's 3 groups are laid out [g0 g0 g0 g0 g1 g1 | g1 g1 g2 g2 g2 g2] and group g1 is split between the two
processes. Each process pickles, per reward call, its slice of the batch (prompts, completion texts, images)
and the rewards it returned to ``OUT_DIR/rank{R}.pkl``; the test re-scores the concatenated global batch in one
process and compares. The sharp win rate runs as an async reward function (TRL awaits it on its event loop).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import integrations.trl  # noqa: F401  (trl<0.29 import-guard fix, before `import trl`)
from toy_vqa import toy_vqa_dataset


class OrderJudge:
    """Mocked pair judge with sharp, batch-independent verdicts (the toy judge's are all close to 0.5):
    the answer that sorts last wins. The real toy judge runs next to it."""

    def compare_batch(self, template, items, swap=False, mode="generate"):
        from reward_core import RewardResult, Status

        return [RewardResult(Status.OK, winner=1 if i.fields["answer1"] > i.fields["answer2"] else 2
                             if i.fields["answer2"] > i.fields["answer1"] else 0) for i in items]


class JudgeLog:
    """Passes calls to the real judge and keeps the fields of every pair it was asked to rank."""

    def __init__(self, judge, pairs: list):
        self.judge, self.pairs = judge, pairs

    def score_batch(self, *args, **kwargs):
        return self.judge.score_batch(*args, **kwargs)

    def compare_batch(self, template, items, **kwargs):
        self.pairs.extend((i.fields["question"], i.fields["answer1"], i.fields["answer2"]) for i in items)
        return self.judge.compare_batch(template, items, **kwargs)


class Recorder:
    def __init__(self, func, log: list):
        self.func, self.__name__, self.log = func, func.__name__, log

    def record(self, prompts, completions, columns, rewards):
        self.log.append({"name": self.__name__, "prompts": prompts, "completions": completions,
                         "image": list(columns["image"]), "rewards": list(rewards)})
        return rewards

    def __call__(self, prompts, completions, completion_ids=None, **columns):
        return self.record(prompts, completions, columns, self.func(prompts, completions, completion_ids, **columns))


class AsyncRecorder(Recorder):
    """For an async reward function (TRL >= 0.27 awaits it on its event loop, concurrently with the others)."""

    async def __call__(self, prompts, completions, completion_ids=None, **columns):
        rewards = await self.func(prompts, completions, completion_ids, **columns)
        return self.record(prompts, completions, columns, rewards)


def main(world: str, out: str) -> None:
    from trl import GRPOConfig, GRPOTrainer

    from integrations.trl.rewards import get_pointwise_reward, get_winrate_reward
    from reward_core import UnifiedReward

    manifest, dataset = toy_vqa_dataset(world, 6)
    pairs: list = []
    judge = JudgeLog(UnifiedReward.from_pretrained(manifest["reward_model"], device="cpu"), pairs)
    log: list = []
    rewards = [Recorder(get_pointwise_reward(judge, mode="logit", name="point"), log),
               Recorder(get_winrate_reward(judge, mode="logit", name="winrate"), log),
               AsyncRecorder(get_winrate_reward(OrderJudge(), name="winrate_sharp", use_async=True), log)]
    config = GRPOConfig(output_dir=out, num_generations=4, per_device_train_batch_size=6, max_completion_length=6,
                        max_steps=2, learning_rate=1e-5, report_to=[], bf16=False, use_cpu=True, seed=0,
                        logging_steps=1, save_strategy="no")
    trainer = GRPOTrainer(model=manifest["policy_model"], reward_funcs=rewards, args=config, train_dataset=dataset)
    trainer.train()
    rank = trainer.accelerator.process_index
    judged = {r.__name__: r.func.items for r in rewards}
    with open(Path(out) / f"rank{rank}.pkl", "wb") as handle:
        pickle.dump({"calls": log, "world_size": trainer.accelerator.num_processes, "judged": judged, "pairs": pairs,
                     "steps": trainer.state.global_step}, handle)


if __name__ == "__main__":
    main(*sys.argv[1:])
