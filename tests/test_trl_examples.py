"""The TRL examples run as users run them, on the offline toy policy + toy judge (CPU).

Main env (TRL 1.16): sift -> DPOTrainer, and GRPOTrainer with the UnifiedReward reward functions.
LLaMA-Factory env (TRL 0.24 + transformers 5.6, via the import shim): DPO on the same pairs through our
Qwen2.5-VL collator, cross-checked against TRL 1.16's own vision collator, and OnlineDPO with the judge.
"""

from __future__ import annotations

import html
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LF_PYTHON = REPO / ".venv-llamafactory" / "bin" / "python"

pytestmark = pytest.mark.slow


def run_example(script: str, args: list[str], cwd: Path, python: str = sys.executable) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", "TRL_EXPERIMENTAL_SILENCE": "1",
           "DISABLE_VERSION_CHECK": "1"}
    process = subprocess.run(
        [python, str(REPO / "examples" / "trl" / script), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-6000:]
    return process


@pytest.fixture(scope="module")
def sift_dpo_run(toy_world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sift-dpo")
    run_example(
        "sift_then_dpo.py",
        ["--toy-world", toy_world["root"], "--output-dir", str(out), "--num-prompts", "4",
         "--num-candidates", "4", "--candidate-tokens", "8", "--max-steps", "2", "--sft-weight", "0.5"],
        cwd=out,
    )
    return out


def test_sift_writes_pairs_and_dpo_trains_on_them(sift_dpo_run):
    sift_dir = sift_dpo_run / "sift"
    summary = json.loads((sift_dir / "summary.json").read_text())
    assert summary["total"] == 4 and summary["kept"] + summary["dropped"] + summary["failed"] == 4
    assert summary["kept"] >= 1
    pairs = [json.loads(line) for line in (sift_dir / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == summary["kept"]
    for row in pairs:
        assert row["chosen_score"] > row["rejected_score"]
        assert row["chosen"] != row["rejected"] and len(row["images"]) == 1
    records = [json.loads(line) for line in (sift_dir / "sift.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in records}) == 4 and all(len(r["candidates"]) == 4 for r in records)
    assert (sift_dir / "scores.png").stat().st_size > 0
    page = (sift_dir / "report" / "index.html").read_text()  # answers, scores and the question image per prompt
    assert page.count('class="card" data-status=') == 4 and page.count("<img ") == 4
    assert html.escape(pairs[0]["chosen"][0]["content"]) in page and "chosen" in page

    from datasets import load_dataset

    dataset = load_dataset(str(sift_dir / "dataset"), split="train")
    assert len(dataset) == len(pairs) and dataset[0]["images"][0].size[0] > 0

    report = json.loads((sift_dpo_run / "dpo_report.json").read_text())
    assert report["steps"] == 2 and report["finite"] and len(report["losses"]) == 2
    assert report["losses"][0] > 1.0  # DPO at the reference (ln 2) + 0.5 x the chosen answers' NLL (--sft-weight)
    # the trained policy is saved where `unifiedreward sift --policy` can sample from it
    from transformers import AutoProcessor

    assert report["model_dir"] == str(sift_dpo_run / "dpo")
    assert (sift_dpo_run / "dpo" / "model.safetensors").is_file()
    assert AutoProcessor.from_pretrained(report["model_dir"]).tokenizer is not None


def test_grpo_logs_unifiedreward_rewards(toy_world, tmp_path):
    run_example(
        "grpo_unifiedreward.py",
        ["--toy-world", toy_world["root"], "--output-dir", str(tmp_path), "--num-prompts", "4",
         "--num-generations", "4", "--max-completion-length", "8", "--max-steps", "2", "--max-pairs", "4"],
        cwd=tmp_path,
    )
    report = json.loads((tmp_path / "grpo_report.json").read_text())
    steps = [entry for entry in report["log_history"] if "loss" in entry]
    assert len(steps) == 2
    for entry in steps:
        for name in ("unifiedreward_point", "unifiedreward_winrate"):
            value = float(entry[f"rewards/{name}/mean"])
            assert 0.0 <= value <= 1.0
        assert math.isfinite(float(entry["loss"]))
    assert report["failed"] == {"unifiedreward_point": 0, "unifiedreward_winrate": 0}
    assert report["judged"] == {"unifiedreward_point": 8, "unifiedreward_winrate": 8}


needs_lf = pytest.mark.skipif(not LF_PYTHON.exists(), reason=".venv-llamafactory not built")


@needs_lf
@pytest.mark.llamafactory
def test_trl024_dpo_collator_matches_trl116_vision_collator(sift_dpo_run, toy_world, tmp_path):
    run_example(
        "sift_then_dpo.py",
        ["--toy-world", toy_world["root"], "--pairs", str(sift_dpo_run / "sift" / "pairs.jsonl"),
         "--output-dir", str(tmp_path), "--max-steps", "2", "--sft-weight", "0.5"],
        cwd=tmp_path, python=str(LF_PYTHON),
    )
    old = json.loads((tmp_path / "dpo_report.json").read_text())
    new = json.loads((sift_dpo_run / "dpo_report.json").read_text())
    assert old["steps"] == 2 and old["finite"] and old["losses"][0] > 1.0  # the 'sft' term on TRL 0.24 too
    first_old = next(e for e in old["log_history"] if "loss" in e)
    first_new = next(e for e in new["log_history"] if "loss" in e)
    # same rows, same weights: every image patch and the mRoPE positions reach the model in both stacks
    for key in ("logps/chosen", "logps/rejected"):
        assert float(first_old[key]) == pytest.approx(float(first_new[key]), abs=1e-2), key


@needs_lf
@pytest.mark.llamafactory
def test_trl024_online_dpo_with_judge_and_media_lookup(toy_world, tmp_path):
    run_example(
        "online_dpo_judge.py",
        ["--toy-world", toy_world["root"], "--output-dir", str(tmp_path), "--num-prompts", "4",
         "--max-new-tokens", "8", "--max-steps", "2"],
        cwd=tmp_path, python=str(LF_PYTHON),
    )
    report = json.loads((tmp_path / "online_dpo_report.json").read_text())
    assert len(report["judge_calls"]) == 2
    assert all(rank in (0, 1) for ranks in report["judge_calls"] for rank in ranks), "media found for every prompt"
    assert report["finite"] and len(report["losses"]) == 2
