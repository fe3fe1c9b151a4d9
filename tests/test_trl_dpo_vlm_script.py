"""TRL 0.24's ``examples/scripts/dpo_vlm.py`` on the folder ``unifiedreward sift`` writes (issue 24, item 11).

The script loads its data with ``load_dataset(path)`` (which refuses a ``save_to_disk`` folder) and builds
``DPOTrainer(model, ref_model, args=...)`` with ``ref_model`` positional, so ``vision_dpo_trainer_class()`` must take
that order. The sift runs the real command on the toy judge (logit mode) with given candidates. TRL's examples are
not in its wheel: ``tests/scripts/dpo_vlm_calls.py`` replays the script's calls; with ``TRL_EXAMPLES_DIR`` pointing
at a TRL checkout's ``examples/scripts`` (the installed version's), the real script runs too, with the edits
docs/trl.md gives (import ``integrations.trl`` first, ``vision_dpo_trainer_class()(`` for ``DPOTrainer(``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LF_PYTHON = REPO / ".venv-llamafactory" / "bin" / "python"
ANSWERS = ["The shape is red.", "It is a blue square on the left.", "A green circle.", "It is a triangle."]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sift_dataset(toy_world, tmp_path_factory) -> Path:
    from unifiedreward.cli.sift import main as sift_main

    out = tmp_path_factory.mktemp("sift")
    data = Path(toy_world["data_dir"])
    rows = [json.loads(line) for line in Path(toy_world["data"]["und_prompts"]).read_text().splitlines()[:4]]
    prompts = out / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": row["id"], "question": row["question"], "image": row["image"],
                                           "candidates": ANSWERS}) + "\n" for row in rows))
    assert sift_main(["--input", str(prompts), "--media-dir", str(data), "--output-dir", str(out / "sift"),
                      "--reward-model", toy_world["reward_model"], "--mode", "logit", "--device", "cpu",
                      "--no-progress"]) == 0
    return out / "sift" / "dataset"


def test_sift_dataset_folder_loads_with_load_dataset(sift_dataset):
    from datasets import load_dataset

    pairs = [json.loads(line) for line in (sift_dataset.parent / "pairs.jsonl").read_text().splitlines()]
    dataset = load_dataset(str(sift_dataset))  # what TRL's and diffusers' example scripts call
    assert list(dataset) == ["train"] and len(dataset["train"]) == len(pairs) >= 1
    row = dataset["train"][0]
    assert row["images"][0].size[0] > 0 and row["chosen"] == pairs[0]["chosen"] and row["prompt"] == pairs[0]["prompt"]


def dpo_vlm_from_trl(examples_dir: Path, tmp_path: Path) -> list[str]:
    """TRL's own ``dpo_vlm.py`` with docs/trl.md's edits, as a command line (the script's own flags)."""
    source = (examples_dir / "dpo_vlm.py").read_text()
    assert source.count("trainer = DPOTrainer(") == 1
    script = tmp_path / "dpo_vlm.py"
    script.write_text("import integrations.trl\nfrom integrations.trl.collator import vision_dpo_trainer_class\n"
                      + source.replace("trainer = DPOTrainer(", "trainer = vision_dpo_trainer_class()("))
    return [str(script)]


@pytest.mark.skipif(not LF_PYTHON.exists(), reason=".venv-llamafactory not built")
@pytest.mark.llamafactory
@pytest.mark.parametrize("runner", ["script-calls", "trl-example"])
def test_trl024_dpo_vlm_trains_on_the_sift_folder_with_positional_ref_model(runner, sift_dataset, toy_world, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", "TRL_EXPERIMENTAL_SILENCE": "1",
           "DISABLE_VERSION_CHECK": "1"}
    if runner == "script-calls":
        command = [str(REPO / "tests/scripts/dpo_vlm_calls.py"), str(sift_dataset), toy_world["policy_model"],
                   str(tmp_path / "dpo")]
    else:
        examples = os.environ.get("TRL_EXAMPLES_DIR")
        if not examples:
            pytest.skip("TRL_EXAMPLES_DIR (a TRL v0.24.0 checkout's examples/scripts) not given")
        command = dpo_vlm_from_trl(Path(examples), tmp_path) + [
            "--dataset_name", str(sift_dataset), "--model_name_or_path", toy_world["policy_model"],
            "--per_device_train_batch_size", "2", "--max_steps", "1", "--logging_steps", "1",
            "--output_dir", str(tmp_path / "dpo"), "--use_cpu", "--bf16", "False", "--report_to", "none",
            "--save_strategy", "no", "--gradient_checkpointing", "False"]
    process = subprocess.run([str(LF_PYTHON), *command], env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-4000:]
    if runner == "script-calls":
        result = json.loads(next(line for line in process.stdout.splitlines() if line.startswith("RESULT "))[7:])
        assert result["ref_model_is_given"] and result["finite"] and len(result["losses"]) == 1
    else:
        assert (tmp_path / "dpo" / "model.safetensors").is_file()  # trained one step and saved, as the script does
