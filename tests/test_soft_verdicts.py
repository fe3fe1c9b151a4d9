"""Soft verdicts of reasoning judges (Think / Flex): P("1") vs P("2") read at the verdict token of the generated
answer, next to the parsed text verdict.

The toy judge is a tiny random Qwen2.5-VL: it cannot write a Think or Flex answer by itself. The in-process tests
therefore constrain its generation to one (``prefix_allowed_tokens_fn``, test-only, a real ``generate`` with the
real hook; the verdict digit is the model's own greedy choice between "1" and "2") and check the soft verdict
against a teacher-forced forward of the same prefix through logit mode. The vLLM test constrains generation the
server's way (``structured_outputs`` regex) and checks the logprobs path against the in-process backend forced
through the very tokens vLLM generated. Stub servers (hand-written vLLM-shaped answers) only for what a real
server does not give on demand: a candidate outside the top 20, no logprobs, a refusal.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import pytest
from PIL import Image

from reward_core.backends.base import BackendRequest, Generation
from reward_core.backends.openai_backend import OpenAIBackend
from reward_core.model import JudgeItem, UnifiedReward, combine_swapped
from reward_core.prompts import get_template
from reward_core.results import RewardResult, Status
from reward_core.soft_verdict import read_soft_verdict
from servers import StubServer, chat_response, vllm_generation_response

THINK = "think.image_generation.pair_rank"
FLEX = "flex.image_generation.pair_rank"
THINK_COT = "<think>\nImage 1 looks fine; Image 2 too.\n</think>\n<answer>Image "
FORCED = {THINK: (THINK_COT, " is better</answer>"), FLEX: ('{"winner": "Image ', '"}')}
log = logging.getLogger(__name__)


def pair_items(toy_world, count: int) -> list[JudgeItem]:
    lines = Path(toy_world["data"]["image_pairs"]).read_text().splitlines()[:count]
    data = Path(toy_world["data_dir"])
    return [JudgeItem(media=[str(data / p) for p in row["images"]], fields={"prompt": row["prompt"]})
            for row in map(json.loads, lines)]  # fmt: skip


# ----- reading the verdict token (no model) ------------------------------------------------------


def generation(tokens: list[str], verdict: dict[str, float], at: str = "1") -> Generation:
    """Tokens as a backend returns them; ``verdict`` = the alternatives at the last token equal to ``at``."""
    index = len(tokens) - 1 - tokens[::-1].index(at)
    alternatives = [{t: -0.1} for t in tokens]
    alternatives[index] = verdict
    return Generation(text="".join(tokens), tokens=tokens, token_logprobs=alternatives)


def test_think_verdict_token_renormalised_over_the_two_digits():
    tokens = ["<think", ">\n", "Image", " ", "2", " wins.", "</think>", "\n<answer", ">Image", " ", "1", " is", " better", "</answer>"]
    verdict = {"1": math.log(0.6), "Ġ2": math.log(0.15), " 2": math.log(0.05), "x": math.log(0.2)}
    soft = read_soft_verdict(get_template(THINK), 1, generation(tokens, verdict))
    assert soft.error is None and soft.probs == pytest.approx({"1": 0.75, "2": 0.25})  # " 2" and "Ġ2" are one answer


def test_flex_reads_the_overall_winner_not_a_category_winner():
    tokens = ['{"categories": [{"cat_winner": "Image', " ", "1", '"}], "winner": "Image', " ", "1", '"}']
    soft = read_soft_verdict(get_template(FLEX), 1, generation(tokens, {"1": math.log(0.9), "2": math.log(0.1)}))
    assert soft.probs == pytest.approx({"1": 0.9, "2": 0.1})
    first = generation(tokens, {"1": math.log(0.9), "2": math.log(0.1)})
    first.token_logprobs[-2] = {"1": math.log(0.3), "2": math.log(0.7)}  # the overall winner's digit
    assert read_soft_verdict(get_template(FLEX), 1, first).probs == pytest.approx({"1": 0.3, "2": 0.7})


@pytest.mark.parametrize(
    "tokens, winner, alternatives, reason",
    [
        (["<answer>Image", " ", "1", "</answer>"], 1, {"1": -0.01, "7": -5.0}, "'2' not among the 2 log-probabilities"),
        (["<answer>Both images are equally good</answer>"], 0, None, "the text verdict is a tie"),
        (["<answer>Image", " ", "12", "</answer>"], 1, None, "no verdict token"),
        (["<answer>Image", " 1", "0", "</answer>"], 1, None, "no verdict token"),
        (["<answer>Image 1", " is better</answer>"], 1, None, "shares its token '<answer>Image 1'"),
        (["<answer>After all, Image", " ", "1", "</answer>"], 1, None, "no verdict token: the output has no <answer>Image N"),
        (["<answer>Image", " ", "2", "</answer>"], 1, None, "the verdict token says 2, the parsed verdict 1"),
    ],
)
def test_no_soft_verdict_without_a_readable_verdict_token(tokens, winner, alternatives, reason):
    alternatives_list = [alternatives or {"1": -0.5, "2": -1.0}] * len(tokens)
    soft = read_soft_verdict(get_template(THINK), winner, Generation(tokens=tokens, token_logprobs=alternatives_list))
    assert soft.probs is None and reason in soft.error


def test_swapped_soft_verdicts_combine_as_one_probability_of_a_over_b():
    """p(A>B) = (p1(A first) + 1 - p1(B first)) / 2; the text verdicts keep today's agree-or-tie rule."""
    a_first = RewardResult(status=Status.OK, winner=1, probs={"1": 0.8, "2": 0.2}, text="<answer>Image 1 is better</answer>")
    b_first = RewardResult(status=Status.OK, winner=1, probs={"1": 0.3, "2": 0.7}, text="<answer>Image 1 is better</answer>")
    combined = combine_swapped(a_first, b_first)
    assert combined.probs == pytest.approx({"1": 0.75, "2": 0.25})
    assert (combined.winner, combined.consistency) == (0, 0.0)  # the texts disagree (both say "first")
    unread = dataclasses.replace(b_first, probs=None, probs_error="'2' not among the 20 log-probabilities")
    half = combine_swapped(a_first, unread)
    assert half.probs is None and half.probs_error == "swapped order: '2' not among the 20 log-probabilities"
    assert RewardResult.from_dict(half.to_dict()).probs_error == half.probs_error


# ----- in-process: a real generate, constrained to the format --------------------------------------


class ForcedAnswer:
    """``prefix_allowed_tokens_fn`` (test-only): the assistant turn is forced to ``token_ids``, except at ``None``
    entries, where the model chooses freely between "1" and "2"; then the end of turn."""

    def __init__(self, tokenizer, token_ids: list[int | None]):
        self.header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
        self.digits = [tokenizer(d, add_special_tokens=False)["input_ids"][0] for d in "12"]
        self.script = list(token_ids) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]

    @classmethod
    def around_verdict(cls, tokenizer, head: str, tail: str) -> ForcedAnswer:
        ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        return cls(tokenizer, ids(head) + [None] + ids(tail))

    def __call__(self, batch_id: int, input_ids) -> list[int]:
        ids, width = input_ids.tolist(), len(self.header)
        start = max(i + width for i in range(len(ids) - width + 1) if ids[i : i + width] == self.header)
        want = self.script[min(len(ids) - start, len(self.script) - 1)]
        return self.digits if want is None else [want]


@pytest.fixture(scope="module")
def local(toy_world):
    return UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu", dtype="float32", batch_size=4)


def forced(local: UnifiedReward, forcing: ForcedAnswer) -> UnifiedReward:
    local.backend.generate_kwargs = {"prefix_allowed_tokens_fn": forcing}
    return local


@pytest.mark.parametrize("template", [THINK, FLEX])
def test_transformers_soft_verdict_is_the_generation_own_distribution(local, toy_world, template):
    """Argmax = the parsed text verdict, and the probabilities equal a teacher-forced forward of the same prefix
    (logit mode with the forced text as its answer prefix) within 1e-5: the right step, the raw logits."""
    head, tail = FORCED[template]
    items = pair_items(toy_world, 6)
    model = forced(local, ForcedAnswer.around_verdict(local.backend.tokenizer, head, tail))
    results = model.compare_batch(template, items, max_new_tokens=64)
    teacher = dataclasses.replace(get_template(template), answer_prefix=head)  # same key: same media protocol
    expected = model.compare_batch(teacher, items, mode="logit")
    agree = sum(max(r.probs, key=r.probs.get) == str(r.winner) for r in results if r.probs)
    log.warning("toy soft-vs-text agreement (%s, transformers): %d/%d", template, agree, len(results))
    for result, want in zip(results, expected):
        assert result.ok and result.text.startswith(head) and result.probs_error is None, (result.error, result.text)
        assert max(result.probs, key=result.probs.get) == str(result.winner)
        assert abs(result.probs["1"] - want.probs["1"]) < 1e-5 and sum(result.probs.values()) == pytest.approx(1.0)


def test_transformers_swap_and_switch_off(local, toy_world):
    """Swapped pairs combine the two soft verdicts; ``soft_verdicts=False`` and non-reasoning templates read none."""
    items = pair_items(toy_world, 2)
    model = forced(local, ForcedAnswer.around_verdict(local.backend.tokenizer, *FORCED[THINK]))
    both = model.compare_batch(THINK, items, swap=True)
    firsts = model.compare_batch(THINK, items)
    seconds = model.compare_batch(THINK, [dataclasses.replace(i, media=i.media[::-1]) for i in items])
    for combined, first, second in zip(both, firsts, seconds):
        assert combined.probs["1"] == pytest.approx((first.probs["1"] + 1 - second.probs["1"]) / 2, abs=1e-6)
    off = model.compare_batch(THINK, items, soft_verdicts=False)
    assert all(r.ok and r.probs is None and r.probs_error is None for r in off)
    local.backend.generate_kwargs = {}
    plain = local.compare_batch("image_generation.pair_rank.v1", items, max_new_tokens=4)
    assert all(r.probs is None and r.probs_error is None for r in plain)


# ----- HTTP: stub servers (hand-written vLLM-shaped answers) ------------------------------------------


def stub_items(count: int = 1) -> list[JudgeItem]:
    return [JudgeItem(media=[Image.new("RGB", (28, 28), "red"), Image.new("RGB", (28, 28), "blue")], fields={"prompt": "a cat"})
            for _ in range(count)]  # fmt: skip


def answer_steps(text_tokens: list[str], verdict_top: dict[str, float]) -> list[tuple[str, dict[str, float]]]:
    """Steps of a generated answer: every token certain, except the verdict digit (the last "1"/"2")."""
    steps = [(token, {token: -0.01, "x": -5.0}) for token in text_tokens]
    index = max(i for i, token in enumerate(text_tokens) if token in ("1", "2"))
    steps[index] = (text_tokens[index], verdict_top)
    return steps


FLEX_TOKENS = ['{"categories": [{"name": "A", "cat_winner": "Image', " ", "1", '"}],', ' "winner": "Image', " ", "2", '"}']
THINK_TOKENS = ["<think>", "Image", " ", "1", " is sharp", "</think>", "\n", "<answer>", "Image", " ", "2", " is better", "</answer>"]


@pytest.mark.parametrize("template, tokens", [(FLEX, FLEX_TOKENS), (THINK, THINK_TOKENS)])
def test_http_soft_verdict_from_vllm_shaped_logprobs(template, tokens):
    """STUB (vLLM's shape; a Flex answer the toy cannot write): the request asks for the top 20, the verdict
    token's two digits are renormalised (" 1" merged with "1"), the text verdict stands."""
    top = {"2": math.log(0.5), "1": math.log(0.2), " 1": math.log(0.05), "x": math.log(0.25)}
    with StubServer(lambda path, body: (200, vllm_generation_response(answer_steps(tokens, top)))) as stub:
        judge = UnifiedReward.from_server(stub.base_url, model="UnifiedReward")
        [result] = judge.compare_batch(template, stub_items())
        [plain] = judge.compare_batch("image_generation.pair_rank.v1", stub_items())
    assert result.ok and result.winner == 2 and result.probs_error is None
    assert result.probs == pytest.approx({"1": 0.25 / 0.75, "2": 0.5 / 0.75})
    assert (stub.received[0]["logprobs"], stub.received[0]["top_logprobs"]) == (True, 20)
    assert "logprobs" not in stub.received[1] and plain.probs is None and plain.probs_error is None


def test_http_soft_verdict_missing_or_refused_is_said_per_item():
    """STUB: a digit outside the top 20, a server that ignores ``logprobs``, one that refuses it (400): the text
    verdict stands, ``probs`` is None and ``probs_error`` says why; a refusing server is asked once."""
    outside = answer_steps(THINK_TOKENS, {"2": -0.01, "x": -5.0})
    with StubServer(lambda path, body: (200, vllm_generation_response(outside))) as stub:
        [result] = UnifiedReward.from_server(stub.base_url, model="UnifiedReward").compare_batch(THINK, stub_items())
    assert result.winner == 2 and result.probs is None and "'1' not among the 2 log-probabilities" in result.probs_error
    text = "".join(THINK_TOKENS)
    with StubServer(lambda path, body: (200, chat_response(text))) as stub:
        [result] = UnifiedReward.from_server(stub.base_url, model="UnifiedReward").compare_batch(THINK, stub_items())
    assert result.winner == 2 and result.probs is None and "no token logprobs" in result.probs_error

    def refuse(path, body):
        if body.get("logprobs"):
            return 400, {"object": "error", "message": "logprobs is not supported", "type": "BadRequestError", "code": 400}
        return 200, chat_response(text)

    with StubServer(refuse) as stub:
        judge = UnifiedReward.from_server(stub.base_url, model="UnifiedReward", concurrency=1)
        results = judge.compare_batch(THINK, stub_items(3))
    assert all(r.winner == 2 and r.probs is None and "refused token logprobs" in r.probs_error for r in results)
    assert [bool(b.get("logprobs")) for b in stub.received] == [True, False, False, False]


# ----- HTTP: a real vLLM (CPU) serving the toy judge ---------------------------------------------------

THINK_REGEX = r"<think>\nImage 1 looks fine; Image 2 too\.\n</think>\n<answer>Image [12] is better</answer>"
FLEX_REGEX = r'\{"winner": "Image [12]"\}'


def vocabulary(tokenizer) -> dict[str, int]:
    """Token text -> id, to force the ids of tokens vLLM returned as text (the toy's ids decode to distinct texts)."""
    table: dict[str, int] = {}
    for index in range(len(tokenizer)):
        table.setdefault(tokenizer.decode([index]), index)
    return table


@pytest.mark.slow
@pytest.mark.parametrize("template, regex", [(THINK, THINK_REGEX), (FLEX, FLEX_REGEX)])
def test_vllm_logprobs_soft_verdict(vllm_server, local, toy_world, template, regex):
    """Real vLLM, its generation held to the format by a ``structured_outputs`` regex (test-only: the toy cannot
    write it): the soft verdict's argmax is the parsed text verdict, and it equals the in-process backend's soft
    verdict when transformers is forced through the very tokens vLLM generated (within 1e-4, vLLM parity)."""
    items = pair_items(toy_world, 3)
    remote = UnifiedReward.from_server(
        vllm_server.base_url, image_format="png", timeout=120, extra_body={"structured_outputs": {"regex": regex}}
    )
    results = remote.compare_batch(template, items, max_new_tokens=48)
    agree = sum(r.probs is not None and max(r.probs, key=r.probs.get) == str(r.winner) for r in results)
    log.warning("toy soft-vs-text agreement (%s, vLLM logprobs): %d/%d", template, agree, len(results))
    assert all(r.ok and r.probs_error is None for r in results), [(r.error, r.probs_error) for r in results]
    assert agree == len(results)
    requests = [remote._request(get_template(template), item, soft=True) for item in items]
    table = vocabulary(local.backend.tokenizer)
    for item, generated, result in zip(items, remote.backend.generate(requests, 48), results):
        assert generated.text == result.text
        ids: list[int | None] = [table[text] for text in generated.tokens[:-1]]  # the last one is <|im_end|>
        ids[max(i for i, t in enumerate(generated.tokens) if t in ("1", "2"))] = None
        [mine] = forced(local, ForcedAnswer(local.backend.tokenizer, ids)).compare_batch(template, [item], max_new_tokens=48)
        assert mine.text == result.text and abs(mine.probs["1"] - result.probs["1"]) < 1e-4, (mine.probs, result.probs)
