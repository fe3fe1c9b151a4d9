"""`make demo` helpers: result readers, the before/after verdict and the self-contained report.

The full demo (examples/demo.py) trains three models and takes minutes, so it is not run here; these
tests cover the parts that turn its outputs into numbers and the report, in well under a second.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from demo_stages import report, results  # noqa: E402
from demo_stages.toy_inputs import image_score_items  # noqa: E402


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
        "rescore": {"generation": rescore},
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
