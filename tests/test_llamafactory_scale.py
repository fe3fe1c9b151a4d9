"""Issue 15: LLaMA-Factory stage 1 at real scale.

Fast checks (main env): the bad inputs a new user meets (a broken JSON array element, symlinked hub
snapshots, every row rejected, placeholder/media mismatches, parallel registrations, frame folders,
sampling strategies) each give the stated behaviour. Slow checks run the real LLaMA-Factory env:
its own argument parsing of the recipes' DeepSpeed configs, the vision tokens of training vs
inference, and the released-schema samples through a 2-process ``FORCE_TORCHRUN=1`` DeepSpeed run
and a ``stage: rm`` run.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from released_samples import released_families, write_family

import data_converters as dc
from integrations.llamafactory import recipe_path, register_dataset
from integrations.llamafactory.launch import (
    CPU_OVERRIDES,
    OFFLINE_ENV,
    REPO_ROOT,
    find_llamafactory_cli,
    run_train,
    train_command,
    train_env,
)
from unifiedreward.cli.convert import main as convert_main

LLAMAFACTORY_CLI = find_llamafactory_cli()
LLAMAFACTORY_PYTHON = str(Path(LLAMAFACTORY_CLI).parent / "python") if LLAMAFACTORY_CLI else None


def runs_llamafactory(test):
    skip = pytest.mark.skipif(LLAMAFACTORY_CLI is None, reason="no .venv-llamafactory (make venv-llamafactory)")
    return pytest.mark.slow(pytest.mark.llamafactory(skip(test)))


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path, format="PNG")
    return path


def _row(image: str, question: str = "Rate it.") -> dict:
    return {"image": image, "conversations": [{"from": "human", "value": "<image>\n" + question},
                                              {"from": "gpt", "value": "Final Score: 3"}]}


# ----------------------------------------------------------------------------- bad inputs


def test_one_broken_array_element_loses_no_other_row(tmp_path, capsys):
    _png(tmp_path / "a.png")
    elements = [json.dumps(_row("a.png", f"question {i}")) for i in range(11)]
    elements[3] = elements[3].replace('"image":', '"image" ', 1)  # element 4 of 11: a missing colon
    source = tmp_path / "train_data.json"
    source.write_text("[\n" + ",\n".join(elements) + "\n]\n", encoding="utf-8")

    code = convert_main(["unifiedreward", str(source), str(tmp_path / "out.jsonl"), "--media-dir", str(tmp_path)])
    assert code == 1  # a rejected row shows in the exit status; the good rows are written all the same
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [record["messages"][0]["content"].rsplit(" ", 1)[1] for record in written] == \
        [str(i) for i in range(11) if i != 3]
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["rows_written"] == 10 and summary["rows_rejected"] == 1
    assert "skipped train_data.json:line 5: invalid JSON" in captured.err


def test_broken_elements_are_reported_with_their_lines(tmp_path):
    _png(tmp_path / "a.png")
    pretty = [json.dumps(_row("a.png", f"q{i}"), indent=2) for i in range(5)]
    pretty[1] = pretty[1].replace('"Final', 'Final', 1)  # an unquoted string inside a multi-line element
    source = tmp_path / "rows.json"
    source.write_text("[\n" + ",\n".join(pretty) + "\n]\n", encoding="utf-8")
    report = dc.convert_unifiedreward(source, tmp_path / "out.jsonl", media_dir=tmp_path)
    assert report.rows_written == 4 and report.rows_rejected == 1
    first_line = 2 + pretty[0].count("\n") + 1  # "[" is line 1; the broken element starts after element 0
    assert str(report.problems[0]).startswith(f"rows.json:line {first_line}: invalid JSON")


def test_hub_snapshot_symlinks_are_followed_but_textual_escapes_refused(tmp_path):
    # A Hugging Face hub cache: snapshots/<rev>/images/x.png -> ../../../blobs/<hash>
    hub = tmp_path / "datasets--CodeGoat24--HPD"
    _png(hub / "blobs" / "0a1b2c")
    snapshot = hub / "snapshots" / "rev1"
    (snapshot / "images").mkdir(parents=True)
    os.symlink("../../../blobs/0a1b2c", snapshot / "images" / "x.png")
    (tmp_path / "outside.png").write_bytes(b"x")
    rows = [_row("images/x.png"), _row("../../../outside.png"), _row(str(tmp_path / "outside.png"))]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    report = dc.convert_unifiedreward(source, tmp_path / "out.jsonl", media_dir=snapshot)
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [record["images"] for record in written] == [["images/x.png"]]
    assert [problem.message.split(" escapes")[0] for problem in report.problems] == \
        ["media path '../../../outside.png'", f"media path '{tmp_path / 'outside.png'}'"]


def test_no_surviving_row_exits_1_and_registers_nothing(tmp_path, capsys):
    rows = [_row("missing.png"), _row("../escape.png")]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    info = tmp_path / "data" / "dataset_info.json"
    info.parent.mkdir()
    info.write_text(json.dumps({"other": {"file_name": "other.jsonl"}}))

    code = convert_main(["unifiedreward", str(source), str(tmp_path / "data" / "out.jsonl"),
                         "--media-dir", str(tmp_path), "--dataset-info", str(info), "--dataset-name", "empty"])
    assert code == 1
    assert not (tmp_path / "data" / "out.jsonl").exists()
    assert json.loads(info.read_text()) == {"other": {"file_name": "other.jsonl"}}
    err = capsys.readouterr().err
    assert "media file not found" in err and "escapes" in err and "nothing written or registered" in err


def test_placeholder_count_must_match_the_media(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    rows = [
        {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\n<image>\nRate."},
                                             {"from": "gpt", "value": "Final Score: 3"}]},
        {"images": ["a.png", "b.png"], "conversations": [{"from": "human", "value": "<image>\nWhich?"},
                                                         {"from": "gpt", "value": "Image 1 is better."}]},
        _row("a.png"),
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    report = dc.convert_unifiedreward(source, tmp_path / "out.jsonl", media_dir=tmp_path)
    assert report.rows_written == 1
    assert [problem.message for problem in report.problems] == [
        "2 <image>/<video> placeholder(s) in the conversation for 1 media item(s)",
        "1 <image>/<video> placeholder(s) in the conversation for 2 media item(s)",
    ]


def test_frame_lists_are_one_video_unless_tagged_one_per_frame(tmp_path):
    """Upstream's _get_item: an ``images`` list longer than 2 is one video of all its frames."""
    frames = [f"f{i}.png" for i in range(4)]
    for name in frames:
        _png(tmp_path / name)

    def turns(human: str) -> list[dict]:
        return [{"from": "human", "value": human}, {"from": "gpt", "value": "Final Score: 3"}]

    rows = [
        {"images": frames, "conversations": turns("<image>\nRate.")},  # released VideoFeedback / VideoDPO
        {"images": frames, "conversations": turns("Rate.")},
        {"video": frames, "conversations": turns("<image>\nRate.")},
        {"images": frames[:3], "conversations": turns("<image>\n<image>\n<image>\nEdit 1 or 2?")},  # an edit triple
        {"images": frames, "problem": "Rate.", "solution": "<answer>3</answer>"},  # Think GRPO: images upstream
        {"images": frames, "conversations": turns("<image>\n<image>\nRate.")},
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    report = dc.convert_unifiedreward(source, tmp_path / "out.jsonl", media_dir=tmp_path)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    tags = [re.match(r"(?:<image>|<video>)*", r["messages"][0]["content"]).group() for r in records]
    assert [(r["images"], r["videos"], tag) for r, tag in zip(records, tags)] == [
        ([], [frames], "<video>"), ([], [frames], "<video>"), ([], [frames], "<video>"),
        (frames[:3], [], "<image>" * 3), (frames, [], "<image>" * 4)]
    assert [problem.message for problem in report.problems] == [
        "2 <image>/<video> placeholder(s) in the conversation for 4 frames: one video takes 0 or 1, "
        "separate images one each"]


def _register(args: tuple[str, str, str]) -> int:
    source, output, info = args
    return convert_main(["unifiedreward", source, output, "--media-dir", os.path.dirname(source),
                         "--dataset-info", info, "--dataset-name", Path(output).stem])


def test_parallel_registrations_keep_every_entry(tmp_path):
    _png(tmp_path / "a.png")
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps(_row("a.png")) + "\n", encoding="utf-8")
    info = str(tmp_path / "data" / "dataset_info.json")
    jobs = [(str(source), str(tmp_path / "data" / f"part{i}.jsonl"), info) for i in range(8)]
    with multiprocessing.get_context("fork").Pool(8) as pool:
        assert pool.map(_register, jobs) == [0] * 8
    assert sorted(json.loads(Path(info).read_text())) == [f"part{i}" for i in range(8)]


def test_frame_folders_become_nested_videos_and_layouts_do_not_mix(tmp_path):
    for index in (0, 2, 10, 11, 30):  # natural order, 5 frames -> an even 4
        _png(tmp_path / "clip" / f"frame_{index}.jpg")
    (tmp_path / "v.mp4").write_bytes(b"\x00")
    video_row = {"video": "clip", "conversations": [{"from": "human", "value": "<image>\nRate."},
                                                     {"from": "gpt", "value": "Final Score: 4"}]}
    file_row = dict(video_row, video="v.mp4")
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps(video_row) + "\n" + json.dumps(file_row) + "\n", encoding="utf-8")
    report = dc.convert_unifiedreward(source, tmp_path / "out.jsonl", media_dir=tmp_path)
    (record,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert record["videos"] == [["clip/frame_0.jpg", "clip/frame_2.jpg", "clip/frame_11.jpg", "clip/frame_30.jpg"]]
    assert record["messages"][0]["content"].startswith("<video>Rate.")
    assert "cannot share its 'videos' column" in report.problems[0].message


@pytest.mark.parametrize(("strategy", "written", "num_samples"), [
    ("all", 10, None), ("random:4", 10, 4), ("random:25", 10, 25), ("first:3", 3, None), ("end:3", 3, None),
    ("50%", 10, 5),
])
def test_sampling_strategies(tmp_path, strategy, written, num_samples):
    _png(tmp_path / "a.png")
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(_row("a.png", f"q {i}")) + "\n" for i in range(10)), encoding="utf-8")
    report = dc.convert_unifiedreward(source, tmp_path / "out.jsonl", media_dir=tmp_path, sampling=strategy)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (len(records), report.num_samples, report.rows_filtered) == (written, num_samples, 10 - written)
    if strategy == "end:3":
        assert [r["messages"][0]["content"][-1] for r in records] == ["7", "8", "9"]
    entry = register_dataset(tmp_path, "mix", tmp_path / "out.jsonl", num_samples=report.num_samples)
    assert entry.get("num_samples") == num_samples
    with pytest.raises(ValueError, match="sampling strategy"):
        dc.SamplingStrategy.parse("random:")


def test_run_train_passes_gpus_and_launcher_variables_through(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")
    monkeypatch.setenv("NNODES", "2")
    env = train_env("/envs/lf/bin/llamafactory-cli", {"FORCE_TORCHRUN": "1"}, threads=4)
    assert (env["CUDA_VISIBLE_DEVICES"], env["NNODES"], env["FORCE_TORCHRUN"]) == ("0,1,2,3,4,5,6,7", "2", "1")
    assert env["PATH"].split(os.pathsep)[0] == "/envs/lf/bin" and env["OMP_NUM_THREADS"] == "4"
    assert train_command("r.yaml", {"deepspeed": None, "bf16": False}, "cli") == \
        ["cli", "train", "r.yaml", "deepspeed=null", "bf16=false"]
    with pytest.raises(ValueError, match="whitespace"):
        train_command("r.yaml", {"output_dir": "my saves"}, "cli")


# ----------------------------------------------------------------------------- real LLaMA-Factory


@runs_llamafactory
def test_llamafactory_parses_the_deepspeed_recipes(tmp_path):
    """LLaMA-Factory's own get_train_args on the recipes' DeepSpeed configs (ZeRO-3 paper recipe, ZeRO-2
    RM recipe, the Qwen3.5 template), as one torchrun rank would see them (WORLD_SIZE=1, gloo, no bf16 on CPU)."""
    script = (
        "import json, sys, yaml\n"
        "from llamafactory.hparams import get_train_args\n"
        "out = {}\n"
        "for path in sys.argv[2:]:\n"
        "    recipe = yaml.safe_load(open(path))\n"
        "    recipe.update(output_dir=sys.argv[1], overwrite_output_dir=True, bf16=False, ddp_backend='gloo')\n"
        "    model, data, training, finetuning, _ = get_train_args(recipe)\n"
        "    ds = training.hf_deepspeed_config.config\n"
        "    out[path] = [ds['zero_optimization']['stage'], finetuning.stage, data.template,\n"
        "                 training.gradient_accumulation_steps, training.learning_rate]\n"
        "print(json.dumps(out))\n"
    )
    recipes = [recipe_path(name) for name in ("qwen2_5vl_full_sft_paper", "qwen2_5vl_lora_rm", "qwen3_5_full_sft")]
    env = {**os.environ, **OFFLINE_ENV, "LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531"}
    completed = subprocess.run([LLAMAFACTORY_PYTHON, "-c", script, str(tmp_path / "out"), *recipes], cwd=REPO_ROOT,
                               env=env, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    parsed = json.loads(completed.stdout.strip().splitlines()[-1])
    assert parsed[recipes[0]] == [3, "sft", "qwen2_vl", 16, 2.5e-6]  # upstream issue #37's hyper-parameters
    assert parsed[recipes[1]][:3] == [2, "rm", "qwen2_vl"]
    assert parsed[recipes[2]][:3] == [3, "sft", "qwen3_5_nothink"]


def _hub_limits_model(toy_judge: Path, folder: Path) -> Path:
    """The toy judge with the processor limits of the released Qwen2.5-VL checkpoints
    (min_pixels 3136, max_pixels 12845056 in their preprocessor_config.json) instead of the toy's tiny ones."""
    from transformers import (
        AutoProcessor,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    shutil.copytree(toy_judge, folder)
    toy = AutoProcessor.from_pretrained(folder)
    Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
        video_processor=Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=12845056, cap_pixels_per_frame=True),
        tokenizer=toy.tokenizer, chat_template=toy.chat_template,
    ).save_pretrained(folder)
    return folder


@runs_llamafactory
def test_recipe_vision_tokens_match_inference(tmp_path, toy_judge):
    from integrations.llamafactory.vision_tokens import inference_grids
    from unifiedreward.toy.data import write_video

    model = _hub_limits_model(toy_judge, tmp_path / "judge")
    images = []
    for width, height in ((640, 480), (100, 60), (1024, 1024), (3000, 2000)):
        images.append(str(tmp_path / f"i{width}.png"))
        Image.new("RGB", (width, height), (10, 200, 30)).save(images[-1])
    videos = []
    for (width, height), frames, fps in (((480, 360), 16, 8), ((333, 201), 9, 3), ((64, 48), 12, 4), ((1280, 720), 10, 5)):
        videos.append(str(tmp_path / f"v{width}.mp4"))
        write_video([Image.new("RGB", (width, height), (20 * i, 0, 0)) for i in range(frames)], Path(videos[-1]), fps=fps)

    inference = inference_grids(str(model), images, videos)
    command = [LLAMAFACTORY_PYTHON, "-m", "integrations.llamafactory.vision_tokens",
               "--recipe", recipe_path("qwen2_5vl_full_sft"), "--model", str(model)]
    command += [arg for path in images for arg in ("--image", path)] + [arg for path in videos for arg in ("--video", path)]
    completed = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, **OFFLINE_ENV}, capture_output=True,
                               text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    training = json.loads(completed.stdout.strip().splitlines()[-1])

    assert training["images"] == inference["images"]  # every size: identical grids, identical tokens
    assert [grid[0] for grid in training["videos"]] == [grid[0] for grid in inference["videos"]]  # frames (fps)
    assert training["videos"][:2] == inference["videos"][:2]  # frames already inside the per-frame bounds
    # Frames LLaMA-Factory must rescale (x5 up, x0.8 down) land within one patch row/column of inference:
    # its resize truncates where qwen-vl-utils' smart_resize floors/ceils (documented in docs/llamafactory.md).
    for train_grid, infer_grid in zip(training["videos"][2:], inference["videos"][2:]):
        assert all(abs(a - b) <= 2 for a, b in zip(train_grid[1:], infer_grid[1:])), (train_grid, infer_grid)


@pytest.fixture(scope="module")
def toy_judge(tmp_path_factory) -> Path:
    """A tiny randomly initialised Qwen2.5-VL with the toy world's tokenizer and processor."""
    from integrations.llamafactory.toy_proof import (
        ToyTrainingSetup,
        build_toy_reward_model,
    )

    return build_toy_reward_model(tmp_path_factory.mktemp("judge") / "model", ToyTrainingSetup(num_layers=2))


@pytest.fixture(scope="module")
def released_data(tmp_path_factory):
    """Every released family's sample rows, converted and registered in one dataset_info.json."""
    root = tmp_path_factory.mktemp("released")
    media, data = root / "media", root / "data"
    reports = {}
    for family in released_families(media):
        source = write_family(family, root / "released")
        reports[family.name] = dc.convert_unifiedreward(source, data / f"{family.name}.jsonl", media_dir=media,
                                                        extract_frames=True)
        register_dataset(data, family.name, data / f"{family.name}.jsonl")
    return root, reports


def test_released_schema_samples_convert(released_data):
    _, reports = released_data
    assert len(reports) == 14
    for name, report in reports.items():
        assert (report.rows_read, report.rows_written, report.rows_rejected) == (2, 2, 0), (name, report.problems)


def test_released_video_frame_rows_are_one_video(released_data):
    """Issue 24 item 6: VideoDPO (16 frames per pair) and VideoFeedback (8 frames) rows are one <video> of
    all their frames, in order, as upstream's loader trains them (before: 0 rows of either)."""
    root, reports = released_data
    for name, file_name, frames in (("videodpo", "VideoDPO.json", 16), ("videofeedback", "VideoFeedback.json", 8)):
        rows = json.loads((root / "released" / file_name).read_text())
        records = [json.loads(line) for line in (root / "data" / f"{name}.jsonl").read_text().splitlines()]
        assert reports[name].rows_written == len(records) == len(rows) == 2
        for row, record in zip(rows, records):
            assert len(row["images"]) == frames
            assert (record["images"], record["videos"]) == ([], [row["images"]])
            human = row["conversations"][0]["value"]
            assert human.startswith("<image>\n") and human.count("<image>") == 1
            assert record["messages"][0] == {"role": "user", "content": "<video>" + human.removeprefix("<image>\n")}


@runs_llamafactory
def test_llamafactory_loads_released_video_frame_rows(released_data, toy_world, tmp_path):
    """LLaMA-Factory's own get_dataset (qwen2_vl template, toy processor) reads the converted rows: each
    row's frames are one video whose tokens in input_ids match its grid (2 frames per temporal patch)."""
    root, _ = released_data
    completed = subprocess.run(
        [LLAMAFACTORY_PYTHON, "tests/scripts/llamafactory_load_dataset.py", toy_world["reward_model"],
         str(root / "data"), str(root / "media"), str(tmp_path), "videodpo,videofeedback"],
        cwd=REPO_ROOT, env={**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = json.loads(completed.stdout.split("RESULT ")[-1])["rows"]
    assert [row["frames"] for row in rows] == [[16], [16], [8], [8]]
    assert [row["grids"][0][0] for row in rows] == [8, 8, 4, 4]
    assert all(row["video_tokens"] == row["grid_tokens"] > 0 for row in rows)


def _toy_overrides(model: str, root: Path, datasets: list[str], output: Path) -> dict:
    return {
        **CPU_OVERRIDES, "model_name_or_path": model, "trust_remote_code": False,
        "dataset_dir": str(root / "data"), "media_dir": str(root / "media"), "dataset": ",".join(datasets),
        "output_dir": str(output), "image_max_pixels": 3136, "image_min_pixels": 3136, "video_max_pixels": 3136,
        "video_min_pixels": 3136, "cutoff_len": 4096, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1, "max_steps": 2, "logging_steps": 1, "save_steps": 1_000_000,
        "plot_loss": False, "overwrite_cache": True, "disable_gradient_checkpointing": True,
    }


@runs_llamafactory
def test_released_samples_train_two_processes_with_deepspeed(released_data, toy_judge):
    """All 14 families in one 2-step LoRA SFT: 2 torchrun processes (FORCE_TORCHRUN=1, gloo on CPU) under
    the recipe's DeepSpeed ZeRO-2 config, launched by run_train exactly as from a shell."""
    root, reports = released_data
    output = root / "sft-ddp"
    overrides = {**_toy_overrides(str(toy_judge), root, sorted(reports), output),
                 "deepspeed": "integrations/llamafactory/recipes/ds_z2_config.json", "ddp_backend": "gloo"}
    env = {**OFFLINE_ENV, "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"}
    run = run_train(recipe_path("qwen2_5vl_lora_sft"), overrides, env=env, threads=1, timeout=900)
    assert run.ok, run.log[-4000:]
    assert "Initializing 2 distributed tasks" in run.log and "world size: 2" in run.log
    assert "DeepSpeedZeroOptimizer" in run.log and "backend gloo" in run.log
    assert "Num examples = 28" in run.log  # every sample row passed LLaMA-Factory's preprocessing
    state = json.loads((output / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 2 and len(losses) == 2 and all(math.isfinite(loss) for loss in losses)


@runs_llamafactory
def test_rm_recipe_trains_a_value_head_on_pairs(released_data, toy_judge, tmp_path):
    root, _ = released_data
    pairs = [{"question": "What is shown?", "image": f"LLaVA-critic/pairwise/{i % 2}.png",
              "chosen": "An orange square.", "rejected": "A dog."} for i in range(4)]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in pairs), encoding="utf-8")
    report = dc.convert_preference(source, root / "data" / "rm_pairs.jsonl", media_dir=root / "media")
    assert report.rows_written == 4
    register_dataset(root / "data", "rm_pairs", root / "data" / "rm_pairs.jsonl", ranking=True)
    output = tmp_path / "rm"
    run = run_train(recipe_path("qwen2_5vl_lora_rm"),
                    _toy_overrides(str(toy_judge), root, ["rm_pairs"], output),
                    env=OFFLINE_ENV, threads=2, timeout=600)
    assert run.ok, run.log[-4000:]
    state = json.loads((output / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 2 and all(math.isfinite(loss) and loss > 0 for loss in losses)
    assert (output / "value_head.safetensors").is_file() or (output / "value_head.bin").is_file()
