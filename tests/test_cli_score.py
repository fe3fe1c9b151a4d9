"""`unifiedreward score` / `compare`: single items, JSONL batches, usage errors, the HTTP backend."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from servers import StubServer, chat_response

os.environ.setdefault("OMP_NUM_THREADS", "2")


def run_cli(argv: list[str]) -> int:
    """Through the real `unifiedreward` parser."""
    from unifiedreward import cli

    return cli.main(argv)


@pytest.fixture(scope="module")
def toy(toy_world):
    data = Path(toy_world["data_dir"])
    read = lambda name: [json.loads(line) for line in Path(toy_world["data"][name]).read_text().splitlines()]  # noqa: E731
    return toy_world["reward_model"], data, read


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_score_one_image_logit_json(toy, capsys):
    model, data, read = toy
    row = read("image_points")[0]
    argv = ["score", "--model", model, "--device", "cpu", "--template", "image_generation.point_score.v1",
            "--set", f"prompt={row['prompt']}", "--mode", "logit", "--json", str(data / row["image"])]  # fmt: skip
    assert run_cli(argv) == 0
    result = last_json(capsys.readouterr().out)
    assert result["status"] == "ok" and 1.0 <= result["score"] <= 5.0
    assert sum(result["probs"].values()) == pytest.approx(1.0)  # over the decimal answers "1" .. "4.99", "5"
    assert all(1.0 <= float(k) <= 5.0 and len(k.partition(".")[2]) <= 2 for k in result["probs"])


def test_compare_generate_and_understanding_swap(toy, capsys):
    model, data, read = toy
    row = read("image_pairs")[0]
    argv = ["compare", "--model", model, "--device", "cpu", "--template", "image_generation.pair_rank.v1",
            "--set", f"prompt={row['prompt']}", "--max-new-tokens", "3", "--json", *(str(data / p) for p in row["images"])]  # fmt: skip
    status = run_cli(argv)
    result = last_json(capsys.readouterr().out)
    assert result["text"] and (status, result["status"]) in ((0, "ok"), (1, "parse_error"))  # untrained toy
    und = read("und_pairs")[0]
    argv = ["compare", "--model", model, "--device", "cpu", "--template", "image_understanding.pair_rank.v1",
            "--set", f"question={und['question']}", "--set", f"answer1={und['answer1']}", "--set", f"answer2={und['answer2']}",
            "--mode", "logit", "--swap", str(data / und["image"])]  # fmt: skip
    assert run_cli(argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(("winner: 1", "winner: 2", "tie")) and "consistency:" in line and "probs: 1=" in line


def test_jsonl_batch_round_trip(toy, tmp_path, capsys):
    model, data, read = toy
    rows = read("image_pairs")[:3]
    items = [{"id": r["id"], "media": r["images"], "fields": {"prompt": r["prompt"]}} for r in rows]
    items.insert(1, {"id": "broken", "media": [rows[0]["images"][0], "image_pairs/missing.png"], "fields": {"prompt": "x"}})
    source = tmp_path / "items.jsonl"
    source.write_text("".join(json.dumps(item) + "\n" for item in items))
    output = tmp_path / "out" / "results.jsonl"
    argv = ["compare", "--model", model, "--device", "cpu", "--template", "image_generation.pair_rank.v1",
            "--mode", "logit", "--swap", "--input", str(source), "--media-root", str(data), "--output", str(output)]  # fmt: skip
    assert run_cli(argv) == 1  # every row is written; the exit status says one failed
    results = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["id"] for r in results] == [item["id"] for item in items]
    assert [r["status"] for r in results] == ["ok", "media_error", "ok", "ok"]
    assert "missing.png: file not found" in results[1]["error"] and results[1]["winner"] is None
    assert all(r["winner"] in (1, 2) and r["consistency"] in (0.0, 1.0) for r in results if r["status"] == "ok")
    err = capsys.readouterr().err
    assert "4 items" in err and "media_error 1, ok 3" in err and "position consistency" in err


def test_usage_errors_exit_2(toy, tmp_path, capsys):
    model, data, _ = toy
    base = ["--model", model, "--device", "cpu"]
    assert run_cli(["score", *base, "--template", "image_generation.pair_rank.v1", "a.png", "b.png"]) == 2
    assert "use `compare`" in capsys.readouterr().err
    assert run_cli(["score", *base, "--template", "no.such", "a.png"]) == 2
    assert run_cli(["score", *base, "--template", "image_generation.point_score.v1", "--set", "prompt", "a.png"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert run_cli(["score", *base, "--template", "image_generation.point_score.v1"]) == 2
    assert run_cli(["score", *base, "--template", "image_generation.point_score.v1", "--input", str(tmp_path / "none.jsonl")]) == 2


def test_server_backend_with_a_missing_image(tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(image)
    with StubServer(lambda path, body: (200, chat_response("Quality is fine.\nFinal Score: 4"))) as server:
        base = ["score", "--server", server.base_url, "--template", "image_generation.point_score.v1", "--set", "prompt=red"]
        assert run_cli([*base, "--json", str(image)]) == 0
        result = last_json(capsys.readouterr().out)
        assert (result["status"], result["score"]) == ("ok", 4.0)
        assert run_cli([*base, str(tmp_path / "gone.png")]) == 1
        assert "media_error" in capsys.readouterr().out
        assert len(server.received) == 1  # the missing image never reached the server
