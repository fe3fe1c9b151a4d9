"""Logit scoring: candidate token layout (toy Qwen tokenizer), exact trie math, and the backend's
one-pass probabilities against a manual computation from the model's full logits."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from reward_core import logit
from reward_core.backends.base import BackendRequest
from reward_core.prompts import get_template
from reward_core.results import Status

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="module")
def backend(toy_world):
    from reward_core.backends.transformers_backend import TransformersBackend

    return TransformersBackend.from_pretrained(toy_world["reward_model"], device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def tokenizer(backend):
    return backend.tokenizer


def tokens(tokenizer, ids) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


# --- candidate layout with the toy Qwen tokenizer ------------------------------------------------


def test_final_score_candidates_are_the_digit_after_a_separate_space(tokenizer):
    layout = logit.candidate_paths(tokenizer, "Final Score:", [str(v) for v in range(1, 6)])
    full = tokenizer("Final Score: 5", add_special_tokens=False)["input_ids"]
    assert tokens(tokenizer, full)[-2:] == [" ", "5"]  # Qwen: the space is its own token, digits one per token
    assert list(layout.shared) == full[:-1]  # prefix + the space are context
    for value, path in layout.paths.items():
        assert tokens(tokenizer, path) == [value]
        assert path == tuple(tokenizer(f"Final Score: {value}", add_special_tokens=False)["input_ids"][len(full) - 1 :])
    assert layout.branches() == [()]  # one forward pass, no continuation


def test_multi_digit_scales_use_full_answer_tokenization(tokenizer):
    layout = logit.candidate_paths(tokenizer, "Final Score:", [str(v) for v in range(1, 11)])
    assert tokens(tokenizer, layout.paths["10"]) == ["1", "0"]
    assert layout.paths["10"][0] == layout.paths["1"][0]
    assert layout.branches() == [layout.paths["1"]]  # one sequence: context + "1" exposes both distributions
    hundred = logit.candidate_paths(tokenizer, "Final Score:", [str(v) for v in range(0, 101)])
    assert tokens(tokenizer, hundred.paths["100"]) == ["1", "0", "0"]
    branch_text = sorted("".join(tokens(tokenizer, b)) for b in hundred.branches())
    assert branch_text == ["10", "2", "3", "4", "5", "6", "7", "8", "9"]


@pytest.mark.parametrize("prefix", ["Image", "Overall Judgment: Answer", "Edited image"])
def test_pairwise_candidates(tokenizer, prefix):
    layout = logit.candidate_paths(tokenizer, prefix, ["1", "2"])
    assert {k: tokens(tokenizer, v) for k, v in layout.paths.items()} == {"1": ["1"], "2": ["2"]}
    assert tokenizer.decode(list(layout.shared)) == prefix + " "


def test_answer_text_adds_one_space_only_when_needed():
    assert logit.answer_text("Final Score:", "7") == "Final Score: 7"
    assert logit.answer_text("Final Score: ", "7") == "Final Score: 7"
    assert logit.answer_text("", "7") == "7"


class CharTokenizer:
    """One token per character (ord), to test the trie without a model."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_trie_probabilities_are_exact_and_sum_to_one():
    layout = logit.candidate_paths(CharTokenizer(), "S:", ["1", "2", "10", "11"])
    one, two, zero = ord("1"), ord("2"), ord("0")
    assert layout.shared == (ord("S"), ord(":"), ord(" "))
    assert layout.children(()) == [one, two] and layout.children((one,)) == [zero, one]
    # P(1)=.5 P(2)=.3 at the root (.2 elsewhere); after "1": P(0)=.4 P(1)=.1, so P(stop)=.5
    nodes = {(): {one: math.log(0.5), two: math.log(0.3)}, (one,): {zero: math.log(0.4), one: math.log(0.1)}}
    got = {k: math.exp(v) for k, v in logit.candidate_logprobs(layout, nodes).items()}
    assert got == pytest.approx({"1": 0.25, "2": 0.3, "10": 0.2, "11": 0.05})
    probs = logit.normalize(logit.candidate_logprobs(layout, nodes))
    assert sum(probs.values()) == pytest.approx(1.0)
    assert probs["2"] == pytest.approx(0.3 / 0.8)


def test_duplicate_or_prefix_only_candidates_are_rejected():
    with pytest.raises(ValueError, match="distinct"):
        logit.candidate_paths(CharTokenizer(), "S:", ["1", "1"])


def test_results_from_logprobs():
    pair = get_template("image_generation.pair_rank.v1")
    result = logit.result_from_logprobs(pair, {"1": math.log(0.2), "2": math.log(0.6)})
    assert result.ok and result.winner == 2 and result.probs == pytest.approx({"1": 0.25, "2": 0.75})
    assert logit.result_from_logprobs(pair, {"1": -1.0, "2": -1.0}).winner == 0  # an exact tie is a tie
    point = get_template("image_generation.point_score.v1")
    result = logit.result_from_logprobs(point, {str(v): (0.0 if v == 4 else -math.inf) for v in range(1, 6)})
    assert result.score == pytest.approx(4.0) and result.winner is None
    failed = logit.result_from_logprobs(point, {"1": math.nan, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.0})
    assert failed.status is Status.BACKEND_ERROR and failed.score is None
    assert logit.candidates_for(get_template("image_understanding.point_score.v1"))[-1] == "100"
    with pytest.raises(ValueError, match="no answer_prefix"):
        logit.candidates_for(get_template("image_generation.point_score_acs.v2"))


# --- backend: one pass vs manual computation from full logits --------------------------------------


def manual_logprobs(backend, request: BackendRequest, candidates: list[str]) -> dict[str, float]:
    """Independent reference: one full forward per candidate over ``prompt + "prefix answer"`` tokens,
    summing the candidate's token log-probs, times P(stop) when a longer candidate extends it."""
    base = backend.encode(request)
    tok = backend.tokenizer
    full = {c: tok(logit.answer_text(request.answer_prefix, c), add_special_tokens=False)["input_ids"] for c in candidates}
    common = os.path.commonprefix(list(full.values()))
    result = {}
    for candidate, ids in full.items():
        inputs = base.extend(ids).inputs
        with torch.no_grad():
            logprobs = torch.log_softmax(backend.model(**inputs).logits[0].float(), dim=-1)
        start = base.length + len(common)
        total = sum(float(logprobs[pos - 1, ids[pos - base.length]]) for pos in range(start, base.length + len(ids)))
        longer = {other[len(ids)] for other in full.values() if len(other) > len(ids) and other[: len(ids)] == ids}
        if longer:
            total += math.log(1 - sum(math.exp(float(logprobs[-1, t])) for t in longer))
        result[candidate] = total
    return result


@pytest.fixture(scope="module")
def image_request(toy_world):
    row = json.loads(Path(toy_world["data"]["image_points"]).read_text().splitlines()[0])
    template = get_template("image_generation.point_score.v1")
    image = str(Path(toy_world["data_dir"]) / row["image"])
    return BackendRequest(media=[image], text=template.render(prompt=row["prompt"]), answer_prefix=template.answer_prefix)


@pytest.mark.parametrize("candidates", [["1", "2"], [str(v) for v in range(1, 6)], [str(v) for v in range(1, 11)]])
def test_backend_logprobs_match_manual_full_logits(backend, image_request, candidates):
    (answer,) = backend.answer_logprobs([image_request], candidates)
    assert answer.error is None and set(answer.logprobs) == set(candidates)
    expected = manual_logprobs(backend, image_request, candidates)
    for candidate in candidates:
        assert answer.logprobs[candidate] == pytest.approx(expected[candidate], abs=1e-4)
    assert sum(logit.normalize(answer.logprobs).values()) == pytest.approx(1.0)


def test_batched_logprobs_equal_single_and_errors_stay_per_item(backend, image_request, tmp_path):
    other = BackendRequest(media=image_request.media, text=image_request.text + " Be strict.", answer_prefix="Final Score:")
    broken = BackendRequest(media=[str(tmp_path / "missing.png")], text="x", answer_prefix="Final Score:")
    candidates = [str(v) for v in range(1, 11)]
    batched = backend.answer_logprobs([image_request, broken, other], candidates)
    assert "missing.png: file not found" in batched[1].error and not batched[1].logprobs
    for request, answer in ((image_request, batched[0]), (other, batched[2])):
        (single,) = backend.answer_logprobs([request], candidates)
        assert answer.logprobs == pytest.approx(single.logprobs, abs=1e-4)
