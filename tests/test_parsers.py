"""Each output format of upstream-unifiedreward.md §(a): realistic outputs and malformed ones."""

from __future__ import annotations

import json
import math

import pytest

from reward_core.parsers import PARSERS, parse, parse_for
from reward_core.results import RewardResult, Status


def ok(parser: str, text: str) -> RewardResult:
    result = parse(parser, text)
    assert result.status is Status.OK, result.error
    assert result.text == text
    return result


def failed(parser: str, text: str, error_part: str = "") -> RewardResult:
    result = parse(parser, text)
    assert result.status is Status.PARSE_ERROR, result
    assert result.winner is None and result.score is None, "a miss must not invent a verdict"
    assert error_part.lower() in (result.error or "").lower()
    return result


# ----------------------------------------------------------------------------- pair rank
@pytest.mark.parametrize(
    "parser, text, winner",
    [
        ("pair_rank_image", "Image 1 captures the red cube; Image 2 blurs it.\nImage 1 is better.", 1),
        ("pair_rank_image", "Both are sharp, but the caption fits the second.\n\nImage 2 is better.", 2),
        ("pair_rank_image", "Image 2 is better than Image 1.", 2),  # LLaVA form
        ("pair_rank_image", "Image 1 is better than Image 2.", 1),
        ("pair_rank_image", "They match the caption equally well. Both images are equally good.", 0),
        ("pair_rank_image", "**Image 2** is better.", 2),
        ("pair_rank_image", "image 1 is slightly better overall.", 1),
        ("pair_rank_video", "Video 1 is better,", 1),
        ("pair_rank_video", "Video 2 is better than Video 1.", 2),
        ("pair_rank_video", "Both videos are equally good", 0),
        ("pair_rank_answer", "Answer 2 is better than Answer 1 because it names both cups.", 2),  # upstream issue #5
        ("pair_rank_answer", "Answer 1 is more accurate. Answer 2 is better.", 2),
        (
            "pair_rank_answer",
            "1. Accuracy: Answer 1 mentions a plate that is not there.\n2. Completeness: ...\n"
            "Overall Judgment: Answer 2 is better than Answer 1. Answer 1 is better in brevity only.",
            2,
        ),
        ("pair_rank_answer", "Overall Judgment: Answer 1 is better than Answer 2.", 1),
        ("pair_rank_answer", "Response 2 is better than Response 1, it is more detailed.", 2),
        ("pair_rank_answer", "The second response is better for the given question because...", 2),
        ("pair_rank_edited_image", "<answer>Edited image 2 is better</answer>", 2),
        ("pair_rank_edited_image", "The first edit leaves seams. Edited Image 1 is better? No: Edited image 2 is better.", 2),
        ("pair_rank_edited_image", "Image 1 is better.", 1),
        ("pair_rank", "<think>Image 1 (8/10)</think><answer>Video 2 is better</answer>", 2),
    ],
)
def test_pair_rank(parser, text, winner):
    result = ok(parser, text)
    assert result.winner == winner
    assert result.score is None


@pytest.mark.parametrize(
    "parser, text, error",
    [
        ("pair_rank_image", "", "empty"),
        ("pair_rank_image", "   \n", "empty"),
        ("pair_rank_image", "Image 1 has more detail and Image 2 has better col", "no conclusion"),  # truncated
        ("pair_rank_image", "I cannot decide.", "no conclusion"),
        ("pair_rank_image", "Image 1 is not better.", "no conclusion"),
        # an echo of the instruction lists every verdict: not a decision
        ("pair_rank_image", 'such as "Image 1 is better.", "Image 2 is better." and "Both images are equally good."', "ambiguous"),
        ("pair_rank_answer", "'Answer 1 is better' or 'Answer 2 is better.'", "ambiguous"),
        ("pair_rank_video", "Image 1 is better.", "no conclusion"),  # wrong subject for a video template
        ("pair_rank_image", "Image 1 is better than Image 1.", "no conclusion"),
        ("pair_rank_image", "\u0000\ufffd garbage %%% 1 2", "no conclusion"),
    ],
)
def test_pair_rank_failures(parser, text, error):
    failed(parser, text, error)


def test_pair_rank_last_conclusion_wins():
    assert ok("pair_rank_image", "At first glance Image 1 is better. On reflection, Image 2 is better.").winner == 2


# ----------------------------------------------------------------------------- Think (CoT)
THINK_QWEN3 = """<think>
1. Semantic consistency: 
    Image 1 (9/10) - the cube is red and on the sphere; 
    Image 2 (7/10) - the cube floats
2. Aesthetics: 
    Image 1 (8/10) - ...; 
    Image 2 (8/10) - ...
Total score:
Image 1: 9+8=17
Image 2: 7+8=15
</think>
<answer>Image 1 is better</answer>"""


@pytest.mark.parametrize(
    "parser, text, winner",
    [
        ("think_image", THINK_QWEN3, 1),
        ("think_image", "<think>\n1. Semantic consistency: Image 1 (9/10) - ...; Image 2 (7/10)\n</think>\n<answer>Image 2 is better</answer>", 2),
        # the think text praises image 1, the answer decides
        ("think_image", "<think>Image 1 is better in aesthetics.</think><answer> Image 2 is better </answer>", 2),
        ("think_video", "<think>...</think>\n<answer>Video 1 is better</answer>", 1),
        ("think_answer", "<think>Answer 2 hallucinates.</think>\n<answer>Answer 1 is better</answer>", 1),
        ("think_answer", "<think>...</think><answer>Answer 2 is better", 2),  # stopped right after the answer
        ("think", "<think>x</think><answer>Answer 2 is better</answer>", 2),
    ],
)
def test_think(parser, text, winner):
    assert ok(parser, text).winner == winner


@pytest.mark.parametrize(
    "text, error",
    [
        ("<think>\n1. Semantic consistency: Image 1 (9/10) - Image 1 is better", "cut before </think>"),
        ("<think>Image 1 is better overall.</think>", "no <answer>"),
        ("Image 1 is better", "no <answer>"),
        ("<think>...</think><answer>They are both fine</answer>", "<answer>"),
        ("<think>...</think><answer>Answer 1 is better</answer>", "no conclusion"),  # wrong subject
    ],
)
def test_think_failures(text, error):
    failed("think_image", text, error)


# ----------------------------------------------------------------------------- Final Score
POINT_1_5 = """a red cube (object): 1
a blue sphere (object): 1
on (relation): 0
Final Score: 2.33"""

VIDEO_POINT = """visual quality: 3
temporal consistency: 4
dynamic degree: 2
text-to-video alignment: 3
factual consistency: 3
Final Score: 7"""


@pytest.mark.parametrize(
    "parser, text, score",
    [
        ("final_score_1_5", POINT_1_5, 2.33),
        ("final_score_1_5", "Final Score: 5", 5.0),
        ("final_score_1_5", "Final Score:4", 4.0),
        ("final_score_1_5", "Final Score: **3**", 3.0),
        ("final_score_1_5", "**Final Score**: 3", 3.0),
        ("final_score_1_5", "**Final Score:** 4.5 out of 5", 4.5),
        ("final_score_1_5", "Final Score (1-5): 2", 2.0),
        ("final_score_1_5", "Final Score: 4/5", 4.0),
        ("final_score_1_5", "I would give a Final Score: 2 at first.\nAfter checking again:\nFinal Score: 3", 3.0),
        ("final_score_1_10", VIDEO_POINT, 7.0),
        ("final_score_1_10", "element (type): 1\nFinal Score: 10", 10.0),
        ("final_score_0_100", "The answer is accurate and complete.\nFinal Score: 85", 85.0),
        ("final_score_0_100", "Final Score: 0", 0.0),
        ("final_score_0_100", "final score: 100.", 100.0),
    ],
)
def test_final_score(parser, text, score):
    result = ok(parser, text)
    assert result.score == pytest.approx(score)
    assert result.winner is None


@pytest.mark.parametrize(
    "parser, text, error",
    [
        ("final_score_1_5", "Final Score: 7", "outside the 1-5 scale"),
        ("final_score_1_5", "Final Score: 45", "outside"),  # never the digit "4" of 45
        ("final_score_1_5", "Final Score: 0", "outside"),
        ("final_score_1_5", "Final Score: -3", "outside"),
        ("final_score_1_10", "Final Score: 11", "outside"),
        ("final_score_0_100", "Final Score: 101", "outside"),
        ("final_score_1_5", "The image has 3 objects and 2 relations.", "no 'final score"),  # no first-integer fallback
        ("final_score_1_5", "a (object): 1\nFinal Score:", "not followed by a number"),  # truncated
        ("final_score_1_5", "Final Score: excellent", "not followed by a number"),
        ("final_score_0_100", "", "empty"),
    ],
)
def test_final_score_failures(parser, text, error):
    failed(parser, text, error)


# ----------------------------------------------------------------------------- ACS / APS
ACS_V15 = """Word-wise Scores: [["a", 1], ["red", 1], ["cube", 0.5], ["[No_mistakes]", 1]]

Alignment Score (1-5): 3.5
Coherence Score (1-5): 4
Style Score (1-5): 4.25"""

ACS_V2 = "Alignment Score (1-5): 2.6947\nCoherence Score (1-5): 3.1021\nStyle Score (1-5): 2.9913"
APS_V2 = "Alignment Score (1-5): 2.4036\nPhysics Score (1-5): 3.0\nStyle Score (1-5): 3.5"


def test_acs_v15_and_v2():
    result = ok("acs", ACS_V15)
    assert result.scores == {"alignment": 3.5, "coherence": 4.0, "style": 4.25}
    assert result.score == pytest.approx((3.5 + 4 + 4.25) / 3)
    result = ok("acs", ACS_V2)
    assert result.scores["alignment"] == pytest.approx(2.6947)
    assert result.score == pytest.approx((2.6947 + 3.1021 + 2.9913) / 3)


def test_multi_score_markdown():
    text = "**Alignment Score**: 3\n**Coherence Score (1-5):** 4\n- Style Score (1-5): 5"
    assert ok("acs", text).scores == {"alignment": 3.0, "coherence": 4.0, "style": 5.0}


def test_aps():
    result = ok("aps", APS_V2)
    assert result.scores == {"alignment": 2.4036, "physics": 3.0, "style": 3.5}


@pytest.mark.parametrize(
    "parser, text, error, kept",
    [
        ("acs", "Alignment Score (1-5): 3\nCoherence Score (1-5): 4", "style missing", {"alignment", "coherence"}),
        ("acs", "Alignment Score (1-5): 3\nCoherence Score (1-5): 4\nStyle Score (1-5): nan", "style is nan", {"alignment", "coherence"}),
        ("acs", "Alignment Score (1-5): 7\nCoherence Score (1-5): 4\nStyle Score (1-5): 4", "alignment 7 outside", {"coherence", "style"}),
        ("aps", ACS_V2, "physics missing", {"alignment", "style"}),
        ("acs", "The image is nice.", "alignment missing; coherence missing; style missing", None),
    ],
)
def test_multi_score_failures(parser, text, error, kept):
    result = failed(parser, text, error)
    assert (set(result.scores) if result.scores else None) == kept


# ----------------------------------------------------------------------------- 2.0 pair score
PAIR_SCORE = """Alignment Score:
 Image 1: 0.4357
 Image 2: 0.5643

Coherence Score:
 Image 1: 0.6
 Image 2: 0.4

Style Score:
 Image 1: 0.3
 Image 2: 0.7"""


def test_pair_score():
    result = ok("pair_score_image", PAIR_SCORE)
    assert result.scores == {
        "alignment/1": 0.4357, "alignment/2": 0.5643,
        "coherence/1": 0.6, "coherence/2": 0.4,
        "style/1": 0.3, "style/2": 0.7,
    }
    assert result.winner == 2  # 1.3357 vs 1.6643
    assert result.error is None
    video = ok("pair_score_video", PAIR_SCORE.replace("Image", "Video"))
    assert video.scores == result.scores and video.winner == 2


def test_pair_score_markdown():
    text = "**Alignment Score**:\n- **Image 1**: 0.8\n- **Image 2**: 0.2\n"
    result = ok("pair_score_image", text)
    assert result.scores == {"alignment/1": 0.8, "alignment/2": 0.2} and result.winner == 1


def test_pair_score_nan_dimension_is_dropped_and_named():
    text = PAIR_SCORE.replace(" Image 1: 0.3\n Image 2: 0.7", " Image 1: nan\n Image 2: nan")  # issue #82
    result = ok("pair_score_image", text)
    assert set(result.scores) == {"alignment/1", "alignment/2", "coherence/1", "coherence/2"}
    assert result.winner == 1  # 1.0357 vs 0.9643 over the valid dimensions
    assert "style is nan" in result.error
    assert json.loads(json.dumps(result.to_dict()))["scores"]["alignment/1"] == 0.4357


@pytest.mark.parametrize(
    "text, error",
    [
        ("Alignment Score:\n Image 1: nan\n Image 2: nan\n", "no valid dimension"),
        ("Alignment Score:\n Image 1: 0.4", "alignment missing"),  # truncated
        ("Alignment Score:\n Image 1: 3\n Image 2: 7\n", "outside 0-1"),
        ("Image 1 looks better.", "no valid dimension"),
        ("Alignment Score:\n Video 1: 0.4\n Video 2: 0.6", "no valid dimension"),  # wrong subject
    ],
)
def test_pair_score_failures(text, error):
    result = failed("pair_score_image", text, error)
    assert result.scores is None


def test_pair_score_tie():
    text = "Alignment Score:\n Image 1: 0.5\n Image 2: 0.5\n"
    result = ok("pair_score_image", text)
    assert result.winner == 0
    assert "coherence missing" in result.error


# ----------------------------------------------------------------------------- Flex JSON
FLEX = """```json
{
  "prompt": "a red cube on a blue sphere",
  "categories": [
    {
      "name": "Content & Accuracy",
      "dims": [
        {"name": "Object fidelity", "reason_1": "cube floats", "reason_2": "cube rests on sphere", "score_1": 3, "score_2": 7}
      ],
      "cat_reason": "Image 2 follows the prompt.",
      "cat_winner": "Image 2"
    },
    {
      "name": "Aesthetics & Artistry",
      "dims": [{"name": "Color harmony", "reason_1": "...", "reason_2": "...", "score_1": 6, "score_2": 4}],
      "cat_reason": "...",
      "cat_winner": "Image 1"
    }
  ],
  "reason": "Image 2 is more faithful.",
  "winner": "Image 2"
}
```"""


def test_flex_image():
    result = ok("flex_image", FLEX)
    assert result.winner == 2
    assert result.scores["category/Content & Accuracy"] == 2
    assert result.scores["category/Aesthetics & Artistry"] == 1
    assert result.scores["Content & Accuracy/Object fidelity/1"] == 3
    assert result.scores["Content & Accuracy/Object fidelity/2"] == 7


@pytest.mark.parametrize(
    "text, winner",
    [
        ('{"winner": "Video 1", "categories": []}', 1),  # no fence
        ('Here is my evaluation:\n```json\n{"winner": "video 2",}\n```', 2),  # trailing comma
        ('{"winner": "Image 1/2"}', None),  # the schema placeholder echoed back
        ('{"winner": "Tie"}', 0),
        ('{"winner": 2}', 2),
    ],
)
def test_flex_variants(text, winner):
    result = parse("flex_video", text)
    if winner is None:
        assert result.status is Status.PARSE_ERROR and "winner" in result.error
    else:
        assert result.ok and result.winner == winner


@pytest.mark.parametrize(
    "text, error",
    [
        ('```json\n{\n  "prompt": "a cube",\n  "categories": [\n    {\n      "name": "Con', "no valid json"),  # truncated
        ("Image 2 wins.", "no valid json"),
        ('{"reason": "..."}', "winner"),
        ("[1, 2]", "no valid json"),
    ],
)
def test_flex_failures(text, error):
    failed("flex_image", text, error)


# ----------------------------------------------------------------------------- Edit
def test_edit_pair_score_labels_negative_and_integer():
    text = "Edited Image 1: -2\nEdited Image 2: 3.5"
    result = ok("edit_pair_score", text)
    assert result.scores == {"1": -2.0, "2": 3.5} and result.winner == 2
    result = ok("edit_pair_score", "Score for Image 1: 7\nScore for Image 2: 7")
    assert result.winner == 0
    result = ok("edit_pair_score", "**Edited Image 1 Score:** 4.25\n**Edited Image 2 Score:** \u22121.5")
    assert result.scores == {"1": 4.25, "2": -1.5} and result.winner == 1
    result = ok("edit_pair_score", "Scores: [6, -1]")
    assert result.scores == {"1": 6.0, "2": -1.0} and result.winner == 1


@pytest.mark.parametrize("text", ["Edited Image 1: 3.0\nEdited Image 2:", "Both edits are fine.", "Image 1 follows step 2"])
def test_edit_pair_score_failures(text):
    failed("edit_pair_score", text, "no score")


@pytest.mark.parametrize(
    "parser, text, scores",
    [
        ("edit_point_instruction_following", '{\n\n"reasoning" : "The sky is purple.",\n"score" : [22, 18],\n}',
         {"success": 22.0, "overediting": 18.0}),
        ("edit_point_quality", '```json\n{"reasoning": "Natural light.", "score": [20, 24]}\n```', {"naturalness": 20.0, "artifacts": 24.0}),
        ("edit_point_quality", '{"reasoning": "unescaped "quote" inside", "score": [10, 12.5]}', {"naturalness": 10.0, "artifacts": 12.5}),
    ],
)
def test_edit_point(parser, text, scores):
    result = ok(parser, text)
    assert result.scores == scores
    assert result.score == pytest.approx(sum(scores.values()) / 2)


@pytest.mark.parametrize(
    "text, error",
    [
        ('{"reasoning": "...", "score": [30, 10]}', "outside 0-25"),
        ('{"reasoning": "...", "score": [-1, 10]}', "outside"),
        ('{"reasoning": "...", "score": [...]}', "no 'score'"),
        ('{"reasoning": "the edit is good", "sco', "no 'score'"),
    ],
)
def test_edit_point_failures(text, error):
    failed("edit_point_quality", text, error)


# ----------------------------------------------------------------------------- API
def test_parse_for_uses_the_template_parser():
    assert parse_for("image_understanding.point_score.v1", "Final Score: 77").score == 77
    failed("final_score_1_5", "Final Score: 77")
    assert parse_for("video_understanding.point_score.v1", "Final Score: 77").status is Status.PARSE_ERROR
    assert parse_for("think.qwen3.image_generation.pair_rank", THINK_QWEN3).winner == 1


def test_unknown_parser_raises():
    with pytest.raises(KeyError, match="unknown parser"):
        parse("nope", "Image 1 is better")


def test_non_string_input_is_a_parse_error():
    result = parse("pair_rank_image", None)
    assert result.status is Status.PARSE_ERROR and result.error == "empty output"


def test_parser_bug_becomes_parse_error(monkeypatch):
    def broken(text):
        raise RuntimeError("boom")

    monkeypatch.setitem(PARSERS, "broken", broken)
    result = parse("broken", "anything")
    assert result.status is Status.PARSE_ERROR and "boom" in result.error


def test_result_to_dict_is_json_safe():
    result = RewardResult(status="ok", score=math.nan, scores={"a": math.inf, "b": 1.0}, probs={"1": 0.25, "2": 0.75})
    data = result.to_dict()
    assert data["status"] == "ok" and data["score"] is None and data["scores"] == {"a": None, "b": 1.0}
    json.dumps(data, allow_nan=False)
    assert RewardResult.from_dict(data).probs == {"1": 0.25, "2": 0.75}
    assert result.ok and not RewardResult(status=Status.MEDIA_ERROR).ok
    with pytest.raises(ValueError):
        RewardResult.failure("ok", "x")
    failure = RewardResult.failure("backend_error", "server down")
    assert failure.to_dict()["status"] == "backend_error" and failure.winner is None
