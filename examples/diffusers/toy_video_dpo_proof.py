#!/usr/bin/env python
"""Toy video DPO proof, offline on CPU: a text-to-video pipeline learns a judge's preference on held-out pairs.

    python examples/diffusers/toy_video_dpo_proof.py --work_dir demo-work/toy-video-dpo --json proof.json

1. toy world -> its SD pre-trained on toy scenes (``unifiedreward.toy.sd_pretrain``) -> a tiny AnimateDiff pipeline
   on it (``unifiedreward.toy.t2v``: zero-initialised motion adapter);
2. ``generate_candidates``: 4 clips (4 frames, 32 px, mp4) per prompt, 20% of the prompts held out as ``test``;
3. ``sift_videos.sift_video_candidates`` with :class:`VideoBrightnessJudge`, a rule judge behind the normal
   UnifiedReward API answering the ``video_generation.*`` templates in UnifiedReward's formats: the brighter clip wins;
4. ``accelerate launch integrations/diffusers/train_video_dpo.py`` (LoRA, CPU) with ``--eval_split test``;
5. the LoRA is loaded into the pipeline, which then draws the held-out prompts brighter than the base model.

The flow-matching objective (Flow-DPO) is proven the same way on the random tiny LTX-Video pipeline
(``unifiedreward.toy.t2v.build_ltx``), with clips drawn by the toy world's renderer (:func:`render_candidates`)
in place of the random pipeline's grey ones: steps 3-4 with real, shuffled and reversed labels.

Each proof also trains on a copy with exactly half the training pairs swapped (no net preference: the held-out
margin must stay near zero); the Flow-DPO one also on reversed labels (the opposite preference must be learned).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from reward_core.backends.base import AnswerLogprobs, Generation

sys.path.insert(0, str(Path(__file__).resolve().parent))
import toy_dpo_proof as image_proof  # noqa: E402  (its accelerate launcher serves both proofs)

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO_ROOT / "integrations" / "diffusers" / "train_video_dpo.py"
RESOLUTION = 32
NUM_FRAMES = 4
FLOW_NUM_FRAMES = 5  # the toy LTX-Video VAE takes 4k + 1 frames
LUMA = np.array([0.299, 0.587, 0.114])

logger = logging.getLogger(__name__)


def clip_luminance(frames) -> float:
    """Mean luminance in [0, 1] over the RGB PIL frames of a clip."""
    return float(np.mean([(np.asarray(frame, dtype=np.float64) / 255.0 @ LUMA).mean() for frame in frames]))


class VideoBrightnessJudge:
    """A rule judge backend answering like UnifiedReward's video templates: "Video 1 is better." / "Final Score: x".

    It decodes the clips it is given (``reward_core.media.load_video_frames``) and prefers the brighter one; point
    scores are on the 1-10 scale of ``video_generation.point_score.v1``.
    """

    def _value(self, video) -> float:
        from reward_core.media import load_video_frames

        return clip_luminance(load_video_frames(video, count=NUM_FRAMES))

    def _answer(self, media: list) -> str:
        if len(media) == 2:
            first, second = (self._value(video) for video in media)
            if first == second:
                return "Both videos are equally good."
            return "Video 1 is better." if first > second else "Video 2 is better."
        return f"Final Score: {1 + 9 * self._value(media[0]):.4f}"

    def generate(self, requests, max_new_tokens):
        return [Generation(text=self._answer(request.media)) for request in requests]

    def answer_logprobs(self, requests, candidates):
        return [AnswerLogprobs(error="VideoBrightnessJudge has no logit mode") for _ in requests]


def build_pipeline(world: dict, work_dir: Path, seed: int = 0) -> Path:
    """The pre-trained toy SD (reused when present) turned into a tiny AnimateDiff pipeline."""
    from unifiedreward.toy.sd_pretrain import PretrainSettings, pretrain_stable_diffusion
    from unifiedreward.toy.t2v import build_animatediff

    sd_dir = work_dir / "sd-pretrained"
    pretrain_stable_diffusion(world["sd_model"], sd_dir, PretrainSettings(seed=seed))
    pipeline_dir = work_dir / "animatediff"
    if not (pipeline_dir / "model_index.json").is_file():
        build_animatediff(sd_dir, pipeline_dir, seed=seed)
    return pipeline_dir


def write_prompts(path: Path, num_prompts: int, seed: int) -> Path:
    """Toy captions (20% held out as split ``test``) as ``generate_candidates`` prompts."""
    from unifiedreward.toy.data import make_gen_prompts, write_jsonl

    return write_jsonl(path, make_gen_prompts(num_prompts, seed=seed, held_out=0.2))


def generate_args(pipeline_dir: Path, prompts: Path, output_dir: Path, num_per_prompt: int = 4, seed: int = 0,
                  extra: list[str] = (), num_frames: int = NUM_FRAMES) -> list[str]:
    return [
        "--pretrained_model_name_or_path", str(pipeline_dir), "--prompts", str(prompts), "--output_dir",
        str(output_dir), "--num_images_per_prompt", str(num_per_prompt), "--batch_size", str(num_per_prompt),
        "--num_inference_steps", "2", "--seed", str(seed), "--height", str(RESOLUTION), "--width", str(RESOLUTION),
        "--num_frames", str(num_frames), "--fps", "4", "--device", "cpu", *extra,
    ]


def make_preference_data(pipeline_dir: Path, prompts: Path, work_dir: Path, seed: int = 0) -> dict:
    """Candidates -> UnifiedReward video sift with the rule judge -> ``work_dir/video_dpo``."""
    from integrations.diffusers.generate_candidates import main as generate_main
    from integrations.diffusers.sift_videos import sift_video_candidates
    from reward_core import UnifiedReward

    candidates = work_dir / "candidates"
    generate_main(generate_args(pipeline_dir, prompts, candidates, seed=seed))
    return sift_video_candidates(UnifiedReward(VideoBrightnessJudge()), candidates, work_dir / "video_dpo",
                                 progress=False)


def render_candidates(output_dir: Path, num_prompts: int, seed: int = 0, per_prompt: int = 4) -> Path:
    """A ``generate_candidates``-style folder whose clips come from the toy world's renderer instead of a pipeline:
    per caption, one moving-shape scene on ``per_prompt`` random backgrounds (20% of the prompts held out).

    The random flow-matching toy pipelines draw near-uniform grey clips, whose brightness differences are noise for
    any model to learn; rendered clips give the Flow-DPO proof pairs with a real, learnable preference.
    """
    from dataclasses import replace

    from reward_core.media import write_video
    from unifiedreward.toy.scenes import BACKGROUNDS, random_scene, render_video

    rng = random.Random(f"render_candidates:{seed}")
    records = []
    for index in range(num_prompts):
        scene, job_id = random_scene(rng), f"rendered-{index:05d}"
        videos = []
        for j, background in enumerate(rng.choices(list(BACKGROUNDS), k=per_prompt)):
            frames = render_video(replace(scene, background=background), rng, num_frames=FLOW_NUM_FRAMES,
                                  size=RESOLUTION)
            videos.append(f"videos/{job_id}/{j}.mp4")
            write_video(frames, output_dir / videos[-1], fps=4)
        split = "test" if index % 5 == 0 else "train"
        records.append({"id": job_id, "prompt": scene.video_caption(), "videos": videos, "meta": {"split": split}})
    (output_dir / "candidates.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    return output_dir


def shuffle_train_labels(data_dir: Path, out_dir: Path, seed: int, swap_fraction: float = 0.5) -> Path:
    """Copy of a sifted video dataset with ``swap_fraction`` of its ``train`` pairs, drawn at random, swapped
    (``test`` untouched). At 0.5 exactly half are swapped, so the labels carry no net preference (coin flips leave
    an imbalance, and on pairs as alike as the toy ones a LoRA learns its direction); at 1.0 every label is reversed."""
    from datasets import DatasetDict, load_from_disk

    dataset = load_from_disk(str(data_dir))
    count = len(dataset["train"])
    flips = [index < round(count * swap_fraction) for index in range(count)]
    random.Random(seed).shuffle(flips)

    def maybe_swap(row, index):
        if flips[index]:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
        return row

    train = dataset["train"].map(maybe_swap, with_indices=True)
    for column in ("chosen", "rejected"):  # relative paths: point them back at the original folder
        train = train.map(lambda row, c=column: {c: str(data_dir.resolve() / row[c])})
    test = dataset["test"].map(lambda row: {k: str(data_dir.resolve() / row[k]) for k in ("chosen", "rejected")})
    DatasetDict({"train": train, "test": test}).save_to_disk(str(out_dir))
    return out_dir


def train_args(pipeline_dir: Path, data_dir: Path, output_dir: Path, seed: int, steps: int = 30,
               checkpointing_steps: int = 15, evaluate: bool = True, num_frames: int = NUM_FRAMES) -> list[str]:
    """The proof's ``train_video_dpo.py`` flags: LoRA on CPU, held-out evaluation on split ``test``."""
    return [
        "--pretrained_model_name_or_path", str(pipeline_dir), "--dataset_name", str(data_dir), "--output_dir",
        str(output_dir), "--height", str(RESOLUTION), "--width", str(RESOLUTION), "--num_frames", str(num_frames),
        "--latent_sampling", "mode", "--train_batch_size", "8", "--max_train_steps", str(steps),
        "--learning_rate", "1e-3", "--rank", "8", "--beta_dpo", "5000", "--checkpointing_steps",
        str(checkpointing_steps), "--mixed_precision", "no", "--report_to", "none", "--seed", str(seed),
    ] + (["--eval_split", "test", "--eval_noise_draws", "4"] if evaluate else [])


def accelerate_launch(script_args: list[str], timeout: int = 900, processes: int = 1) -> subprocess.CompletedProcess:
    """``accelerate launch --config_file accelerate_cpu[_2proc].yaml train_video_dpo.py ...`` in a subprocess."""
    config = {1: image_proof.CPU_CONFIG, 2: image_proof.CPU_CONFIG_2PROC}[processes]
    return image_proof.accelerate_launch(script_args, timeout, train_script=TRAIN_SCRIPT, config_file=config)


@torch.no_grad()
def generation_shift(pipeline_dir: Path, lora_dir: Path, prompts: list[str]) -> dict:
    """Clip luminance of the base vs the DPO-tuned pipeline on ``prompts`` (same seed per prompt)."""
    from diffusers import DiffusionPipeline

    pipeline = DiffusionPipeline.from_pretrained(str(pipeline_dir))
    pipeline.set_progress_bar_config(disable=True)

    def draw() -> np.ndarray:
        generators = [torch.Generator().manual_seed(index) for index in range(len(prompts))]
        frames = pipeline(prompts, num_frames=NUM_FRAMES, num_inference_steps=4, generator=generators,
                          height=RESOLUTION, width=RESOLUTION, output_type="np").frames
        return (frames @ LUMA).mean(axis=(1, 2, 3))

    base = draw()
    pipeline.load_lora_weights(str(lora_dir))
    tuned = draw()
    if not np.isfinite(tuned).all():
        raise RuntimeError("The DPO-tuned pipeline produced non-finite frames.")
    return {"base": float(base.mean()), "tuned": float(tuned.mean()), "brighter_share": float((tuned > base).mean())}


def held_out_prompts(prompts: Path) -> list[str]:
    from unifiedreward.toy.data import read_jsonl

    return [record["prompt"] for record in read_jsonl(prompts) if record["split"] == "test"]


def flow_dpo_runs(work: Path, seeds: list[int], steps: int, num_prompts: int = 120) -> dict:
    """Flow-DPO on the toy LTX-Video pipeline over rendered clips: held-out results with the judge's labels, half of
    them swapped (no net preference) and all of them reversed (the opposite preference)."""
    from integrations.diffusers.sift_videos import sift_video_candidates
    from reward_core import UnifiedReward
    from unifiedreward.toy.t2v import build_ltx
    from unifiedreward.toy.tokenization import scene_texts

    ltx_dir = work / "ltx"
    if not (ltx_dir / "model_index.json").is_file():
        build_ltx(ltx_dir, scene_texts())
    data_dir = work / "flow_dpo"
    sift_video_candidates(UnifiedReward(VideoBrightnessJudge()), render_candidates(work / "rendered", num_prompts),
                          data_dir, progress=False)
    labelled_sets = {
        "real": data_dir,
        "shuffled": shuffle_train_labels(data_dir, work / "flow_dpo_shuffled", seed=0),
        "reversed": shuffle_train_labels(data_dir, work / "flow_dpo_reversed", seed=0, swap_fraction=1.0),
    }
    runs = {}
    for labels, labelled in labelled_sets.items():
        for seed in seeds:
            output_dir = work / f"ltx_lora_{labels}_seed{seed}"
            accelerate_launch(train_args(ltx_dir, labelled, output_dir, seed, steps, num_frames=FLOW_NUM_FRAMES))
            runs[f"ltx/{labels}/seed{seed}"] = json.loads((output_dir / "eval_results.json").read_text())
            logger.info("LTX-Video %s seed %d: %s", labels, seed, runs[f"ltx/{labels}/seed{seed}"])
    return runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work_dir", type=Path, default=Path("demo-work/toy-video-dpo"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Training seeds (one run each).")
    parser.add_argument("--num_prompts", type=int, default=120)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from unifiedreward.toy import build_world, load_world

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work = args.work_dir.resolve()
    world = load_world(work / "world") or build_world(work / "world")
    pipeline_dir = build_pipeline(world, work)
    prompts = write_prompts(work / "prompts.jsonl", args.num_prompts, seed=0)
    sifted = make_preference_data(pipeline_dir, prompts, work)
    shuffled = shuffle_train_labels(work / "video_dpo", work / "video_dpo_shuffled", seed=0)
    runs = {}
    for labels, data_dir in (("real", work / "video_dpo"), ("shuffled", shuffled)):
        for seed in args.seeds:
            output_dir = work / f"lora_{labels}_seed{seed}"
            accelerate_launch(train_args(pipeline_dir, data_dir, output_dir, seed, args.steps))
            runs[f"{labels}/seed{seed}"] = {
                **json.loads((output_dir / "eval_results.json").read_text()),
                "generation_luminance": generation_shift(pipeline_dir, output_dir, held_out_prompts(prompts)),
            }
            logger.info("%s seed %d: %s", labels, seed, runs[f"{labels}/seed{seed}"])
    runs.update(flow_dpo_runs(work, args.seeds, args.steps))
    report = {"sift": sifted, "runs": runs}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
