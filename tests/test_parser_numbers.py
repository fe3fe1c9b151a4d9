"""Property tests of number reading in every parser that reads numbers.

A number is written in one of many forms (plain, signed, scientific, Unicode digits, a decimal comma, a
fraction, a range, hundreds of digits, mixed digit scripts) into each parser's number slot. The parser
must not raise, must never invent a value, and must accept exactly what a reader reads: a well-formed
number on the scale is read as its value, an ambiguous one ("4,5", "3-4", "3/10" on a 1-5 scale) is a
parse_error, never its first digits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reward_core.parsers import PARSERS, read_number
from reward_core.results import Status

SCRIPTS = {"arabic-indic": 0x660, "devanagari": 0x966, "fullwidth": 0xFF10}


@dataclass(frozen=True)
class Written:
    """A number as the model wrote it, and what a reader reads in it."""

    text: str
    kind: str  # plain | unicode | fraction | ambiguous
    value: float | None = None  # plain / unicode / fraction numerator
    denominator: float | None = None  # fraction only

    def expected(self, low: float | None, high: float | None) -> float | None:
        """The value a correct parser accepts, or None when it must refuse."""
        if self.kind == "ambiguous":
            return None
        if self.kind == "fraction" and (high is None or self.denominator != high):
            return None
        if low is not None and not low <= self.value <= high:
            return None
        return self.value


def _translate(text: str, zero: int) -> str:
    return "".join(chr(zero + int(ch)) if ch.isdigit() else ch for ch in text)


decimals = st.decimals(min_value=-200, max_value=200, allow_nan=False, allow_infinity=False, places=3)
plain = decimals.map(lambda d: format(d.normalize() if d == d.to_integral() else d, "f")).map(
    lambda text: Written(text, "plain", float(text))
)
signed = st.tuples(st.sampled_from(["+", "\u2212"]), st.decimals(0, 100, places=2)).map(
    lambda t: Written(f"{t[0]}{t[1]}", "plain", float(t[1]) * (-1 if t[0] == "\u2212" else 1))
)
scientific = st.tuples(st.decimals(1, 9, places=2), st.integers(-6, 6), st.sampled_from("eE")).map(
    lambda t: Written(f"{t[0]}{t[2]}{t[1]}", "plain", float(f"{t[0]}e{t[1]}"))
)
unicode_digits = st.tuples(st.decimals(0, 120, places=1), st.sampled_from(sorted(SCRIPTS.values()))).map(
    lambda t: Written(_translate(str(t[0]), t[1]), "unicode", float(t[0]))
)
fraction = st.tuples(st.integers(0, 100), st.sampled_from([1, 4, 5, 10, 100])).map(
    lambda t: Written(f"{t[0]}/{t[1]}", "fraction", float(t[0]), float(t[1]))
)
decimal_comma = st.tuples(st.integers(0, 99), st.integers(0, 99)).map(lambda t: Written(f"{t[0]},{t[1]}", "ambiguous"))
number_range = st.tuples(st.integers(0, 9), st.integers(0, 9)).map(lambda t: Written(f"{t[0]}-{t[1]}", "ambiguous"))
huge = st.integers(310, 500).map(lambda n: Written("9" * n, "ambiguous"))
mixed_scripts = st.integers(10, 99).map(lambda n: Written(_translate(str(n)[0], 0x660) + str(n)[1], "ambiguous"))

single = st.one_of(plain, signed, scientific, unicode_digits, fraction, decimal_comma, number_range, huge, mixed_scripts)
# In a "[a, b]" list a comma separates numbers; fractions and ranges are not list elements.
list_element = st.one_of(plain, scientific, unicode_digits, huge)
endings = st.sampled_from(["", ".", "\n", " points.", "\n\nThe image is good."])

FINAL_SCORE = {"final_score_1_5": (1.0, 5.0), "final_score_1_10": (1.0, 10.0), "final_score_0_100": (0.0, 100.0)}
CASES = 400


def _check(result, text):
    assert result.text == text
    assert result.status in (Status.OK, Status.PARSE_ERROR)
    if result.status is Status.PARSE_ERROR:
        assert result.error and result.score is None and result.winner is None


@settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(single, endings, st.sampled_from(sorted(FINAL_SCORE)))
def test_final_score_reads_what_a_reader_reads(number, ending, parser):
    low, high = FINAL_SCORE[parser]
    text = f"The image matches the prompt well.\nFinal Score: {number.text}{ending}"
    result = PARSERS[parser](text)
    _check(result, text)
    expected = number.expected(low, high)
    if expected is None:
        assert result.status is Status.PARSE_ERROR, (text, result.score)
    else:
        assert result.status is Status.OK and result.score == expected, (text, result)


@settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(single, st.sampled_from(["acs", "aps"]))
def test_dimension_scores_read_what_a_reader_reads(number, parser):
    second = "Coherence" if parser == "acs" else "Physics"
    text = f"Alignment Score (1-5): {number.text}\n{second} Score (1-5): 3\nStyle Score (1-5): 4.5\n"
    result = PARSERS[parser](text)
    _check(result, text)
    expected = number.expected(1.0, 5.0)
    if expected is None:
        assert result.status is Status.PARSE_ERROR and "alignment" in result.error
        assert "alignment" not in (result.scores or {})
    else:
        assert result.status is Status.OK and result.scores["alignment"] == expected


@settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(single, st.sampled_from(["image", "video"]))
def test_pair_scores_read_what_a_reader_reads(number, subject):
    label = subject.capitalize()
    text = (
        f"Alignment Score:\n {label} 1: {number.text}\n {label} 2: 0.5\n\n"
        f"Coherence Score:\n {label} 1: 0.25\n {label} 2: 0.75\n\nStyle Score:\n {label} 1: 0.5\n {label} 2: 0.5"
    )
    result = PARSERS[f"pair_score_{subject}"](text)
    _check(result, text)
    assert result.status is Status.OK  # the other dimensions are valid
    expected = number.expected(0.0, 1.0)
    if expected is None:
        assert "alignment/1" not in result.scores and "alignment" in result.error
    else:
        assert result.scores["alignment/1"] == expected and result.error is None


@settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(single)
def test_edit_pair_score_reads_what_a_reader_reads(number):
    text = f"Edited Image 1: {number.text}\nEdited Image 2: 2.5"
    result = PARSERS["edit_pair_score"](text)
    _check(result, text)
    expected = number.expected(None, None)
    if expected is None:
        assert result.status is Status.PARSE_ERROR
    else:
        assert result.status is Status.OK and result.scores["1"] == expected
        assert result.winner == (0 if expected == 2.5 else 1 if expected > 2.5 else 2)


@settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(list_element, st.sampled_from(["edit_point_instruction_following", "edit_point_quality"]), st.booleans())
def test_edit_point_scores_read_what_a_reader_reads(number, parser, fenced):
    body = f'{{"reasoning": "The edit is clean.", "score": [{number.text}, 5]}}'
    text = f"```json\n{body}\n```" if fenced else body
    result = PARSERS[parser](text)
    _check(result, text)
    expected = number.expected(0.0, 25.0)
    if expected is None:
        assert result.status is Status.PARSE_ERROR
    else:
        assert result.status is Status.OK and list(result.scores.values())[0] == expected


@settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(single, st.sampled_from(["flex_image", "flex_video"]))
def test_flex_dimension_scores_read_what_a_reader_reads(number, parser):
    dims = [{"name": "detail", "score_1": number.text, "score_2": 7}]
    text = json.dumps({"winner": "Image 1", "categories": [{"name": "quality", "cat_winner": "Image 1", "dims": dims}]},
                      ensure_ascii=False)
    result = PARSERS[parser](text)
    _check(result, text)
    assert result.status is Status.OK and result.winner == 1
    expected = number.expected(None, None)
    if expected is None:
        assert "quality/detail/1" not in result.scores
    else:
        assert result.scores["quality/detail/1"] == expected


@pytest.mark.parametrize(
    "raw, high, value",
    [("1e5", None, 1e5), ("1e-3", None, 0.001), ("4.5/5", 5.0, 4.5), ("\u0664", None, 4.0), ("\uff17", 10.0, 7.0),
     ("\u22123.5", None, -3.5), ("+2", None, 2.0)],
)
def test_read_number_examples(raw, high, value):
    assert read_number(raw, high) == value


@pytest.mark.parametrize("raw, high, reason", [
    ("4,5", 5.0, "comma"), ("4.5/5", 100.0, "not on a scale up to 100"), ("3/10", 5.0, "fraction"),
    ("9" * 400, None, "too large"), ("3-4", 5.0, "range"), ("\u06645", None, "scripts"),
])
def test_read_number_refuses_what_a_reader_cannot_read_as_one_value(raw, high, reason):
    with pytest.raises(ValueError, match=reason):
        read_number(raw, high)


def test_the_examples_of_the_issue():
    assert PARSERS["final_score_1_5"]("Final Score: 1e5").status is Status.PARSE_ERROR  # was 1
    assert PARSERS["final_score_1_5"]("Final Score: 4,5").status is Status.PARSE_ERROR  # was 4
    assert PARSERS["final_score_0_100"]("Final Score: 4.5/5").status is Status.PARSE_ERROR  # was 4.5
    assert PARSERS["final_score_1_5"]("Final Score: 3/10").status is Status.PARSE_ERROR  # was 3
    assert PARSERS["edit_pair_score"]("Image 1: " + "9" * 400 + "\nImage 2: 3").status is Status.PARSE_ERROR  # was inf
    pair = PARSERS["pair_score_image"](
        "Alignment Score:\n Image 1: 1e-3\n Image 2: 0.999\n\nCoherence Score:\n Image 1: 0.5\n Image 2: 0.5\n\n"
        "Style Score:\n Image 1: 0.5\n Image 2: 0.5"
    )
    assert pair.scores["alignment/1"] == 0.001 and pair.winner == 2  # 1e-3 read as 1 made Image 1 win


# ----------------------------------------------------------------------------- released-checkpoint styles
from checkpoint_outputs import CASES as CHECKPOINT_OUTPUTS  # noqa: E402


def test_the_checkpoint_corpus_is_large_and_uses_every_output_parser():
    assert len(CHECKPOINT_OUTPUTS) >= 60
    assert len({name for name, *_ in CHECKPOINT_OUTPUTS}) == len(CHECKPOINT_OUTPUTS)
    assert {parser for _, parser, _, _ in CHECKPOINT_OUTPUTS} >= set(PARSERS) - {"pair_rank", "think"}


@pytest.mark.parametrize("name, parser, text, expected", CHECKPOINT_OUTPUTS, ids=[c[0] for c in CHECKPOINT_OUTPUTS])
def test_checkpoint_style_outputs_give_the_verdict_a_reader_reads(name, parser, text, expected):
    from reward_core.parsers import parse

    result = parse(parser, text)
    if expected is None:
        assert result.status is Status.PARSE_ERROR and result.error, result
        assert result.winner is None and result.score is None
        return
    assert result.status is Status.OK, result.error
    if "winner" in expected:
        assert result.winner == expected["winner"]
    if "score" in expected:
        assert result.score == pytest.approx(expected["score"])
    for key, value in expected.get("scores", {}).items():
        assert result.scores[key] == pytest.approx(value), key
