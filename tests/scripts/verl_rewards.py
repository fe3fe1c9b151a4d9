"""Rewards of UnifiedReward's verl-omni scorer loaded by verl's own loader (run in an env with verl).

``verl.trainer.ppo.reward.get_custom_reward_fn`` reads ``reward.custom_reward_function.{path,name,reward_kwargs}`` as
verl-omni's trainer does, and the returned function is awaited by keyword with one sample, as verl-omni's
``VisualRewardManager.run_single`` calls it (uint8 CHW image, TCHW video). Usage: verl_rewards.py SCORER_PY ROWS.json
REWARD_KWARGS_JSON -> JSON list of the scorer's result dicts.
"""

import asyncio
import inspect
import json
import sys

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image
from verl.trainer.ppo.reward import get_custom_reward_fn

scorer, rows_file, reward_kwargs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = OmegaConf.create({"reward": {"custom_reward_function": {
    "path": scorer, "name": "compute_score_unifiedreward", "reward_kwargs": reward_kwargs}}})
compute_score = get_custom_reward_fn(config)
assert inspect.iscoroutinefunction(compute_score), "verl-omni awaits async scorers; this one must stay async"


def pixels(row):
    if "frames" in row:  # a video: TCHW uint8
        frames = [np.array(Image.open(path).convert("RGB")) for path in row["frames"]]
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    return torch.from_numpy(np.array(Image.open(row["image"]).convert("RGB"))).permute(2, 0, 1).contiguous()


async def main():
    results = []
    for row in json.loads(open(rows_file).read()):
        results.append(await compute_score(data_source="toy", solution_image=pixels(row), ground_truth=row["prompt"],
                                           extra_info={"prompt": row["prompt"]}))
    print(json.dumps(results))


asyncio.run(main())
