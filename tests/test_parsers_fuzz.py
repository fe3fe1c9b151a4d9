"""Property tests: no parser raises on any text, and failures never carry a verdict.

Runs >= 10k parser calls on generated outputs in total (about 10-20 s on one core).
"""

from __future__ import annotations

import json
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reward_core.parsers import PARSERS, parse
from reward_core.results import RewardResult, Status

GENERATED_OUTPUTS = 800  # each one goes through all 21 parsers: > 16k parser calls

FRAGMENTS = [
    "Image 1 is better", "Image 2 is better than Image 1", "Both images are equally good", "Video 2 is better",
    "Answer 1 is better than Answer 2", "Overall Judgment:", "The second response is better", "Edited image 1 is better",
    "<think>", "</think>", "<answer>", "</answer>", "Final Score:", "Final Score: ", "Alignment Score (1-5):",
    "Coherence Score:", "Style Score", "Physics Score (1-5): ", " Image 1: ", " Image 2: ", "nan", "NaN",
    "{", "}", "[", "]", ",", '"winner": ', '"Image 1"', '"score": [', "```json\n", "```", '"categories": [',
    '{"name": "A", "cat_winner": "Image 2", "dims": [{"name": "d", "score_1": ', "\n", " ", ".", "-", "\u2212",
    "0", "1", "2", "5", "7", "25", "100", "1e999", "0.4357", "-3.5", "\u300c", "\ufffd", "\x00", "**",
]
structured_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6), st.floats(allow_nan=True).map(repr)), max_size=40
).map("".join)
any_text = st.one_of(st.text(max_size=300), structured_text)


def check_result(result: RewardResult, text: str) -> None:
    assert isinstance(result, RewardResult)
    assert result.status in (Status.OK, Status.PARSE_ERROR)
    assert result.text == text
    assert result.winner in (None, 0, 1, 2)
    if result.status is Status.PARSE_ERROR:
        assert result.error
        assert result.winner is None and result.score is None
    if result.score is not None:
        assert math.isfinite(result.score)
    json.dumps(result.to_dict(), allow_nan=False)


@settings(max_examples=GENERATED_OUTPUTS, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(any_text)
def test_no_parser_raises(text):
    for name, parser in PARSERS.items():  # the raw parsers, without parse()'s safety net
        try:
            check_result(parser(text), text)
        except Exception as exc:
            raise AssertionError(f"parser {name} on {text!r}") from exc


@settings(max_examples=300, deadline=None, database=None)
@given(
    prose=st.text(alphabet=st.characters(blacklist_characters="0123456789"), max_size=200),
    winner=st.sampled_from([1, 2]),
    subject=st.sampled_from(["Image", "Video", "Answer"]),
)
def test_pair_rank_reads_the_final_conclusion(prose, winner, subject):
    text = f"{prose}\n{subject} {winner} is better than {subject} {3 - winner}."
    result = parse("pair_rank", text)
    assert result.ok and result.winner == winner


@settings(max_examples=300, deadline=None, database=None)
@given(
    prose=st.text(alphabet=st.characters(blacklist_characters="0123456789"), max_size=200),
    value=st.decimals(min_value=0, max_value=100, places=2),
)
def test_final_score_round_trip_and_scale(prose, value):
    text = f"{prose}\nFinal Score: {value}"
    result = parse("final_score_0_100", text)
    assert result.ok and result.score == pytest.approx(float(value))
    on_five = parse("final_score_1_5", text)
    assert on_five.ok == (1 <= value <= 5)


PATHOLOGICAL = [
    "Image 1 ", "both images are ", "{", "```", "Final Score" + " " * 5, "<answer>", "</answer>", '"score": [1, ', "[",
    "Alignment Score: Image 1: ", "Image 1 is better, ", "Alignment Score (1-5)" + " " * 10,
    "edited image 1 score" + " " * 10, ",", "final score (1-5)", '{"winner": "Image 1/2",',
]


@pytest.mark.parametrize("fragment", PATHOLOGICAL)
def test_long_repetitive_output_is_parsed_in_linear_time(fragment):
    """A runaway generation (60 kB of one fragment) must not hang a batch (no regex backtracking blow-up)."""
    text = fragment * (60_000 // len(fragment))
    start = time.perf_counter()
    for parser in PARSERS.values():
        check_result(parser(text), text)
    assert time.perf_counter() - start < 5.0  # about 0.1 s when linear; minutes when quadratic
