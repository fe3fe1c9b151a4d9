"""`unifiedreward prompt` and `unifiedreward parse`, run as real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unifiedreward.cli import SUBCOMMANDS
from reward_core.prompts import get_template, list_templates, load_upstream_prompts

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="ascii")  # output must not depend on the locale
    return subprocess.run(
        [sys.executable, "-m", "unifiedreward.cli", *args], input=stdin, capture_output=True, cwd=REPO, env=env, timeout=60
    )


@pytest.mark.parametrize(
    "key, values",
    [
        ("image_generation.pair_rank.v1", {"prompt": "a red cube on a blue sphere"}),
        ("think.qwen3.image_generation.pair_rank", {"prompt": "a {curly} cat"}),  # 「」 brackets, trailing spaces
        ("image_understanding.point_score.v1", {"question": "How many cups?", "response": "Two = 2"}),
        ("video_understanding.pair_rank.v1.llava", {"image_tokens": "<image>\n" * 8, "question": "q", "answer1": "a", "answer2": "b"}),
        ("edit.point_score_quality", {}),
    ],
)
def test_prompt_prints_exact_bytes(key, values):
    result = run_cli("prompt", key, *[f"--set={name}={value}" for name, value in values.items()])
    assert result.returncode == 0, result.stderr
    expected = load_upstream_prompts()[key]["template"].format(**values)
    assert result.stdout == expected.encode("utf-8")  # nothing added, not even a newline


def test_prompt_list():
    result = run_cli("prompt", "--list")
    assert result.returncode == 0
    assert result.stdout.decode().splitlines() == list_templates()
    assert len(result.stdout.decode().splitlines()) >= 55
    think = run_cli("prompt", "--list", "think.qwen3.").stdout.decode().splitlines()
    assert think == [k for k in list_templates() if k.startswith("think.qwen3.")] and len(think) == 4


def test_prompt_info():
    result = run_cli("prompt", "video_generation.point_score.v1", "--info")
    info = json.loads(result.stdout)
    assert info["parser"] == "final_score_1_10" and info["scale"] == [1.0, 10.0] and info["media_count"] == 1
    assert info["max_new_tokens"] == get_template("video_generation.point_score.v1").max_new_tokens


@pytest.mark.parametrize(
    "args, message",
    [
        (["prompt", "image_understanding.pair_rank.v1", "--set", "question=q"], "answer1, answer2"),
        (["prompt", "no.such.key"], "unknown template"),
        (["prompt", "image_generation.pair_rank.v1", "--set", "prompt"], "NAME=VALUE"),
        (["prompt"], "KEY or --list"),
    ],
)
def test_prompt_errors(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == b""
    assert message in result.stderr.decode()


@pytest.mark.parametrize(
    "key, output, expected",
    [
        ("image_generation.pair_rank.v1", "Image 1 is blurry.\nImage 2 is better.", {"status": "ok", "winner": 2}),
        ("image_understanding.pair_rank.v1", "Answer 2 is better than Answer 1.", {"status": "ok", "winner": 2}),
        ("image_generation.point_score.v1", "cube (object): 1\nFinal Score: 7", {"status": "parse_error", "score": None}),
        ("image_understanding.point_score.v1", "Final Score: 85", {"status": "ok", "score": 85.0}),
        ("think.image_generation.pair_rank", "<think>Image 1 is better</think><answer>Image 2 is better</answer>", {"winner": 2}),
        ("image_generation.point_score_acs.v2", "Alignment Score (1-5): 3\nStyle Score (1-5): 4", {"status": "parse_error"}),
        ("flex.image_generation.pair_rank", '```json\n{"winner": "Image 1"}\n```', {"status": "ok", "winner": 1}),
        ("think.qwen3.image_generation.pair_rank", "<think>\u300c\u732b\u300d", {"status": "parse_error", "winner": None}),
    ],
)
def test_parse_prints_one_json_object(key, output, expected):
    result = run_cli("parse", key, stdin=output.encode("utf-8"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode("utf-8").splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert set(data) == {"status", "winner", "score", "scores", "probs", "text", "error", "consistency", "probs_error"}
    assert data["text"] == output
    assert {k: data[k] for k in expected} == expected
    assert (data["error"] is None) == (data["status"] == "ok")


def test_parse_with_parser_name_and_empty_stdin():
    data = json.loads(run_cli("parse", "--parser", "final_score_0_100", stdin=b"Final Score: 42").stdout)
    assert data["score"] == 42.0
    data = json.loads(run_cli("parse", "image_generation.pair_rank.v1").stdout)
    assert data["status"] == "parse_error" and data["error"] == "empty output"


@pytest.mark.parametrize(
    "args, message",
    [(["parse", "no.such.key"], "unknown template"), (["parse", "--parser", "nope"], "unknown parser"), (["parse"], "exactly one")],
)
def test_parse_errors(args, message):
    result = run_cli(*args, stdin=b"Image 1 is better")
    assert result.returncode == 2
    assert message in result.stderr.decode()


def test_every_subcommand_registers():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert name in result.stdout.decode()


def test_console_script():
    script = shutil.which("unifiedreward", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("package not installed in this environment (pip install -e .)")
    result = subprocess.run([script, "prompt", "edit.point_score_quality"], capture_output=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout == get_template("edit.point_score_quality").render().encode("utf-8")
