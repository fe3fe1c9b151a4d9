"""A real 2-process GRPO run whose pointwise reward goes to several judge replicas; per-step times and every
reward call are recorded.

    torchrun --nproc_per_node 2 tests/scripts/grpo_replicas.py TOY_WORLD_DIR OUT_DIR URL1,URL2,URL3 STEPS TIMEOUT

``GRPOTrainer`` (TRL's own sampler and gather, gloo on CPU) trains the toy policy for STEPS steps,
``num_generations=4`` and ``per_device_train_batch_size=6`` (3 groups per step, group g1 split between the
processes), with one reward: ``get_pointwise_reward`` on ``UnifiedReward.from_server([URL1, URL2, URL3])``
(generate mode, per-attempt ``timeout`` TIMEOUT seconds). Each process writes ``OUT_DIR/rank{R}.json``: per step
its start and end time, and per reward call the completions, the judge's values (None = failed), the rewards
returned and the reward function's failed / imputed counters; and which ``reward_core`` it imported.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import integrations.trl  # noqa: F401  (trl<0.29 import-guard fix, before `import trl`)
from toy_vqa import toy_vqa_dataset
from integrations.trl.rewards import completion_text
from transformers import TrainerCallback


class StepTimes(TrainerCallback):
    """Wall-clock start and end of every optimizer step (generation, reward calls and backward included)."""

    def __init__(self):
        self.steps: list[dict] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.steps.append({"step": state.global_step + 1, "begin": time.time()})

    def on_step_end(self, args, state, control, **kwargs):
        self.steps[-1]["end"] = time.time()


class CallLog:
    """Wraps a reward function: keeps the judge's values (before imputation) and what the function returned."""

    def __init__(self, func):
        self.func, self.__name__, self.calls = func, func.__name__, []
        self._compute, func.compute = func.compute, self.compute
        self._judged = None

    def compute(self, *args, **kwargs):
        self._judged = self._compute(*args, **kwargs)
        return self._judged

    def __call__(self, prompts, completions, completion_ids=None, **columns):
        failed, imputed = self.func.failed, self.func.imputed
        rewards = self.func(prompts, completions, completion_ids, **columns)
        self.calls.append({"completions": [completion_text(c) for c in completions], "judged": self._judged.values,
                           "statuses": self._judged.statuses, "rewards": list(rewards), "time": time.time(),
                           "failed": self.func.failed - failed, "imputed": self.func.imputed - imputed})
        return rewards


def main(world: str, out: str, urls: str, steps: str, timeout: str) -> None:
    from trl import GRPOConfig, GRPOTrainer

    from integrations.trl.rewards import get_pointwise_reward
    import reward_core
    from reward_core import UnifiedReward

    manifest, dataset = toy_vqa_dataset(world, 6)
    judge = UnifiedReward.from_server(urls.split(","), model="UnifiedReward", concurrency=16, timeout=float(timeout),
                                      deadline=60.0, max_attempts=4, backoff_base=0.05, backoff_max=0.2)
    reward = CallLog(get_pointwise_reward(judge, name="point"))
    times = StepTimes()
    config = GRPOConfig(output_dir=out, num_generations=4, per_device_train_batch_size=6, max_completion_length=6,
                        max_steps=int(steps), learning_rate=1e-5, report_to=[], bf16=False, use_cpu=True, seed=0,
                        logging_steps=1, save_strategy="no")
    trainer = GRPOTrainer(model=manifest["policy_model"], reward_funcs=[reward], args=config, train_dataset=dataset,
                          callbacks=[times])
    trainer.train()
    rank = trainer.accelerator.process_index
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "world_size": trainer.accelerator.num_processes, "client": str(Path(reward_core.__file__).parent),
        "steps": times.steps, "calls": reward.calls,
        "items": reward.func.items, "failed": reward.func.failed, "imputed": reward.func.imputed}))


if __name__ == "__main__":
    main(*sys.argv[1:])
