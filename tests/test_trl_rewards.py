"""TRL reward functions, the pairwise judge, config resolution and the trl<0.29 shim, with a scripted judge.

The scripted judge reads each answer's quality from its text (``"q4 ..."``), so every expected reward
below is computed by hand; "bad" answers make the judge fail.
"""

from __future__ import annotations

import collections
import importlib
import json
import math
import subprocess
from pathlib import Path

import pytest

from integrations.trl import config as reward_config
from integrations.trl.judge import PromptMediaLookup, UnifiedRewardPairwiseJudge
from integrations.trl.rewards import (
    MultiDimensionReward,
    PairwiseWinRateReward,
    PointwiseReward,
    get_multidim_reward,
    get_pointwise_reward,
    get_winrate_reward,
    group_members,
    impute_group_mean,
    row_key,
    unifiedreward_think_accuracy_reward as think_accuracy_reward,
    unifiedreward_think_format_reward as think_format_reward,
)
from reward_core import RewardResult, Status, VideoSpec

REPO = Path(__file__).resolve().parents[1]
LF_PYTHON = REPO / ".venv-llamafactory" / "bin" / "python"


def quality(text: str) -> float | None:
    return float(text[1]) if text.startswith("q") else None


class ScriptedJudge:
    def __init__(self):
        self.seen = []

    def score_batch(self, template, items, mode="generate"):
        self.seen += items
        out = []
        for item in items:
            q = quality(item.fields.get("response", item.fields.get("prompt", "")))
            if template.mode == "multi_score" and q is not None:
                out.append(RewardResult(Status.OK, scores={"alignment": q, "coherence": 5.0, "style": 1.0}))
            elif q is not None and item.media:
                out.append(RewardResult(Status.OK, score=q * 20 if template.scale == (0.0, 100.0) else q))
            else:
                out.append(RewardResult.failure(Status.PARSE_ERROR, "no Final Score"))
        return out

    def compare_batch(self, template, items, swap=False, mode="generate"):
        self.seen += items
        out = []
        for item in items:
            a, b = quality(item.fields["answer1"]), quality(item.fields["answer2"])
            if a is None or b is None:
                out.append(RewardResult.failure(Status.PARSE_ERROR, "no verdict"))
            else:
                out.append(self.verdict(a, b))
        return out

    def verdict(self, a: float, b: float) -> RewardResult:
        return RewardResult(Status.OK, winner=1 if a > b else 2 if b > a else 0)


def conversation(question: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_think_format_is_anchored_at_both_ends():
    good = "<think>compare</think>\n<answer>Image 1 is better</answer>"
    assert think_format_reward([good, answer(good)]) == [1.0, 1.0]
    assert think_format_reward([good + " trailing", "x" + good, "<think>a</think>"]) == [0.0, 0.0, 0.0]
    assert think_format_reward([good + "<answer>again</answer>"]) == [0.0]


def test_think_accuracy_tolerates_a_trailing_period():
    completions = [
        "<think>.</think><answer>Image 1 is better.</answer>",  # upstream scored this 0
        "<think>.</think><answer>Image 2 is better</answer>",
        "Image 1 is better",  # no <answer>
        "<think>.</think><answer>Image 1 is better</answer>",
    ]
    labels = ["Image 1 is better", "Image 1 is better", "Image 1 is better", ""]
    assert think_accuracy_reward(completions, solution=labels) == [1.0, 0.0, 0.0, None]
    import trl.rewards

    assert not hasattr(trl.rewards, "unifiedreward_think_format_reward")  # our names never shadow TRL's
    with pytest.raises(ValueError):
        think_accuracy_reward(completions)


def test_pointwise_reward_normalizes_and_imputes_failures_with_the_group_mean():
    judge = ScriptedJudge()
    reward = PointwiseReward(judge, name="point")
    logged, extra = {}, {}
    rewards = reward(
        [conversation("colour?")] * 4,
        [answer("q4 red"), answer("bad"), "q1 blue", "q5 green"],
        completion_ids=None,
        image=["a.png", "a.png", "a.png", "c.png"],
        trainer_state=object(),
        log_metric=lambda name, value: logged.update({name: value}),
        log_extra=lambda column, values: extra.update({column: values}),
    )
    # 0-100 scale -> [0, 1]; the failed answer gets its group's (image a.png) mean, (0.8 + 0.2) / 2
    assert rewards == [pytest.approx(0.8), pytest.approx(0.5), pytest.approx(0.2), pytest.approx(1.0)]
    assert reward.__name__ == "point" and (reward.items, reward.failed, reward.imputed) == (4, 1, 1)
    assert logged == {"point/failed_fraction": pytest.approx(1 / 4)}
    assert extra["point/status"] == ["ok", "parse_error (imputed)", "ok", "ok"]
    assert len(extra["point/judge_text"]) == 4
    assert PointwiseReward(ScriptedJudge(), impute=None)([conversation("c?")] * 2, ["q4", "bad"], image=["a", "a"]) == [
        pytest.approx(0.8), None]
    assert judge.seen[0].media == ["a.png"] and judge.seen[0].fields == {"question": "colour?", "response": "q4 red"}


def test_pointwise_reward_reads_images_and_video_columns():
    judge = ScriptedJudge()
    PointwiseReward(judge)(["q?"], ["q3"], images=[["x.png", "y.png"]])
    assert judge.seen[-1].media == ["x.png", "y.png"]
    reward = PointwiseReward(judge)
    assert reward.template_for({"video": ["v.mp4"]}) == "video_understanding.point_score.v1"
    reward(["q?"], ["q3"], video=["v.mp4"])
    assert judge.seen[-1].media == [VideoSpec("v.mp4")]


def test_images_column_of_one_path_per_row_is_one_image(toy_world):
    """An ``images`` cell holding one path string was split into its characters: every reward was None.

    The real toy judge (logit mode) reads the images, so a wrong media list fails as it would in training.
    """
    from reward_core import UnifiedReward

    rows = [json.loads(line) for line in Path(toy_world["data"]["und_prompts"]).read_text().splitlines()[:2]]
    paths = [str(Path(toy_world["data_dir"]) / row["image"]) for row in rows]
    judge = UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu")
    reward = PointwiseReward(judge, mode="logit", impute=None)
    values = reward([row["question"] for row in rows], ["A square.", "A circle."], images=paths)
    assert reward.failed == 0 and all(isinstance(v, float) for v in values), values
    assert values == reward([row["question"] for row in rows], ["A square.", "A circle."], images=[[p] for p in paths])
    assert PromptMediaLookup.from_rows([{"prompt": "p", "images": paths[0]}]).get("p") == [paths[0]]


def test_pointwise_generation_template_judges_the_image_against_the_completion():
    judge = ScriptedJudge()
    reward = PointwiseReward(judge, template="image_generation.point_score.v1")
    assert reward(["describe"], ["q5 a red cube"], image=["img.png"]) == [pytest.approx(1.0)]
    assert judge.seen[-1].fields == {"prompt": "q5 a red cube"}


def test_multidim_reward_weights_dimensions():
    reward = MultiDimensionReward(ScriptedJudge(), weights={"alignment": 3, "style": 1})
    (value,) = reward(["p"], ["q5"], image=["i.png"])
    assert value == pytest.approx((3 * 1.0 + 1 * 0.0) / 4)
    video = MultiDimensionReward(ScriptedJudge(), template="video_generation.point_score_aps.v2", weights={"physics": 1})
    assert video.weights == {"physics": 1.0}


def test_multidim_reward_refuses_unknown_dimensions_up_front():
    """A misspelt dimension used to give None for every item; now the reward refuses it when built."""
    with pytest.raises(ValueError, match=r"unknown dimension\(s\) \['alignmnet'\]"):
        MultiDimensionReward(ScriptedJudge(), weights={"alignmnet": 1})
    with pytest.raises(ValueError, match="alignmnet"):
        get_multidim_reward(ScriptedJudge(), weights={"Alignmnet": 2, "style": 1})
    with pytest.raises(ValueError, match="coherence"):  # APS (video) has no coherence
        MultiDimensionReward(ScriptedJudge(), template="video_generation.point_score_aps.v2", weights={"coherence": 1})
    # physics is a video (APS) dimension: known to the reward, refused for an image batch instead of None everywhere
    reward = MultiDimensionReward(ScriptedJudge(), weights={"physics": 1})
    with pytest.raises(ValueError, match="physics"):
        reward(["p"], ["q5"], image=["i.png"])


def test_groups_and_imputation():
    assert group_members(["a", "b", "a", "b", "b"]) == [[0, 2], [1, 3, 4]]
    assert group_members(["a"] * 4, group_size=2) == [[0, 1], [2, 3]]
    values, imputed = impute_group_mean([0.2, None, 0.6, None, None], [[0, 1, 2], [3, 4]])
    assert values == [0.2, pytest.approx(0.4), 0.6, None, None] and imputed == [False, True, False, False, False]
    # same question, different images: different rows
    q = conversation("Which colour?")
    assert row_key(q, ["a.png"]) != row_key(q, ["b.png"]) and row_key(q, ["a.png"]) == row_key(conversation("Which colour?"), ["a.png"])


def test_pairwise_win_rate_per_group_with_ties_and_failures():
    judge = ScriptedJudge()
    reward = PairwiseWinRateReward(judge)
    prompts = [conversation("p1")] * 3 + [conversation("p2")] * 2
    completions = [answer(t) for t in ("q5", "q3", "q3", "q2", "bad")]
    rewards = reward(prompts, completions, image=["a.png"] * 3 + ["b.png"] * 2)
    # group 1: q5 beats both (1.0); the two q3 lose to q5 and tie each other (0.25 each); group 2 only failed
    assert rewards == [1.0, 0.25, 0.25, None, None]
    # text verdicts (mode="generate"): every pair in both orders, as before (3 + 1 pairs, 2 orders each)
    assert len(judge.seen) == 2 * (3 + 1) and all(item.media == ["a.png"] for item in judge.seen[:6])


class SoftJudge(ScriptedJudge):
    """Soft verdicts: P(first wins) = sigmoid(q1 - q2 + 0.5), a first-slot bias of 0.5 log-odds."""

    def compare_batch(self, template, items, swap=False, mode="generate"):
        assert not swap  # the schedule sets the orders
        return super().compare_batch(template, items)

    def verdict(self, a: float, b: float) -> RewardResult:
        p1 = 1 / (1 + math.exp(-(a - b + 0.5)))
        return RewardResult(Status.OK, winner=1 if p1 > 0.5 else 2, probs={"1": p1, "2": 1 - p1})


def test_pairwise_logit_mode_defaults_to_sparse_bradley_terry():
    """Soft verdicts: each completion meets k=4 others (2G calls, first slot balanced), the Bradley-Terry rewards
    rank the completions by quality, and a completion whose comparisons all fail gets its group's mean."""
    judge = SoftJudge()
    reward = PairwiseWinRateReward(judge, mode="logit")
    completions = ["q1 a", "q5 b", "q2 c", "q4 d", "q3 e", "q2 f", "q5 g", "q1 h"]
    rewards = reward([conversation("p")] * 8, completions, image=["a.png"] * 8)
    assert len(judge.seen) == 16
    firsts = collections.Counter(item.fields["answer1"] for item in judge.seen)
    assert set(firsts.values()) == {2}  # each completion first in 2 of its 4 comparisons
    order = sorted(range(8), key=lambda i: rewards[i])
    assert [quality(completions[i]) for i in order] == sorted(quality(c) for c in completions)
    assert all(0 < r < 1 for r in rewards)
    # failures: "bad" has no successful comparison -> its group's mean; the others keep a finite reward
    judge = SoftJudge()
    rewards = PairwiseWinRateReward(judge, mode="logit")([conversation("p")] * 6,
                                                         ["q1", "q5", "bad", "q3", "q2", "q4"], image=["a.png"] * 6)
    assert rewards[2] == pytest.approx(sum(r for n, r in enumerate(rewards) if n != 2) / 5)
    # Pref-GRPO's scheme on request: every pair once, lower index first, the win rate
    judge = SoftJudge()
    pref = PairwiseWinRateReward(judge, mode="logit", pairing="pref_grpo", aggregate="win_rate")
    pref([conversation("p")] * 4, ["q1", "q2", "q3", "q4"], image=["a.png"] * 4)
    assert [(i.fields["answer1"], i.fields["answer2"]) for i in judge.seen] == [
        ("q1", "q2"), ("q2", "q3"), ("q3", "q4"), ("q1", "q4"), ("q1", "q3"), ("q2", "q4")]


def test_pairwise_groups_are_prompt_rows_not_prompt_texts():
    """Two adjacent rows with the same question about different images are two groups (2 pairs, not 6)."""
    judge = ScriptedJudge()
    prompts = [conversation("Which colour?")] * 4
    rewards = PairwiseWinRateReward(judge, swap=False)(prompts, ["q5", "q1", "q2", "q4"], image=["a.png"] * 2 + ["b.png"] * 2)
    assert rewards == [1.0, 0.0, 0.0, 1.0] and len(judge.seen) == 2
    assert [item.media for item in judge.seen] == [["a.png"], ["b.png"]]
    # interleaved rows (any layout) still group by identity
    judge = ScriptedJudge()
    rewards = PairwiseWinRateReward(judge)(prompts, ["q5", "q2", "q1", "q4"], image=["a.png", "b.png"] * 2)
    assert rewards == [1.0, 0.0, 0.0, 1.0] and len(judge.seen) == 2 * 2  # both orders


def test_pairwise_failed_completion_gets_the_group_mean():
    rewards = PairwiseWinRateReward(ScriptedJudge())([conversation("p")] * 3, ["q5", "bad", "q1"], image=["a.png"] * 3)
    assert rewards == [1.0, 0.5, 0.0]


def test_factories_return_picklable_configured_rewards(monkeypatch):
    import pickle

    monkeypatch.setenv("UNIFIEDREWARD_MODE", "logit")
    reward = get_winrate_reward(model="/ckpt/toy", max_pairs=4, name="wr")
    assert isinstance(reward, PairwiseWinRateReward) and reward.mode == "logit" and reward.max_pairs == 4
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.__name__ == "wr" and clone._config.model == "/ckpt/toy" and clone._reward_model is None
    judged = get_pointwise_reward(ScriptedJudge(), use_async=True)
    import inspect

    assert inspect.iscoroutinefunction(type(judged).__call__)
    import asyncio

    assert asyncio.run(judged(["q?"], ["q5"], image=["a.png"])) == [pytest.approx(1.0)]


def test_pairwise_win_rate_rejects_media_pair_templates():
    with pytest.raises(ValueError, match="answer-pair"):
        PairwiseWinRateReward(ScriptedJudge(), template="image_generation.pair_rank.v1")(["p"], ["q1"], image=["a"])


def test_judge_unflips_only_valid_ranks_and_uses_the_media_lookup():
    lookup = PromptMediaLookup.from_rows(
        [{"prompt": "What colour?", "image": "a.png"}, {"prompt": "What shape?", "image": "b.png"},
         {"prompt": "Dup?", "image": "c.png"}, {"prompt": "Dup?", "image": "d.png"}]
    )
    judge = UnifiedRewardPairwiseJudge(ScriptedJudge(), media_lookup=lookup, seed=1)
    prompts = ["User: What colour?\n\n", "What shape?", "User: What colour?\n\n", "Unknown?", "Dup?"]
    pairs = [["q5", "q1"], ["q1", "q4"], ["bad", "q1"], ["q5", "q1"], ["q5", "q1"]]
    for _ in range(5):  # random flips must never change the answers
        assert judge.judge(prompts, pairs) == [0, 1, -1, -1, -1]
    scores = judge.judge(prompts, pairs, return_scores=True)
    assert scores == [1.0, 0.0, 0.5, 0.5, 0.5] and not any(math.isnan(s) for s in scores)  # failed: neutral 0.5
    assert judge.reward_model.seen[0].media == ["a.png"]


def test_judge_breaks_ties_at_random_or_fails():
    judge = UnifiedRewardPairwiseJudge(ScriptedJudge(), media_lookup={"p": ["a.png"]}, seed=0)
    assert set(judge.judge(["p"] * 20, [["q3", "q3"]] * 20)) == {0, 1}
    strict = UnifiedRewardPairwiseJudge(ScriptedJudge(), media_lookup={"p": ["a.png"]}, tie_break="fail")
    assert strict.judge(["p"], [["q3", "q3"]]) == [-1]
    assert (strict.failed, strict.unranked) == (0, 1)  # a refused tie is no failure, but TRL reads its -1 all the same


def test_judge_counts_every_minus_one_it_returns(caplog):
    judge = UnifiedRewardPairwiseJudge(ScriptedJudge(), media_lookup={"p": ["a.png"]}, tie_break="fail")
    with caplog.at_level("WARNING", logger="integrations.trl.judge"):
        assert judge.judge(["p"] * 4, [["q5", "q1"], ["bad", "q1"], ["q3", "q3"], ["q1", "bad"]]) == [0, -1, -1, -1]
    assert (judge.failed, judge.unranked) == (2, 3)
    assert "-1 for 3/4 pairs" in caplog.text and "XPO: the reference completion" in caplog.text
    judge.judge(["p"], [["bad", "q1"]], return_scores=True)  # scores: a neutral 0.5, no -1 returned
    assert (judge.failed, judge.unranked) == (3, 3)


@pytest.mark.skipif(not LF_PYTHON.exists(), reason=".venv-llamafactory not built")
@pytest.mark.llamafactory
def test_trl024_xpo_takes_minus_one_as_reference_wins(toy_world):
    """TRL 0.24's own ``XPOTrainer._compute_judge``: our -1 makes the reference completion chosen, and it is counted."""
    out = subprocess.run([str(LF_PYTHON), str(REPO / "tests/scripts/xpo_judge_mask.py"), toy_world["root"]],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TRL_EXPERIMENTAL_SILENCE": "1",
                              "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    # policy better, reference better, judge failed (-1): TRL chose the reference for the failed pair
    assert result == {"policy_chosen": [True, False, False], "failed": 1, "unranked": 1}


def test_config_file_and_env_configure_module_level_functions(tmp_path, monkeypatch):
    config_file = tmp_path / "reward.yaml"
    config_file.write_text("model: /ckpt/from-file\nbatch_size: 4\npointwise:\n  template: image_generation.point_score.v1\n")
    monkeypatch.setenv("UNIFIEDREWARD_CONFIG", str(config_file))
    monkeypatch.setenv("UNIFIEDREWARD_MODEL", "/ckpt/from-env")
    monkeypatch.setenv("UNIFIEDREWARD_MODE", "logit")
    config = reward_config.RewardConfig.from_env()
    assert (config.model, config.batch_size) == ("/ckpt/from-env", 4)
    assert config.section("pointwise") == {"template": "image_generation.point_score.v1", "mode": "logit"}

    judge = ScriptedJudge()
    monkeypatch.setitem(reward_config._MODELS, config.cache_key(), judge)
    rewards = importlib.import_module("integrations.trl.rewards")
    monkeypatch.setattr(rewards, "_DEFAULTS", {})
    # what `trl grpo --reward_funcs integrations.trl.rewards.pointwise_reward` does
    module_path, name = "integrations.trl.rewards.pointwise_reward".rsplit(".", 1)
    func = getattr(importlib.import_module(module_path), name)
    assert func.__name__ == "pointwise_reward"
    assert func(["p"], ["q5"], image=["i.png"]) == [pytest.approx(1.0)]
    assert rewards._DEFAULTS["pointwise_reward"].mode == "logit"


def test_missing_model_configuration_is_a_clear_error(monkeypatch):
    for variable in ("UNIFIEDREWARD_CONFIG", "UNIFIEDREWARD_MODEL", "UNIFIEDREWARD_SERVER"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(RuntimeError, match="UNIFIEDREWARD_MODEL"):
        PointwiseReward().reward_model


@pytest.mark.skipif(not LF_PYTHON.exists(), reason=".venv-llamafactory not built")
@pytest.mark.llamafactory
def test_shim_makes_trl024_importable_and_judge_a_base_pairwise_judge():
    code = (
        "import integrations.trl\n"
        "from trl import DPOTrainer, OnlineDPOTrainer, GRPOTrainer, BasePairwiseJudge\n"
        "from integrations.trl.judge import UnifiedRewardPairwiseJudge\n"
        "assert issubclass(UnifiedRewardPairwiseJudge, BasePairwiseJudge)\n"
        "import trl.import_utils as u; assert u.is_weave_available() is False\n"
        "print('ok')\n"
    )
    out = subprocess.run([str(LF_PYTHON), "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TRL_EXPERIMENTAL_SILENCE": "1"})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
