"""`UnifiedReward` API: per-item errors, swap debiasing, modes, exports (fake backend + toy checkpoint)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from reward_core import JudgeItem, RewardResult, Status, UnifiedReward, VideoSpec
from reward_core.backends.base import AnswerLogprobs, Generation
from reward_core.model import combine_swapped

RED, BLUE = (255, 0, 0), (0, 0, 255)


class FakeBackend:
    """Answers from the pixels it is shown: ``verdict(request) -> text`` / ``p1(request) -> P("1")``."""

    def __init__(self, verdict=None, p1=None):
        self.verdict, self.p1, self.calls = verdict, p1, []

    def generate(self, requests, max_new_tokens):
        self.calls.append(("generate", requests, max_new_tokens))
        return [Generation(text=self.verdict(r)) for r in requests]

    def answer_logprobs(self, requests, candidates):
        self.calls.append(("logit", requests, candidates))
        return [AnswerLogprobs({"1": math.log(self.p1(r)), "2": math.log(1 - self.p1(r))}) for r in requests]


def colour(image) -> tuple:
    """The palette colour nearest to the top-left pixel (templates sent as JPEG, like edit, shift pixels a little)."""
    pixel = image.getpixel((0, 0))
    return min((RED, BLUE), key=lambda c: sum((a - b) ** 2 for a, b in zip(c, pixel)))


def prefers_red(request) -> str:
    first, second = (colour(m) for m in request.media[-2:])
    return "Image 1 is better." if first == RED else "Image 2 is better." if second == RED else "Both images are equally good."


@pytest.fixture
def images(tmp_path):
    paths = {}
    for name, rgb in (("red", RED), ("blue", BLUE)):
        paths[name] = tmp_path / f"{name}.png"
        Image.new("RGB", (8, 8), rgb).save(paths[name])
    paths["corrupt"] = tmp_path / "corrupt.png"
    paths["corrupt"].write_bytes(b"nope")
    return paths


PAIR = "image_generation.pair_rank.v1"


def test_bad_items_fail_alone_and_order_is_kept(images):
    backend = FakeBackend(verdict=prefers_red)
    rm = UnifiedReward(backend)
    items = [
        JudgeItem([images["red"], images["blue"]], {"prompt": "red"}, id="a"),
        JudgeItem([images["red"], images["corrupt"]], {"prompt": "red"}, id="corrupt"),
        JudgeItem([images["red"].with_name("missing.png"), images["blue"]], {"prompt": "red"}, id="missing"),
        JudgeItem([images["red"]], {"prompt": "red"}, id="one image"),
        JudgeItem([images["red"], images["blue"]], {}, id="no prompt"),
        {"media": [images["blue"], images["red"]], "fields": {"prompt": "red"}, "id": "b"},
    ]
    results = rm.compare_batch(PAIR, items)
    assert [r.status for r in results] == [Status.OK] + [Status.MEDIA_ERROR] * 4 + [Status.OK]
    assert [results[0].winner, results[-1].winner] == [1, 2]
    assert "corrupt.png: cannot decode image" in results[1].error
    assert "missing.png: file not found" in results[2].error
    assert "takes 2 image items, got 1" in results[3].error
    assert "prompt" in results[4].error
    assert all(r.winner is None and r.score is None for r in results[1:5])  # never an invented verdict
    (_, requests, budget), = backend.calls
    assert len(requests) == 2 and budget == 512  # upstream's max_new_tokens for this template
    assert "Text Caption: [red]" in requests[0].text


def test_swap_generate_agreeing_and_position_biased_judges(images):
    pair = [images["blue"], images["red"]]
    fair = UnifiedReward(FakeBackend(verdict=prefers_red)).compare(PAIR, *pair, swap=True, prompt="red")
    assert (fair.winner, fair.consistency) == (2, 1.0) and "[swapped order]" in fair.text
    biased = UnifiedReward(FakeBackend(verdict=lambda r: "Image 1 is better."))
    result = biased.compare(PAIR, *pair, swap=True, prompt="red")
    assert (result.status, result.winner, result.consistency) == (Status.OK, 0, 0.0)  # disagreement -> tie
    items = [JudgeItem(pair, {"prompt": "red"})] * 3
    assert biased.compare_batch(PAIR, items, swap=True).position_consistency == 0.0
    mixed = UnifiedReward(FakeBackend(verdict=prefers_red)).compare_batch(
        PAIR, items + [JudgeItem([images["red"], images["red"]], {"prompt": "r"})], swap=True
    )
    # red vs red: "Image 1" in both orders is a position preference -> tie, and 3 of 4 pairs consistent
    assert (mixed[-1].winner, mixed[-1].consistency, mixed.position_consistency) == (0, 0.0, 0.75)


def test_swap_logit_averages_probabilities(images):
    # P("1") = 0.9 when red is first, 0.3 when blue is first: a judge preferring red with a first-slot bias
    backend = FakeBackend(p1=lambda r: 0.9 if colour(r.media[0]) == RED else 0.3)
    result = UnifiedReward(backend).compare(PAIR, images["red"], images["blue"], swap=True, mode="logit", prompt="x")
    assert result.probs["1"] == pytest.approx((0.9 + (1 - 0.3)) / 2)
    assert result.winner == 1 and result.consistency == 1.0
    (_, requests, candidates), = backend.calls
    assert candidates == ["1", "2"] and len(requests) == 2 and requests[0].answer_prefix == "Image"


def test_swap_understanding_swaps_answers_not_media(images):
    backend = FakeBackend(verdict=lambda r: "Answer 1 is better" if "Answer 1: good" in r.text else "Answer 2 is better")
    result = UnifiedReward(backend).compare(
        "image_understanding.pair_rank.v1", images["red"], swap=True, question="q", answer1="good", answer2="bad"
    )
    assert (result.winner, result.consistency) == (1, 1.0)
    (_, requests, _), = backend.calls
    assert "Answer 1: good" in requests[0].text and "Answer 1: bad" in requests[1].text
    assert [colour(r.media[0]) for r in requests] == [RED, RED]


def test_swap_edit_keeps_the_source_first(images):
    backend = FakeBackend(verdict=lambda r: "Edited image 1 is better")
    UnifiedReward(backend).compare("edit.pair_rank", [images["blue"], images["red"]], images["blue"], swap=True, instruction="x")
    (_, requests, _), = backend.calls
    assert [[colour(m) for m in r.media] for r in requests] == [[BLUE, RED, BLUE], [BLUE, BLUE, RED]]


def test_a_failed_order_fails_the_pair():
    ok = RewardResult(status=Status.OK, winner=1)
    failed = RewardResult.failure(Status.PARSE_ERROR, "no conclusion", text="???")
    combined = combine_swapped(ok, failed)
    assert combined.status is Status.PARSE_ERROR and combined.winner is None and "swapped order" in combined.error


def test_pair_scores_are_averaged_across_orders():
    first = RewardResult(status=Status.OK, winner=1, scores={"alignment/1": 0.7, "alignment/2": 0.3})
    second = RewardResult(status=Status.OK, winner=2, scores={"alignment/1": 0.4, "alignment/2": 0.6})
    combined = combine_swapped(first, second)
    assert combined.scores == pytest.approx({"alignment/1": 0.65, "alignment/2": 0.35}) and combined.consistency == 1.0


def test_misuse_raises_early(images):
    rm = UnifiedReward(FakeBackend(verdict=prefers_red))
    with pytest.raises(ValueError, match="use compare"):
        rm.score(PAIR, images["red"], prompt="x")
    with pytest.raises(ValueError, match="use score"):
        rm.compare("image_generation.point_score.v1", images["red"], prompt="x")
    with pytest.raises(ValueError, match="mode"):
        rm.judge(PAIR, [images["red"], images["blue"]], mode="vibes", prompt="x")
    with pytest.raises(ValueError, match="no answer_prefix"):
        rm.score("image_generation.point_score_acs.v2", images["red"], mode="logit", prompt="x")
    with pytest.raises(KeyError):
        rm.judge("no.such.template", [], prompt="x")


def test_a_raising_backend_gives_backend_errors(images):
    class Down:
        def generate(self, requests, max_new_tokens):
            raise ConnectionError("server down")

    results = UnifiedReward(Down()).compare_batch(PAIR, [JudgeItem([images["red"], images["blue"]], {"prompt": "x"})] * 2)
    assert [r.status for r in results] == [Status.BACKEND_ERROR] * 2 and "server down" in results[0].error


def test_chunks_and_max_new_tokens_override(images):
    backend = FakeBackend(verdict=prefers_red)
    rm = UnifiedReward(backend, batch_size=2, chunk_size=2, max_new_tokens=64)
    items = [JudgeItem([images["red"], images["blue"]], {"prompt": "x"})] * 5
    assert all(r.winner == 1 for r in rm.compare_batch(PAIR, items, progress=True))
    assert [len(c[1]) for c in backend.calls] == [2, 2, 1] and {c[2] for c in backend.calls} == {64}
    rm.compare(PAIR, images["red"], images["blue"], prompt="x", max_new_tokens=7)
    assert backend.calls[-1][2] == 7


def test_videos_are_validated_before_the_backend(tmp_path):
    backend = FakeBackend(verdict=lambda r: "Final Score: 3")
    rm = UnifiedReward(backend)
    result = rm.score("video_generation.point_score.v1", VideoSpec(str(tmp_path / "none.mp4")), prompt="x")
    assert result.status is Status.MEDIA_ERROR and "none.mp4: file not found" in result.error
    assert backend.calls == []


def test_import_is_cheap_and_pulls_no_trainer_package():
    code = (
        "import sys, reward_core\n"
        "from reward_core import UnifiedReward, RewardResult, Status, JudgeItem, VideoSpec, get_template, "
        "register_template, list_templates\n"
        "assert get_template('image_generation.pair_rank.v1').pairwise\n"
        "print([m for m in ('trl', 'diffusers', 'datasets', 'peft', 'accelerate', 'llamafactory', 'transformers') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().replace("'", '"')) == []


def test_from_server_wires_the_openai_backend():
    from reward_core.backends.openai_backend import OpenAIBackend

    rm = UnifiedReward.from_server("http://127.0.0.1:9", model="UnifiedReward", concurrency=4, max_new_tokens=32)
    assert isinstance(rm.backend, OpenAIBackend) and rm.max_new_tokens == 32


# --- end to end on the toy checkpoint ------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_model(toy_world):
    return UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu", batch_size=4)


def toy_rows(toy_world, name, count):
    root = Path(toy_world["data_dir"])
    rows = [json.loads(line) for line in Path(toy_world["data"][name]).read_text().splitlines()[:count]]
    return root, rows


def test_toy_end_to_end_modes(toy_model, toy_world, capsys):
    root, rows = toy_rows(toy_world, "image_pairs", 3)
    items = [JudgeItem([root / p for p in row["images"]], {"prompt": row["prompt"]}, id=row["id"]) for row in rows]
    logit = toy_model.compare_batch(PAIR, items, swap=True, mode="logit", progress=True)
    assert "judge image_generation.pair_rank.v1" in capsys.readouterr().err  # tqdm bar
    for result in logit:
        assert result.ok and sum(result.probs.values()) == pytest.approx(1.0) and result.consistency in (0.0, 1.0)
        assert result.winner == (1 if result.probs["1"] > 0.5 else 2)
    assert 0.0 <= logit.position_consistency <= 1.0
    generated = toy_model.compare_batch(PAIR, items, max_new_tokens=4)
    for result in generated:  # an untrained toy writes no verdict: a parse error, never a made-up winner
        assert result.text and (result.ok or (result.status is Status.PARSE_ERROR and result.winner is None))
    root, (row,) = toy_rows(toy_world, "und_points", 1)
    score = toy_model.score("image_understanding.point_score.v1", root / row["image"], mode="logit",
                            question=row["question"], response=row["response"])
    assert score.ok and 0 <= score.score <= 100 and len(score.probs) == 101
    root, (row,) = toy_rows(toy_world, "video_points", 1)
    video = toy_model.score("video_generation.point_score.v1", VideoSpec(str(root / row["video"])), mode="logit", prompt=row["prompt"])
    assert video.ok and 1 <= video.score <= 10


def test_media_failures_found_by_a_backend_are_media_errors(images):
    from reward_core.backends.base import Generation

    class Picky:
        def generate(self, requests, max_new_tokens):
            return [Generation(error="a.png: cannot prepare media (bad)", media_error=True), Generation(error="OOM")]

    results = UnifiedReward(Picky()).compare_batch(PAIR, [JudgeItem([images["red"], images["blue"]], {"prompt": "x"})] * 2)
    assert [r.status for r in results] == [Status.MEDIA_ERROR, Status.BACKEND_ERROR]


def test_malformed_items_fail_alone(images):
    rm = UnifiedReward(FakeBackend(verdict=prefers_red))
    good = {"media": [images["red"], images["blue"]], "fields": {"prompt": "x"}}
    results = rm.compare_batch(PAIR, [good, 7, {"fields": {"prompt": "x"}}, {"media": [images["red"]], "fields": "x"}])
    assert [r.status for r in results] == [Status.OK] + [Status.MEDIA_ERROR] * 3
    assert "JudgeItem or a mapping" in results[1].error and "no 'media'" in results[2].error
    [one] = rm.score_batch("image_generation.point_score.v1", [JudgeItem(media="a/b/c/d.png", fields={"prompt": "x"})])
    assert one.status is Status.MEDIA_ERROR and "d.png: file not found" in one.error  # one path, not 11 characters
