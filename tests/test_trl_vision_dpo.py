"""``vision_dpo_trainer_class()`` on TRL 1.16 and 0.24: a model path, ``DPOConfig`` defaults for the image columns,
and a ``max_length`` that cuts completions, never image tokens (``tests/scripts/vision_dpo_defaults.py``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHONS = {"trl-1.16": REPO / ".venv" / "bin" / "python", "trl-0.24": REPO / ".venv-llamafactory" / "bin" / "python"}

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("version", sorted(PYTHONS))
def test_vision_dpo_honours_max_length_without_cutting_image_tokens(version, toy_world, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", "DISABLE_VERSION_CHECK": "1"}
    process = subprocess.run([str(PYTHONS[version]), str(REPO / "tests/scripts/vision_dpo_defaults.py"), toy_world["root"],
                              str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-4000:]
    result = json.loads(next(line for line in process.stdout.splitlines() if line.startswith("RESULT "))[7:])
    # max_length=100: prompt (64 image tokens + text) whole, the long chosen answer cut to fit
    assert result["collated"] == {"image_tokens": 64, "expected_image_tokens": 64, "length": 100}
    # max_length=48 is shorter than the prompt: the prompt is kept whole, with one completion token
    short = result["collated_48"]
    assert short["image_tokens"] == short["expected_image_tokens"] == 64 and 64 < short["length"] < 100
    assert result["finite"] and len(result["losses"]) == 1  # trained (no "Image features and image tokens" error)
