"""Flow-GRPO's reward path (``scripts/train_sd3.py`` @ yifan123/flow_grpo ac4c86e) on 2 processes, with the toy judge.

    torchrun --nproc_per_node 2 tests/scripts/flow_grpo_two_process.py TOY_WORLD_DIR OUT_DIR

What is reproduced, as upstream does it: ``multi_score(device, {"unifiedreward": 1.0, "unifiedreward_winrate": 0.5})``
builds each reward as ``factory(device)`` (only when ``device`` is in its ``__code__.co_varnames``) and sums the
weighted scores into ``"avg"``; ``reward_fn`` and ``eval_reward_fn`` are both built from the same config; a
``DistributedKRepeatSampler`` spreads the k images of each prompt over the processes; each batch's reward call is
submitted to a ``ThreadPoolExecutor(max_workers=8)`` back to back (the calls overlap) and collected afterwards;
rewards and prompts are gathered and a stand-in for Flow-GRPO's ``PerPromptStatTracker`` (its ``"grpo"`` branch,
``global_std`` True and False) turns them into advantages. What is not: the SD3 sampler. Images are random 32x32
tensors (NCHW, [0, 1]) drawn per (batch, rank); NaN pixels inject real judge failures (``media_error``): one image in
batch 0, every image of one prompt in batch 1. Also checks that calls paired out of order raise (``group_size``).
Writes ``OUT_DIR/rank{R}.pt``.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from concurrent import futures
from pathlib import Path

import numpy as np
import torch

PROMPTS = [f"{colour} {shape}" for colour in ("a red", "a blue", "a green", "a yellow")
           for shape in ("circle", "square", "triangle", "star")]
BATCH_SIZE, K, NUM_BATCHES = 3, 3, 4  # per process; 2 processes x 3 = 6 images = 2 prompts x k=3 per batch
ONE_FAILED_BATCH, ALL_FAILED_BATCH = 2, 1  # one image fails; every image of one prompt fails (see failures())


def unifiedreward(device):
    from integrations.diffusers.flow_grpo_reward import unifiedreward_score

    return unifiedreward_score(device, mode="logit", resize=64)


def unifiedreward_winrate(device):
    from integrations.diffusers.flow_grpo_reward import unifiedreward_winrate as factory

    return factory(device, mode="logit", resize=64)


def multi_score(device, score_dict):
    """Upstream's registry and weighted sum, with our two entries."""
    score_functions = {"unifiedreward": unifiedreward, "unifiedreward_winrate": unifiedreward_winrate}
    score_fns = {name: score_functions[name](device) if "device" in score_functions[name].__code__.co_varnames
                 else score_functions[name]() for name in score_dict}

    def _fn(images, prompts, metadata, only_strict=True):
        total, details = [], {}
        for name, weight in score_dict.items():
            scores, _ = score_fns[name](images, prompts, metadata)
            details[name] = scores
            weighted = [weight * s for s in scores]
            total = weighted if not total else [t + w for t, w in zip(total, weighted)]
        details["avg"] = total
        return details, {}

    return _fn


def k_repeat_indices(num_prompts: int, rank: int, replicas: int, seed: int):
    """Flow-GRPO's DistributedKRepeatSampler: m prompts x k copies, shuffled with a shared seed, split by rank."""
    g = torch.Generator()
    g.manual_seed(seed)
    m = replicas * BATCH_SIZE // K
    indices = torch.randperm(num_prompts, generator=g)[:m].tolist()
    repeated = [i for i in indices for _ in range(K)]
    shuffled = [repeated[i] for i in torch.randperm(len(repeated), generator=g).tolist()]
    return shuffled[rank * BATCH_SIZE : (rank + 1) * BATCH_SIZE]


def step_prompts(index: int, rank: int, replicas: int) -> list[str]:
    return [PROMPTS[i] for i in k_repeat_indices(len(PROMPTS), rank, replicas, seed=index)]


def failures(replicas: int) -> dict[str, tuple[int, str]]:
    """The prompts whose images fail, each (batch, prompt), a prompt seen in no other batch of the epoch (so that its
    stat-tracker group, per prompt text over the epoch, is that call's group)."""
    seen = [{p for rank in range(replicas) for p in step_prompts(index, rank, replicas)} for index in range(NUM_BATCHES)]
    only = [sorted(s.difference(*(t for t in seen if t is not s))) for s in seen]
    one = next(p for p in step_prompts(ONE_FAILED_BATCH, 1, replicas) if p in only[ONE_FAILED_BATCH])
    return {"one": (ONE_FAILED_BATCH, one), "all": (ALL_FAILED_BATCH, only[ALL_FAILED_BATCH][0])}


def batch(index: int, rank: int, replicas: int) -> tuple[list[str], torch.Tensor]:
    """One process's prompts and images (NCHW, [0, 1]) of one sampling step, failures injected as NaN pixels (a real
    ``media_error`` for the judge): on process 1, its first image of the ``"one"`` prompt; everywhere, every image
    of the ``"all"`` prompt."""
    prompts = step_prompts(index, rank, replicas)
    images = torch.rand(BATCH_SIZE, 3, 32, 32, generator=torch.Generator().manual_seed(100 * index + rank))
    failed = failures(replicas)
    doomed = [n for n, p in enumerate(prompts) if (index, p) == failed["all"]]
    doomed += [n for n, p in enumerate(prompts) if (index, p) == failed["one"] and rank == 1][:1]
    for n in doomed:
        images[n, :, 0, 0] = float("nan")
    return prompts, images


class PerPromptStatTracker:
    """Stands in for Flow-GRPO's ``flow_grpo/stat_tracking.py::PerPromptStatTracker`` (``type="grpo"``, one
    ``update`` per epoch as ``train_sd3.py`` calls it): (r - mean of the prompt's rewards) / (std + 1e-4), the std
    (population) over the prompt's rewards, or over every reward of the batch with ``global_std`` (Flow-GRPO's
    default config)."""

    def __init__(self, global_std: bool):
        self.global_std = global_std

    def update(self, prompts, rewards):
        prompts, rewards = np.array(prompts), np.array(rewards, dtype=np.float64)
        advantages = np.zeros_like(rewards)
        for prompt in np.unique(prompts):
            members = prompts == prompt
            std = np.std(rewards if self.global_std else rewards[members]) + 1e-4
            advantages[members] = (rewards[members] - np.mean(rewards[members])) / std
        return advantages


def judges_in_memory() -> int:
    """Live UnifiedReward judges in this process (each an in-process model copy)."""
    from reward_core import UnifiedReward

    gc.collect()
    return sum(isinstance(o, UnifiedReward) for o in gc.get_objects())


def out_of_order_error(rank: int, replicas: int) -> str:
    """Process 1 submits two steps in the other order: the content check (``group_size``) must raise, not mix them."""
    from integrations.diffusers.flow_grpo_reward import unifiedreward_winrate as factory

    scorer = factory("cpu", mode="logit", resize=64, group_size=K)
    steps = [batch(index, rank, replicas) for index in (2, 3)]
    try:
        for prompts, images in steps[::-1] if rank == 1 else steps:
            scorer(images, prompts, None)
    except RuntimeError as error:
        return str(error)
    return ""


def main(world: str, out: str) -> None:
    from accelerate import Accelerator
    from accelerate.utils import gather_object

    accelerator = Accelerator(cpu=True)
    manifest = json.loads((Path(world) / "manifest.json").read_text())
    os.environ["UNIFIEDREWARD_MODEL"] = manifest["reward_model"]
    config_reward_fn = {"unifiedreward": 1.0, "unifiedreward_winrate": 0.5}
    reward_fn = multi_score(accelerator.device, config_reward_fn)
    eval_reward_fn = multi_score(accelerator.device, config_reward_fn)  # noqa: F841 (built as train_sd3.py does)
    judges = judges_in_memory()
    executor = futures.ThreadPoolExecutor(max_workers=8)
    rank, replicas = accelerator.process_index, accelerator.num_processes
    samples = []
    for index in range(NUM_BATCHES):
        prompts, images = batch(index, rank, replicas)  # stands for pipeline_with_logprob(...)
        rewards = executor.submit(reward_fn, images, prompts, [{}] * len(prompts), only_strict=True)
        time.sleep(0)  # as train_sd3.py: yield, then straight on to the next batch
        samples.append({"prompts": prompts, "images": images, "rewards": rewards})
    for sample in samples:
        rewards, _ = sample["rewards"].result()
        sample["rewards"] = {key: torch.as_tensor(value).float() for key, value in rewards.items()}
    all_prompts = gather_object([p for s in samples for p in s["prompts"]])
    gathered = {key: accelerator.gather(torch.cat([s["rewards"][key] for s in samples])).numpy()
                for key in samples[0]["rewards"]}
    advantages = {global_std: PerPromptStatTracker(global_std).update(all_prompts, gathered["avg"])
                  for global_std in (True, False)}
    torch.save({"samples": samples, "all_prompts": all_prompts, "gathered": gathered, "advantages": advantages,
                "world_size": replicas, "failures": failures(replicas), "judges": judges, "out_of_order_error": out_of_order_error(rank, replicas)},
               Path(out) / f"rank{rank}.pt")
    executor.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
