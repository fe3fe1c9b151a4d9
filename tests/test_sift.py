"""Pair-rank + point-sift: the algorithm, its crash-safe writer, resume after SIGKILL, and shard merge.

A scripted reward model stands in for UnifiedReward here (the end-to-end run on the toy checkpoints is
in tests/test_trl_examples.py): each text candidate carries its own quality, e.g. ``"q7"``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reward_core.results import RewardResult, Status
from unifiedreward.sift import (
    PairOutcome,
    SiftItem,
    SiftSettings,
    SiftWriter,
    choose,
    disjoint_pairs,
    rank_pair,
    read_records,
    run_sift,
    select_shard,
    shard_path,
    sift_item,
    trl_preference_rows,
)

REPO = Path(__file__).resolve().parents[1]

SCRIPTED_RM = '''
import time
from reward_core.results import RewardResult, Status


def quality(text):
    return None if not text.startswith("q") else float(text[1:].split("-")[0])


class ScriptedReward:
    """Pairs: higher quality wins, equal = tie, "bad..." fails. Points: the quality itself."""

    def __init__(self, delay=0.0):
        self.delay, self.calls = delay, []

    def compare_batch(self, template, items, swap=False, mode="generate"):
        self.calls.append(("compare", template.key, len(items), swap))
        time.sleep(self.delay)
        out = []
        for item in items:
            a, b = quality(item.fields["answer1"]), quality(item.fields["answer2"])
            if a is None or b is None:
                out.append(RewardResult.failure(Status.PARSE_ERROR, "no verdict"))
            else:
                out.append(RewardResult(Status.OK, winner=1 if a > b else 2 if b > a else 0))
        return out

    def score_batch(self, template, items, mode="generate"):
        self.calls.append(("score", template.key, len(items)))
        out = []
        for item in items:
            q = quality(item.fields["response"])
            out.append(RewardResult(Status.OK, score=q) if q is not None else RewardResult.failure(Status.PARSE_ERROR, "no score"))
        return out
'''
namespace: dict = {}
exec(SCRIPTED_RM, namespace)
ScriptedReward = namespace["ScriptedReward"]

SETTINGS = SiftSettings("image_understanding.pair_rank.v1", "image_understanding.point_score.v1")


def item(item_id: str, candidates: list[str], order: int = 0) -> SiftItem:
    return SiftItem(item_id, {"question": f"what is {item_id}?"}, candidates, ["img.png"], {"images": ["img.png"]}, order)


def test_disjoint_pairs_cover_each_candidate_once():
    assert disjoint_pairs(10) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert disjoint_pairs(5) == [(0, 1), (2, 3)]


def test_rank_pair_never_invents_a_winner():
    assert rank_pair(0, 1, RewardResult(Status.OK, winner=2)).winner == 1
    assert rank_pair(4, 5, RewardResult(Status.OK, winner=1)).winner == 4
    tie = rank_pair(0, 1, RewardResult(Status.OK, winner=0))
    assert (tie.winner, tie.status) == (None, "tie")
    swapped_disagree = rank_pair(0, 1, RewardResult(Status.OK, winner=0, consistency=0.0))
    assert swapped_disagree.status == "inconsistent"
    failed = rank_pair(0, 1, RewardResult.failure(Status.PARSE_ERROR, "garbage"))
    assert (failed.winner, failed.status, failed.error) == (None, "failed", "garbage")


def test_choose_compares_numbers_not_strings():
    # upstream compared "10" < "9" as strings; here 10 beats 9
    pairs = [PairOutcome(0, 1, 0, "decisive"), PairOutcome(2, 3, 2, "decisive")]
    chosen, rejected, reason = choose(pairs, [9.0, 2.0, 10.0, 3.0])
    assert (chosen, rejected, reason) == (2, 1, None)


def test_choose_requires_strictly_better():
    pairs = [PairOutcome(0, 1, 0, "decisive")]
    assert choose(pairs, [3.0, 3.0])[2] == "chosen not strictly better"
    assert choose([PairOutcome(0, 1, None, "tie")], [5.0, 1.0])[2] == "no decisive pair"


def test_sift_item_drops_failed_and_tied_pairs_instead_of_first_wins():
    rm = ScriptedReward()
    # pair (0,1) fails, pair (2,3) ties, pair (4,5): 5 beats 4
    record = sift_item(rm, item("a", ["bad", "q9", "q5", "q5", "q2", "q4"]), SETTINGS)
    assert record.status == "kept"
    assert (record.chosen, record.rejected) == ("q4", "q2")
    assert (record.chosen_score, record.rejected_score) == (4.0, 2.0)
    assert [p.status for p in record.pairs] == ["failed", "tie", "decisive"]
    assert record.scores == [None, 9.0, 5.0, 5.0, 2.0, 4.0]


def test_sift_item_reports_failure_when_every_call_fails():
    record = sift_item(ScriptedReward(), item("x", ["bad", "bad"]), SETTINGS)
    assert record.status == "failed" and record.reason == "no verdict"
    assert record.chosen_index is None and record.chosen_score is None


def test_sift_item_generation_candidates_are_media():
    calls = []

    class MediaReward:
        def compare_batch(self, template, items, swap=False, mode="generate"):
            calls.append([i.media for i in items])
            return [RewardResult(Status.OK, winner=1) for _ in items]

        def score_batch(self, template, items, mode="generate"):
            return [RewardResult(Status.OK, score=float(len(i.media[0]))) for i in items]

    settings = SiftSettings("image_generation.pair_rank.v1", "image_generation.point_score.v1")
    media_item = SiftItem("g", {"prompt": "a red cube"}, ["aaaa.png", "b.png", "ccc.png", "dd.png"])
    record = sift_item(MediaReward(), media_item, settings)
    assert calls == [[["aaaa.png", "b.png"], ["ccc.png", "dd.png"]]]
    assert (record.status, record.chosen, record.rejected) == ("kept", "aaaa.png", "b.png")


def test_writer_truncates_a_torn_last_line(tmp_path):
    path = tmp_path / "sift.jsonl"
    rm = ScriptedReward()
    with SiftWriter(path) as writer:
        writer.append(sift_item(rm, item("a", ["q1", "q2"]), SETTINGS))
    with open(path, "ab") as handle:
        handle.write(b'{"id": "b", "ord')  # a crash in the middle of a write
    assert [r.id for r in read_records([path])] == ["a"]
    with SiftWriter(path) as writer:
        writer.append(sift_item(rm, item("c", ["q1", "q2"], order=2), SETTINGS))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)


def test_run_sift_resumes_by_id_and_retries_failed_only_when_asked(tmp_path):
    path = tmp_path / "sift.jsonl"
    items = [item("a", ["q1", "q3"], 0), item("b", ["bad", "bad"], 1), item("c", ["q6", "q2"], 2)]
    first = run_sift(ScriptedReward(), items[:2], SETTINGS, path, progress=False)
    assert (first.kept, first.failed) == (1, 1)
    rm = ScriptedReward()
    summary = run_sift(rm, items, SETTINGS, path, progress=False)
    assert (summary.total, summary.kept, summary.failed) == (3, 2, 1)
    assert len(rm.calls) == 2  # only "c" was judged (one compare + one score call)
    items[1].candidates = ["q1", "q2"]
    summary = run_sift(ScriptedReward(), items, SETTINGS, path, retry_failed=True, progress=False)
    assert (summary.total, summary.kept, summary.failed) == (3, 3, 0)
    assert [r.id for r in read_records([path])] == ["a", "b", "c"]


def test_shards_merge_deterministically(tmp_path):
    items = [item(f"p{i}", [f"q{i % 4 + 1}", f"q{(i * 3) % 5}"], order=i) for i in range(7)]
    whole = tmp_path / "whole"
    run_sift(ScriptedReward(), items, SETTINGS, shard_path(whole), progress=False)
    sharded = tmp_path / "sharded"
    for index in (1, 0, 2):  # any order of completion
        shard = select_shard(items, index, 3)
        run_sift(ScriptedReward(), shard, SETTINGS, shard_path(sharded, index, 3), progress=False)
    merged = read_records(sorted(sharded.glob("sift*.jsonl")))
    assert [r.to_dict() for r in merged] == [r.to_dict() for r in read_records([shard_path(whole)])]
    with pytest.raises(ValueError):
        select_shard(items, 3, 3)


def test_trl_rows_are_conversational_with_image_placeholders(tmp_path):
    record = sift_item(ScriptedReward(), item("a", ["q1", "q3"]), SETTINGS)
    (row,) = trl_preference_rows([record])
    assert row["images"] == ["img.png"]
    assert row["prompt"][0]["content"][0]["type"] == "image"
    assert row["prompt"][0]["content"][1] == {"type": "text", "text": "what is a?"}
    assert row["chosen"] == [{"role": "assistant", "content": "q3"}]
    assert row["rejected"] == [{"role": "assistant", "content": "q1"}]


RUNNER = SCRIPTED_RM + '''
import sys
from unifiedreward.sift import SiftItem, SiftSettings, run_sift

items = [
    SiftItem(f"p{i}", {"question": f"q {i}"}, [f"q{i % 5}-a", f"q{(i * 7) % 6}-b", f"q{(i * 3) % 4}-c", "q2-d"], order=i)
    for i in range(12)
]
settings = SiftSettings("image_understanding.pair_rank.v1", "image_understanding.point_score.v1")
run_sift(ScriptedReward(delay=float(sys.argv[2])), items, settings, sys.argv[1], progress=False)
'''


def test_sigkill_mid_run_then_rerun_equals_uninterrupted_run(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    reference = tmp_path / "reference.jsonl"
    subprocess.run([sys.executable, str(script), str(reference), "0"], check=True, env=env, timeout=120)

    resumed = tmp_path / "resumed.jsonl"
    process = subprocess.Popen([sys.executable, str(script), str(resumed), "0.15"], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and (not resumed.exists() or len(resumed.read_bytes().splitlines()) < 4):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    written = len(resumed.read_bytes().splitlines())
    assert 4 <= written < 12, "the run must be killed mid-way"
    subprocess.run([sys.executable, str(script), str(resumed), "0"], check=True, env=env, timeout=120)

    lines = resumed.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == 12, "no duplicates, no losses"
    assert [r.to_dict() for r in read_records([resumed])] == [r.to_dict() for r in read_records([reference])]


# ----------------------------------------------------------------------------- hostile storage conditions


def test_short_writes_are_continued_and_a_stalled_write_raises(tmp_path, monkeypatch):
    import unifiedreward.sift as sift_module

    real_write = os.write
    monkeypatch.setattr(sift_module.os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))  # 7 bytes a call
    path = tmp_path / "sift.jsonl"
    with SiftWriter(path) as writer:
        for name in ("a", "b"):
            writer.append(sift_item(ScriptedReward(), item(name, ["q1", "q2"]), SETTINGS))
    assert [r.id for r in read_records([path])] == ["a", "b"]  # nothing dropped
    monkeypatch.setattr(sift_module.os, "write", lambda fd, data: 0)
    with SiftWriter(path) as writer, pytest.raises(OSError, match="no progress"):
        writer.append(sift_item(ScriptedReward(), item("c", ["q1", "q2"]), SETTINGS))


def test_a_second_sift_on_the_same_output_is_refused(tmp_path):
    from unifiedreward.sift import SiftLockedError

    path = tmp_path / "sift.jsonl"
    rm = ScriptedReward()
    with SiftWriter(path):
        with pytest.raises(SiftLockedError, match="being written by another sift"):
            run_sift(rm, [item("a", ["q1", "q2"])], SETTINGS, path, progress=False)
    assert rm.calls == []  # refused before judging anything
    assert run_sift(rm, [item("a", ["q1", "q2"])], SETTINGS, path, progress=False).kept == 1  # free again


def test_merge_outputs_are_replaced_whole(tmp_path, monkeypatch):
    from unifiedreward.cli.sift import merge_outputs
    from unifiedreward.sift import atomic_write_text

    from PIL import Image

    image = tmp_path / "img.png"
    Image.new("RGB", (8, 8)).save(image)
    with SiftWriter(shard_path(tmp_path)) as writer:
        prompt = SiftItem("a", {"question": "what?"}, ["q1", "q2"], [str(image)], {"images": [str(image)]})
        writer.append(sift_item(ScriptedReward(), prompt, SETTINGS))
    first = merge_outputs(tmp_path)
    merge_outputs(tmp_path)  # a second merge replaces the dataset folder instead of writing into it
    assert first["summary"]["kept"] == 1 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    from datasets import load_dataset

    assert len(load_dataset(str(tmp_path / "dataset"), split="train")) == 1  # as TRL's dpo_vlm.py loads it
    before = (tmp_path / "pairs.jsonl").read_text()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(tmp_path / "pairs.jsonl", "half")
    assert (tmp_path / "pairs.jsonl").read_text() == before  # the old file is intact


def test_candidates_are_typed_by_the_templates_never_guessed(tmp_path):
    from unifiedreward.cli.sift import items_from_rows
    from unifiedreward.sift import candidates_are_text

    rows = [{"id": "x", "question": "What color?", "image": "a.png", "candidates": ["The shape is yellow.", "b.png"]}]
    assert candidates_are_text(SETTINGS)
    [text] = items_from_rows(rows, tmp_path, text_candidates=True)
    assert text.candidates == ["The shape is yellow.", "b.png"] and text.media == [str(tmp_path / "a.png")]
    generation = SiftSettings("image_generation.pair_rank.v1", "image_generation.point_score.v1")
    assert not candidates_are_text(generation)
    [media] = items_from_rows([{"id": "y", "prompt": "a cube", "candidates": ["a.png", "b.png"]}], tmp_path, False)
    assert media.candidates == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    with pytest.raises(ValueError, match="same kind of candidate"):
        candidates_are_text(SiftSettings("image_generation.pair_rank.v1", "image_understanding.point_score.v1"))


def test_merge_only_names_the_missing_shards_and_exits_1(tmp_path, caplog):
    """docs/trl.md's manual shards: a --merge-only with shard 2 of 4 done merged silently (total 1 of 4 prompts)."""
    from unifiedreward.cli.sift import main as sift_main
    from unifiedreward.sift import missing_shards, shard_path

    shard_path(tmp_path, 2, 4).write_text("")
    assert [p.name for p in missing_shards(tmp_path)] == [shard_path(tmp_path, i, 4).name for i in (0, 1, 3)]
    with caplog.at_level("WARNING"):
        assert sift_main(["--output-dir", str(tmp_path), "--merge-only", "--no-progress"]) == 1
    assert "merged without 3 shard(s)" in caplog.text and "sift-00003-of-00004.jsonl" in caplog.text
    for index in (0, 1, 3):
        shard_path(tmp_path, index, 4).write_text("")
    assert missing_shards(tmp_path) == []
    assert sift_main(["--output-dir", str(tmp_path), "--merge-only", "--no-progress"]) == 0
