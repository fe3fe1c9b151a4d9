"""Vision cache on the toy Qwen2.5-VL: same results with and without it, one tower pass per distinct medium."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from reward_core.backends.transformers_backend import TransformersBackend
from reward_core.model import JudgeItem, UnifiedReward
from reward_core.media import VideoSpec
from unifiedreward.sift import SiftItem, SiftSettings, sift_item

os.environ.setdefault("OMP_NUM_THREADS", "2")


def rows(toy_world, name: str, count: int) -> list[dict]:
    return [json.loads(line) for line in Path(toy_world["data"][name]).read_text().splitlines()[:count]]


@pytest.fixture(scope="module")
def judges(toy_world):
    """One model, two backends: plain (no cache) and cached. The plain one's calls carry no keys, so they run
    the tower directly even with the cache installed on the shared model."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(toy_world["reward_model"], dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(toy_world["reward_model"])
    plain = UnifiedReward(TransformersBackend(model, processor, batch_size=4, vision_cache=False), batch_size=4)
    cached = UnifiedReward(TransformersBackend(model, processor, batch_size=4), batch_size=4)
    tower = {"media": 0}

    def count(_module, args, kwargs):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        tower["media"] += int(grid.shape[0])

    model.model.visual.register_forward_pre_hook(count, with_kwargs=True)
    return plain, cached, tower


@pytest.fixture
def images(toy_world):
    root = Path(toy_world["data_dir"])
    points = rows(toy_world, "image_points", 3)
    return [Image.open(root / row["image"]).convert("RGB") for row in points], [row["prompt"] for row in points]


def fresh(rm: UnifiedReward, tower: dict) -> None:
    rm.backend.vision_cache.clear()
    rm.backend.vision_cache.reset_stats()
    tower["media"] = 0


def test_results_identical_with_and_without_cache(judges, images):
    plain, cached, tower = judges
    pictures, prompts = images
    points = [JudgeItem(media=[pictures[i % 3]], fields={"prompt": prompts[i % 3]}) for i in range(6)]
    pairs = [JudgeItem(media=[pictures[i], pictures[(i + 1) % 3]], fields={"prompt": prompts[0]}) for i in range(3)]
    outputs = {}
    for name, rm in (("plain", plain), ("cached", cached)):
        logit = rm.score_batch("image_generation.point_score.v1", points, mode="logit")
        swap = rm.compare_batch("image_generation.pair_rank.v1", pairs, mode="logit", swap=True)
        text = rm.score_batch("image_generation.point_score.v1", points[:4], mode="generate", max_new_tokens=6)
        outputs[name] = (logit, swap, text)
        assert all(r.ok for r in logit) and all(r.text for r in text)
    (logit_p, swap_p, text_p), (logit_c, swap_c, text_c) = outputs["plain"], outputs["cached"]
    assert [r.score for r in logit_c] == pytest.approx([r.score for r in logit_p], abs=1e-6)
    assert [(r.winner, r.consistency) for r in swap_c] == [(r.winner, r.consistency) for r in swap_p]
    assert [r.text for r in text_c] == [r.text for r in text_p]


def test_each_distinct_image_goes_through_the_tower_once(judges, images):
    _, cached, tower = judges
    pictures, prompts = images
    fresh(cached, tower)
    points = [JudgeItem(media=[pictures[i % 3]], fields={"prompt": prompts[i % 3]}) for i in range(6)]
    cached.score_batch("image_generation.point_score.v1", points, mode="logit")  # batches of 4 and 2
    assert tower["media"] == 3  # 6 requests, 3 distinct images
    pairs = [JudgeItem(media=[pictures[0], pictures[1]], fields={"prompt": prompts[0]})]
    cached.compare_batch("image_generation.pair_rank.v1", pairs, mode="generate", swap=True, max_new_tokens=3)
    assert tower["media"] == 3  # both orders, both already cached
    stats = cached.backend.vision_cache.stats
    assert stats.media_encoded == 3 and stats.media_requested == 6 * 1 + 2 * 2 and stats.hits == stats.media_requested - 3


def test_sift_item_encodes_each_candidate_once(judges, toy_world):
    _, cached, tower = judges
    fresh(cached, tower)
    root = Path(toy_world["data_dir"])
    candidates = [Image.open(root / row["image"]).convert("RGB") for row in rows(toy_world, "image_points", 6)]
    item = SiftItem(id="a", fields={"prompt": "a red circle"}, candidates=candidates)
    settings = SiftSettings("image_generation.pair_rank.v1", "image_generation.point_score.v1", mode="logit", swap=True)
    record = sift_item(cached, item, settings)
    assert len(record.scores) == 6 and all(s is not None for s in record.scores)
    assert tower["media"] == 6  # 3 pairs x 2 orders + 6 point scores = 18 uses of 6 images


def test_video_is_encoded_once(judges, toy_world):
    plain, cached, tower = judges
    fresh(cached, tower)
    row = rows(toy_world, "video_points", 1)[0]
    video = VideoSpec(str(Path(toy_world["data_dir"]) / row["video"]), fps=1.0)
    items = [JudgeItem(media=[video], fields={"prompt": row["prompt"]}) for _ in range(2)]
    results = cached.score_batch("video_generation.point_score.v1", items, mode="logit")
    assert all(r.ok for r in results) and tower["media"] == 1
    reference = plain.score_batch("video_generation.point_score.v1", items[:1], mode="logit")
    assert results[0].score == pytest.approx(reference[0].score, abs=1e-6)


def test_entries_past_the_byte_budget_are_dropped(judges, images):
    _, cached, tower = judges
    pictures, prompts = images
    cache = cached.backend.vision_cache
    fresh(cached, tower)
    budget, cache.max_bytes = cache.max_bytes, 1  # no entry fits: every call runs the tower, results unchanged
    try:
        item = JudgeItem(media=[pictures[0]], fields={"prompt": prompts[0]})
        first = cached.score_batch("image_generation.point_score.v1", [item], mode="logit")[0]
        second = cached.score_batch("image_generation.point_score.v1", [item], mode="logit")[0]
        assert cache.size == 0 and tower["media"] == 2 and first.score == second.score
    finally:
        cache.max_bytes = budget


def test_qwen3_vl_deepstack_features_are_cached():
    """Qwen3-VL's tower also returns deepstack features (injected into early decoder layers): cached per image too.
    A tiny random Qwen3-VL from its config, hand-made inputs (see test_tree_scoring_backbones.py)."""
    from test_tree_scoring_backbones import inputs, qwen3_vl

    from reward_core.backends.vision_cache import VisionCache, media_keys

    torch.manual_seed(0)
    model = qwen3_vl().eval()
    first, second = torch.randn(16, 3 * 2 * 16 * 16), torch.randn(16, 3 * 2 * 16 * 16)
    batch = inputs([[1, 292, 290, 290, 290, 290, 293, 5, 6], [1, 292, 290, 290, 290, 290, 293, 7]], first)
    batch["pixel_values"] = torch.cat([first, second])
    with torch.inference_mode():
        reference = model(**batch, use_cache=False).logits
        cache = VisionCache().install(model)
        keys = {kind: [k for row in range(2) for k in media_keys(
            {"pixel_values": batch["pixel_values"][16 * row : 16 * row + 16], "image_grid_thw": batch["image_grid_thw"][row : row + 1]}
        )[kind]] for kind in ("image",)}  # fmt: skip
        for _ in range(2):  # the second time both images come from the cache
            cache.expect(keys)
            logits = model(**batch, use_cache=False).logits
            torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
    assert cache.stats.media_encoded == 2 and cache.stats.hits == 2 and cache.stats.tower_calls == 1
    assert cache._entries[keys["image"][0]].deepstack is not None
