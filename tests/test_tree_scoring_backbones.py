"""The score-trie step on the other released backbones: tiny random Qwen3-VL (tree attention, deepstack) and
Qwen3.5 (Gated DeltaNet layers: per-branch cache copies), each against uncached full forwards per node.

Built from configs (no processor): the inputs are hand-made token ids with 4 image tokens and random pixel
patches, which is all the language model and vision tower see."""

from __future__ import annotations

import math

import pytest
import torch

from reward_core.backends import tree_scoring
from reward_core.score_trie import ScoreTrie, score_distribution

IMAGE, VIDEO, START, END = 290, 291, 292, 293
DIGITS = {**{str(d): 100 + d for d in range(10)}, ".": 120}
SHARED = (40, 41)  # stands for "Final Score:" + " "


def qwen3_vl():
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    config = Qwen3VLConfig(
        text_config={"vocab_size": 300, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 2048,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                         "mrope_interleaved": True}},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                       "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 64,
                       "deepstack_visual_indexes": [1]},
        image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=START, vision_end_token_id=END,
    )  # fmt: skip
    return Qwen3VLForConditionalGeneration(config)


def qwen3_5():
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    config = Qwen3_5Config(
        text_config={"vocab_size": 300, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "layer_types": ["linear_attention", "full_attention"], "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 2048,
                     "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_num_key_heads": 2,
                     "linear_num_value_heads": 4,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                         "mrope_interleaved": True, "partial_rotary_factor": 1.0}},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                       "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 64},
        image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=START, vision_end_token_id=END,
    )  # fmt: skip
    return Qwen3_5ForConditionalGeneration(config)


def inputs(rows: list[list[int]], pixels: torch.Tensor) -> dict:
    """Left-padded batch of token rows, each with one 4-token image."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels.repeat(len(rows), 1),
            "image_grid_thw": torch.tensor([[1, 4, 4]] * len(rows)), "mm_token_type_ids": (ids == IMAGE).int()}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("build", [qwen3_vl, qwen3_5], ids=["qwen3-vl", "qwen3.5"])
def test_trie_step_matches_full_forwards(build):
    torch.manual_seed(0)
    model = build().eval()
    trie = ScoreTrie.for_scale((1, 10))  # 21 nodes, decimals included
    index = {n: i for i, n in enumerate(trie.nodes)}
    layout = tree_scoring.TreeLayout(SHARED, DIGITS, trie.nodes, tuple(index[n[:-1]] for n in trie.nodes[1:]))
    assert tree_scoring.recurrent(model) is (build is qwen3_5)
    pixels = torch.randn(16, 3 * 2 * 16 * 16)
    contexts = [[5, 6, START, *[IMAGE] * 4, END, *range(10, 30), *SHARED], [7, START, *[IMAGE] * 4, END, *range(12, 20), *SHARED]]
    rows = tree_scoring.node_log_probs(model, inputs(contexts, pixels), layout)  # batch of 2, left-padded
    for context, row in zip(contexts, rows):
        brute = {}
        for node in trie.nodes:
            with torch.no_grad():
                logits = model(**inputs([context + [DIGITS[c] for c in node]], pixels), use_cache=False).logits[0, -1]
            probs = torch.softmax(logits.float(), -1)
            brute[node] = {s: float(probs[i]) for s, i in DIGITS.items()}
        ours = {n: {s: math.exp(v) for s, v in d.items()} for n, d in row.items()}
        assert max(abs(ours[n][s] - brute[n][s]) for n in trie.nodes for s in DIGITS) < 1e-5
        assert score_distribution(trie, ours).expected == pytest.approx(score_distribution(trie, brute).expected, abs=1e-5)
