"""The toy world loads through public APIs and is a deterministic function of its seed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unifiedreward.toy import build_world
from unifiedreward.toy.data import read_jsonl
from unifiedreward.toy.scenes import COLOURS
from unifiedreward.toy.tokenization import QWEN_SPECIAL_TOKENS


def _records(toy_world: dict, name: str) -> list[dict]:
    return read_jsonl(Path(toy_world["data"][name]))


def _media(toy_world: dict, relative: str) -> Path:
    return Path(toy_world["data_dir"]) / relative


@pytest.fixture(scope="module")
def reward_model(toy_world):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(toy_world["reward_model"])
    model = AutoModelForImageTextToText.from_pretrained(toy_world["reward_model"]).eval()
    return processor, model


def test_manifest_paths_exist_and_every_file_has_both_splits(toy_world):
    manifest = json.loads((Path(toy_world["root"]) / "manifest.json").read_text())
    assert manifest["reward_model"] == toy_world["reward_model"]
    for key in ("reward_model", "policy_model", "sd_model", "data_dir"):
        assert Path(toy_world[key]).is_absolute() and Path(toy_world[key]).is_dir(), key
    expected = {"image_pairs", "image_points", "video_pairs", "video_points", "und_pairs", "und_points",
                "gen_prompts", "und_prompts"}
    assert set(toy_world["data"]) == expected
    for name in expected:
        splits = {record["split"] for record in _records(toy_world, name)}
        assert splits == {"train", "test"}, name
        assert toy_world["counts"][name]["train"] > toy_world["counts"][name]["test"] > 0


def test_reward_model_generates_from_a_chat_with_two_images(toy_world, reward_model):
    processor, model = reward_model
    record = _records(toy_world, "image_pairs")[0]
    images = [Image.open(_media(toy_world, path)).convert("RGB") for path in record["images"]]
    content = [{"type": "image", "image": image} for image in images]
    content.append({"type": "text", "text": f"Text Caption: [{record['prompt']}]"})
    messages = [{"role": "user", "content": content}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert text.endswith("<|im_start|>assistant\n")

    inputs = processor(text=[text], images=images, return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 4]]  # 64x64 -> 56x56 -> 16 patches -> 4 tokens
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 8
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    assert 1 <= len(new_tokens) <= 4
    assert int(new_tokens.max()) < len(processor.tokenizer)
    assert isinstance(processor.decode(new_tokens, skip_special_tokens=True), str)


def test_config_and_generation_config_point_at_the_tokenizer(toy_world, reward_model):
    processor, model = reward_model
    tokenizer = processor.tokenizer
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    assert model.config.image_token_id == ids["<|image_pad|>"]
    assert model.config.video_token_id == ids["<|video_pad|>"]
    assert model.config.vision_start_token_id == ids["<|vision_start|>"]
    assert model.config.text_config.vocab_size == len(tokenizer)
    assert model.generation_config.eos_token_id == [ids["<|im_end|>"], ids["<|endoftext|>"]]
    assert model.generation_config.pad_token_id == ids["<|endoftext|>"]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


def test_tokenizer_is_qwen2_with_every_special_token_round_tripping(toy_world):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(toy_world["reward_model"])
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert 2000 <= len(tokenizer) <= 4000
    ids = [tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS]
    assert ids == list(range(len(tokenizer) - len(QWEN_SPECIAL_TOKENS), len(tokenizer)))
    assert ids == [toy_world["special_tokens"][token] for token in QWEN_SPECIAL_TOKENS]
    for token, token_id in zip(QWEN_SPECIAL_TOKENS, ids):
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
        assert tokenizer.decode([token_id]) == token
    text = "<|im_start|>assistant\nFinal Score: 4.25 Image 1 is better.<|im_end|>"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    assert tokenizer.tokenize(" Final Score: 2025") == ["ĠFinal", "ĠScore", ":", "Ġ", "2", "0", "2", "5"]


def test_policy_model_shares_the_tokenizer_but_not_the_weights(toy_world):
    from safetensors.torch import load_file

    reward_dir, policy_dir = Path(toy_world["reward_model"]), Path(toy_world["policy_model"])
    assert (reward_dir / "tokenizer.json").read_bytes() == (policy_dir / "tokenizer.json").read_bytes()
    reward, policy = load_file(reward_dir / "model.safetensors"), load_file(policy_dir / "model.safetensors")
    assert reward.keys() == policy.keys()
    name = next(key for key in reward if key.endswith("embed_tokens.weight"))
    assert not torch.equal(reward[name], policy[name])


def test_videos_decode_and_go_through_the_video_processor(toy_world, reward_model):
    import decord

    processor, model = reward_model
    record = _records(toy_world, "video_pairs")[0]
    reader = decord.VideoReader(str(_media(toy_world, record["videos"][0])))
    assert len(reader) == 8
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert frames.shape == (8, 64, 64, 3)

    messages = [{"role": "user", "content": [{"type": "video", "video": "clip.mp4"},
                                             {"type": "text", "text": record["prompt"]}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], videos=[frames], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) > 0
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[-1] == model.config.text_config.vocab_size and torch.isfinite(logits).all()


def test_stable_diffusion_pipeline_runs_two_steps(toy_world):
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(toy_world["sd_model"])
    pipeline.set_progress_bar_config(disable=True)
    assert pipeline.safety_checker is None
    tokens = pipeline.tokenizer.tokenize("a red circle on the left")
    assert tokens == ["a</w>", "red</w>", "circle</w>", "on</w>", "the</w>", "left</w>"]
    generator = torch.Generator().manual_seed(0)
    image = pipeline("a red circle on the left", num_inference_steps=2, generator=generator).images[0]
    assert image.size == (64, 64)
    assert np.asarray(image).std() > 0


def _colour_pixels(image: Image.Image, colour: str) -> int:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    return int((np.abs(pixels - np.array(COLOURS[colour])).max(axis=-1) < 60).sum())


def test_image_pair_winner_shows_the_caption_colour(toy_world):
    for record in _records(toy_world, "image_pairs")[:20]:
        colour = next(name for name in COLOURS if f" {name} " in record["prompt"])
        counts = [_colour_pixels(Image.open(_media(toy_world, path)), colour) for path in record["images"]]
        winner, loser = counts[record["winner"] - 1], counts[2 - record["winner"]]
        assert winner > 50 and winner > 5 * max(loser, 1), (record, counts)


def test_point_scores_and_answers_are_in_range(toy_world):
    assert {r["score"] for r in _records(toy_world, "image_points")} <= {1, 2, 4, 5}
    assert {r["score"] for r in _records(toy_world, "video_points")} <= {1, 2, 4, 5}
    und_scores = {r["score"] for r in _records(toy_world, "und_points")}
    assert und_scores <= {0, 33, 67, 100} and {0, 100} <= und_scores
    for record in _records(toy_world, "und_pairs"):
        assert record["winner"] in (1, 2) and record["answer1"] != record["answer2"]
    for record in _records(toy_world, "und_prompts"):
        assert Image.open(_media(toy_world, record["image"])).size == (64, 64)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


MODEL_FILES = (
    "reward-qwen2_5_vl/model.safetensors", "reward-qwen2_5_vl/tokenizer.json", "reward-qwen2_5_vl/config.json",
    "reward-qwen2_5_vl/processor_config.json", "policy-qwen2_5_vl/model.safetensors",
    "sd/unet/diffusion_pytorch_model.safetensors", "sd/vae/diffusion_pytorch_model.safetensors",
    "sd/text_encoder/model.safetensors", "sd/tokenizer/vocab.json", "sd/tokenizer/merges.txt",
)


def _assert_same_world(first: Path, second: Path, first_data: dict, second_data: dict) -> None:
    for relative in MODEL_FILES:
        assert _digest(first / relative) == _digest(second / relative), relative
    # Every generator draws its items in sequence, so a smaller world is a prefix of a larger one.
    for name, path in second_data.items():
        again = read_jsonl(Path(path))
        original = read_jsonl(Path(first_data[name]))[: len(again)]
        assert [{**r, "split": None} for r in again] == [{**r, "split": None} for r in original], name
    media = [p.relative_to(second / "data") for p in (second / "data").rglob("*") if p.suffix in (".png", ".mp4")]
    assert any(p.suffix == ".mp4" for p in media) and any(p.suffix == ".png" for p in media)
    for relative in media:
        assert _digest(first / "data" / relative) == _digest(second / "data" / relative), relative


def test_same_seed_rebuilds_identical_files_in_process(toy_world, tmp_path):
    build_world(tmp_path / "again", seed=toy_world["seed"] + 1, num_items=6)
    small = build_world(tmp_path / "again", seed=toy_world["seed"], num_items=4)  # leaves nothing of the first
    assert len(list((tmp_path / "again" / "data" / "image_pairs").glob("*.png"))) == 2 * 4
    _assert_same_world(Path(toy_world["root"]), Path(small["root"]), toy_world["data"], small["data"])


def test_cli_prints_only_the_manifest_and_rebuilds_the_same_world(toy_world, tmp_path):
    """A second process too: BPE training must not depend on hash seeds."""
    out_dir = tmp_path / "cli"
    command = [sys.executable, "-m", "unifiedreward.toy", "build", str(out_dir), "--seed", str(toy_world["seed"]),
               "--num-items", "3"]
    manifest = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout)
    assert manifest["seed"] == toy_world["seed"]
    assert manifest["counts"]["image_pairs"] == {"train": 2, "test": 1}
    assert manifest["counts"]["video_pairs"] == {"train": 1, "test": 1}
    assert json.loads((out_dir / "manifest.json").read_text()) == manifest
    _assert_same_world(Path(toy_world["root"]), out_dir, toy_world["data"], manifest["data"])


def test_make_api_takes_seed_size_and_difficulty(tmp_path):
    from unifiedreward.toy.data import make_image_pairs

    first = make_image_pairs(tmp_path / "a", 6, seed=0)
    assert [r["prompt"] for r in first] != [r["prompt"] for r in make_image_pairs(tmp_path / "b", 6, seed=1)]
    shape_only = make_image_pairs(tmp_path / "c", 6, seed=0, mismatch_weights={"shape": 1.0}, size=96)
    for record in shape_only:
        colour = next(name for name in COLOURS if f" {name} " in record["prompt"])
        images = [Image.open(tmp_path / "c" / path) for path in record["images"]]
        assert all(image.size == (96, 96) for image in images)
        assert all(_colour_pixels(image, colour) > 50 for image in images)  # both show the colour: harder task


def test_toy_build_reuses_a_complete_world_of_the_same_seed_and_size(tmp_path):
    """`unifiedreward toy build` on a folder that already holds that world leaves it as it is (the README's first
    command, run again, must not delete and rewrite the checkpoints other commands are using)."""
    from unifiedreward.cli import main

    assert main(["toy", "build", str(tmp_path), "--num-items", "4"]) == 0
    weights = next((tmp_path / "reward-qwen2_5_vl").glob("*.safetensors"))
    built = weights.stat().st_mtime_ns
    assert main(["toy", "build", str(tmp_path), "--num-items", "4"]) == 0
    assert weights.stat().st_mtime_ns == built
    assert json.loads((tmp_path / "manifest.json").read_text())["num_items"] == 4
    assert main(["toy", "build", str(tmp_path), "--num-items", "5"]) == 0  # another size: built again
    assert json.loads((tmp_path / "manifest.json").read_text())["num_items"] == 5
