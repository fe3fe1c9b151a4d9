"""Benchmark metrics against hand-computed values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unifiedreward.bench.metrics import (
    accuracy,
    accuracy_without_ties,
    category_accuracies,
    macro_accuracy,
    position_bias,
    tie_calibrated_accuracy,
)


def test_tau_with_discrete_verdicts():
    # human:  A   B   tie  A   tie      model verdicts: A, B, tie, B, A
    human, margins = [1, -1, 0, 1, 0], [1, -1, 0, -1, 1]
    # eps=0: hits = pair0, pair1, pair2 (both tie) -> 3/5 ; eps=1: only the two human ties -> 2/5
    tau = tie_calibrated_accuracy(human, margins)
    assert tau.accuracy == pytest.approx(0.6) and tau.epsilon == 0.0
    # diff: decided pairs 0, 1, 3 -> 2 hits of 3
    assert accuracy_without_ties(human, margins) == pytest.approx(2 / 3)


def test_tau_with_continuous_margins_picks_best_threshold():
    human, margins = [1, -1, 0, 1], [0.9, -0.2, 0.1, 0.05]
    # eps=0 (no model ties): pairs 0, 1, 3 -> 3/4 ; eps=.05: 2/4 ; eps=.1: 3/4 (not better) ; .2: 2/4 ; .9: 1/4
    tau = tie_calibrated_accuracy(human, margins)
    assert (tau.accuracy, tau.epsilon) == (pytest.approx(0.75), 0.0)
    # VideoAlign's sweep never scores "no ties": its best is 3/4 at eps=0.1
    reference = tie_calibrated_accuracy(human, margins, per_pair_sweep=True)
    assert (reference.accuracy, reference.epsilon) == (pytest.approx(0.75), 0.1)


def test_tau_threshold_rule_differs_from_reference_sweep_on_equal_margins():
    # all |margin| = 1: the threshold rule sees "no ties" (1/3) or "all ties" (1/3);
    # the reference sweep also scores "only pair 0 is a tie" (2/3), an order-dependent state.
    human, margins = [0, 1, 1], [1, 1, -1]
    assert tie_calibrated_accuracy(human, margins).accuracy == pytest.approx(1 / 3)
    assert tie_calibrated_accuracy(human, margins, per_pair_sweep=True).accuracy == pytest.approx(2 / 3)


def test_diff_counts_model_ties_as_misses_and_ignores_human_ties():
    assert accuracy_without_ties([1, -1, 0], [0.0, -0.5, 3.0]) == pytest.approx(0.5)
    assert accuracy_without_ties([0, 0], [1.0, -1.0]) is None


def test_empty_and_mismatched_inputs():
    assert tie_calibrated_accuracy([], []) is None
    assert accuracy([]) is None
    with pytest.raises(ValueError, match="2 human labels but 1 margins"):
        tie_calibrated_accuracy([1, -1], [0.5])
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        accuracy_without_ties([2], [1.0])


def _tau_by_definition(human, margins):
    def hits(epsilon):
        count = 0
        for h, m in zip(human, margins):
            model = 0 if abs(m) <= epsilon else (1 if m > 0 else -1)
            count += model == h
        return count / len(human)

    return max(hits(epsilon) for epsilon in {0.0, *(abs(m) for m in margins)})


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([-1, 0, 1]), st.sampled_from([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])),
        min_size=1,
        max_size=30,
    )
)
def test_tau_equals_its_definition(pairs):
    human, margins = [h for h, _ in pairs], [m for _, m in pairs]
    result = tie_calibrated_accuracy(human, margins)
    assert result.accuracy == pytest.approx(_tau_by_definition(human, margins))
    # the reference sweep scores a superset of partial states except "no ties" when no margin is 0
    if 0.0 in [abs(m) for m in margins]:
        assert tie_calibrated_accuracy(human, margins, per_pair_sweep=True).accuracy >= result.accuracy - 1e-12


def test_overall_category_and_macro_accuracy():
    categories = ["general", "general", "hallucination", "reasoning", "reasoning", "reasoning", "reasoning"]
    correct = [True, False, True, True, True, True, False]
    per_category = category_accuracies(categories, correct)
    assert per_category == {"general": 0.5, "hallucination": 1.0, "reasoning": 0.75}
    assert accuracy(correct) == pytest.approx(5 / 7)  # overall weighs every pair
    assert macro_accuracy(per_category) == pytest.approx((0.5 + 1.0 + 0.75) / 3)  # macro weighs every category
    assert macro_accuracy({}) is None


def test_position_bias_of_a_judge_that_always_picks_slot_one():
    # presentations: preferred candidate in slot 1, 2, 1, 2 and one human tie; the judge says "1" every time
    bias = position_bias([1, 2, 1, 2, None], [1, 1, 1, 1, 1], swapped_verdicts=[(1, -1), (1, -1), (-1, -1)])
    assert bias.accuracy_preferred_first == 1.0 and bias.n_preferred_first == 2
    assert bias.accuracy_preferred_second == 0.0 and bias.n_preferred_second == 2
    assert bias.gap == 1.0
    assert bias.first_slot_rate == 1.0
    assert bias.consistency == pytest.approx(1 / 3) and bias.n_swapped_pairs == 3


def test_position_bias_counts_model_ties_as_misses():
    bias = position_bias([1, 2, 2], [0, 2, 0])
    assert bias.accuracy_preferred_first == 0.0
    assert bias.accuracy_preferred_second == 0.5
    assert bias.first_slot_rate == 0.0
    assert bias.consistency is None and bias.n_swapped_pairs == 0
