"""The hostile-input corpus (tests/hostile_corpus.py) through the Python API and every CLI batch command.

Each bad item must fail alone with its own reason, every good item must be scored, and the exit status
must say that something failed. The real toy judge runs in logit mode (its generated text is not the
point here); only the malformed server answers come from a stub, since no real server sends them on demand.
Each test prints "COMMAND: N tried, F failed with their reason, S scored" (run with -s to see the figures).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from integrations.diffusers import sift_images

from hostile_corpus import INVALID_LINES, Case, Tally, write_images, write_videos
from servers import StubServer, chat_response
from unifiedreward.cli import main as cli

pytestmark = pytest.mark.slow

IMAGE_POINT = "image_generation.point_score.v1"
IMAGE_PAIR = "image_generation.pair_rank.v1"
VIDEO_POINT = "video_generation.point_score.v1"


@pytest.fixture(scope="module")
def corpus(toy_world, tmp_path_factory):
    data = Path(toy_world["data_dir"])
    image = json.loads(Path(toy_world["data"]["image_points"]).read_text().splitlines()[0])["image"]
    video = json.loads(Path(toy_world["data"]["video_points"]).read_text().splitlines()[0])["video"]
    root = tmp_path_factory.mktemp("hostile")
    return root, write_images(root, data / image), write_videos(root, data / video)


@pytest.fixture(scope="module")
def judge(toy_world):
    from reward_core import UnifiedReward

    return UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu", batch_size=4)


def _absolute(root: Path, case: Case):
    return case.media if "://" in case.media else str(root / case.media)


def _row_media(case: Case):
    return case.media if case.name == "string media" else [case.media]


def _jsonl(path: Path, rows: list, raw_lines: list[str] = ()) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "".join(line + "\n" for line in raw_lines))
    return path


# ----------------------------------------------------------------------------- Python API


def test_python_api_score_and_compare_batches(corpus, judge):
    root, images, videos = corpus
    good = str(root / "img/good.png")
    wrong_count = Case("2 images for a 1-image template", "-", "takes 1 image")
    not_an_item = Case("not a mapping", "-", "expected a JudgeItem")
    no_media = Case("row without media", "-", "no 'media'")
    cases = images + [wrong_count, not_an_item, no_media]
    items = [{"media": _absolute(root, c) if c.name == "string media" else [_absolute(root, c)],
              "fields": {"prompt": "a red cube"}} for c in images]
    items += [{"media": [good, good], "fields": {"prompt": "x"}}, 42, {"fields": {"prompt": "x"}}]
    tally = Tally("python score_batch (image)")
    for case, result in zip(cases, judge.score_batch(IMAGE_POINT, items, mode="logit")):
        tally.add(case, result.status.value, result.error)
    tally.check()

    tally = Tally("python score_batch (video)")
    video_items = [{"media": [_absolute(root, c)], "fields": {"prompt": "a moving square"}} for c in videos]
    video_items.append({"media": [good], "fields": {"prompt": "an image given as a video"}})
    as_video = Case("image file as video", "-", "cannot decode video")
    for case, result in zip(videos + [as_video], judge.score_batch(VIDEO_POINT, video_items, mode="logit")):
        tally.add(case, result.status.value, result.error)
    tally.check()

    tally = Tally("python compare_batch swap (image)")
    pairs = [{"media": [good, _absolute(root, c)], "fields": {"prompt": "a red cube"}}
             for c in images if c.name != "string media"]
    results = judge.compare_batch(IMAGE_PAIR, pairs, swap=True, mode="logit")
    for case, result in zip([c for c in images if c.name != "string media"], results):
        tally.add(case, result.status.value, result.error)
    tally.check()
    assert results.position_consistency is not None


# ----------------------------------------------------------------------------- score / compare CLI


def test_cli_score_and_compare_batches(corpus, toy_world, tmp_path):
    root, images, videos = corpus
    model = toy_world["reward_model"]
    rows = [{"id": c.name, "media": _row_media(c), "fields": {"prompt": "a red cube"}} for c in images]
    rows.append({"id": "wrong count", "media": ["img/good.png", "img/good.png"], "fields": {"prompt": "x"}})
    source = _jsonl(tmp_path / "score.jsonl", rows, [line for _, line, _ in INVALID_LINES])
    cases = images + [Case("wrong count", "-", "takes 1 image")] + [Case(n, "-", r) for n, _, r in INVALID_LINES]
    output = tmp_path / "scores.jsonl"
    status = cli(["score", "--model", model, "--device", "cpu", "--template", IMAGE_POINT, "--mode", "logit",
                  "--input", str(source), "--media-root", str(root), "--output", str(output)])
    assert status == 1  # something failed; every row is still written
    results = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(results) == len(cases)
    tally = Tally("unifiedreward score --input")
    for case, result in zip(cases, results):
        tally.add(case, result["status"], result["error"])
    tally.check()

    video_rows = [{"id": c.name, "media": [c.media], "fields": {"prompt": "a moving square"}} for c in videos]
    output = tmp_path / "video_scores.jsonl"
    status = cli(["score", "--model", model, "--device", "cpu", "--template", VIDEO_POINT, "--mode", "logit",
                  "--input", str(_jsonl(tmp_path / "videos.jsonl", video_rows)), "--media-root", str(root),
                  "--output", str(output)])
    assert status == 1
    tally = Tally("unifiedreward score --input (video)")
    for case, line in zip(videos, output.read_text().splitlines()):
        result = json.loads(line)
        tally.add(case, result["status"], result["error"])
    tally.check()

    pair_cases = [c for c in images if c.name != "string media"]
    pair_rows = [{"id": c.name, "media": ["img/good.png", c.media], "fields": {"prompt": "a red cube"}} for c in pair_cases]
    output = tmp_path / "pairs.jsonl"
    status = cli(["compare", "--model", model, "--device", "cpu", "--template", IMAGE_PAIR, "--mode", "logit", "--swap",
                  "--input", str(_jsonl(tmp_path / "compare.jsonl", pair_rows)), "--media-root", str(root),
                  "--output", str(output)])
    assert status == 1
    tally = Tally("unifiedreward compare --swap --input")
    for case, line in zip(pair_cases, output.read_text().splitlines()):
        result = json.loads(line)
        tally.add(case, result["status"], result["error"])
    tally.check()

    good_only = _jsonl(tmp_path / "good.jsonl", [{"media": ["img/good.png"], "fields": {"prompt": "a red cube"}}])
    assert cli(["score", "--model", model, "--device", "cpu", "--template", IMAGE_POINT, "--mode", "logit",
                "--input", str(good_only), "--media-root", str(root), "--output", str(tmp_path / "ok.jsonl")]) == 0


def test_cli_score_against_malformed_server_answers(corpus, tmp_path):
    """STUB: a server whose answers are malformed in the ways a broken proxy or server sends them."""
    root, _, _ = corpus
    answers = {
        "good": (200, chat_response("The cube is red. Final Score: 4")),
        "no choices": (200, {"id": "x", "choices": []}),
        "null content": (200, {"choices": [{"message": {"role": "assistant", "content": None}}]}),
        "number content": (200, {"choices": [{"message": {"role": "assistant", "content": 42}}]}),
        "not a completion": (200, {"detail": "ok"}),
        "rejected": (400, {"message": "image too large"}),
    }
    reasons = {"no choices": "malformed chat completion", "null content": "empty content",
               "number content": "content is a int", "not a completion": "malformed chat completion",
               "rejected": "HTTP 400"}

    def respond(path, body):
        text = body["messages"][0]["content"][-1]["text"]
        return next(answer for key, answer in answers.items() if f"<<{key}>>" in text)

    rows = [{"id": key, "media": ["img/good.png"], "fields": {"prompt": f"<<{key}>>"}} for key in answers]
    output = tmp_path / "out.jsonl"
    with StubServer(respond) as stub:
        status = cli(["score", "--server", stub.base_url, "--template", IMAGE_POINT, "--input",
                      str(_jsonl(tmp_path / "items.jsonl", rows)), "--media-root", str(root), "--output", str(output)])
    assert status == 1
    tally = Tally("unifiedreward score --server (malformed answers)")
    for key, line in zip(answers, output.read_text().splitlines()):
        result = json.loads(line)
        tally.add(Case(key, "-", reasons.get(key)), result["status"], result["error"])
        if key == "good":
            assert result["score"] == 4.0
        else:
            assert result["status"] == "backend_error"
    tally.check()


# ----------------------------------------------------------------------------- sift


def test_cli_sift_understanding_and_generation(corpus, toy_world, tmp_path):
    root, images, _ = corpus
    model = toy_world["reward_model"]
    answers = ["The shape is yellow.", "img/good.png"]  # the second is text that looks like a path
    shared = [c for c in images if c.name == "good" or not c.good]  # the other good formats: generation sift below
    rows = [{"id": c.name, "question": "What color is the shape?", "image": c.media, "candidates": answers}
            for c in shared]
    source = _jsonl(tmp_path / "und.jsonl", rows, [INVALID_LINES[0][1]])
    out = tmp_path / "sift-und"
    status = cli(["sift", "--input", str(source), "--media-dir", str(root), "--output-dir", str(out), "--reward-model",
                  model, "--device", "cpu", "--mode", "logit", "--no-progress"])
    assert status == 1  # bad shared images and one unreadable line
    records = {r["id"]: r for r in map(json.loads, (out / "sift.jsonl").read_text().splitlines())}
    tally = Tally("unifiedreward sift (understanding, text candidates)")
    for case in shared:
        record = records[case.name]
        assert record["candidates"] == answers  # answers stay text, never media paths
        scored = record["status"] != "failed" and None not in record["scores"]
        tally.add(case, "ok" if scored else record["status"], record["reason"])
    tally.check()
    if (out / "pairs.jsonl").exists():
        for pair in map(json.loads, (out / "pairs.jsonl").read_text().splitlines()):
            assert pair["chosen"][0]["content"] in answers and pair["rejected"][0]["content"] in answers

    gen_cases = [c for c in images if c.name != "string media"]
    rows = [{"id": c.name, "prompt": "a red cube", "candidates": ["img/good.png", c.media]} for c in gen_cases]
    out = tmp_path / "sift-gen"
    status = cli(["sift", "--input", str(_jsonl(tmp_path / "gen.jsonl", rows)), "--media-dir", str(root),
                  "--output-dir", str(out), "--reward-model", model, "--device", "cpu", "--mode", "logit",
                  "--pair-template", IMAGE_PAIR, "--point-template", IMAGE_POINT, "--no-progress"])
    assert status == 1
    tally = Tally("unifiedreward sift (generation, media candidates)")
    for record in map(json.loads, (out / "sift.jsonl").read_text().splitlines()):
        case = next(c for c in gen_cases if c.name == record["id"])
        scored = record["status"] != "failed" and None not in record["scores"]
        tally.add(case, "ok" if scored else record["status"], record["reason"])
    tally.check()

    mixed = cli(["sift", "--input", str(source), "--output-dir", str(tmp_path / "mixed"), "--reward-model", model,
                 "--pair-template", IMAGE_PAIR, "--point-template", "image_understanding.point_score.v1"])
    assert mixed == 2  # a media pair template with a text point template is refused up front


def test_sift_images_with_hostile_candidates_and_ids(corpus, toy_world, tmp_path):
    root, images, _ = corpus
    cases = [c for c in images if "://" not in c.media and (c.name == "good" or not c.good)]  # formats: see above
    candidates = tmp_path / "candidates"
    candidates.mkdir()
    os.symlink(root / "img", candidates / "img")
    lines = [json.dumps({"id": c.name, "prompt": "a red cube", "images": ["img/good.png", c.media]}) for c in cases]
    escape = {"id": "../../escaped", "prompt": "a red cube", "images": ["img/good.png", "img/cmyk.jpg"]}
    lines += [json.dumps(escape), INVALID_LINES[0][1]]
    (candidates / "candidates.jsonl").write_text("\n".join(lines) + "\n")
    output = tmp_path / "deep" / "nested" / "dpo"
    result = sift_images.main(["--candidates_dir", str(candidates), "--output_dir", str(output), "--reward_model",
                               toy_world["reward_model"], "--device", "cpu", "--mode", "logit"])
    assert sift_images.exit_status(result) == 1  # bad candidates and an unreadable line
    assert len(result["invalid_lines"]) == 1 and "candidates.jsonl:" in result["invalid_lines"][0]
    records = {r["id"]: r for r in map(json.loads, (output / "sift.jsonl").read_text().splitlines())}
    tally = Tally("sift_images")
    for case in cases + [Case("../../escaped", "-")]:
        record = records[case.name]
        scored = record["status"] != "failed" and None not in record["scores"]
        tally.add(case, "ok" if scored else record["status"], record["reason"])
    tally.check()
    written = [p for p in tmp_path.rglob("*escaped*")]
    assert written and all(output / "images" in p.parents for p in written)  # ids never leave the output folder


# ----------------------------------------------------------------------------- convert and bench


def test_cli_convert_rows_with_hostile_paths(corpus, tmp_path, capsys):
    root, _, _ = corpus
    cases = [Case("good", "img/good.png"), Case("missing", "img/missing.png", "not found"),
             Case("NUL in path", "img/go\x00od.png", "NUL byte"), Case("url", "http://127.0.0.1:9/x.png", "remote URLs are not fetched"),
             Case("escape", "../../etc/passwd", "escapes"), Case("not a string", 7, "non-empty string")]
    rows = [{"prompt": c.name, "image": c.media, "chosen": "a", "rejected": "b"} for c in cases]
    source = _jsonl(tmp_path / "prefs.jsonl", rows, [line for _, line, _ in INVALID_LINES[:2]])
    output = root / "converted.jsonl"
    status = cli(["convert", "preference", str(source), str(output), "--media-dir", str(root)])
    assert status == 1
    err = capsys.readouterr().err
    problems = {int(line.split("line ")[1].split(":")[0]): line for line in err.splitlines() if line.startswith("skipped ")}
    tally = Tally("unifiedreward convert")
    for number, case in enumerate(cases + [Case(n, "-", "") for n, _, _ in INVALID_LINES[:2]], 1):
        problem = problems.get(number)
        tally.add(case, "ok" if problem is None else "failed", problem)
    tally.check()
    assert len(output.read_text().splitlines()) == 1


def test_cli_bench_pairs_with_hostile_media(corpus, toy_world, tmp_path):
    root, images, _ = corpus
    # bench reads a URL as its pre-downloaded file in the media root (GenAI-Bench rows carry URLs)
    cases = [Case(c.name, c.media, "file not found") if "://" in c.media else c for c in images if c.name != "string media"]
    rows = [{"prompt": c.name, "left_image": _absolute(root, Case("good", "img/good.png")),
             "right_image": _absolute(root, c), "vote_type": "leftvote"} for c in cases]
    out = tmp_path / "bench"
    data = _jsonl(tmp_path / "bench.jsonl", rows, [line for _, line, _ in INVALID_LINES[:2]])
    status = cli(["bench", "--benchmark", "genai-bench-image", "--data", str(data),
                  "--model", toy_world["reward_model"], "--device", "cpu", "--mode", "logit", "--swap",
                  "--output", str(out), "--no-progress"])
    assert status == 1
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    tally = Tally("unifiedreward bench")
    for case, prediction in zip(cases, predictions):
        errors = [p["error"] for p in prediction["presentations"] if p["error"]]
        status = "ok" if prediction["margin"] is not None and not errors else "failed"
        tally.add(case, status, "; ".join(errors) or None)
    invalid = json.loads((out / "metrics.json").read_text())["invalid_records"]
    for (name, _, _), record, reason in zip(INVALID_LINES, invalid, ("invalid json", "not an object")):
        tally.add(Case(name, "-", reason), "invalid", record["error"])
    tally.check()


def test_cli_sift_refuses_an_output_folder_another_sift_is_writing(corpus, toy_world, tmp_path, capsys):
    from unifiedreward.sift import SiftWriter

    rows = [{"id": "a", "question": "What color?", "image": "img/good.png", "candidates": ["red", "blue"]}]
    source = _jsonl(tmp_path / "und.jsonl", rows)
    out = tmp_path / "sift"
    argv = ["sift", "--input", str(source), "--media-dir", str(corpus[0]), "--output-dir", str(out),
            "--reward-model", toy_world["reward_model"], "--device", "cpu", "--mode", "logit", "--no-progress"]
    with SiftWriter(out / "sift.jsonl"):  # another sift holds the results file
        assert cli(argv) == 2
    assert "is being written by another sift" in capsys.readouterr().err
    assert (out / "sift.jsonl").read_text() == ""  # refused before loading the judge; nothing judged twice
