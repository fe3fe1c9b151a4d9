"""Loader options reach the model loader, never ``generate()``: device_map (accelerate, CPU here), dtype names,
attention implementations, and generation options only through ``generate_kwargs``."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from reward_core import UnifiedReward
from reward_core.backends.transformers_backend import resolve_dtype, split_from_pretrained_kwargs

IMAGE = Image.new("RGB", (56, 56), (200, 30, 30))


def test_dtype_names():
    assert resolve_dtype("bf16") is resolve_dtype("bfloat16") is resolve_dtype("torch.bfloat16") is torch.bfloat16
    assert resolve_dtype(torch.float16) is torch.float16 and resolve_dtype("auto") == "auto" and resolve_dtype(None) == "auto"
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3")


def test_generation_options_never_mix_with_loader_options():
    loader, backend = split_from_pretrained_kwargs({"device_map": "auto", "max_memory": {0: "20GiB"}, "prefetch": False})
    assert loader == {"device_map": "auto", "max_memory": {0: "20GiB"}} and backend == {"prefetch": False}
    with pytest.raises(TypeError, match="generate_kwargs"):
        split_from_pretrained_kwargs({"temperature": 0.7})


@pytest.mark.parametrize(
    "options,dtype",
    [({"device_map": "auto", "dtype": "bf16"}, torch.bfloat16), ({"device_map": "cpu", "torch_dtype": "bfloat16"}, torch.bfloat16),
     ({"device_map": {"": "cpu"}, "dtype": torch.float32, "attn_implementation": "eager"}, torch.float32)],
)  # fmt: skip
def test_device_map_and_dtype_load_and_judge(toy_world, options, dtype):
    rm = UnifiedReward.from_pretrained(toy_world["reward_model"], max_new_tokens=4, **options)
    model = rm.backend.model
    assert model.dtype == dtype and {p.device.type for p in model.parameters()} == {"cpu"}
    generated = rm.score(IMAGE, prompt="a red square")
    assert generated.status.value != "backend_error", generated.error  # options never reached generate()
    assert rm.score(IMAGE, prompt="a red square", mode="logit").ok


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_map_goes_to_the_loader(toy_world):
    with pytest.raises(Exception) as error:  # the loader places weights on the (absent) GPU and fails at load time
        UnifiedReward.from_pretrained(toy_world["reward_model"], device_map={"": "cuda:0"})
    assert "cuda" in str(error.value).lower() or "nvidia" in str(error.value).lower()


def test_conflicting_options_are_refused(toy_world):
    with pytest.raises(ValueError, match="disagree"):
        UnifiedReward.from_pretrained(toy_world["reward_model"], dtype="bf16", torch_dtype=torch.float32)
    with pytest.raises(ValueError, match="device or device_map"):
        UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu", device_map="auto")
    with pytest.raises(TypeError, match="generate_kwargs"):
        UnifiedReward.from_pretrained(toy_world["reward_model"], top_k=5)


def test_generate_kwargs_reach_generate(toy_world):
    rm = UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu", max_new_tokens=6, generate_kwargs={"min_new_tokens": 6})
    result = rm.score(IMAGE, prompt="a red square")
    assert len(rm.backend.tokenizer(result.text)["input_ids"]) >= 5  # forced to run 6 tokens (decoding may merge)


def test_tree_scores_agree_across_attention_implementations(toy_world):
    scores = {}
    for implementation in ("eager", "sdpa"):
        rm = UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu", dtype="float32", attn_implementation=implementation)
        assert rm.backend.model.config._attn_implementation == implementation
        scores[implementation] = rm.score(IMAGE, prompt="a red square", mode="logit").score
    assert scores["eager"] == pytest.approx(scores["sdpa"], abs=1e-4)


@pytest.mark.slow
def test_gpu_acceptance_script_runs_its_code_path_on_the_toy_judge(toy_world, tmp_path):
    """benchmarks/gpu_acceptance.py at toy size on CPU: same loader options, generate and logit checks."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu_acceptance

    out = tmp_path / "summary.json"
    argv = ["--size", "tiny", "--world", toy_world["root"], "--items", "2", "--image-size", "28", "--max-new-tokens", "4",
            "--no-reference", "--tmp", str(tmp_path), "--json", str(out)]  # fmt: skip
    assert gpu_acceptance.main(argv) == 0
    summary = json.loads(out.read_text())
    assert summary["dtype"] == "torch.bfloat16" and summary["attn"] == "sdpa" and all(summary["checks"].values())
