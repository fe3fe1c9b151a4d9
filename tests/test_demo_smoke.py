"""`make demo` helpers: result readers, the before/after verdict and the self-contained report.

The full demo (examples/demo.py) trains three models and takes minutes, so it is not run here; these
tests cover the parts that turn its outputs into numbers and the report, in well under a second.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from demo_stages import report, results  # noqa: E402
from demo_stages.toy_inputs import (  # noqa: E402
    image_pair_items,
    image_score_items,
    write_answer_quality,
    write_policy_warmstart,
    write_und_prompts,
)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_sign_test_is_one_sided_and_ignores_ties():
    assert results.sign_test(5, 0) == pytest.approx(1 / 32)
    assert results.sign_test(0, 5) == pytest.approx(1.0)
    assert results.sign_test(3, 3) == pytest.approx(42 / 64)
    assert results.sign_test(0, 0) is None


def test_compare_pairs_prompts_and_never_fills_in_failures(tmp_path):
    def run(scores):
        return results._per_prompt(scores)

    before = run({"a": [1.0, 2.0], "b": [2.0, None], "c": [3.0]})
    after = run({"a": [2.0, 3.0], "b": [None, None], "c": [3.5]})
    verdict = results.compare({"before": before, "after": after})
    # "b" has no scored candidate after alignment: it is left out of the paired comparison
    assert verdict["prompts"] == 2
    assert verdict["mean_before"] == pytest.approx((1.5 + 3.0) / 2)
    assert verdict["mean_after"] == pytest.approx((2.5 + 3.5) / 2)
    assert verdict["failed_before"] == 1 and verdict["failed_after"] == 2
    assert verdict["prompts_improved"] == 2
    assert not verdict["improved"]  # two prompts cannot reach p < 0.05


def test_compare_calls_a_consistent_rise_improved_and_a_drop_not():
    base = {f"p{i}": [float(i)] for i in range(8)}
    up = {key: [values[0] + 0.1] for key, values in base.items()}
    down = {key: [values[0] - 0.1] for key, values in base.items()}
    rise = results.compare({"before": results._per_prompt(base), "after": results._per_prompt(up)})
    drop = results.compare({"before": results._per_prompt(base), "after": results._per_prompt(down)})
    assert rise["improved"] and rise["delta"] == pytest.approx(0.1)
    assert not drop["improved"] and drop["delta"] == pytest.approx(-0.1)


def test_head_to_head_pairs_same_seed_images_and_counts_per_prompt(tmp_path):
    for name, prompts in (("before", ("p0", "p1", "p2")), ("after", ("p0", "p1"))):  # p2 failed after DPO
        _write_jsonl(tmp_path / name / "candidates.jsonl",
                     [{"id": p, "prompt": f"prompt {p}", "images": [f"images/{p}/0.png", f"images/{p}/1.png"]}
                      for p in prompts])
    items = tmp_path / "pairs.jsonl"
    assert image_pair_items(tmp_path / "before", tmp_path / "after", items) == 4
    rows = [json.loads(line) for line in items.read_text().splitlines()]
    assert rows[1] == {"id": "p0/1", "fields": {"prompt": "prompt p0"},
                       "media": ["before/images/p0/1.png", "after/images/p0/1.png"]}

    verdicts = [("p0/0", "ok", 2), ("p0/1", "ok", 2), ("p1/0", "ok", 1), ("p1/1", "parse_error", None),
                ("p2/0", "ok", 0)]
    duel = results.head_to_head(_write_jsonl(tmp_path / "out.jsonl", [
        {"id": i, "status": status, "winner": winner} for i, status, winner in verdicts]))
    assert (duel["pairs"], duel["failed"], duel["aligned_wins"], duel["base_wins"], duel["ties"]) == (4, 1, 2, 1, 1)
    assert duel["aligned_win_rate"] == pytest.approx(2 / 3)
    # p0: aligned 2-0, p1: base 1-0, p2: a tie -> 1 prompt each way, p = P(X >= 1 | n=2) = 3/4
    assert (duel["prompts"], duel["prompts_aligned_preferred"], duel["prompts_base_preferred"]) == (3, 1, 1)
    assert duel["sign_test_p"] == pytest.approx(0.75) and not duel["improved"]


def test_image_scores_round_trip_through_score_items(tmp_path):
    for name in ("before", "after"):
        _write_jsonl(tmp_path / name / "candidates.jsonl",
                     [{"id": "p0", "prompt": "a red circle", "images": ["images/p0/0.png", "images/p0/1.png"]}])
    items = tmp_path / "items.jsonl"
    assert image_score_items([("before", tmp_path / "before"), ("after", tmp_path / "after")], items) == 4
    rows = [json.loads(line) for line in items.read_text().splitlines()]
    assert rows[0] == {"id": "before/p0/0", "media": ["before/images/p0/0.png"], "fields": {"prompt": "a red circle"}}
    scored = [
        {"id": "before/p0/0", "status": "ok", "score": 2.0},
        {"id": "before/p0/1", "status": "parse_error", "score": None},
        {"id": "after/p0/0", "status": "ok", "score": 3.0},
        {"id": "after/p0/1", "status": "ok", "score": 4.0},
    ]
    runs = results.image_scores(_write_jsonl(tmp_path / "scores.jsonl", scored))
    assert runs["before"]["per_prompt"] == {"p0": 2.0} and runs["before"]["failed"] == 1
    assert runs["after"]["per_prompt"] == {"p0": 3.5}


def test_report_embeds_plots_and_states_the_verdict(tmp_path):
    rescore = results.compare({"before": results._per_prompt({"p": [1.0, 2.0]}),
                               "after": results._per_prompt({"p": [1.5, 2.5]})})
    summary = {
        "reward": {"loss_curve": [{"step": 5, "loss": 3.0}, {"step": 10, "loss": 1.0}]},
        "bench": {"benchmark": "genai-bench-image", "rows": 10,
                  "before": {"diff": 0.5, "tau": 0.5, "n_failed": 0}, "after": {"diff": 0.8, "tau": 0.8, "n_failed": 1}},
        "dpo": {"policy": {"losses": [0.69, 0.5]}, "diffusion": {"loss_curve": [{"step": 1, "loss": 0.69}]}},
        "rescore": {"generation": rescore, "generation_head_to_head": {
            "pairs": 8, "failed": 0, "aligned_wins": 7, "base_wins": 1, "ties": 0, "prompts": 8,
            "prompts_aligned_preferred": 7, "prompts_base_preferred": 1, "sign_test_p": 9 / 256, "improved": True}},
        "stages": [{"name": "reward", "title": "1. train", "seconds": 12.0, "cpu_seconds": 20.0, "commands": []}],
        "total_seconds": 12.0,
        "total_cpu_seconds": 20.0,
    }
    paths = report.write_report(summary, tmp_path / "report")
    page = paths["html"].read_text()
    images = page.split("data:image/png;base64,")[1:]
    assert len(images) == 3  # losses, benchmark, held-out histograms (no sift data given)
    assert all(base64.b64decode(image.split("'")[0]).startswith(b"\x89PNG") for image in images)
    assert json.loads(paths["json"].read_text())["bench"]["after"]["diff"] == 0.8
    text = report.text_summary(summary)
    assert "0.500 -> 0.800" in text
    assert "NOT significantly higher" in text  # one prompt is no evidence
    assert "aligned image in 7 of 8" in text and "judge prefers the aligned model" in text


def test_answer_quality_rows_convert_with_the_sift_point_template(tmp_path):
    from data_converters.media_paths import MediaResolver
    from data_converters.toy_judge_data import convert_toy_judge_row
    from unifiedreward.sift import SiftSettings

    path = write_answer_quality(tmp_path, 10, seed=0)["toy_answer_quality"]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    bad = [row for row in rows if row["id"].endswith("-bad")]
    assert len(rows) == 15 and len(bad) == 5
    assert all(row["score"] == 0 for row in bad)
    good = {row["id"]: row for row in rows if not row["id"].endswith("-bad")}
    assert all(row["response"] != good[row["id"][: -len("-bad")]]["response"] for row in bad)
    record = convert_toy_judge_row(bad[0], MediaResolver(tmp_path))
    # the judge is trained on the very prompt `unifiedreward sift` scores answers with
    from reward_core.prompts import get_template

    template = get_template(SiftSettings().point_template)
    expected = template.render(question=bad[0]["question"], response=bad[0]["response"])
    assert expected in record["messages"][0]["content"]
    assert record["messages"][1]["content"] == "Final Score: 0"


def test_answer_quality_scores_agree_with_the_oracle_including_off_topic_answers(tmp_path):
    """Every answer-quality row's gold score is the oracle's correctness of its response (0-100); a third of the rows
    answer another question than the one asked, and score by the oracle."""
    from unifiedreward.toy.oracle import ATTRIBUTE_WORDS, answer_correctness

    path = write_answer_quality(tmp_path, 60, seed=1)["toy_answer_quality"]
    rows = [json.loads(line) for line in path.read_text().splitlines() if "-bad" not in line]
    for row in rows:
        assert row["score"] == round(100 * answer_correctness(row["response"], row["scene"], row["asks"]))
    # off topic: some asked attribute is not named at all (an on-topic answer names every asked attribute)
    off_topic = [row for row in rows if any(not set(re.findall("[a-z]+", row["response"].lower())) & set(ATTRIBUTE_WORDS[a])
                                            for a in row["asks"])]
    assert len(rows) == 60 and 5 <= len(off_topic) <= 30 and any(row["score"] == 0 for row in off_topic)


def test_understanding_task_asks_the_colour_question_the_toy_bases_see(tmp_path):
    rows = [json.loads(line) for line in write_und_prompts(tmp_path, 20, seed=0).read_text().splitlines()]
    assert {row["question"] for row in rows} == {"What colour is the shape?"}
    assert all(row["asks"] == ["colour"] and (tmp_path / row["image"]).is_file() for row in rows)
    assert [row["split"] for row in rows].count("test") == 4 and rows[0]["answer"].startswith("The shape is ")
    warm = [json.loads(line) for line in write_policy_warmstart(tmp_path, 20, seed=0).read_text().splitlines()]
    quality = [json.loads(line) for line in write_answer_quality(tmp_path, 20, seed=0)["toy_answer_quality"]
               .read_text().splitlines()]
    assert {row["question"] for row in warm + quality} == {"What colour is the shape?"}


def test_toy_bases_are_cached_per_role_code_and_scale(monkeypatch, tmp_path):
    import demo

    monkeypatch.setenv("UNIFIEDREWARD_CACHE", str(tmp_path))
    judge = demo.toy_base_dir("judge", 1.0)
    assert judge.parent == tmp_path / "toy-vlm" and judge.name.startswith("judge-")
    assert judge == demo.toy_base_dir("judge", 1.0)
    assert len({judge, demo.toy_base_dir("policy", 1.0), demo.toy_base_dir("judge", 0.01)}) == 3
    assert "vlm_pretrain.py" in demo.TOY_BASE_SOURCES


def test_policy_warmstart_mixes_correct_wrong_and_malformed_answers(tmp_path):
    rows = [json.loads(line) for line in write_policy_warmstart(tmp_path, 80, seed=0).read_text().splitlines()]
    assert len(rows) == 80 and all((tmp_path / row["image"]).is_file() for row in rows)
    well_formed = sum(row["answer"].endswith(".") for row in rows)
    assert 40 <= well_formed <= 75 and well_formed < len(rows)  # correct + wrong sentences, and some gibberish


def test_policy_warmstart_trains_on_answer_tokens_only(toy_world, tmp_path):
    from transformers import AutoProcessor

    from demo_stages import policy_warmstart
    from unifiedreward.toy.sft import encode

    data = write_policy_warmstart(tmp_path / "data", 4, seed=0)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    processor = AutoProcessor.from_pretrained(toy_world["policy_model"])
    batch = encode(processor, rows[:2], data.parent)
    for index, row in enumerate(rows[:2]):
        labelled = batch["labels"][index][batch["labels"][index] != -100]
        answer_ids = processor.tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
        assert labelled.tolist()[: len(answer_ids)] == answer_ids  # the answer, then the end-of-turn token(s)
        assert 0 < len(labelled) - len(answer_ids) <= 2
    out = tmp_path / "warm"
    assert policy_warmstart.main(["--policy", toy_world["policy_model"], "--data", str(data), "--output-dir",
                                  str(out), "--steps", "2", "--batch-size", "2"]) == 0
    report = json.loads((out / "warmstart_report.json").read_text())
    assert report["steps"] == 2 and all(loss > 0 for loss in report["losses"])
    assert (out / "config.json").is_file()


def test_bench_figure_leaves_a_missing_metric_out_instead_of_drawing_zero(monkeypatch):
    import matplotlib.axes

    bench = {"benchmark": "genai-bench-image", "rows": 4,
             "before": {"diff": 0.5, "tau": None}, "after": {"diff": 0.75, "tau": 0.7}}
    drawn, bar = [], matplotlib.axes.Axes.bar

    def recording_bar(self, x, height, *args, **kwargs):
        drawn.append(list(height))
        return bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", recording_bar)
    assert base64.b64decode(report.bench_figure(bench)).startswith(b"\x89PNG")
    assert drawn[0][0] == 0.5 and math.isnan(drawn[0][1])  # no bar, not a bar at 0
    assert drawn[1] == [0.75, 0.7]


# ---------------------------------------------------------------- ground truth (issue 28)


def test_oracle_counts_the_shadowed_quadrants_of_rendered_scenes():
    """The pixel oracle reads the flaw the toy preference data is made of: quality q has 5 - q shadowed quadrants,
    so 4 - (5 - q) = q - 1 lit ones, at the judge's data size (soft) and at the toy world's default 56 px."""
    import random

    from unifiedreward.toy.oracle import lit_quadrants
    from unifiedreward.toy.scenes import random_scene
    from unifiedreward.toy.tasks import LIT_BACKGROUNDS, render_quality_image

    rng = random.Random(7)
    for index in range(40):
        scene, quality = random_scene(rng, LIT_BACKGROUNDS), 1 + index % 5
        for size, blur in ((32, 1.0), (56, 0.0)):
            assert lit_quadrants(render_quality_image(scene, quality, rng, size, "shadow", blur)) == quality - 1


def test_oracle_checks_answers_against_the_scene_record():
    from unifiedreward.toy.oracle import answer_correctness

    scene = {"colour": "red", "shape": "circle", "position": "left"}
    everything = ("colour", "shape", "position")
    assert answer_correctness("It is a red circle on the left.", scene, everything) == 1.0
    assert answer_correctness("It is a blue circle on the left.", scene, everything) == pytest.approx(2 / 3)
    assert answer_correctness("The shape is red.", scene, ("colour",)) == 1.0
    assert answer_correctness("The shape is red or blue.", scene, ("colour",)) == 0.0  # hedging is not right
    assert answer_correctness("It is a", scene, ("shape",)) == 0.0  # a fragment names nothing
    assert answer_correctness("The shape is in the center.", scene, ("position",)) == 0.0
    with pytest.raises(ValueError):
        answer_correctness("red", scene, ())


def test_oracle_shares_no_code_with_the_judge():
    """The oracle module loads neither the judge (reward_core) nor any model library, nor the task renderer."""
    import subprocess

    probe = ("import sys, unifiedreward.toy.oracle; print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'reward_core', 'torch', 'transformers', 'diffusers'}), 'unifiedreward.toy.tasks' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out == ["[]", "False"]


def _ground_truth_fixture(tmp_path: Path) -> tuple[Path, dict]:
    """Held-out prompts with scene records, sampled answers and images drawn with known shadows, per run."""
    import random

    from unifiedreward.toy.scenes import Scene
    from unifiedreward.toy.tasks import render_quality_image

    scene = {"colour": "red", "shape": "circle", "position": "left"}
    prompts = _write_jsonl(tmp_path / "prompts.jsonl", [
        {"id": f"q{i}", "question": "Describe the image.", "scene": scene, "asks": ["colour", "shape", "position"]}
        for i in range(12)])
    answers = {"before": ["It is a", "It is a blue circle on the left."],
               "after": ["It is a red circle on the left.", "It is a blue circle on the left."],
               "control": ["It is a", "It is a blue circle on the left."]}
    qualities = {"before": (2, 3), "after": (4, 5), "control": (3, 2)}
    rng = random.Random(0)
    for run in answers:
        _write_jsonl(tmp_path / "und" / run / "sift.jsonl",
                     [{"id": f"q{i}", "candidates": answers[run]} for i in range(12)])
        records = []
        for i in range(12):
            images = []
            for j, quality in enumerate(qualities[run]):
                path = tmp_path / "gen" / run / f"images/g{i}/{j}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                render_quality_image(Scene("blue", "square", background="white"), quality, rng, 32, "shadow").save(path)
                images.append(f"images/g{i}/{j}.png")
            records.append({"id": f"g{i}", "prompt": "a blue square", "images": images})
        _write_jsonl(tmp_path / "gen" / run / "candidates.jsonl", records)
    return prompts, answers


def test_ground_truth_section_has_the_issue_schema_and_reports_it_first(tmp_path):
    from demo_stages import ground_truth

    prompts, _ = _ground_truth_fixture(tmp_path)
    und = {run: ground_truth.answer_scores(prompts, tmp_path / "und" / run) for run in ("before", "after", "control")}
    gen = {run: ground_truth.image_scores(tmp_path / "gen" / run) for run in ("before", "after", "control")}
    assert und["before"]["q0"] == pytest.approx((0 + 2 / 3) / 2) and und["after"]["q0"] == pytest.approx(5 / 6)
    assert gen["before"]["g0"] == pytest.approx((1 + 2) / 8) and gen["after"]["g0"] == pytest.approx((3 + 4) / 8)
    truth = ground_truth.section(
        {"accuracy": 0.9, "accuracy_before": 0.4, "pairs": 60, "spearman": 0.8},
        ground_truth.paired(und["before"], und["after"]), ground_truth.paired(gen["before"], gen["after"]),
        {"understanding": ground_truth.paired(und["before"], und["control"]),
         "generation": ground_truth.paired(gen["before"], gen["control"]),
         "dpo_vs_control": {"understanding": ground_truth.paired(und["control"], und["after"]),
                            "generation": ground_truth.paired(gen["control"], gen["after"])},
         "kind": "reversed"})
    assert truth["judge_accuracy"] == 0.9
    for part in (truth["understanding"], truth["generation"], truth["control"]["understanding"],
                 truth["control"]["generation"]):
        assert {"before", "after", "p"} <= set(part)
    assert truth["understanding"]["better"] and truth["understanding"]["p"] < 0.001  # 12 prompts all up
    assert truth["generation"]["better"]
    control = truth["control"]["understanding"]
    assert not control["better"] and control["p"] == 1.0  # no change
    assert truth["control"]["generation"]["after"] == truth["control"]["generation"]["before"]

    paths = report.write_report({"ground_truth": truth}, tmp_path / "report")
    assert json.loads(paths["json"].read_text())["ground_truth"]["generation"]["p"] == truth["generation"]["p"]
    page = paths["html"].read_text()
    assert page.index("judge vs gold") < page.index("Ground truth") < page.index("data:image/png")
    text = report.text_summary({"ground_truth": truth})
    assert "understanding: better by ground truth" in text and "yes (p=" in text
    assert "understanding CONTROL: better by ground truth  no (p=1.0000)" in text
    assert "generation: DPO better than the control" in text
    assert "yes (p=0.0002): 0.375 (control) vs 0.875 (DPO)" in text


def test_paired_p_is_one_sided_and_reproducible():
    from demo_stages.ground_truth import paired_p, spearman

    assert paired_p([0.2] * 12) < 0.001 and paired_p([-0.2] * 12) == 1.0
    assert paired_p([0.1, -0.1] * 10) == paired_p([0.1, -0.1] * 10) > 0.3
    assert paired_p([]) is None
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 3], [3, 2, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1], [1, 2]) is None


@pytest.mark.parametrize("control, swapped_count", [("half", 5), ("reversed", 10)])
def test_control_swaps_chosen_and_rejected(tmp_path, control, swapped_count):
    from datasets import Dataset, DatasetDict, load_from_disk

    from demo_stages.ground_truth import write_control_image_pairs, write_control_pairs

    rows = [{"id": f"p{i}", "chosen": [{"content": "good"}], "rejected": [{"content": "bad"}],
             "chosen_score": 2.0, "rejected_score": 1.0} for i in range(10)]
    pairs = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert write_control_pairs(pairs, tmp_path / "control.jsonl", seed=3, control=control) == swapped_count
    result = [json.loads(line) for line in (tmp_path / "control.jsonl").read_text().splitlines()]
    swapped = {row["id"] for row in result if row["chosen"][0]["content"] == "bad"}
    assert len(swapped) == swapped_count and all(row["chosen_score"] == 1.0 for row in result if row["id"] in swapped)
    write_control_pairs(pairs, tmp_path / "again.jsonl", seed=3, control=control)
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "control.jsonl").read_text()  # seeded

    DatasetDict({"train": Dataset.from_list([{"id": r["id"], "caption": "c", "jpg_0": b"0", "jpg_1": b"1",
                                              "label_0": 1} for r in rows])}).save_to_disk(str(tmp_path / "gen"))
    assert write_control_image_pairs(tmp_path / "gen", tmp_path / "gen-control", seed=3, control=control) == swapped_count
    labels = dict(zip(*(load_from_disk(str(tmp_path / "gen-control"))["train"][c] for c in ("id", "label_0"))))
    assert {i for i, v in labels.items() if v == 0} == swapped and sum(labels.values()) == 10 - swapped_count
    with pytest.raises(ValueError, match="unknown control"):
        write_control_pairs(pairs, tmp_path / "x.jsonl", seed=3, control="none")

def test_side_by_side_runs_every_chain_and_raises_a_failure_after_the_others_end(tmp_path):
    """Stages 3-6 run the understanding and the generation commands as two chains; one failing must not cut the
    other short (its log stays complete), and the failure is raised once both have ended."""
    from demo_stages.runner import CommandFailed, Runner

    runner = Runner(tmp_path / "logs", lanes=2)

    def slow(marker: str) -> list[str]:
        return [sys.executable, "-c", f"import time, pathlib; time.sleep(1); pathlib.Path({marker!r}).write_text('ok')"]

    with runner.stage("both", "two chains"):
        assert runner.side_by_side(lambda: runner.run("fast", [sys.executable, "-c", "print(1)"]).name,
                                   lambda: runner.run("slow", slow(str(tmp_path / "1"))).name) == ["fast.log",
                                                                                                     "slow.log"]
        with pytest.raises(CommandFailed, match="broken failed"):
            runner.side_by_side(lambda: runner.run("broken", [sys.executable, "-c", "raise SystemExit(3)"]),
                                lambda: runner.run("slow-again", slow(str(tmp_path / "2"))))
    assert (tmp_path / "2").read_text() == "ok"  # the other chain ran to its end before the failure was raised
    assert sorted(c["name"] for c in runner.stages[0].commands) == ["broken", "fast", "slow", "slow-again"]
