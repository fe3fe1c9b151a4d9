"""The benchmark runner through the real UnifiedReward with scripted backends (no model weights)."""

from __future__ import annotations

import json
import math
import re

import pytest
from PIL import Image

from reward_core.backends.base import AnswerLogprobs, Generation
from unifiedreward.bench import evaluate, load_benchmark, write_report
from unifiedreward.bench.runner import presentation_orders
from reward_core.model import UnifiedReward


def _redness(image: Image.Image) -> int:
    return image.convert("RGB").getpixel((0, 0))[0]


class RednessJudge:
    """Prefers the redder image (text verdicts), or gives p(1) from the redness gap (logit mode)."""

    def __init__(self, always_first: bool = False) -> None:
        self.always_first = always_first
        self.requests = 0

    def generate(self, requests, max_new_tokens):
        self.requests += len(requests)
        out = []
        for request in requests:
            first, second = (_redness(image) for image in request.media)
            if self.always_first or first > second:
                out.append(Generation(text="Image 1 is better."))
            elif second > first:
                out.append(Generation(text="Image 2 is better."))
            else:
                out.append(Generation(text="Both images are equally good."))
        return out

    def answer_logprobs(self, requests, candidates):
        out = []
        for request in requests:
            first, second = (_redness(image) for image in request.media)
            p_first = 0.5 + (first - second) / 1020  # in [0.25, 0.75]
            out.append(AnswerLogprobs(logprobs={"1": math.log(p_first), "2": math.log(1 - p_first)}))
        return out


class KeywordAnswerJudge:
    """VL-RewardBench judge: prefers the answer that contains 'right'; garbage text for 'garble' questions."""

    def generate(self, requests, max_new_tokens):
        out = []
        for request in requests:
            if "garble" in request.text:
                out.append(Generation(text="I cannot decide."))
                continue
            answer1 = re.search(r"Answer 1: (.*)", request.text).group(1)
            out.append(Generation(text="Answer 1 is better" if "right" in answer1 else "Answer 2 is better"))
        return out

    def answer_logprobs(self, requests, candidates):
        raise AssertionError("not used")


# (prompt, left colour, right colour, vote): the redder image is the human's choice except in row 3
IMAGE_ROWS = [
    ("p0", "red", "blue", "leftvote"),
    ("p1", "blue", "red", "rightvote"),
    ("p2", "red", "blue", "tievote"),
    ("p3", "red", "blue", "rightvote"),  # humans prefer the blue one: the redness judge misses
    ("p4", "blue", "blue", "leftvote"),  # the judge calls a tie: a miss in diff
]


@pytest.fixture()
def genai_image_jsonl(tmp_path):
    """GenAI-Bench image rows whose images are files shared by several pairs (+ a missing and a corrupt one)."""
    for colour in ("red", "blue"):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{colour}.png")
    (tmp_path / "corrupt.png").write_bytes(b"not a png")
    rows = [{"prompt": p, "left_image": f"{a}.png", "right_image": f"{b}.png", "vote_type": v} for p, a, b, v in IMAGE_ROWS]
    rows.append({"prompt": "p5", "left_image": "missing.png", "right_image": "red.png", "vote_type": "leftvote"})
    rows.append({"prompt": "p6", "left_image": "corrupt.png", "right_image": "red.png", "vote_type": "leftvote"})
    path = tmp_path / "genai_image.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_generate_mode_metrics_failures_and_media_cache(genai_image_jsonl):
    backend = RednessJudge()
    model = UnifiedReward(backend, batch_size=4)
    report, outcomes = evaluate(model, "genai-bench-image", genai_image_jsonl, swap=True, batch_size=3, progress=False)
    # 7 pairs: 5 judged in both orders, the missing and the corrupt image fail before any model call
    assert (report.n_pairs, report.n_scored, report.n_failed) == (7, 5, 2)
    assert report.failures == {"media_error": 2}
    assert backend.requests == 10
    errors = {outcome.item.fields["prompt"]: outcome.error for outcome in outcomes if not outcome.ok}
    assert "file not found" in errors["p5"] and "cannot decode image" in errors["p6"]
    # margins (A - B): +1, -1 (human B), +1 (human tie), +1 (human B), 0 (human A)
    # tau: eps=0 -> hits p0, p1 = 2/5 ; eps=1 -> only the human tie = 1/5
    assert report.metrics["tau"] == pytest.approx(2 / 5)
    # diff over decided pairs p0, p1, p3, p4 -> 2/4
    assert report.metrics["diff"] == pytest.approx(0.5)
    assert report.position_bias["consistency"] == 1.0  # an order-free judge agrees with itself
    # 3 distinct files (red, blue, corrupt) + 1 missing: each read once, however many pairs use it
    assert report.media_cache["misses"] == 4


def test_position_biased_judge_is_exposed_by_swap(genai_image_jsonl):
    model = UnifiedReward(RednessJudge(always_first=True))
    report, _ = evaluate(model, "genai-bench-image", genai_image_jsonl, swap=True, progress=False)
    bias = report.position_bias
    assert bias["accuracy_preferred_first"] == 1.0 and bias["accuracy_preferred_second"] == 0.0
    assert bias["first_slot_rate"] == 1.0 and bias["consistency"] == 0.0
    assert report.metrics["diff"] == 0.0  # both orders cancel: every pair is a model tie, never a win


def test_seeded_single_order_is_reproducible_and_mixed():
    ids = [f"item-{i}" for i in range(200)]
    orders = [presentation_orders(item_id, seed=3, swap=False) for item_id in ids]
    assert orders == [presentation_orders(item_id, seed=3, swap=False) for item_id in ids]
    flipped = sum(order == ("BA",) for order in orders)
    assert 60 < flipped < 140
    assert orders != [presentation_orders(item_id, seed=4, swap=False) for item_id in ids]
    assert presentation_orders("x", seed=0, swap=True) == ("AB", "BA")


def test_logit_mode_uses_probability_margins(genai_image_jsonl):
    model = UnifiedReward(RednessJudge())
    loaded = load_benchmark("genai-bench-image", genai_image_jsonl, limit=5)
    report, outcomes = evaluate(model, loaded, mode="logit", seed=1, progress=False)
    margins = {outcome.item.fields["prompt"]: outcome.margin for outcome in outcomes}
    # p(first) = 0.5 + 255/1020 = 0.75 for red-vs-blue -> margin 0.5 towards the red image, in either order
    assert margins == pytest.approx({"p0": 0.5, "p1": -0.5, "p2": 0.5, "p3": 0.5, "p4": 0.0})
    assert report.metrics["diff"] == pytest.approx(0.5)
    # eps=0: p0, p1 hit -> 2/5 ; eps=0.5: all model ties -> only p2 -> 1/5
    assert (report.metrics["tau"], report.metrics["tau_epsilon"]) == (pytest.approx(0.4), 0.0)


def test_vl_rewardbench_overall_macro_and_parse_failures(tmp_path):
    Image.new("RGB", (16, 16), "gray").save(tmp_path / "img.png")
    rows = [  # (id, answers, ranking): the judge picks the answer containing "right"
        ("RLHF_1", ["right", "wrong"], [0, 1]),  # hallucination: hit
        ("RLAIF-2", ["wrong", "right"], [1, 0]),  # hallucination: hit
        ("mmmu_3", ["right", "wrong"], [1, 0]),  # reasoning: miss (humans prefer the second)
        ("mathverse_4", ["wrong", "right"], [1, 0]),  # reasoning: hit
        ("vlfeedback_5", ["right", "wrong"], [0, 1]),  # general: hit
        ("wildvision_6", ["garble", "x"], [0, 1]),  # unparseable output: excluded, reported
    ]
    data = [{"id": i, "query": "garble?" if "garble" in r[0] else "What is shown?", "response": r, "image": "img.png",
             "human_ranking": h} for i, r, h in rows]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    report, outcomes = evaluate(UnifiedReward(KeywordAnswerJudge()), "vl-rewardbench", path, progress=False)
    assert (report.n_scored, report.n_failed, report.failures) == (5, 1, {"parse_error": 1})
    assert report.metrics["overall"] == pytest.approx(4 / 5)
    assert report.metrics["hallucination"] == 1.0 and report.metrics["reasoning"] == 0.5
    assert report.metrics["general"] == 1.0
    assert report.metrics["macro"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    failed = next(outcome for outcome in outcomes if not outcome.ok)
    assert failed.margin is None and failed.presentations[0].result.winner is None


def test_backend_errors_are_reported_not_guessed(genai_image_jsonl, tmp_path):
    class DeadServer:
        def generate(self, requests, max_new_tokens):
            return [Generation(error="connection refused") for _ in requests]

    report, outcomes = evaluate(UnifiedReward(DeadServer()), "genai-bench-image", genai_image_jsonl, progress=False)
    assert report.n_scored == 0 and report.failures == {"backend_error": 5, "media_error": 2}
    assert report.metrics["tau"] is None and report.metrics["diff"] is None
    paths = write_report(report, outcomes, tmp_path / "out")
    saved = json.loads(paths["metrics"].read_text())
    assert saved["failures"] == {"backend_error": 5, "media_error": 2}
    lines = paths["predictions"].read_text().splitlines()
    assert len(lines) == 7 and json.loads(lines[0])["presentations"][0]["error"] == "connection refused"
    assert "5 pair(s) with backend_error" in paths["report"].read_text()


def test_template_must_fit_the_benchmark(genai_image_jsonl):
    model = UnifiedReward(RednessJudge())
    with pytest.raises(ValueError, match="needs a template with media 'images2'"):
        evaluate(model, "genai-bench-image", genai_image_jsonl, template="video_generation.pair_rank.v1", progress=False)
    with pytest.raises(ValueError, match="not a pairwise template"):
        evaluate(model, "genai-bench-image", genai_image_jsonl, template="image_generation.point_score.v1",
                 progress=False)
