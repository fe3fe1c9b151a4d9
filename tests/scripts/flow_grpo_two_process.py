"""Flow-GRPO's reward path (``scripts/train_sd3.py`` @ yifan123/flow_grpo ac4c86e) on 2 processes, with the toy judge.

    torchrun --nproc_per_node 2 tests/scripts/flow_grpo_two_process.py TOY_WORLD_DIR OUT_DIR

What is reproduced, as upstream does it: ``multi_score(device, {"unifiedreward": 1.0, "unifiedreward_winrate": 0.5})``
builds each reward as ``factory(device)`` (only when ``device`` is in its ``__code__.co_varnames``) and sums the
weighted scores into ``"avg"``; a ``DistributedKRepeatSampler`` spreads the k images of each prompt over the
processes; each batch's reward call goes to a ``ThreadPoolExecutor(max_workers=8)`` and is collected afterwards;
rewards and prompts are gathered and a per-prompt stat tracker (np.mean / np.std per prompt) turns them into
advantages. What is not: the SD3 sampler. Images are random 32x32 tensors (NCHW, [0, 1]) drawn per (batch, rank),
one with NaN pixels to inject a real judge failure (``media_error``), and a 1 s pause stands for the sampling that
separates two submissions upstream (reward calls must start in the same order on every process; the scorers check
that every prompt group is complete and raise otherwise). Writes ``OUT_DIR/rank{R}.pt``.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent import futures
from pathlib import Path

import numpy as np
import torch

PROMPTS = ["a red circle", "a blue square", "two green triangles", "a yellow star"]
BATCH_SIZE, K, NUM_BATCHES = 3, 3, 2  # per process; 2 processes x 3 = 6 images = 2 prompts x k=3 per batch


def unifiedreward(device):
    from integrations.diffusers.flow_grpo_reward import unifiedreward_score

    return unifiedreward_score(device, mode="logit", resize=64, group_size=K)


def unifiedreward_winrate(device):
    from integrations.diffusers.flow_grpo_reward import unifiedreward_winrate as factory

    return factory(device, mode="logit", resize=64, group_size=K)


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


def per_prompt_advantages(prompts, rewards):
    """The stat tracker's 'grpo' branch: (r - mean) / (std + 1e-4) per prompt text, population std."""
    prompts, rewards = np.array(prompts), np.array(rewards, dtype=np.float64)
    advantages = np.zeros_like(rewards)
    for prompt in np.unique(prompts):
        members = prompts == prompt
        advantages[members] = (rewards[members] - np.mean(rewards[members])) / (np.std(rewards[members]) + 1e-4)
    return advantages


def main(world: str, out: str) -> None:
    from accelerate import Accelerator
    from accelerate.utils import gather_object

    accelerator = Accelerator(cpu=True)
    manifest = json.loads((Path(world) / "manifest.json").read_text())
    import os

    os.environ["UNIFIEDREWARD_MODEL"] = manifest["reward_model"]
    reward_fn = multi_score(accelerator.device, {"unifiedreward": 1.0, "unifiedreward_winrate": 0.5})
    executor = futures.ThreadPoolExecutor(max_workers=8)
    rank, replicas = accelerator.process_index, accelerator.num_processes
    samples = []
    for batch in range(NUM_BATCHES):
        time.sleep(1.0)  # stands for pipeline_with_logprob(...)
        prompts = [PROMPTS[i] for i in k_repeat_indices(len(PROMPTS), rank, replicas, seed=batch)]
        images = torch.rand(BATCH_SIZE, 3, 32, 32, generator=torch.Generator().manual_seed(100 * batch + rank))
        if batch == 0 and rank == 1:
            images[0, :, 0, 0] = float("nan")  # a real media error for the judge
        rewards = executor.submit(reward_fn, images, prompts, [{}] * len(prompts), only_strict=True)
        time.sleep(0)
        samples.append({"prompts": prompts, "images": images, "rewards": rewards})
    for sample in samples:
        rewards, _ = sample["rewards"].result()
        sample["rewards"] = {key: torch.as_tensor(value).float() for key, value in rewards.items()}
    all_prompts = gather_object([p for s in samples for p in s["prompts"]])
    gathered = {key: accelerator.gather(torch.cat([s["rewards"][key] for s in samples])).numpy()
                for key in samples[0]["rewards"]}
    advantages = per_prompt_advantages(all_prompts, gathered["avg"])
    torch.save({"samples": samples, "all_prompts": all_prompts, "gathered": gathered, "advantages": advantages,
                "world_size": replicas}, Path(out) / f"rank{rank}.pt")
    executor.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
