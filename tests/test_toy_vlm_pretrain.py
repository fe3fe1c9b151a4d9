"""``unifiedreward.toy.vlm_pretrain``: the demo's seeing base policy and judge, at smoke size."""

from __future__ import annotations

import fcntl
import json
import random
import threading

import numpy as np
import pytest
from PIL import Image

from unifiedreward.toy.scenes import COLOURS
from unifiedreward.toy.vlm_pretrain import PHASES, SceneImages, Settings, colour_row, main, pretrain, scaled


def test_colour_rows_are_the_policy_answer_or_the_judge_verdict_in_either_prompt():
    assert colour_row("name", "x.png", "red", right=True) == {
        "image": "x.png", "question": "What colour is the shape?", "answer": "The shape is red."}
    short = colour_row("short", "x.png", "red", right=True)
    assert short["question"] == "Question: [What colour is the shape?]\nResponse: [The shape is red.]"
    assert short["answer"] == "Final Score: 100"
    template = colour_row("template", "x.png", "blue", right=False)
    assert "Response: [The shape is blue.]" in template["question"] and "5 factors" in template["question"]
    assert template["answer"] == "Final Score: 0"


def test_scene_images_draw_solid_scene_and_mixed(tmp_path):
    images = SceneImages(tmp_path / "images")

    def colours(name: str) -> np.ndarray:
        return np.unique(np.asarray(Image.open(images.folder / name).convert("RGB")).reshape(-1, 3), axis=0)

    scene, name = images.draw(random.Random(0), "solid")
    assert Image.open(images.folder / name).size == (56, 56)
    assert colours(name).tolist() == [list(COLOURS[scene.colour])]
    rng = random.Random(1)
    colour_counts = [len(colours(images.draw(rng, "mixed")[1])) for _ in range(12)]
    assert 1 in colour_counts and max(colour_counts) > 1  # both kinds


def test_judge_curriculum_ends_in_the_sift_template():
    assert [(p.images, p.prompt) for p in PHASES["judge"]] == [
        ("solid", "short"), ("mixed", "short"), ("scene", "short"), ("scene", "template")]
    assert [p.steps for p in scaled(PHASES["judge"], 0.001)] == [2, 2, 2, 1]


def test_pretrain_writes_a_loadable_base_and_reuses_it(tmp_path, caplog):
    from transformers import AutoModelForImageTextToText

    settings = Settings(role="judge", phases=scaled(PHASES["judge"], 0.0005), batch_size=2, eval_images=2)
    report = pretrain(tmp_path / "judge", settings)
    assert [p["prompt"] for p in report["phases"]] == ["short", "short", "short", "template"]
    assert all(0.0 <= p["top1"] <= 1.0 and p["loss"] > 0 for p in report["phases"])
    assert report["chance"] == pytest.approx(1 / 6)
    AutoModelForImageTextToText.from_pretrained(tmp_path / "judge")
    weights = (tmp_path / "judge" / "model.safetensors").stat().st_mtime_ns
    with caplog.at_level("INFO", logger="unifiedreward.toy.vlm_pretrain"):
        assert pretrain(tmp_path / "judge", settings) == report
    assert "reusing" in caplog.text and (tmp_path / "judge" / "model.safetensors").stat().st_mtime_ns == weights
    other = pretrain(tmp_path / "judge", Settings(role="judge", phases=settings.phases, batch_size=1, eval_images=2))
    assert other["settings"]["batch_size"] == 1  # other settings: trained again


def test_builders_of_one_base_take_turns(tmp_path):
    """A second demo started while the first builds the base waits for it, then reuses it."""
    out = tmp_path / "policy"
    settings = Settings(role="policy", phases=scaled(PHASES["policy"], 0.002), batch_size=1, eval_images=1)
    results = []
    with open(tmp_path / ".policy.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another builder holds the lock
        waiting = threading.Thread(target=lambda: results.append(pretrain(out, settings)))
        waiting.start()
        waiting.join(timeout=2)
        assert waiting.is_alive() and not out.exists()
    waiting.join(timeout=120)
    assert not waiting.is_alive() and results[0]["settings"]["role"] == "policy" and (out / "pretrain.json").is_file()


def test_cli_builds_the_policy_base(tmp_path):
    assert main(["policy", str(tmp_path / "policy"), "--steps-scale", "0.002"]) == 0
    report = json.loads((tmp_path / "policy" / "pretrain.json").read_text())
    assert report["settings"]["role"] == "policy" and [p["steps"] for p in report["phases"]] == [2]
