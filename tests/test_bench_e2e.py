"""`unifiedreward bench` end to end with the toy reward model on tiny benchmark-schema fixtures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from unifiedreward.cli.bench import main

VOTES = {1: "leftvote", 2: "rightvote"}


def _records(manifest: dict, name: str, count: int) -> list[dict]:
    with open(manifest["data"][name], encoding="utf-8") as handle:
        return [json.loads(line) for line in handle][:count]


def _abs(manifest: dict, relative: str) -> str:
    return str(Path(manifest["data_dir"]) / relative)


def _run(tmp_path: Path, *args: str) -> tuple[int, dict, list[dict]]:
    out = tmp_path / "out"
    status = main([*args, "--output", str(out), "--no-progress"])
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert (out / "report.md").read_text().startswith(f"## {metrics['benchmark']}")
    return status, metrics, predictions


def test_genai_bench_image_logit_both_orders(toy_world, tmp_path):
    rows = [
        {"prompt": r["prompt"], "left_image": _abs(toy_world, r["images"][0]), "right_image": _abs(toy_world, r["images"][1]),
         "vote_type": VOTES[r["winner"]]}
        for r in _records(toy_world, "image_pairs", 3)
    ]
    rows.append({**rows[0], "vote_type": "tievote"})  # same images again: read from the cache
    data = tmp_path / "genai_image.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))

    status, metrics, predictions = _run(
        tmp_path, "--benchmark", "genai-bench-image", "--data", str(data), "--model", toy_world["reward_model"],
        "--mode", "logit", "--swap", "--device", "cpu",
    )
    assert status == 0
    assert (metrics["n_pairs"], metrics["n_scored"], metrics["n_human_ties"]) == (4, 4, 1)
    assert 0.0 <= metrics["metrics"]["tau"] <= 1.0 and 0.0 <= metrics["metrics"]["diff"] <= 1.0
    assert metrics["position_bias"]["n_swapped_pairs"] == 4
    assert metrics["media_cache"] == {"hits": 2, "misses": 6}
    for prediction in predictions:
        assert [p["order"] for p in prediction["presentations"]] == ["AB", "BA"]
        probs = [p["probs"] for p in prediction["presentations"]]
        assert all(abs(p["1"] + p["2"] - 1) < 1e-4 for p in probs)
        # the pair margin is the mean of p(A) - p(B) over both orders
        expected = ((probs[0]["1"] - probs[0]["2"]) + (probs[1]["2"] - probs[1]["1"])) / 2
        assert prediction["margin"] == pytest.approx(expected, abs=1e-6)


def test_vl_rewardbench_generate_counts_unparseable_outputs(toy_world, tmp_path):
    rows = [
        {"id": f"RLHF_{i}", "query": r["question"], "response": [r["answer1"], r["answer2"]],
         "image": _abs(toy_world, r["image"]), "human_ranking": [0, 1] if r["winner"] == 1 else [1, 0]}
        for i, r in enumerate(_records(toy_world, "und_pairs", 2))
    ]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(rows))

    status, metrics, predictions = _run(
        tmp_path, "--benchmark", "vl-rewardbench", "--data", str(data), "--model", toy_world["reward_model"],
        "--max-new-tokens", "4", "--seed", "7", "--device", "cpu",
    )
    # An untrained toy judge rarely states a verdict: whatever it says is either scored or reported.
    assert metrics["n_scored"] + metrics["n_failed"] == 2
    assert sum(metrics["failures"].values()) == metrics["n_failed"]
    assert status == (0 if metrics["n_failed"] == 0 else 1)
    for prediction in predictions:
        (presentation,) = prediction["presentations"]
        assert presentation["text"] is not None  # the raw output is kept either way
        if prediction["status"] != "ok":
            assert prediction["margin"] is None and presentation["winner"] is None


def test_videogen_rewardbench_logit(toy_world, tmp_path):
    header = ["path_A", "path_B", "A_model", "B_model", "prompt", "fps_A", "num_frames_A", "fps_B", "num_frames_B",
              "VQ", "MQ", "TA", "Overall"]
    data = tmp_path / "videogen-rewardbench.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in _records(toy_world, "video_pairs", 2):
            label = "A" if r["winner"] == 1 else "B"
            writer.writerow([r["videos"][0], r["videos"][1], "m1", "m2", r["prompt"], 4, 8, 4, 8, label, label, label, label])
        writer.writerow(["video_pairs/missing.mp4", r["videos"][1], "m1", "m2", "gone", 4, 8, 4, 8, "A", "A", "A", "A"])

    status, metrics, predictions = _run(
        tmp_path, "--benchmark", "videogen-rewardbench", "--data", str(data), "--media-root", toy_world["data_dir"],
        "--model", toy_world["reward_model"], "--mode", "logit", "--nframes", "4", "--device", "cpu",
    )
    assert status == 1  # the missing video failed; the other pairs are still scored
    assert (metrics["n_scored"], metrics["n_failed"], metrics["failures"]) == (2, 1, {"media_error": 1})
    assert "file not found" in predictions[2]["error"]
    assert metrics["metrics"]["diff"] in (0.0, 0.5, 1.0)
