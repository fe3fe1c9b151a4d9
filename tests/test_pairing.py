"""reward_core.pairing: schedules, the win rate and Bradley-Terry aggregators, the pairwise_schedules benchmark,
and the TRL win-rate reward on the toy judge with the sparse schedule."""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from reward_core import RewardResult, Status, get_template
from reward_core.prompts import list_templates
from reward_core.soft_verdict import reads_soft_verdict
from reward_core.pairing import (
    Pairing,
    SwissRounds,
    Verdict,
    bradley_terry,
    plan_pairs,
    round_robin,
    score_pairs,
    seed_from,
    sparse,
    win_rate,
)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("size", [2, 5, 8, 16])
def test_round_robin_one_order_lower_index_first_and_both_orders(size):
    pairs = round_robin(size)
    assert len(pairs) == len(set(pairs)) == size * (size - 1) // 2 and all(a < b for a, b in pairs)
    both = round_robin(size, both_orders=True)
    assert len(both) == len(set(both)) == size * (size - 1) and set(both) == {(a, b) for a in range(size)
                                                                            for b in range(size) if a != b}
    # nearest ring neighbours first: a prefix of G pairs meets everyone twice (what max_pairs keeps)
    if size > 2:
        assert collections.Counter(x for pair in pairs[:size] for x in pair) == {i: 2 for i in range(size)}


@pytest.mark.parametrize("size, k", [(8, 4), (16, 4), (16, 6), (24, 8), (8, 3), (10, 5), (9, 3), (6, 10), (5, 4)])
def test_sparse_degree_first_slot_balance_and_determinism(size, k):
    pairs = sparse(size, k, seed=7)
    degree = min(k, size - 1) + (min(k, size - 1) % 2 and size % 2)  # odd k on an odd group: k + 1
    assert all(a != b for a, b in pairs)
    assert len({frozenset(p) for p in pairs}) == len(pairs) == size * degree // 2  # no pair twice, in any order
    meets = collections.Counter(x for pair in pairs for x in pair)
    assert set(meets.values()) == {degree} and len(meets) == size
    firsts = collections.Counter(a for a, _ in pairs)
    assert all(abs(firsts[i] - degree / 2) <= 0.5 for i in range(size))  # first slot balanced (within one if odd)
    assert sparse(size, k, seed=7) == pairs and sparse(size, k, seed=8) != pairs  # a function of the seed
    assert seed_from("key", "a", "b") == seed_from("key", "a", "b") != seed_from("key", "b", "a")


def test_sparse_edge_cases():
    assert sparse(1, 4, 0) == [] and sparse(0, 4, 0) == []
    assert {frozenset(p) for p in sparse(4, 4, 0)} == {frozenset(p) for p in round_robin(4)}  # k >= G-1: all pairs
    with pytest.raises(ValueError):
        sparse(8, 0, 0)


def test_swiss_rounds_pair_unmet_neighbours_with_balanced_first_slots():
    rng = np.random.default_rng(0)
    strength = rng.normal(size=16)
    rounds = SwissRounds(16, seed=3)
    for _ in range(4):
        pairs = rounds.next_pairs()
        assert len(pairs) == 8 and sorted(x for p in pairs for x in p) == list(range(16))  # a perfect matching
        rounds.record(pairs, [float(sigmoid(strength[a] - strength[b])) for a, b in pairs])
    met = [frozenset((v.first, v.second)) for v in rounds.verdicts]
    assert len(met) == len(set(met)) == 32  # 2G calls, nobody meets twice
    firsts = collections.Counter(v.first for v in rounds.verdicts)
    assert all(1 <= firsts[i] <= 3 for i in range(16))
    fit = bradley_terry(16, rounds.verdicts)
    assert np.corrcoef(fit.strengths, strength)[0, 1] > 0.9


# --------------------------------------------------------------------------- aggregators


def test_bradley_terry_recovers_strengths_and_position_bias_from_noiseless_soft_verdicts():
    rng = np.random.default_rng(1)
    strength = rng.normal(size=12)
    strength -= strength.mean()
    verdicts = [Verdict(a, b, float(sigmoid(strength[a] - strength[b] + 0.8))) for a, b in sparse(12, 4, 0)]
    fit = bradley_terry(12, verdicts, ridge=1e-6)
    assert np.allclose(fit.strengths, strength, atol=5e-3) and fit.position_bias == pytest.approx(0.8, abs=5e-3)
    assert fit.consistency == 1.0 and fit.components == 1 and fit.iterations <= 20
    expected = [np.mean([sigmoid(strength[i] - strength[j]) for j in range(12) if j != i]) for i in range(12)]
    assert fit.rewards == pytest.approx(expected, abs=2e-3)  # expected win rate vs the group, position removed


def test_bradley_terry_on_noisy_hard_verdicts_and_one_order_position_bias():
    """Sampled text verdicts, Pref-GRPO's one order (lower index first): the fit sees the first-slot advantage
    that a plain win rate turns into a reward gap (candidate 0 is always first)."""
    rng = np.random.default_rng(2)
    strength = np.linspace(-1, 1, 8)
    verdicts = [Verdict(a, b, float(rng.random() < sigmoid(strength[a] - strength[b] + 1.0)))
                for _ in range(40) for a, b in round_robin(8)]
    fit = bradley_terry(8, verdicts)
    assert fit.position_bias == pytest.approx(1.0, abs=0.15)
    assert np.abs(np.array(fit.strengths) - strength).max() < 0.3 and np.corrcoef(fit.strengths, strength)[0, 1] > 0.95
    assert 0.6 < fit.consistency < 0.9 and fit.iterations <= 20
    # the win rate, same verdicts: equal strengths would differ by the position bias alone
    flat = [Verdict(a, b, float(rng.random() < sigmoid(1.0))) for _ in range(40) for a, b in round_robin(8)]
    assert win_rate(8, flat).rewards[0] > win_rate(8, flat).rewards[7] + 0.4  # sigmoid(1) = 0.73 vs 0.27
    # Bradley-Terry removes most of that gap (in one order, position and an index trend are told apart only by
    # the spread of index gaps, so less sharply than with both orders)
    assert abs(bradley_terry(8, flat).rewards[0] - bradley_terry(8, flat).rewards[7]) < 0.2
    both = [Verdict(a, b, float(rng.random() < sigmoid(1.0))) for _ in range(20) for a, b in round_robin(8, True)]
    assert abs(bradley_terry(8, both).rewards[0] - bradley_terry(8, both).rewards[7]) < 0.1


def test_failed_comparisons_are_missing_not_losses():
    base = [Verdict(0, 1, 1.0), Verdict(1, 2, 0.7), Verdict(2, 0, 0.4), Verdict(2, 3, 0.5)]
    failed = base + [Verdict(3, 0, None), Verdict(1, 3, None)]
    for aggregate in (win_rate, bradley_terry):
        with_failures, without = aggregate(5, failed), aggregate(5, base)
        assert with_failures.rewards == pytest.approx(without.rewards, nan_ok=True)
        assert with_failures.failed == 2 and with_failures.games == [2, 2, 3, 1, 0]
        assert with_failures.rewards[4] is None  # never compared: None, not the worst value
    nothing = bradley_terry(3, [Verdict(0, 1, None)])
    assert nothing.rewards == [None] * 3 and win_rate(3, []).rewards == [None] * 3


def test_perfect_separation_stays_finite_and_disconnected_groups_are_flagged():
    chain = [Verdict(a, b, 1.0) for a, b in round_robin(4)]  # 0 beats everyone, 1 beats 2 and 3, ...
    fit = bradley_terry(4, chain)
    assert all(np.isfinite(fit.strengths)) and fit.strengths == sorted(fit.strengths, reverse=True)
    assert fit.rewards[0] > fit.rewards[1] > fit.rewards[2] > fit.rewards[3]
    split = bradley_terry(6, [Verdict(0, 1, 0.9), Verdict(1, 2, 0.8), Verdict(3, 4, 0.3), Verdict(4, 5, 0.6)])
    assert split.components == 2 and all(r is not None and 0 < r < 1 for r in split.rewards)
    assert sum(split.strengths[:3]) == pytest.approx(0, abs=1e-6) and sum(split.strengths[3:]) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError):
        bradley_terry(3, [Verdict(0, 0, 1.0)])
    with pytest.raises(ValueError):
        win_rate(3, [Verdict(0, 1, 1.5)])


def test_first_share_reads_text_ties_soft_and_failures():
    assert RewardResult(Status.OK, winner=1).first_share(use_probs=False) == 1.0
    assert RewardResult(Status.OK, winner=0).first_share(use_probs=True) == 0.5
    assert RewardResult(Status.OK, winner=2, probs={"1": 0.3, "2": 0.7}).first_share(use_probs=True) == 0.3
    assert RewardResult(Status.OK, winner=2, probs={"1": 0.3, "2": 0.7}).first_share(use_probs=False) == 0.0
    assert RewardResult.failure(Status.PARSE_ERROR, "x").first_share(use_probs=True) is None
    assert RewardResult(Status.OK, winner=1, probs={"1": float("nan"), "2": 0.5}).first_share(use_probs=True) is None


def test_reasoning_templates_get_the_soft_verdict_defaults():
    """Think / Flex in generate mode read P("1") at the verdict (reward_core.soft_verdict): sparse + Bradley-Terry."""
    think = next(key for key in list_templates() if get_template(key).pairwise and reads_soft_verdict(get_template(key)))
    assert Pairing.for_mode("generate", template=think) == Pairing.for_mode("logit")
    assert Pairing.for_mode("generate", template="image_generation.pair_rank.v1").schedule == "round_robin"


# --------------------------------------------------------------------------- many groups


def test_pairing_defaults_by_verdict_kind_and_batch_planning():
    assert Pairing.for_mode("logit") == Pairing("sparse", 4, False, None, "bt")
    assert Pairing.for_mode("generate") == Pairing("round_robin", 4, True, None, "win_rate")
    assert Pairing.for_mode("generate", "pref_grpo").both_orders is False
    with pytest.raises(ValueError):
        Pairing("pref_grpo", both_orders=True)
    with pytest.raises(ValueError):
        Pairing("swiss")
    assert len(Pairing("round_robin", max_pairs=4).pairs(6, 0)) == 8  # 4 pairs, both orders
    groups = [[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 11]]  # interleaved groups
    pairing = Pairing.for_mode("logit", k=2)
    pairs = plan_pairs(groups, pairing, [1, 2])
    assert len(pairs) == 12 and all(a % 2 == b % 2 for a, b in pairs)
    quality = np.arange(12) / 3
    rewards, scored = score_pairs(12, groups, pairs, [float(sigmoid(quality[a] - quality[b])) for a, b in pairs], pairing)
    assert all(r is not None for r in rewards) and len(scored) == 2
    with pytest.raises(ValueError, match="spans two groups"):
        score_pairs(12, groups, [(0, 1)], [1.0], pairing)


# --------------------------------------------------------------------------- the benchmark


def test_pairwise_schedules_benchmark_runs_tiny_and_writes_its_schema(tmp_path, toy_world):
    sys.path.insert(0, str(BENCHMARKS))
    import pairwise_schedules

    out = tmp_path / "rows.json"
    argv = ["--sizes", "8", "--groups", "4", "--ks", "4", "--toy-groups", "1", "--toy-size", "4", "--threads", "1",
            "--world", toy_world["root"], "--json", str(out)]
    assert pairwise_schedules.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    keys = {"source", "G", "verdicts", "schedule", "calls_per_group", "spearman_vs_round_robin", "spearman_vs_truth",
            "advantage_corr_vs_round_robin"}
    assert all(set(row) == keys for row in rows)
    assert {(r["source"], r["G"], r["verdicts"]) for r in rows} == {
        ("simulator", 8, "soft"), ("simulator", 8, "hard"), ("toy", 4, "soft"), ("toy", 4, "hard")}
    by = {(r["source"], r["verdicts"], r["schedule"]): r for r in rows}
    assert by["simulator", "soft", "pref_grpo"]["calls_per_group"] == 28
    assert by["simulator", "soft", "sparse_k4+bt"]["calls_per_group"] == 16
    assert by["simulator", "soft", "round_robin_both"]["spearman_vs_round_robin"] == 1.0
    assert all(-1 <= r["spearman_vs_truth"] <= 1 for r in rows if r["source"] == "simulator")
    assert all(r["spearman_vs_truth"] is None for r in rows if r["source"] == "toy")


# --------------------------------------------------------------------------- TRL reward, toy judge


def test_trl_winrate_reward_sparse_bt_on_the_toy_judge(toy_world):
    """mode="logit": the sparse schedule (each completion meets k=2 others: G calls), the toy judge's P("1") as
    soft verdicts and the Bradley-Terry rewards, equal to the fit of the very verdicts the judge gave."""
    from integrations.trl.rewards import PairwiseWinRateReward
    from reward_core import UnifiedReward

    judge = UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu")
    calls = []

    class Log:
        def compare_batch(self, template, items, **kwargs):
            results = judge.compare_batch(template, items, **kwargs)
            calls.extend(zip(items, results))
            return results

    image = str(Path(toy_world["data_dir"]) / "image_points" / "00000.png")
    prompts = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]] * 6
    completions = ["a red circle", "a blue square", "a circle", "red", "nothing", "a shape on the left"]
    reward = PairwiseWinRateReward(Log(), mode="logit", k=2)
    rewards = reward(prompts, completions, image=[image] * 6)
    assert len(calls) == 6 and all(result.probs for _, result in calls)
    index = {text: n for n, text in enumerate(completions)}
    verdicts = [Verdict(index[i.fields["answer1"]], index[i.fields["answer2"]], r.probs["1"]) for i, r in calls]
    assert rewards == pytest.approx(bradley_terry(6, verdicts).rewards, abs=1e-9)
    assert collections.Counter(x for v in verdicts for x in v[:2]) == {n: 2 for n in range(6)}
