"""Rewards of UnifiedReward's ms-swift plugin through ms-swift's own code (run in an env with ms-swift).

ms-swift's plugin loader (``import_external_file``, what ``--external_plugins`` calls), its reward resolver
(``resolve_reward_funcs``, what ``--reward_funcs unifiedreward`` becomes) and its GRPO reward call
(``compute_rewards_per_func`` on ``GRPOSample`` rows). Usage: ms_swift_rewards.py PLUGIN ROWS.json REWARD...
-> JSON rewards, one list per reward.
The judge comes from UNIFIEDREWARD_* variables.
"""

import json
import sys

import torch
from swift.rl_core.data import GRPOSample
from swift.rl_core.grpo_algorithm import compute_rewards_per_func
from swift.rlhf_trainers.utils import resolve_reward_funcs
from swift.utils import import_external_file

plugin, rows_file, rewards_named = sys.argv[1], sys.argv[2], sys.argv[3:]
import_external_file(plugin)
reward_funcs, names = resolve_reward_funcs(rewards_named)
rows = json.loads(open(rows_file).read())
samples = [
    GRPOSample(messages=[{"role": "user", "content": "<image>" + row["question"]},
                         {"role": "assistant", "content": row["completion"]}],
               images=[row["image"]])
    for row in rows
]
rewards = compute_rewards_per_func(samples, reward_funcs, None, device=torch.device("cpu"))
print(json.dumps({"names": names, "rewards": rewards.T.tolist()}))
