"""train_diffusion_dpo.py as diffusers and UnifiedReward users run it (issue 16): their command lines, exact resume,
an input folder that stays untouched, pairs of any sizes, and UnifiedReward's and the Hub's data layouts.

The `accelerate launch` runs use the real accelerate CLI on CPU (examples/diffusers/accelerate_cpu.yaml). Mocked, because
it cannot exist here: bitsandbytes (needs a CUDA GPU) is replaced by a stand-in module whose AdamW8bit is torch's
AdamW and records that it was built; the Hub is absent (HF_HUB_OFFLINE), so --push_to_hub is checked for its error.
"""

import hashlib
import io
import json
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from integrations.diffusers import train_diffusion_dpo as script
from integrations.diffusers.dpo_data import (
    EpochShuffleSampler,
    PairTransform,
    PreferencePairs,
    collate_pairs,
    default_split,
    load_preference_split,
    strict_preference_indices,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "examples" / "diffusers"))

import toy_dpo_proof as proof  # noqa: E402

# diffusers' examples/research_projects/diffusion_dpo/README.md (main, 58eb52c), "SD training command", verbatim
# after the script name.
DIFFUSERS_SD_README = r"""
  --pretrained_model_name_or_path=stable-diffusion-v1-5/stable-diffusion-v1-5  \
  --output_dir="diffusion-dpo" \
  --mixed_precision="fp16" \
  --dataset_name=kashif/pickascore \
  --resolution=512 \
  --train_batch_size=16 \
  --gradient_accumulation_steps=2 \
  --gradient_checkpointing \
  --use_8bit_adam \
  --rank=8 \
  --learning_rate=1e-5 \
  --report_to="wandb" \
  --lr_scheduler="constant" \
  --lr_warmup_steps=0 \
  --max_train_steps=10000 \
  --checkpointing_steps=2000 \
  --run_validation --validation_steps=200 \
  --seed="0" \
  --report_to="wandb" \
  --push_to_hub
"""
# ... and its "SDXL Turbo training command".
DIFFUSERS_SDXL_TURBO_README = r"""
  --pretrained_model_name_or_path=stabilityai/sdxl-turbo \
  --pretrained_vae_model_name_or_path=madebyollin/sdxl-vae-fp16-fix \
  --output_dir="diffusion-sdxl-turbo-dpo" \
  --mixed_precision="fp16" \
  --dataset_name=kashif/pickascore \
  --train_batch_size=8 \
  --gradient_accumulation_steps=2 \
  --gradient_checkpointing \
  --use_8bit_adam \
  --rank=8 \
  --learning_rate=1e-5 \
  --report_to="wandb" \
  --lr_scheduler="constant" \
  --lr_warmup_steps=0 \
  --max_train_steps=2000 \
  --checkpointing_steps=500 \
  --run_validation --validation_steps=50 \
  --seed="0" \
  --report_to="wandb" \
  --is_turbo --resolution 512 \
  --push_to_hub
"""
# UnifiedReward's DiffusionDPO/launchers/turbo_dpo.sh, verbatim after `train.py` ($VARS expanded).
UNIFIEDREWARD_TURBO_LAUNCHER = r"""
  --pretrained_model_name_or_path=stabilityai/sdxl-turbo \
  --pretrained_vae_model_name_or_path=madebyollin/sdxl-vae-fp16-fix \
  --dataset_name=./turbo_dpo_dataset \
  --train_batch_size=32 \
  --dataloader_num_workers=0 \
  --gradient_accumulation_steps=16 \
  --max_train_steps=20 \
  --lr_scheduler="constant_with_warmup" --lr_warmup_steps=5 \
  --learning_rate=1e-8 --scale_lr \
  --cache_dir="~/.cache" \
  --checkpointing_steps 10 \
  --beta_dpo 5000 \
  --sdxl --resolution 512 --proportion_empty_prompts 0 \
  --output_dir="turbo-trial-beta5k-lr1e-8-bs32-accu16-warmup5"
"""


def command_line(text: str, replace: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> list[str]:
    """Shell text -> argv, with the values of ``replace``'s flags swapped (toy paths, small sizes), ``drop`` removed;
    a ``replace`` flag that the text lacks is appended (alone when its value is "")."""
    replace, seen, argv = dict(replace or {}), set(), []
    for token in shlex.split(text.replace("\\\n", " ")):
        flag, _, value = token.partition("=")
        if flag in drop:
            continue
        if flag in replace and value:
            token = f"{flag}={replace[flag]}"
            seen.add(flag)
        elif argv and argv[-1] in replace and not token.startswith("--"):
            token = replace[argv[-1]]
            seen.add(argv[-1])
        argv.append(token)
    extra = [(flag, value) for flag, value in replace.items() if flag not in seen]
    return argv + [item for flag, value in extra for item in ((flag, value) if value else (flag,))]


def image(size, seed: int) -> Image.Image:
    """A (width, height) image of bright random pixels: never black, so padding would show."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(60, 256, (size[1], size[0], 3), dtype=np.uint8))


def png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


PAIR_SIZES = [((16, 16), (16, 16)), ((24, 16), (16, 32)), ((16, 20), (20, 16)), ((32, 32), (16, 16)),
              ((16, 16), (24, 24)), ((20, 20), (20, 20)), ((16, 16), (16, 16))]
LABELS = [1, 0, 1, 1, 0, 0.5, 1]  # one tie (dropped): six strict pairs


def write_pairs(folder: Path) -> Path:
    """A sift_images-style save_to_disk DatasetDict of pairs of mixed sizes and aspect ratios."""
    from datasets import Dataset, DatasetDict

    rows = {"caption": [f"scene {i}" for i in range(len(LABELS))],
            "jpg_0": [png(image(a, 2 * i)) for i, (a, _) in enumerate(PAIR_SIZES)],
            "jpg_1": [png(image(b, 2 * i + 1)) for i, (_, b) in enumerate(PAIR_SIZES)], "label_0": LABELS}
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(str(folder))
    return folder


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def lora_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "pytorch_lora_weights.safetensors"))


def write_fake_bitsandbytes(folder: Path) -> Path:
    """An importable ``bitsandbytes`` whose ``optim.AdamW8bit`` is torch's AdamW and leaves a marker file; its
    ``nn`` layer classes exist only for the isinstance checks peft runs once it finds the package."""
    package = folder / "bitsandbytes"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        '"""Stand-in for bitsandbytes (needs CUDA) in tests."""\n'
        "import os\nimport types\n\nimport torch\n\n\n"
        "class AdamW8bit(torch.optim.AdamW):\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        super().__init__(*args, **kwargs)\n"
        "        open(os.environ['FAKE_BNB_MARKER'], 'w').write(repr(sorted(kwargs)))\n\n\n"
        "class _NotUsed(torch.nn.Linear):\n    pass\n\n\n"
        "optim = types.SimpleNamespace(AdamW8bit=AdamW8bit)\n"
        "nn = types.SimpleNamespace(Linear8bitLt=_NotUsed, Linear4bit=_NotUsed, Params4bit=_NotUsed,\n"
        "                           Int8Params=_NotUsed)\n"
    )
    return folder


# --------------------------------------------------------------------------- pairs of any sizes


def test_pairs_of_different_sizes_are_neither_padded_nor_cropped_apart():
    chosen, rejected = image((32, 16), 0), image((16, 48), 1)  # landscape 2:1 vs portrait 1:3
    pair = PairTransform(16, random_crop=False, random_flip=False)(chosen, rejected)
    assert pair.pixel_values.shape == (6, 16, 16)
    assert pair.pixel_values.min() > -0.6  # all content (>= 60/255): no black padding in either half
    assert pair.original_sizes == ((16, 32), (48, 16))  # (height, width) before resizing
    assert pair.crop_top_lefts == ((0, 8), (16, 0))  # each centre crop in its own resized image
    expected = np.asarray(rejected.resize((16, 48), Image.BILINEAR).crop((0, 16, 16, 32)), dtype=np.float32)
    assert np.allclose(pair.pixel_values[3:].permute(1, 2, 0).numpy(), expected / 127.5 - 1, atol=1e-6)


def test_random_crop_and_flip_treat_both_images_alike():
    picture = image((40, 16), 3)  # 16 x 40 after resizing: room for 25 crop positions
    for seed in range(8):
        pair = PairTransform(16, random_crop=True, random_flip=True)(
            picture, picture.copy(), torch.Generator().manual_seed(seed))
        assert torch.equal(pair.pixel_values[:3], pair.pixel_values[3:])  # same box, same flip
        assert pair.crop_top_lefts[0] == pair.crop_top_lefts[1]
    boxes = {PairTransform(16, random_crop=True)(picture, picture, torch.Generator().manual_seed(s)).crop_top_lefts
             for s in range(8)}
    assert len(boxes) > 1  # and it is random


def test_sdxl_time_ids_come_from_each_images_size_and_crop():
    from datasets import Dataset

    from integrations.diffusers.dpo_data import PreferenceSplit

    rows = Dataset.from_dict({"caption": ["x", "y"], "jpg_0": [png(image((32, 16), 0)), png(image((16, 16), 1))],
                              "jpg_1": [png(image((16, 48), 2)), png(image((20, 16), 3))], "label_0": [1, 0]})
    pairs = PreferencePairs(PreferenceSplit(rows, None, "test"), [0, 1], PairTransform(16, random_flip=False))
    batch = collate_pairs([pairs[0], pairs[1]])
    time_ids = script.sdxl_time_ids(batch["original_sizes"], batch["crop_top_lefts"], 16, "cpu", torch.float32)
    # [chosen 0, chosen 1, rejected 0, rejected 1]; row 1 prefers jpg_1 (16 high, 20 wide)
    assert time_ids.tolist() == [[16, 32, 0, 8, 16, 16], [16, 20, 0, 2, 16, 16],
                                 [48, 16, 16, 0, 16, 16], [16, 16, 0, 0, 16, 16]]


# --------------------------------------------------------------------------- layouts, read-only


def test_unifiedreward_sift_layout_is_read(tmp_path):
    folder = tmp_path / "turbo_dpo_dataset"
    (folder / "images_dpo").mkdir(parents=True)
    records = []
    for i in range(3):  # upstream's fields: string scores, file names relative to images_dpo/
        image((16, 16), i).save(folder / "images_dpo" / f"image_{i}_chosen.png")
        image((20, 16), 10 + i).save(folder / "images_dpo" / f"image_{i}_rejected.png")
        records.append({"prompt": f"p{i}", "id": f"image_dpo_{i}", "caption": f"p{i}", "jpg_0": f"image_{i}_chosen.png",
                        "jpg_1": f"image_{i}_rejected.png", "label_0": 1, "chosen_score": "9", "rejected_score": "3"})
    (folder / "dpo_data.json").write_text(json.dumps(records))
    before = folder_digest(folder)
    assert default_split(str(folder)) == "train"
    split = load_preference_split(str(folder), "train")
    assert split.layout == "unifiedreward" and len(split.rows) == 3
    item = PreferencePairs(split, [1], PairTransform(16, random_flip=False))[0]
    assert item["caption"] == "p1" and item["original_sizes"] == ((16, 16), (16, 20))  # chosen = jpg_0
    with pytest.raises(ValueError, match="one split"):
        load_preference_split(str(folder), "validation")
    assert folder_digest(folder) == before


def test_pickapic_hub_layout_copy_is_read_without_writing_to_it(tmp_path):
    """A local copy in the Hub's layout (data/<split>-*.parquet, Pick-a-Pic v2 columns, bytes and 0.5 ties)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "pickapic_v2"
    (folder / "data").mkdir(parents=True)
    for split, labels in (("train", [1.0, 0.0, 0.5]), ("validation", [0.0, 0.5])):
        table = pa.table({
            "are_different": [True] * len(labels), "caption": [f"{split} {i}" for i in range(len(labels))],
            "jpg_0": [png(image((16, 16), i)) for i in range(len(labels))],
            "jpg_1": [png(image((16, 24), 50 + i)) for i in range(len(labels))],
            "label_0": labels, "label_1": [1 - x for x in labels], "model_0": ["sdxl"] * len(labels),
        })
        pq.write_table(table, folder / "data" / f"{split}-00000-of-00001.parquet")
    before = folder_digest(folder)
    split = load_preference_split(str(folder), "validation", cache_dir=str(tmp_path / "cache"))
    indices, dropped = strict_preference_indices(split.rows)
    assert (indices, dropped) == ([0], 1)
    item = PreferencePairs(split, indices, PairTransform(16, random_flip=False))[0]
    assert item["caption"] == "validation 0" and item["original_sizes"] == ((24, 16), (16, 16))  # label 0: jpg_1 won
    assert folder_digest(folder) == before


def test_epoch_order_depends_on_seed_and_epoch_only():
    def order(seed, epoch):
        sampler = EpochShuffleSampler(32, seed)
        sampler.start_epoch(epoch)
        return list(sampler)

    assert order(5, 1) == order(5, 1) and order(5, 1)[0] == (1, order(5, 1)[0][1])
    assert order(5, 0) != order(5, 1) and order(5, 1) != order(6, 1)
    assert sorted(position for _, position in order(5, 1)) == list(range(32))


# --------------------------------------------------------------------------- flags


def test_diffusers_and_unifiedreward_command_lines_parse_with_their_meaning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "turbo_dpo_dataset").mkdir()  # the launcher's local data folder
    args = script.parse_args(command_line(DIFFUSERS_SD_README))
    assert args.use_8bit_adam and args.run_validation and args.push_to_hub and args.gradient_checkpointing
    assert args.validation_prompts == script.DIFFUSERS_VALIDATION_PROMPTS
    assert args.dataset_split_name == "validation"  # a Hub id: diffusers' default
    assert (args.learning_rate, args.lr_warmup_steps, args.report_to) == (1e-5, 0, "wandb")

    args = script.parse_args(command_line(UNIFIEDREWARD_TURBO_LAUNCHER))
    assert args.use_adafactor and args.gradient_checkpointing and args.scale_lr  # what --sdxl means upstream
    assert args.is_turbo and args.rescale_betas_zero_snr  # 'turbo' in the model name, as in UnifiedReward
    assert (args.proportion_empty_prompts, args.resolution, args.dataset_split_name) == (0.0, 512, "train")

    defaults = script.parse_args(["--pretrained_model_name_or_path", "m", "--dataset_name", "org/hub-set"])
    assert (defaults.learning_rate, defaults.lr_warmup_steps, defaults.resolution) == (5e-4, 500, None)
    assert defaults.dataset_split_name == "validation" and not defaults.rescale_betas_zero_snr


def test_help_lists_the_deliberate_differences(capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--beta_dpo", "--dataset_split_name", "--resolution", "--resume_from_checkpoint", "--sdxl"):
        assert f"\n  {flag}" in text


def test_is_turbo_gives_a_zero_terminal_snr_schedule(toy_world):
    base = ["--pretrained_model_name_or_path", toy_world["sd_model"], "--dataset_name", "unused"]
    plain, _, _, _ = script.load_components(script.parse_args(base))
    turbo, _, _, _ = script.load_components(script.parse_args(base + ["--is_turbo"]))
    assert plain.alphas_cumprod[-1] > 1e-4 and turbo.alphas_cumprod[-1] < 1e-9
    assert torch.isclose(turbo.alphas_cumprod[0], plain.alphas_cumprod[0], rtol=1e-4)
    with pytest.raises(ValueError, match="not an SDXL pipeline"):
        script.load_components(script.parse_args(base + ["--sdxl"]))


def test_unavailable_optimizer_tracker_hub_and_xformers_say_so(monkeypatch, caplog):
    from accelerate import PartialState
    from huggingface_hub import constants

    PartialState()
    params = [torch.nn.Parameter(torch.zeros(2))]
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails, as on any machine without it
    with pytest.raises(ImportError, match="--use_8bit_adam needs bitsandbytes"):
        script.build_optimizer(script.parse_args(["--pretrained_model_name_or_path", "m", "--dataset_name", "d",
                                                  "--use_8bit_adam"]), params)
    adafactor = script.build_optimizer(script.parse_args(["--pretrained_model_name_or_path", "m", "--dataset_name",
                                                          "d", "--use_adafactor"]), params)
    assert type(adafactor).__name__ == "Adafactor"
    with pytest.raises(ValueError, match="not installed"):
        script.resolve_report_to("no-such-tracker-installed")
    assert script.resolve_report_to("none") is None
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        script.create_hub_repo(script.parse_args(["--pretrained_model_name_or_path", "m", "--dataset_name", "d",
                                                  "--push_to_hub", "--output_dir", "x"]))
    monkeypatch.setattr("diffusers.utils.import_utils.is_xformers_available", lambda: False)
    with caplog.at_level("WARNING"):
        script.enable_xformers(torch.nn.Linear(1, 1))  # never called on it: xformers is absent
    assert "xformers is not installed" in caplog.text


def test_checkpoint_names_resolve_inside_output_dir_and_a_missing_one_is_an_error(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-10").mkdir()
    assert script.resolve_checkpoint(str(tmp_path), "checkpoint-2") == str(tmp_path / "checkpoint-2")
    assert script.resolve_checkpoint(str(tmp_path), str(tmp_path / "checkpoint-2")) == str(tmp_path / "checkpoint-2")
    assert script.resolve_checkpoint(str(tmp_path), "latest") == str(tmp_path / "checkpoint-10")
    assert script.resolve_checkpoint(str(tmp_path / "new"), "latest") is None  # diffusers: start a new run
    with pytest.raises(FileNotFoundError, match="checkpoint-3"):
        script.resolve_checkpoint(str(tmp_path), "checkpoint-3")


# --------------------------------------------------------------------------- real accelerate launch runs


@pytest.mark.slow
def test_diffusers_readme_sd_command_runs_two_steps(toy_world, tmp_path, monkeypatch):
    """The README's SD command with toy paths and sizes: wandb (absent) and the Hub (offline) fail clearly first;
    then it trains 2 steps under `accelerate launch`, with its fp16, 8-bit Adam (stand-in) and validation flags."""
    data = write_pairs(tmp_path / "data")
    toy = {"--pretrained_model_name_or_path": toy_world["sd_model"], "--dataset_name": str(data),
           "--output_dir": str(tmp_path / "out"), "--resolution": "16", "--train_batch_size": "2",
           "--max_train_steps": "2", "--validation_inference_steps": "2"}  # sizes and steps for CPU CI
    verbatim = script.parse_args(command_line(DIFFUSERS_SD_README, toy))
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="wandb"):
            script.main(verbatim)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        script.main(script.parse_args(command_line(DIFFUSERS_SD_README, {**toy, "--report_to": "none"})))
    assert not (tmp_path / "out" / "metrics.jsonl").exists()  # failed before any training

    fake = write_fake_bitsandbytes(tmp_path / "fake")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    monkeypatch.setenv("FAKE_BNB_MARKER", str(tmp_path / "bnb-used"))
    argv = command_line(DIFFUSERS_SD_README, {**toy, "--report_to": "none"}, drop=("--push_to_hub",))
    proof.accelerate_launch(argv)
    metrics = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(np.isfinite(m["loss"]) for m in metrics)
    assert "betas" in (tmp_path / "bnb-used").read_text()  # the 8-bit optimizer class was the one built
    assert len(list((tmp_path / "out" / "validation" / "step-2").glob("*.png"))) == 4  # diffusers' four prompts
    assert (tmp_path / "out" / "pytorch_lora_weights.safetensors").is_file()


@pytest.mark.slow
def test_resume_is_exact_and_the_input_folder_is_never_written(toy_world, tmp_path):
    """Straight 3 steps vs stopped at step 1 and resumed by checkpoint name: same pairs, crops, flips, empty
    prompts, noise and timesteps, so the final LoRA weights are equal (accumulation 2, epoch boundary crossed)."""
    data = write_pairs(tmp_path / "data")
    before = folder_digest(data)
    common = ["--pretrained_model_name_or_path", toy_world["sd_model"], "--dataset_name", str(data),
              "--resolution", "16", "--train_batch_size", "2", "--gradient_accumulation_steps", "2",
              "--max_train_steps", "3", "--checkpointing_steps", "1", "--learning_rate", "1e-2",
              "--random_crop", "--proportion_empty_prompts", "0.5", "--mixed_precision", "no", "--report_to", "none",
              "--seed", "3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proof.accelerate_launch(common + ["--output_dir", str(straight)])
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-1", resumed / "checkpoint-1")
    proof.accelerate_launch(common + ["--output_dir", str(resumed), "--resume_from_checkpoint", "checkpoint-1"])

    final, again, at_checkpoint = lora_weights(straight), lora_weights(resumed), lora_weights(straight / "checkpoint-1")
    assert final.keys() == again.keys()
    difference = max((final[k] - again[k]).abs().max().item() for k in final)
    update = max((final[k] - at_checkpoint[k]).abs().max().item() for k in final)
    assert update > 1e-4 and difference <= 1e-6, (difference, update)
    straight_steps = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    resumed_steps = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in resumed_steps] == [2, 3]
    assert [m["loss"] for m in resumed_steps] == pytest.approx([m["loss"] for m in straight_steps[1:]], abs=1e-6)
    assert folder_digest(data) == before  # no cache-*.arrow or anything else written into the input

    from datasets import load_from_disk

    assert len(load_from_disk(str(data))["train"]) == len(LABELS)


def test_two_process_launch_shards_an_epoch_and_resumes_exactly(toy_world, tmp_path):
    """`accelerate launch` with 2 gloo processes (a multi-GPU launch's layout): an epoch of the six strict pairs is
    3 steps of 2 x 1 pairs, and a run stopped at step 2 and resumed ends with the straight run's LoRA weights."""
    data = write_pairs(tmp_path / "data")
    common = ["--pretrained_model_name_or_path", toy_world["sd_model"], "--dataset_name", str(data),
              "--resolution", "16", "--train_batch_size", "1", "--checkpointing_steps", "2", "--learning_rate", "1e-2",
              "--random_crop", "--mixed_precision", "no", "--report_to", "none", "--seed", "3"]
    one_epoch = proof.accelerate_launch(common + ["--output_dir", str(tmp_path / "epoch"), "--num_train_epochs", "1"],
                                        config_file=proof.CPU_CONFIG_2PROC)
    assert "Total batch size = 2, optimization steps = 3" in one_epoch.stderr
    assert "Num processes: 2" in one_epoch.stderr

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proof.accelerate_launch(common + ["--output_dir", str(straight), "--max_train_steps", "4"],
                            config_file=proof.CPU_CONFIG_2PROC)
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    proof.accelerate_launch(common + ["--output_dir", str(resumed), "--max_train_steps", "4",
                                      "--resume_from_checkpoint", "checkpoint-2"], config_file=proof.CPU_CONFIG_2PROC)
    final, again = lora_weights(straight), lora_weights(resumed)
    update = max((final[k] - lora_weights(straight / "checkpoint-2")[k]).abs().max().item() for k in final)
    difference = max((final[k] - again[k]).abs().max().item() for k in final)
    assert update > 1e-4 and difference <= 1e-6, (difference, update)
