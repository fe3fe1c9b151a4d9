"""A completion the judge could not score gets a neutral advantage from TRL's own GRPO code.

``tests/scripts/grpo_advantages.py`` builds a real ``GRPOTrainer`` (toy policy, real generation) in the TRL 1.16
env and in the TRL 0.24 env, and reads the advantages TRL computes for one batch (2 prompts x 4 completions)
with one reward function (pointwise) and two (pointwise + win rate), the pointwise judge failing on one
completion of each group. The judges are scripted (mocked: the toy judge's verdicts are noise, and the
expected advantages need known scores). Without our imputation (``impute=None``) the same batch shows the bug:
TRL 0.24 gives the failed completion the worst advantage, and two reward functions do so in both versions.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHONS = {"trl-1.16": REPO / ".venv" / "bin" / "python", "trl-0.24": REPO / ".venv-llamafactory" / "bin" / "python"}
FAILED = 1  # position of the failed completion in each group (see the script)

pytestmark = pytest.mark.slow


def std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def group_advantages(total: list[float]) -> list[float]:
    """TRL's GRPO advantage (``scale_rewards="group"``): (r - mean) / (unbiased std + 1e-4)."""
    mean = sum(total) / len(total)
    return [(r - mean) / (std(total) + 1e-4) for r in total]


@pytest.fixture(scope="module", params=sorted(PYTHONS))
def runs(request, toy_world):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", "DISABLE_VERSION_CHECK": "1"}
    process = subprocess.run([str(PYTHONS[request.param]), str(REPO / "tests/scripts/grpo_advantages.py"), toy_world["root"]],
                             env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-4000:]
    line = next(line for line in process.stdout.splitlines() if line.startswith("RESULT "))
    return request.param, {(run["funcs"], run["impute"]): run for run in json.loads(line[len("RESULT "):])}


def groups(values: list) -> list[list]:
    return [values[start : start + 4] for start in range(0, len(values), 4)]


@pytest.mark.parametrize("funcs", ["one", "two"])
def test_failed_completion_has_the_neutral_advantage(runs, funcs):
    _, by_config = runs
    run = by_config[(funcs, "group_mean")]
    point = run["rewards"]["point"]
    winrate = run["rewards"].get("winrate", [0.0] * len(point))
    assert None not in point
    for adv, a, b in zip(groups(run["advantages"]), groups(point), groups(winrate)):
        others = [v for i, v in enumerate(a) if i != FAILED]
        assert a[FAILED] == pytest.approx(sum(others) / len(others))  # the group's mean of the successful scores
        total = [x + y for x, y in zip(a, b)]
        assert adv == pytest.approx(group_advantages(total), abs=1e-4)  # TRL used exactly these rewards
        # the failed completion's advantage comes from the other reward only (0 with one reward function)
        expected = (b[FAILED] - sum(b) / len(b)) / (std(total) + 1e-4)
        assert adv[FAILED] == pytest.approx(expected, abs=1e-4)
        if funcs == "one":
            assert abs(adv[FAILED]) < 1e-5


@pytest.mark.parametrize("funcs", ["one", "two"])
def test_without_imputation_trl_gives_the_failed_completion_a_biased_advantage(runs, funcs):
    version, by_config = runs
    run = by_config[(funcs, None)]
    point = run["rewards"]["point"]
    winrate = run["rewards"].get("winrate", [0.0] * len(point))
    for adv, a, b in zip(groups(run["advantages"]), groups(point), groups(winrate)):
        assert a[FAILED] is None
        if funcs == "one" and version == "trl-1.16":
            assert adv[FAILED] == 0.0  # TRL 1.x marks a row every function failed on as unscorable
            continue
        # nansum turns the failure into 0: below the neutral advantage it would get with the group's mean
        others = [v for i, v in enumerate(a) if i != FAILED]
        neutral_a = [sum(others) / len(others) if v is None else v for v in a]
        neutral = group_advantages([x + y for x, y in zip(neutral_a, b)])
        assert adv[FAILED] < neutral[FAILED] - 0.1
        if funcs == "one":
            assert adv[FAILED] == min(adv)  # the worst of its group
