"""Decimal logit scores: the trie's math on hand-made distributions, the tree step (one prefill + KV cache) of
the real toy judge against a brute-force sum over continuations from uncached full forwards, and HTTP."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from reward_core import UnifiedReward, logit
from reward_core.backends.base import BackendRequest
from reward_core.backends.openai_backend import OpenAIBackend
from reward_core.backends.tree_scoring import tree_layout
from reward_core.prompts import get_template
from reward_core.score_trie import DIGITS, POINT, ScoreTrie, score_distribution
from servers import StubServer, vllm_logprobs_response

# --- the grammar on hand-made distributions ----------------------------------------------------------


def answer_only(text: str, trie: ScoreTrie) -> dict[str, dict[str, float]]:
    """Next-symbol probabilities of a judge that writes exactly ``text`` and then stops."""
    probs = {node: {} for node in trie.nodes}
    for i in range(len(text)):
        if text[:i] in probs:
            probs[text[:i]] = {text[i]: 1.0}
    return probs


@pytest.mark.parametrize(
    "scale,text,expected",
    [((1, 5), "3.5", 3.5), ((1, 5), "2.33", 2.33), ((1, 5), "3.", 3.0), ((1, 5), "5", 5.0),
     ((1, 10), "7.5", 7.5), ((1, 10), "10", 10.0), ((0, 100), "85", 85.0), ((0, 100), "100", 100.0)],
)  # fmt: skip
def test_a_decimal_answer_keeps_its_decimals(scale, text, expected):
    trie = ScoreTrie.for_scale(scale)
    assert score_distribution(trie, answer_only(text, trie)).expected == pytest.approx(expected)


def test_out_of_scale_continuations_leave_the_distribution():
    trie = ScoreTrie.for_scale((1, 5))
    probs = {node: {} for node in trie.nodes}
    probs[""] = {"5": 0.5, "4": 0.5}
    probs["5"] = {".": 1.0}
    probs["5."] = {"5": 0.6, "0": 0.4}  # "5.5" is off the scale: its mass is dropped, not counted as 5
    distribution = score_distribution(trie, probs)
    assert distribution.coverage == pytest.approx(0.5 * 0.4 + 0.5)
    assert distribution.expected == pytest.approx((5 * 0.2 + 4 * 0.5) / 0.7)
    hundred = ScoreTrie.for_scale((0, 100))
    probs = {node: {} for node in hundred.nodes}
    probs[""], probs["8"], probs["85"] = {"8": 1.0}, {"5": 1.0}, {"5": 0.5}  # "855" is not a 0-100 score
    assert score_distribution(hundred, probs).coverage == pytest.approx(0.5)
    assert score_distribution(hundred, probs).expected == pytest.approx(85.0)


def test_node_counts_per_scale():
    assert [len(ScoreTrie.for_scale(s).nodes) for s in ((1, 5), (1, 10), (0, 100))] == [52, 21, 102]
    assert ScoreTrie.for_scale((1, 5)).decimals == 2 and ScoreTrie.for_scale((0, 100)).decimals == 0


# --- brute force on the real toy judge --------------------------------------------------------------


def terminal_strings(trie: ScoreTrie) -> list[str]:
    """Every well-formed in-scale answer, enumerated directly (independent of the trie walk)."""
    out = []
    for value in range(trie.low, trie.high + 1):
        out.append(str(value))
        if trie.decimals and value < trie.high:
            out.append(f"{value}.")
            for places in range(1, trie.decimals + 1):
                out += [f"{value}." + "".join(d) for d in itertools.product(DIGITS, repeat=places)]
        elif trie.decimals:
            out += [f"{value}."] + [f"{value}." + "0" * places for places in range(1, trie.decimals + 1)]
    return out


def brute_force(backend, request: BackendRequest, trie: ScoreTrie) -> dict[float, float]:
    """Sum over continuations with one uncached full forward per answer prefix (vision tower every time)."""
    tok, base = backend.tokenizer, backend.encode(request)
    cache: dict[str, torch.Tensor] = {}

    def next_logprobs(text: str) -> torch.Tensor:
        if text not in cache:
            ids = tok(logit.answer_text(request.answer_prefix, text or "1"), add_special_tokens=False)["input_ids"]
            ids = ids if text else ids[:-1]
            with torch.no_grad():
                logits = backend.model(**base.extend(ids).inputs, use_cache=False).logits[0, -1].float()
            cache[text] = torch.log_softmax(logits, dim=-1)
        return cache[text]

    def p(text: str, symbol: str) -> float:
        ids = tok(logit.answer_text(request.answer_prefix, text + symbol), add_special_tokens=False)["input_ids"]
        return math.exp(float(next_logprobs(text)[ids[-1]]))

    masses: dict[float, float] = {}
    for answer in terminal_strings(trie):
        mass = math.prod(p(answer[:i], answer[i]) for i in range(len(answer)))
        full = POINT in answer and len(answer.partition(POINT)[2]) == trie.decimals
        if not full:
            continuing = DIGITS + ((POINT,) if POINT not in answer and trie.decimals else ())
            mass *= 1 - sum(p(answer, s) for s in continuing)
        value = float(answer.rstrip(POINT))
        masses[value] = masses.get(value, 0.0) + mass
    return masses


@pytest.fixture(scope="module")
def backend(toy_world):
    from reward_core.backends.transformers_backend import TransformersBackend

    return TransformersBackend.from_pretrained(toy_world["reward_model"], device="cpu", dtype="float32", batch_size=4)


@pytest.fixture(scope="module")
def point_row(toy_world):
    row = json.loads(Path(toy_world["data"]["image_points"]).read_text().splitlines()[0])
    return str(Path(toy_world["data_dir"]) / row["image"]), row["prompt"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "key", ["image_generation.point_score.v1", "dpo.image_generation.point_score", "image_understanding.point_score.v1"]
)  # 1-5 (2 decimals), 1-10 (1 decimal), 0-100 (integers)
def test_tree_step_matches_brute_force_sum_over_continuations(backend, point_row, key):
    template = get_template(key)
    image, prompt = point_row
    text = template.render(prompt=prompt, question=prompt, response="a red circle")
    request = BackendRequest(media=[image], text=text, answer_prefix=template.answer_prefix)
    trie = logit.trie_for(template)
    (answer,) = backend.answer_node_probs([request], trie.nodes)
    assert answer.error is None and set(answer.probs) == set(trie.nodes)
    result = logit.result_from_node_probs(template, trie, answer.probs)
    masses = brute_force(backend, request, trie)
    total = sum(masses.values())
    expected = sum(v * m for v, m in masses.items()) / total
    assert result.ok and result.score == pytest.approx(expected, abs=1e-4)
    assert score_distribution(trie, answer.probs).coverage == pytest.approx(total, abs=1e-4)
    assert sum(result.probs.values()) == pytest.approx(1.0)


def test_batched_tree_step_equals_single_and_errors_stay_per_item(backend, point_row, tmp_path):
    template = get_template("image_generation.point_score.v1")
    image, prompt = point_row
    good = BackendRequest(media=[image], text=template.render(prompt=prompt), answer_prefix="Final Score:")
    other = BackendRequest(media=[image], text=template.render(prompt=prompt + " at night"), answer_prefix="Final Score:")
    broken = BackendRequest(media=[str(tmp_path / "missing.png")], text="x", answer_prefix="Final Score:")
    trie = logit.trie_for(template)
    batched = backend.answer_node_probs([good, broken, other], trie.nodes)
    assert "missing.png: file not found" in batched[1].error and not batched[1].probs
    for request, answer in ((good, batched[0]), (other, batched[2])):
        (single,) = backend.answer_node_probs([request], trie.nodes)
        for node in trie.nodes:
            assert answer.probs[node] == pytest.approx(single.probs[node], abs=1e-5)


def test_tree_layout_is_one_token_per_digit(backend):
    trie = ScoreTrie.for_scale((1, 5))
    layout = tree_layout(backend.tokenizer, "Final Score:", trie.nodes)
    assert backend.tokenizer.decode(list(layout.shared)) == "Final Score: "
    assert [backend.tokenizer.decode([layout.symbol_ids[s]]) for s in "0123456789."] == list("0123456789.")
    assert layout.ancestors().sum().item() == sum(len(n) for n in trie.nodes[1:])


def test_model_api_reads_decimal_scores_over_http():
    """STUB server (vLLM's documented logprobs shape) for a judge that writes "Final Score: 3.5" or "4"."""
    answers = {"Final Score: ": {"3": math.log(0.5), "4": math.log(0.5)}, "Final Score: 3": {".": 0.0},
               "Final Score: 3.": {"5": 0.0}, "Final Score: 4": {"\n": 0.0}}  # fmt: skip

    def respond(path, body):
        return 200, vllm_logprobs_response(answers.get(body["messages"][-1]["content"], {"\n": 0.0}))

    with StubServer(respond) as stub:
        rm = UnifiedReward(OpenAIBackend(stub.base_url, concurrency=4, logprob_tokens="top"))  # a top-k stub
        result = rm.score("image_generation.point_score.v1", Image.new("RGB", (28, 28)), mode="logit", prompt="x")
    assert result.ok and result.score == pytest.approx((3.5 + 4.0) / 2)
    assert result.probs == pytest.approx({"3.5": 0.5, "4": 0.5})
    assert len(stub.received) == len(ScoreTrie.for_scale((1, 5)).nodes)
