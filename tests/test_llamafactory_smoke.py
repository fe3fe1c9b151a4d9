"""Shipped LLaMA-Factory recipes: static checks (main env) and a real few-step toy run via
``llamafactory-cli`` in ``.venv-llamafactory`` whose checkpoint is then loaded in the main env."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from integrations.llamafactory import recipe_path
from integrations.llamafactory.launch import CPU_OVERRIDES, OFFLINE_ENV, REPO_ROOT, find_llamafactory_cli, run_train
from integrations.llamafactory.toy_proof import (
    PAIR_TEMPLATE,
    ToyTrainingSetup,
    prepare_toy_dpo_data,
    train_toy_reward_model,
)

RECIPES = {
    "qwen2_5vl_full_sft": ("sft", "qwen2_vl"),
    "qwen2_5vl_lora_sft": ("sft", "qwen2_vl"),
    "qwen3vl_full_sft": ("sft", "qwen3_vl_nothink"),
    "qwen2_5vl_lora_dpo": ("dpo", "qwen2_vl"),
    "qwen2_5vl_full_sft_paper": ("sft", "qwen2_vl"),
    "qwen2_5vl_lora_rm": ("rm", "qwen2_vl"),
    "qwen3_5_full_sft": ("sft", "qwen3_5_nothink"),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_keys_and_deepspeed_files(name):
    recipe = yaml.safe_load(Path(recipe_path(name)).read_text())
    stage, template = RECIPES[name]
    assert recipe["stage"] == stage and recipe["template"] == template
    assert recipe["image_max_pixels"] > 0 and "video_max_pixels" in recipe
    deepspeed = REPO_ROOT / recipe["deepspeed"]  # recipes are run from the repository root
    assert deepspeed.is_file(), f"{name} references a missing DeepSpeed config {deepspeed}"
    json.loads(deepspeed.read_text())
    if stage == "dpo":
        assert recipe["pref_loss"] == "sigmoid" and recipe["pref_beta"] > 0


LLAMAFACTORY_CLI = find_llamafactory_cli()
SMOKE_SETUP = ToyTrainingSetup(train_pairs=4, train_points=4, test_pairs=1, test_points=1, num_layers=2,
                               batch_size=4, max_steps=2)


def runs_llamafactory(test):
    """Marks a test that runs ``llamafactory-cli`` (slow; skipped without the LLaMA-Factory env)."""
    skip = pytest.mark.skipif(LLAMAFACTORY_CLI is None, reason="no .venv-llamafactory (make venv-llamafactory) "
                              "and no llamafactory-cli on PATH")
    return pytest.mark.slow(pytest.mark.llamafactory(skip(test)))


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """Two steps of the shipped full-SFT recipe on the toy quality task, shared by the SFT assertions."""
    work_dir = tmp_path_factory.mktemp("lf-sft")
    run, data = train_toy_reward_model(work_dir, SMOKE_SETUP, threads=2, timeout=300)
    assert run.ok, run.log[-4000:]
    return work_dir, Path(run.output_dir), data


@runs_llamafactory
def test_sft_recipe_logs_finite_losses(sft_run):
    _, trained, _ = sft_run
    state = json.loads((trained / "trainer_state.json").read_text())
    assert state["global_step"] == SMOKE_SETUP.max_steps
    losses = [entry["train_loss"] for entry in state["log_history"] if "train_loss" in entry]
    assert losses and all(math.isfinite(loss) and loss > 0 for loss in losses)


@runs_llamafactory
def test_sft_checkpoint_changed_and_judges_with_reward_core(sft_run):
    import torch
    from safetensors.torch import load_file

    from reward_core.model import JudgeItem, UnifiedReward

    work_dir, trained, data = sft_run
    before, after = load_file(work_dir / "init-model" / "model.safetensors"), load_file(trained / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[key], after[key]) for key in before), "training changed no weight"

    judge = UnifiedReward.from_pretrained(str(trained), device="cpu", dtype="float32", max_new_tokens=6)
    assert type(judge.backend.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    record = data.test_pairs[0]
    media = [str(Path(data.dataset_dir) / path) for path in record["images"]]
    (result,) = judge.judge_batch(PAIR_TEMPLATE, [JudgeItem(media, {"prompt": record["prompt"]})])
    assert result.text is not None  # two steps teach nothing; the point is that it loads and generates


@runs_llamafactory
def test_dpo_recipe_trains_lora_on_sift_records(sft_run, tmp_path):
    from safetensors.torch import load_file

    work_dir, _, _ = sft_run
    data = prepare_toy_dpo_data(tmp_path / "data", num_items=4)
    overrides = {
        **CPU_OVERRIDES, "model_name_or_path": str(work_dir / "init-model"), "trust_remote_code": False,
        "dataset_dir": data.dataset_dir, "media_dir": data.dataset_dir, "dataset": ",".join(data.datasets),
        "output_dir": str(tmp_path / "dpo"), "image_max_pixels": 56 * 56, "image_min_pixels": 56 * 56,
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "max_steps": 2,
        "learning_rate": 1e-3, "warmup_ratio": 0.0, "logging_steps": 1, "save_steps": 1_000_000, "plot_loss": False,
    }
    run = run_train(recipe_path("qwen2_5vl_lora_dpo"), overrides, env=OFFLINE_ENV, threads=2, timeout=300)
    assert run.ok, run.log[-4000:]
    state = json.loads((tmp_path / "dpo" / "trainer_state.json").read_text())
    steps = [entry for entry in state["log_history"] if "rewards/margins" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    assert all(math.isfinite(entry["loss"]) for entry in steps)
    assert steps[-1]["rewards/chosen"] != 0.0  # after one update the policy differs from the reference
    adapter = load_file(tmp_path / "dpo" / "adapter_model.safetensors")
    assert any(key.endswith("lora_B.weight") and adapter[key].abs().sum() > 0 for key in adapter)


@pytest.mark.parametrize("quality", [1, 2, 3, 4, 5])
def test_quality_task_stripes_five_minus_quality_quadrants(quality):
    import random

    import numpy as np

    from unifiedreward.toy.scenes import random_scene
    from unifiedreward.toy.tasks import render_quality_image

    rng = random.Random(quality)
    pixels = np.asarray(render_quality_image(random_scene(rng), quality, rng), dtype=np.float32)
    # the artifact alternates magenta/green every two columns: a striped quadrant has a large green swing
    swing = np.abs(pixels[:, 0:-2:4, 1] - pixels[:, 2::4, 1])
    quadrants = [swing[r:r + 28, c // 4:(c + 28) // 4].mean() for r in (0, 28) for c in (0, 28)]
    assert sum(value > 100 for value in quadrants) == 5 - quality


@pytest.mark.parametrize("quality", [1, 3, 5])
def test_quality_task_shadows_five_minus_quality_quadrants(quality):
    import random

    import numpy as np

    from unifiedreward.toy.scenes import random_scene
    from unifiedreward.toy.tasks import SHADOW_LIGHT, render_quality_image

    scene = random_scene(random.Random(0))
    clean, shadowed = (np.asarray(render_quality_image(scene, q, random.Random(quality), flaw=flaw), np.float32)
                       for q, flaw in ((5, "shadow"), (quality, "shadow")))
    # same rng seed, so the same scene jitter: a shadowed quadrant is the clean one at SHADOW_LIGHT of its light
    ratios = [shadowed[r:r + 28, c:c + 28].sum() / clean[r:r + 28, c:c + 28].sum() for r in (0, 28) for c in (0, 28)]
    assert sum(abs(ratio - SHADOW_LIGHT) < 0.02 for ratio in ratios) == 5 - quality
    assert sum(abs(ratio - 1.0) < 0.02 for ratio in ratios) == quality - 1


def test_quality_task_mixes_flaws_only_when_asked(tmp_path):
    from unifiedreward.toy.tasks import make_quality_points

    stripes = make_quality_points(tmp_path / "a", 10, seed=3)
    assert stripes == make_quality_points(tmp_path / "b", 10, seed=3, flaws=("stripes",))
    with pytest.raises(ValueError, match="flaw"):
        make_quality_points(tmp_path / "c", 2, flaws=("blur",))
