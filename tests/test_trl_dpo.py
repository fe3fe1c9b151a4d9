"""Sifted ``pairs.jsonl`` -> TRL preference dataset (``integrations.trl.dpo.load_preference_pairs``)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from integrations.trl.dpo import load_preference_pairs


def write_pairs(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "\n", encoding="utf-8")
    return path


def test_pairs_load_with_decoded_images_and_without_judge_scores(tmp_path):
    Image.new("RGB", (8, 6), (200, 30, 30)).save(tmp_path / "red.png")
    row = {
        "images": [str(tmp_path / "red.png")],
        "prompt": [{"role": "user", "content": "What colour is the shape?"}],
        "chosen": [{"role": "assistant", "content": "Red."}],
        "rejected": [{"role": "assistant", "content": "Blue."}],
        "chosen_score": 5.0,
        "rejected_score": 1.0,
    }
    dataset = load_preference_pairs(write_pairs(tmp_path / "pairs.jsonl", [row, row]))
    assert len(dataset) == 2
    assert dataset.column_names == ["images", "prompt", "chosen", "rejected"]
    image = dataset[0]["images"][0]
    assert isinstance(image, Image.Image) and image.size == (8, 6)
    assert dataset[1]["chosen"][0]["content"] == "Red."


def test_no_pairs_is_an_error_not_an_empty_dataset(tmp_path):
    with pytest.raises(ValueError, match="no kept pairs"):
        load_preference_pairs(write_pairs(tmp_path / "pairs.jsonl", []))
