"""``kill -9`` in the middle of ``bench`` and ``convert``: real subprocesses, then the output folder is checked.

bench: after a kill at any point, a ``metrics.json`` that exists describes the ``predictions.jsonl`` beside it
(its pair count and sha256). convert: a kill leaves no half output file, and the next run leaves no temporary
file behind, however many runs were killed before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unifiedreward.cli import main as cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STOP_AT_WRITES = REPO / "tests" / "scripts" / "stop_at_writes.py"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- bench


def _bench_data(toy_world: dict, path: Path, first: int, count: int) -> Path:
    data_dir = Path(toy_world["data_dir"])
    lines = Path(toy_world["data"]["image_pairs"]).read_text().splitlines()[first:first + count]
    rows = [json.loads(line) for line in lines]
    path.write_text("".join(json.dumps({
        "prompt": r["prompt"], "left_image": str(data_dir / r["images"][0]), "right_image": str(data_dir / r["images"][1]),
        "vote_type": "leftvote" if r["winner"] == 1 else "rightvote"}) + "\n" for r in rows))
    return path


def _bench_args(toy_world: dict, data: Path, out: Path) -> list[str]:
    return ["bench", "--benchmark", "genai-bench-image", "--data", str(data), "--model", toy_world["reward_model"],
            "--device", "cpu", "--mode", "logit", "--output", str(out), "--no-progress"]


def _check_agree(out: Path, where: str) -> bool:
    """A metrics.json that exists parses and names the predictions.jsonl beside it; True when it exists."""
    metrics_path = out / "metrics.json"
    if not metrics_path.exists():
        return False
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    predictions = (out / "predictions.jsonl").read_bytes()
    assert metrics["n_pairs"] == predictions.count(b"\n"), f"{where}: metrics.json disagrees with predictions.jsonl"
    assert metrics["predictions"]["sha256"] == hashlib.sha256(predictions).hexdigest(), where
    return True


def test_bench_metrics_agree_with_predictions_after_a_kill_at_any_write(toy_world, tmp_path):
    out = tmp_path / "bench"
    earlier = _bench_data(toy_world, tmp_path / "a.jsonl", 0, 3)
    assert cli(_bench_args(toy_world, earlier, tmp_path / "earlier")) == 0
    shutil.copytree(tmp_path / "earlier", out)  # an earlier run's outputs (this process never wrote into `out`)
    assert _check_agree(out, "earlier run") and json.loads((out / "metrics.json").read_text())["n_pairs"] == 3

    rerun = _bench_data(toy_world, tmp_path / "b.jsonl", 3, 5)
    process = subprocess.Popen([sys.executable, str(STOP_AT_WRITES), str(out), *_bench_args(toy_world, rerun, out)],
                               stdout=subprocess.PIPE, text=True, env=_env())
    stops, kill_at = [], 2
    try:
        for line in process.stdout:
            if not line.startswith("OPENED "):
                continue
            os.waitpid(process.pid, os.WUNTRACED)  # stopped: the folder is what a kill here would leave
            stops.append(Path(line.split(" ", 1)[1].strip()).name)
            _check_agree(out, f"stopped at write {len(stops)} ({stops[-1]})")
            if len(stops) == kill_at:
                process.kill()
                break
            os.kill(process.pid, signal.SIGCONT)
    finally:
        process.kill()  # SIGKILL ends a stopped process too
        process.wait(timeout=60)
    assert len(stops) == kill_at, f"the bench wrote only {stops}"
    print(f"bench killed at write {kill_at} of a rerun; writes seen: {stops}")
    _check_agree(out, "after the kill")

    assert cli(_bench_args(toy_world, rerun, out)) == 0  # a later run completes and cleans the killed run's temp files
    assert _check_agree(out, "after a complete rerun")
    assert json.loads((out / "metrics.json").read_text())["n_pairs"] == 5
    assert _temp_files(out) == []


# ----------------------------------------------------------------------------- convert


def _convert_command(source: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "unifiedreward.cli", "convert", "preference", str(source), str(output)]


def _kill_when_writing(source: Path, output: Path, timeout: float = 120) -> None:
    """Start a convert and ``kill -9`` it once its temporary output holds some bytes."""
    before = set(_temp_files(output.parent))
    process = subprocess.Popen(_convert_command(source, output), env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            new = [output.parent / name for name in set(_temp_files(output.parent)) - before]
            if any(path.stat().st_size > 0 for path in new if path.exists()):
                break
            time.sleep(0.01)
        assert process.poll() is None, "convert finished before it could be killed: make the input larger"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)


def test_convert_killed_mid_write_leaves_no_temp_file_behind_the_next_run(tmp_path):
    source = tmp_path / "prefs.jsonl"
    row = {"prompt": "a caption " + "x" * 200, "chosen": "a" * 100, "rejected": "b" * 100}
    source.write_text("".join(json.dumps({**row, "id": i}) + "\n" for i in range(60_000)))
    output = tmp_path / "out" / "prefs.jsonl"
    output.parent.mkdir()
    kills = 3
    for _ in range(kills):
        _kill_when_writing(source, output)
        assert not output.exists()  # never a half output file
    left = _temp_files(output.parent)
    leftover_bytes = sum((output.parent / name).stat().st_size for name in left)
    completed = subprocess.run(_convert_command(source, output), env=_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    print(f"convert: {kills} kills left {len(left)} temp files ({leftover_bytes} bytes); "
          f"after the next run: {_temp_files(output.parent)}")
    assert left, "the kills were expected to leave their temporary files"
    assert _temp_files(output.parent) == []
    assert len(output.read_text().splitlines()) == 60_000


def test_convert_missing_input_is_a_usage_error(tmp_path, capsys):
    status = cli(["convert", "preference", str(tmp_path / "missing.jsonl"), str(tmp_path / "out.jsonl")])
    assert status == 2
    assert "missing.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
