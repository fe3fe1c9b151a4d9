"""One line that is not UTF-8 (Latin-1 bytes, common in scraped caption files) fails alone, with its line number.

Each batch command reads a JSONL file whose second line is a caption encoded in Latin-1: that line must
be reported as not UTF-8 with its line number, the other lines processed, and the exit status 1. A torn
multi-byte last line of ``sift.jsonl`` (a killed sift) must be reported by ``report`` and ``sift --merge-only``,
not crash them. The real toy judge runs in logit mode.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from unifiedreward.cli import main as cli

pytestmark = pytest.mark.slow

LATIN1_CAPTION = "un café crème à côté"


@pytest.fixture(scope="module")
def judge(toy_world):
    from reward_core import UnifiedReward

    return UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu", batch_size=4)


def _generation_settings():
    from unifiedreward.sift import SiftSettings

    return SiftSettings("image_generation.pair_rank.v1", "image_generation.point_score.v1", mode="logit")


def _toy_rows(toy_world: dict, name: str, count: int = 4) -> list[dict]:
    return [json.loads(line) for line in Path(toy_world["data"][name]).read_text().splitlines()[:count]]


def _write_with_latin1_line(path: Path, rows: list[dict]) -> Path:
    """JSONL of ``rows``; the second row is encoded in Latin-1 (its caption holds é, à, ô)."""
    lines = [json.dumps(row, ensure_ascii=False).encode("utf-8") for row in rows]
    lines[1] = json.dumps(rows[1], ensure_ascii=False).encode("latin-1")
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _check_not_utf8(message: str) -> None:
    assert "not UTF-8" in message and "0xe9" in message, message


def test_convert_reports_the_latin1_line_and_converts_the_rest(toy_world, tmp_path, capsys):
    rows = [{"prompt": LATIN1_CAPTION if i == 1 else f"caption {i}", "chosen": "a", "rejected": "b"} for i in range(4)]
    source = _write_with_latin1_line(tmp_path / "prefs.jsonl", rows)
    output = tmp_path / "out" / "prefs.jsonl"
    assert cli(["convert", "preference", str(source), str(output)]) == 1
    skipped = [line for line in capsys.readouterr().err.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "prefs.jsonl:line 2" in skipped[0]
    _check_not_utf8(skipped[0])
    assert len(output.read_text(encoding="utf-8").splitlines()) == 3


def test_score_reports_the_latin1_line_and_scores_the_rest(toy_world, tmp_path):
    rows = [{"id": r["id"], "media": [r["image"]], "fields": {"prompt": r["prompt"]}}
            for r in _toy_rows(toy_world, "image_points")]
    rows[1]["fields"]["prompt"] = LATIN1_CAPTION
    source = _write_with_latin1_line(tmp_path / "items.jsonl", rows)
    output = tmp_path / "scores.jsonl"
    status = cli(["score", "--model", toy_world["reward_model"], "--device", "cpu", "--mode", "logit",
                  "--template", "image_generation.point_score.v1", "--input", str(source),
                  "--media-root", toy_world["data_dir"], "--output", str(output)])
    assert status == 1
    results = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [r["status"] for r in results] == ["ok", "media_error", "ok", "ok"]
    _check_not_utf8(results[1]["error"])
    assert "line 2" in results[1]["error"]


def test_sift_reports_the_latin1_line_and_sifts_the_rest(toy_world, tmp_path, caplog):
    rows = [{"id": r["id"], "question": r["question"], "image": r["image"], "candidates": [r["answer1"], r["answer2"]]}
            for r in _toy_rows(toy_world, "und_pairs")]
    rows[1]["question"] = LATIN1_CAPTION
    source = _write_with_latin1_line(tmp_path / "und.jsonl", rows)
    out = tmp_path / "sift"
    with caplog.at_level(logging.ERROR):
        status = cli(["sift", "--input", str(source), "--media-dir", toy_world["data_dir"], "--output-dir", str(out),
                      "--reward-model", toy_world["reward_model"], "--device", "cpu", "--mode", "logit",
                      "--no-progress"])
    assert status == 1
    skipped = [r.getMessage() for r in caplog.records if "skipped input line" in r.getMessage()]
    assert len(skipped) == 1 and "und.jsonl:2:" in skipped[0]
    _check_not_utf8(skipped[0])
    records = [json.loads(line) for line in (out / "sift.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["id"] for r in records) == sorted(rows[i]["id"] for i in (0, 2, 3))


def test_sift_images_reports_the_latin1_line_and_sifts_the_rest(toy_world, judge, tmp_path):
    from integrations.diffusers import sift_images

    candidates = tmp_path / "candidates"
    candidates.mkdir()
    os.symlink(Path(toy_world["data_dir"]) / "image_pairs", candidates / "image_pairs")
    rows = [{"id": r["id"], "prompt": r["prompt"], "images": r["images"]} for r in _toy_rows(toy_world, "image_pairs")]
    rows[1]["prompt"] = LATIN1_CAPTION
    _write_with_latin1_line(candidates / "candidates.jsonl", rows)
    output = tmp_path / "dpo"
    records, summary, invalid, _ = sift_images.sift_folder(
        judge, candidates, output, _generation_settings(), progress=False
    )
    assert len(invalid) == 1 and "candidates.jsonl:2:" in invalid[0]
    _check_not_utf8(invalid[0])
    assert sorted(r.id for r in records) == sorted(rows[i]["id"] for i in (0, 2, 3)) and summary.total == 3
    result = sift_images.result_of(summary, invalid, {}, None)
    assert sift_images.exit_status(result) == 1


def test_bench_reports_the_latin1_line_and_judges_the_rest(toy_world, tmp_path):
    data_dir = Path(toy_world["data_dir"])
    rows = [{"prompt": r["prompt"], "left_image": str(data_dir / r["images"][0]),
             "right_image": str(data_dir / r["images"][1]), "vote_type": "leftvote" if r["winner"] == 1 else "rightvote"}
            for r in _toy_rows(toy_world, "image_pairs")]
    rows[1]["prompt"] = LATIN1_CAPTION
    data = _write_with_latin1_line(tmp_path / "bench.jsonl", rows)
    out = tmp_path / "bench"
    status = cli(["bench", "--benchmark", "genai-bench-image", "--data", str(data), "--model",
                  toy_world["reward_model"], "--device", "cpu", "--mode", "logit", "--output", str(out), "--no-progress"])
    assert status == 1
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert (metrics["n_pairs"], metrics["n_scored"], metrics["n_invalid_records"]) == (3, 3, 1)
    assert metrics["invalid_records"][0]["index"] == 1 and "line 2" in metrics["invalid_records"][0]["error"]
    _check_not_utf8(metrics["invalid_records"][0]["error"])
    assert len((out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()) == 3


# ----------------------------------------------------------------------------- a torn last line of sift.jsonl


@pytest.fixture()
def sift_with_torn_line(toy_world, judge, tmp_path):
    """A sift output folder killed while appending a record: its last line stops inside a 2-byte character."""
    from unifiedreward.sift import SiftItem, run_sift, shard_path

    data_dir = Path(toy_world["data_dir"])
    rows = _toy_rows(toy_world, "image_pairs", 3)
    items = [SiftItem(r["id"], {"prompt": r["prompt"]}, [str(data_dir / p) for p in r["images"]], order=i)
             for i, r in enumerate(rows)]
    items[2].fields["prompt"] = LATIN1_CAPTION
    out = tmp_path / "sift"
    run_sift(judge, items, _generation_settings(), shard_path(out), progress=False)
    lines = shard_path(out).read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    torn = lines[2][: lines[2].index("é".encode()) + 1]  # the first byte of "é", then the kill
    shard_path(out).write_bytes(b"".join(lines[:2]) + torn)
    shutil.rmtree(out / "report", ignore_errors=True)
    return out


def test_report_tells_a_torn_last_sift_line_and_renders_the_rest(sift_with_torn_line, caplog):
    with caplog.at_level(logging.WARNING):
        assert cli(["report", str(sift_with_torn_line), "--no-progress"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("sift.jsonl:3" in w and "torn last line" in w for w in warnings), warnings
    assert (sift_with_torn_line / "report" / "index.html").exists()


def test_merge_only_tells_a_torn_last_sift_line_and_merges_the_rest(sift_with_torn_line, caplog):
    with caplog.at_level(logging.WARNING):
        assert cli(["sift", "--merge-only", "--output-dir", str(sift_with_torn_line)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("sift.jsonl:3" in w and "torn last line" in w for w in warnings), warnings
    summary = json.loads((sift_with_torn_line / "summary.json").read_text(encoding="utf-8"))
    assert summary["total"] == 2
