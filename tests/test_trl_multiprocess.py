"""A real 2-process GRPO run (``torchrun --nproc_per_node 2``, gloo on CPU) gives every completion the reward a
single-process run gives on the same global batch, and compares each completion with its whole group.

``tests/scripts/grpo_two_process.py`` trains the toy policy with TRL's ``GRPOTrainer`` and records each reward
call's slice of the batch on each process. Here the concatenated global batch is re-scored in one process with
fresh reward functions. Rewards: the toy judge's pointwise score and win rate (real forward passes; its
probabilities are all close to 0.5) and a win rate from a mocked judge with sharp, batch-independent verdicts
(so that a half-group win rate could not pass for a whole-group one).
"""

from __future__ import annotations

import collections
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from grpo_two_process import OrderJudge  # noqa: E402

from integrations.trl.rewards import get_pointwise_reward, get_winrate_reward, group_members, row_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_process_run(toy_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("grpo-2p")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "DISABLE_VERSION_CHECK": "1"}
    process = subprocess.run(
        [str(TORCHRUN), "--nproc_per_node", "2", str(REPO / "tests/scripts/grpo_two_process.py"), toy_world["root"], str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-6000:]
    ranks = [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    assert all(r["world_size"] == 2 and r["steps"] == 2 for r in ranks)
    return ranks


def global_calls(ranks):
    """Per reward call: the global batch (rank 0's slice, then rank 1's, as TRL gathers) and the rewards returned."""
    for calls in zip(*(r["calls"] for r in ranks)):
        assert len({c["name"] for c in calls}) == 1
        yield {key: [x for c in calls for x in c[key]] for key in ("prompts", "completions", "image", "rewards")} | {
            "name": calls[0]["name"], "split": len(calls[0]["prompts"])}


def test_two_process_rewards_equal_the_single_process_rewards(two_process_run, toy_world):
    from reward_core import UnifiedReward

    judge = UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu")
    single = {"point": get_pointwise_reward(judge, mode="logit"), "winrate": get_winrate_reward(judge, mode="logit"),
              "winrate_sharp": get_winrate_reward(OrderJudge())}
    seen = collections.Counter()
    for call in global_calls(two_process_run):
        seen[call["name"]] += 1
        if seen[call["name"]] > 1 and call["name"] != "winrate_sharp":
            continue  # the toy judge re-scores the first step only (CPU time)
        assert call["split"] == 6 and len(call["prompts"]) == 12  # 3 groups of 4 over 2 processes of 6
        keys = [row_key(p, [image]) for p, image in zip(call["prompts"], call["image"])]
        assert [len(m) for m in group_members(keys)] == [4, 4, 4]
        expected = single[call["name"]](call["prompts"], call["completions"], image=call["image"])
        assert None not in call["rewards"]
        tolerance = 0 if call["name"] == "winrate_sharp" else 1e-5
        assert call["rewards"] == pytest.approx(expected, abs=tolerance, rel=0), call["name"]
        if call["name"] == "winrate_sharp":
            for members in group_members(keys):
                assert sorted(call["rewards"][i] for i in members) == pytest.approx([0, 1 / 3, 2 / 3, 1])  # distinct texts
            # what each process would get from its own slice only: a half-group win rate for the split group g1
            # (positions 4-7); both halves can match the whole-group rates only if no half is best+worst
            first = single["winrate_sharp"](call["prompts"][:6], call["completions"][:6], image=call["image"][:6])
            second = single["winrate_sharp"](call["prompts"][6:], call["completions"][6:], image=call["image"][6:])
            assert first[4:] != call["rewards"][4:6] or second[:2] != call["rewards"][6:8]
    assert seen == {"point": 2, "winrate": 2, "winrate_sharp": 2}


def test_every_pair_of_every_group_is_judged_once_across_processes(two_process_run):
    judged = collections.Counter(pair for rank in two_process_run for pair in rank["pairs"])
    assert sum(judged.values()) == 2 * 3 * 6  # 2 steps x 3 groups x C(4, 2) pairs, split between the processes
    assert all(rank["pairs"] for rank in two_process_run)
    assert max(judged.values()) <= 2  # (a repeated pair text across steps is possible, never within one)
