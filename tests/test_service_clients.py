"""Real framework clients against the real ``unifiedreward serve`` on the toy judge (issue 26, item 3).

OpenRLHF's own remote-RM client (``openrlhf.utils.agent.SingleTurnAgentExecutor._fetch_rewards_via_http``,
OpenRLHF 0.11.2 from PyPI, in the main environment: env/nodeps-main.txt installs it without its GPU-only pins) runs
in a subprocess, as a trainer's reward worker would. Its rewards must equal
a direct `UnifiedReward` call on the same items; a failed item must reach it as an HTTP error it retries and
then raises on (its rollout then leaves the sample's reward ``None``), never as 0 or the worst value.

verl-omni's and Flow-GRPO's clients are not on the registry: they were run against the service from fetched
copies in the development session (docs/service.md has the commands and figures).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reward_core.model import JudgeItem, UnifiedReward
from service_servers import REPO, RewardService

pytestmark = pytest.mark.slow

TEMPLATE = "image_understanding.point_score.v1"  # /get_reward's default: question + response, 0-100
COUNT = 6
TOLERANCE = 1e-4  # batched vs unbatched forward passes differ in float rounding only


def und_rows(toy_world, count: int) -> list[dict]:
    lines = Path(toy_world["data"]["und_points"]).read_text().splitlines()[:count]
    return [json.loads(line) for line in lines]


def image_path(toy_world, row: dict) -> str:
    return str(Path(toy_world["data_dir"]) / row["image"])


@pytest.fixture(scope="module")
def service(toy_world):
    server = RewardService(["--model", toy_world["reward_model"], "--device", "cpu", "--mode", "logit"]).start()
    yield server
    server.close()


def run_openrlhf(url: str, samples: list[dict], tmp_path: Path) -> list[dict]:
    requests_file = tmp_path / "samples.json"
    requests_file.write_text(json.dumps(samples))
    script = REPO / "tests" / "scripts" / "openrlhf_remote_rm.py"
    done = subprocess.run(
        [sys.executable, str(script), url, str(requests_file)], capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def sample(toy_world, row: dict, image: str | None = None) -> dict:
    encoded = base64.b64encode(Path(image_path(toy_world, row)).read_bytes()).decode()
    label = {"image": image or encoded, "question": row["question"]}
    prompt = f"<|im_start|>user\n{row['question']}<|im_end|>\n<|im_start|>assistant\n"
    # as OpenRLHF sends it: the query is prompt + completion decoded with special tokens
    return {"query": f"{prompt}{row['response']}<|im_end|>", "prompt": prompt, "label": json.dumps(label)}


def test_openrlhf_remote_rm_client_rewards_equal_a_direct_call(service, toy_world, tmp_path):
    rows = und_rows(toy_world, COUNT)
    answers = run_openrlhf(f"{service.base_url}/get_reward", [sample(toy_world, r) for r in rows], tmp_path)
    judge = UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu", dtype="float32", batch_size=4)
    items = [JudgeItem(media=[image_path(toy_world, r)], fields={"question": r["question"], "response": r["response"]})
             for r in rows]  # fmt: skip
    direct = [r.score / 100 for r in judge.score_batch(TEMPLATE, items, mode="logit")]
    assert [a["error"] for a in answers] == [None] * COUNT
    rewards = [a["rewards_info"]["rewards"][0] for a in answers]
    deltas = [abs(r - d) for r, d in zip(rewards, direct)]
    print(f"OpenRLHF client: rewards {rewards}, direct {direct}, max |delta| {max(deltas):.2e}")
    assert max(deltas) < TOLERANCE


def test_openrlhf_client_gets_an_error_for_a_failed_item_never_a_number(service, toy_world, tmp_path):
    rows = und_rows(toy_world, 2)
    samples = [sample(toy_world, rows[0]), sample(toy_world, rows[1], image="not base64 and no such file.png")]
    answers = run_openrlhf(f"{service.base_url}/get_reward", samples, tmp_path)
    print(f"OpenRLHF client with a failed item: {answers}")
    assert answers[0]["rewards_info"] is not None and answers[0]["error"] is None
    assert answers[1]["rewards_info"] is None  # the rollout leaves this sample's reward None: not 0, not the worst
    assert "Request error for 5 times" in answers[1]["error"]
