"""Flow-GRPO's reward path on 2 processes (torchrun, gloo on CPU) with the toy judge: whole prompt groups across
processes, no NaN reaching the stat tracker, and the same per-image rewards as one process on the same batch.

``tests/scripts/flow_grpo_two_process.py`` calls our factories the way ``flow_grpo``'s ``train_sd3.py`` does
(``multi_score`` dict, ``ThreadPoolExecutor``, gather, per-prompt stat tracker); the SD3 sampler is replaced by
random images (one with NaN pixels: a real ``media_error``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
sys.path.insert(0, str(REPO / "tests" / "scripts"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(toy_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("flow-grpo-2p")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.run(
        [str(TORCHRUN), "--nproc_per_node", "2", str(REPO / "tests/scripts/flow_grpo_two_process.py"), toy_world["root"], str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-6000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_no_nan_reaches_the_stat_tracker_and_the_failure_is_neutral(run):
    first, second = run
    assert first["world_size"] == 2
    assert np.array_equal(first["advantages"], second["advantages"])
    assert np.isfinite(first["advantages"]).all() and all(np.isfinite(v).all() for v in first["gathered"].values())
    # gathered order: rank 0 (batch 0, batch 1), rank 1 (batch 0, batch 1); rank 1's first image of batch 0 failed
    failed = 2 * 3
    assert first["advantages"][failed] == pytest.approx(0.0, abs=1e-3)
    prompt = first["all_prompts"][failed]
    peers = [i for i in range(failed, failed + 3) if first["all_prompts"][i] == prompt] + [
        i for i in range(0, 3) if first["all_prompts"][i] == prompt]
    assert len(peers) == 3  # its prompt's k=3 images, spread over both processes


def test_two_process_scores_equal_the_single_process_scores(run, toy_world, monkeypatch):
    from flow_grpo_two_process import NUM_BATCHES, multi_score

    monkeypatch.setenv("UNIFIEDREWARD_MODEL", toy_world["reward_model"])
    reward_fn = multi_score("cpu", {"unifiedreward": 1.0, "unifiedreward_winrate": 0.5})
    split = False
    for batch in range(NUM_BATCHES):
        per_rank = [rank["samples"][batch] for rank in run]
        images = torch.cat([s["images"] for s in per_rank])
        prompts = [p for s in per_rank for p in s["prompts"]]
        split |= bool(set(per_rank[0]["prompts"]) & set(per_rank[1]["prompts"]))
        expected, _ = reward_fn(images, prompts, [{}] * len(prompts))
        for key in ("unifiedreward", "unifiedreward_winrate", "avg"):
            got = torch.cat([s["rewards"][key] for s in per_rank]).numpy()
            assert got == pytest.approx(np.asarray(expected[key], dtype=np.float32), abs=1e-5), (batch, key)
    assert split, "no prompt group was spread over both processes"
