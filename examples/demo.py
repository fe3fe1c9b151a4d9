#!/usr/bin/env python
"""The UnifiedReward paper's three stages in miniature, end to end, with an HTML report.

    python examples/demo.py --work-dir demo-work --report-dir demo-report

(1) train a reward model with the shipped LLaMA-Factory recipe; (2) benchmark it before/after with
``unifiedreward bench`` on a GenAI-Bench-schema file; (3) sift a policy's answers and a diffusion model's
images into preference pairs; (4) DPO both (TRL ``DPOTrainer``, Diffusion-DPO); (5) re-score the aligned
models on held-out prompts. Every step is the real CLI a GPU user runs, as a subprocess with its own log
under ``WORK_DIR/logs``. Without ``--reward-model`` / ``--policy-model`` / ``--diffusion-model`` it runs on
the offline toy world (tiny random checkpoints built by ``unifiedreward toy build``), on CPU, in minutes.
See docs/demo.md for the GPU path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_stages import ground_truth  # noqa: E402
from demo_stages import report as report_writer  # noqa: E402
from demo_stages import results  # noqa: E402
from demo_stages.runner import REPO_ROOT, CommandFailed, Runner  # noqa: E402
from demo_stages.toy_inputs import (  # noqa: E402
    image_pair_items,
    image_score_items,
    read_json,
    split_prompts,
    write_answer_quality,
    write_genai_bench_image,
    write_policy_warmstart,
    write_quality_task,
    write_und_prompts,
)

logger = logging.getLogger("demo")
TOY_BASE_SOURCES = ("vlm_pretrain.py", "sft.py", "scenes.py", "qwen.py", "tokenization.py", "data.py")

RECIPE = REPO_ROOT / "integrations/llamafactory/recipes/qwen2_5vl_full_sft.yaml"
ACCELERATE_CPU = REPO_ROOT / "examples/diffusers/accelerate_cpu.yaml"
GEN_POINT_TEMPLATE = "image_generation.point_score.v1"
GEN_PAIR_TEMPLATE = "image_generation.pair_rank.v1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("demo-work"), help="checkpoints, data and logs")
    parser.add_argument("--report-dir", type=Path, default=Path("demo-report"), help="index.html + summary.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per command (the figures depend on it: another count, another reduction order)")
    parser.add_argument("--toy-pretrain-scale", type=float, default=1.0,
                        help="multiply the toy bases' pre-training steps (unifiedreward.toy.vlm_pretrain; tests)")
    parser.add_argument("--world-items", type=int, default=400,
                        help="records per toy world file (80%% train, 20%% held-out: the held-out prompts' pool)")
    parser.add_argument("--llamafactory-env", type=Path, default=REPO_ROOT / ".venv-llamafactory",
                        help="virtual env with llamafactory-cli")
    models = parser.add_argument_group("models (default: the toy world's)")
    models.add_argument("--reward-model", help="initial reward checkpoint to fine-tune (e.g. CodeGoat24/UnifiedReward-qwen-7b)")
    models.add_argument("--policy-model", help="understanding policy to align (e.g. Qwen/Qwen2.5-VL-7B-Instruct)")
    models.add_argument("--diffusion-model", help="text-to-image pipeline to align (e.g. stabilityai/sdxl-turbo)")
    models.add_argument("--server", help="OpenAI-compatible URL (vLLM) serving the *trained* reward model for "
                        "stages 3 and 5 (stage 2 benchmarks the checkpoints in-process)")
    models.add_argument("--served-model-name", help="model name on --server (default: the server's first)")
    models.add_argument("--device", default="cpu", help="torch device for in-process judges and generation")
    parser.add_argument("--lanes", type=int, default=None,
                        help="stages 3-6: run the understanding and the generation commands side by side (2) or one "
                        "after the other (1); the figures do not depend on it (default: 2 on CPU, 1 on a GPU, which "
                        "one 7B DPO fills)")
    parser.add_argument("--control", choices=sorted(ground_truth.CONTROLS), default="reversed",
                        help="stage 6: DPO again on the sifted pairs with chosen/rejected swapped in every pair "
                        "('reversed') or for a random half ('half')")
    sizes = parser.add_argument_group("schedule (toy defaults fit 2 CPU cores in about 5 minutes)")
    sizes.add_argument("--reward-pairs", type=int, default=300, help="toy quality pairs (80%% train, both orders)")
    sizes.add_argument("--reward-points", type=int, default=300, help="toy quality points (80%% train)")
    sizes.add_argument("--answer-points", type=int, default=240,
                       help="toy answer-quality points (80%% train, plus half as many badly formed answers)")
    sizes.add_argument("--reward-steps", type=int, default=800, help="LLaMA-Factory optimisation steps")
    sizes.add_argument("--reward-lr", type=float, default=3e-4)
    sizes.add_argument("--reward-batch-size", type=int, default=4)
    sizes.add_argument("--und-prompts", type=int, default=48, help="understanding prompts sifted for DPO")
    sizes.add_argument("--gen-prompts", type=int, default=64, help="generation prompts sifted for Diffusion-DPO")
    sizes.add_argument("--heldout-prompts", type=int, default=80, help="held-out prompts re-scored per model")
    sizes.add_argument("--num-candidates", type=int, default=4, help="answers / images per sifted prompt")
    sizes.add_argument("--heldout-candidates", type=int, default=8,
                       help="answers / images per held-out prompt (stages 5-6: more of them, less noise per prompt)")
    sizes.add_argument("--answer-tokens", type=int, default=12, help="policy answer length")
    sizes.add_argument("--warmstart-steps", type=int, default=None,
                       help="warm-start SFT steps of the policy before sifting (default: 150 for the toy policy, "
                       "0 = none for --policy-model)")
    sizes.add_argument("--warmstart-lr", type=float, default=3e-4)
    sizes.add_argument("--policy-lr", type=float, default=3e-4)
    sizes.add_argument("--policy-beta", type=float, default=0.1)
    sizes.add_argument("--policy-epochs", type=float, default=5.0)
    sizes.add_argument("--policy-sft-weight", type=float, default=0.2,
                       help="weight of TRL's 'sft' loss on the chosen answers added to DPO (RPO); 0 = plain DPO")
    sizes.add_argument("--diffusion-steps", type=int, default=80, help="Diffusion-DPO optimisation steps")
    sizes.add_argument("--diffusion-lr", type=float, default=1e-3)
    sizes.add_argument("--diffusion-beta", type=float, default=5000.0)
    sizes.add_argument("--diffusion-rank", type=int, default=8, help="LoRA rank of the Diffusion-DPO UNet")
    sizes.add_argument("--inference-steps", type=int, default=10, help="denoising steps per image")
    sizes.add_argument("--resolution", type=int, default=32, help="image size: generation and Diffusion-DPO")
    sizes.add_argument("--latent-sampling", choices=["sample", "mode"], default=None,
                       help="Diffusion-DPO VAE latents (default: 'mode' for the toy SD, whose encoder is random)")
    return parser.parse_args(argv)


class Demo:
    """The five stages; each method runs its commands and returns the numbers it measured."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = args.work_dir.resolve()
        lanes = args.lanes or (2 if args.device == "cpu" else 1)
        self.runner = Runner(self.work / "logs", threads=args.threads, lanes=lanes,
                             device_env={"CUDA_VISIBLE_DEVICES": ""} if args.device == "cpu" else {})
        self.unifiedreward = self.runner.script("unifiedreward")
        # filled in by the stages, in order
        self.world: dict = {}
        self.initial_reward = self.reward_model = self.policy = self.diffusion = ""
        self.prompts: dict[str, dict[str, Path]] = {}
        self.aligned_policy = self.aligned_lora = Path()

    # ------------------------------------------------------------------ helpers
    def judge_flags(self, style: str = "dash") -> list[str]:
        """How sift / sift_images / score reach the trained reward model: ``--server`` or the checkpoint."""
        if self.args.server:
            flag, name_flag = {"sift": ("--reward-server", "--reward-server-model"),
                               "underscore": ("--reward_server", "--served_model_name"),
                               "dash": ("--server", "--server-model")}[style]
            name = [name_flag, self.args.served_model_name] if self.args.served_model_name else []
            return [flag, self.args.server, *name]
        flag = {"sift": "--reward-model", "underscore": "--reward_model", "dash": "--model"}[style]
        return [flag, self.reward_model, "--device", self.args.device]

    # ------------------------------------------------------------------ stage 1
    def toy_bases(self) -> dict[str, str]:
        """The toy judge and policy to start from: pre-trained to see colours (``unifiedreward.toy.vlm_pretrain``),
        built once per machine into the cache, as a real run downloads its base models once."""
        roles = [role for role, given in (("judge", self.args.reward_model), ("policy", self.args.policy_model))
                 if not given]
        paths = {role: toy_base_dir(role, self.args.toy_pretrain_scale) for role in roles}
        self.runner.side_by_side(*(
            lambda role=role: self.runner.run(f"01-toy-{role}-base", [
                self.runner.python, "-m", "unifiedreward.toy.vlm_pretrain", role, str(paths[role]),
                "--steps-scale", str(self.args.toy_pretrain_scale)])
            for role in roles))
        return {role: str(path) for role, path in paths.items()}

    def train_reward(self) -> dict:
        args, run = self.args, self.runner
        world_dir = self.work / "world"
        run.run("01-toy-build", [self.unifiedreward, "toy", "build", str(world_dir), "--seed", str(args.seed),
                                  "--num-items", str(args.world_items)])
        self.world = read_json(world_dir / "manifest.json")
        bases = self.toy_bases()
        self.initial_reward = args.reward_model or bases["judge"]
        self.policy = args.policy_model or bases["policy"]

        data_dir = self.work / "reward-data"
        raw = {**write_quality_task(data_dir, args.reward_pairs, args.reward_points, args.seed),
               **write_answer_quality(data_dir, args.answer_points, args.seed)}
        for name, path in raw.items():
            run.run(f"01-convert-{name}", [
                self.unifiedreward, "convert", "toy", str(path), str(data_dir / f"{name}.jsonl"),
                "--media-dir", str(data_dir), "--split", "train", "--strict",
                "--dataset-info", str(data_dir), "--dataset-name", name, "--overwrite-entry",
            ])
        output_dir = self.work / "reward-trained"
        overrides = {
            "model_name_or_path": self.initial_reward, "trust_remote_code": "false",
            "dataset_dir": data_dir, "media_dir": data_dir, "dataset": ",".join(raw), "output_dir": output_dir,
            "preprocessing_num_workers": 1, "dataloader_num_workers": 0,
            "image_max_pixels": 56 * 56, "image_min_pixels": 56 * 56, "cutoff_len": 512,
            "freeze_vision_tower": "false", "freeze_multi_modal_projector": "false",
            "disable_gradient_checkpointing": "true", "per_device_train_batch_size": args.reward_batch_size,
            "gradient_accumulation_steps": 1, "learning_rate": args.reward_lr, "max_steps": args.reward_steps,
            "warmup_ratio": 0.05, "logging_steps": 5, "save_steps": 1_000_000, "plot_loss": "false",
            "overwrite_cache": "true", "seed": args.seed,
        }
        if args.device == "cpu":  # the recipe's bf16 + DeepSpeed need a GPU
            overrides.update({"bf16": "false", "deepspeed": "null"})
        cli = str(args.llamafactory_env / "bin" / "llamafactory-cli")
        run.run("01-llamafactory-train", [cli, "train", str(RECIPE), *(f"{k}={v}" for k, v in overrides.items())])
        self.reward_model = str(output_dir)
        return {"initial_model": self.initial_reward, "trained_model": self.reward_model,
                "recipe": str(RECIPE.relative_to(REPO_ROOT)), **results.llamafactory_log(output_dir)}

    # ------------------------------------------------------------------ stage 2
    def bench_reward(self) -> dict:
        bench_file = self.work / "bench" / "genai_bench_image.parquet"
        rows = write_genai_bench_image(self.work / "reward-data" / "toy_quality_pairs.raw.jsonl", bench_file)
        out = {"benchmark": "genai-bench-image", "rows": rows}
        for when, model in (("before", self.initial_reward), ("after", self.reward_model)):
            output = self.work / "bench" / when
            self.runner.run(f"02-bench-{when}", [
                self.unifiedreward, "bench", "--benchmark", "genai-bench-image", "--data", str(bench_file),
                "--model", model, "--mode", "logit", "--device", self.args.device,
                "--dtype", "float32" if self.args.device == "cpu" else "auto",
                "--seed", str(self.args.seed), "--output", str(output), "--no-progress",
            ])
            out[when] = results.bench_metrics(output / "metrics.json")
        out["points"] = self.judge_points()
        return out

    def judge_points(self) -> dict:
        """The trained judge's point scores of the held-out quality images against their gold quality."""
        gold = self.work / "reward-data" / "toy_quality_points.raw.jsonl"
        items = self.work / "bench" / "points.jsonl"
        ground_truth.judge_point_items(gold, items)
        scores = self.work / "bench" / "points_scores.jsonl"
        self.runner.run("02-score-points", [
            self.unifiedreward, "score", "--model", self.reward_model, "--device", self.args.device,
            "--template", GEN_POINT_TEMPLATE, "--mode", "logit", "--input", str(items),
            "--media-root", str(gold.parent), "--output", str(scores),
        ])
        return ground_truth.judge_points(gold, scores)

    # ------------------------------------------------------------------ stage 3
    def sift_pairs(self) -> dict:
        args = self.args
        und = split_prompts(write_und_prompts(self.work / "und-prompts", args.world_items, args.seed),
                            self.work / "prompts", {"train": args.und_prompts, "test": args.heldout_prompts})
        gen = split_prompts(Path(self.world["data"]["gen_prompts"]), self.work / "prompts",
                            {"train": args.gen_prompts, "test": args.heldout_prompts})
        self.prompts = {"und": und, "gen": gen}
        warmstart, _ = self.runner.side_by_side(self.sift_understanding_lane, self.sift_generation_lane)
        return {"policy_warmstart": warmstart, "understanding": results.sift_summary(self.work / "sift-und"),
                "generation": results.sift_summary(self.work / "sift-gen")}

    def sift_understanding_lane(self) -> dict | None:
        warmstart = self.warm_start_policy()
        self.sift_understanding("03-sift-policy-answers", self.policy, self.prompts["und"]["train"],
                                self.work / "sift-und", self.args.num_candidates)
        return warmstart

    def sift_generation_lane(self) -> None:
        self.diffusion = self.args.diffusion_model or self.pretrain_toy_diffusion()
        self.generate_images("03-generate-candidates", self.prompts["gen"]["train"], self.work / "candidates",
                             self.args.num_candidates)
        self.runner.run("03-sift-images", [
            self.runner.python, "-m", "integrations.diffusers.sift_images",
            "--candidates_dir", str(self.work / "candidates"), "--output_dir", str(self.work / "sift-gen"),
            *self.judge_flags("underscore"), "--mode", "logit",
        ])

    def warm_start_policy(self) -> dict | None:
        """A few SFT steps on correct, wrong and badly formed answers, so the toy policy's samples vary.

        The warmed-up policy is the one sifted, DPO'd and re-scored as "before": the comparison stays paired.
        """
        args = self.args
        steps = args.warmstart_steps if args.warmstart_steps is not None else (0 if args.policy_model else 150)
        if steps <= 0:
            return None
        data = write_policy_warmstart(self.work / "warmstart-data", 4 * steps, args.seed)
        output_dir = self.work / "policy-warm"
        self.runner.run("03-policy-warmstart", [
            self.runner.python, "examples/demo_stages/policy_warmstart.py", "--policy", self.policy,
            "--data", str(data), "--output-dir", str(output_dir), "--steps", str(steps),
            "--learning-rate", str(args.warmstart_lr), "--device", args.device, "--seed", str(args.seed),
        ])
        self.policy = str(output_dir)
        return results.read_json_if(output_dir / "warmstart_report.json")

    def pretrain_toy_diffusion(self) -> str:
        """The toy world's SD is random (it draws grey noise); half a minute of pre-training on the toy scenes
        gives it varied images (``unifiedreward.toy.sd_pretrain``), as a real base model has."""
        output_dir = self.work / "sd-pretrained"
        self.runner.run("03-toy-sd-pretrain", [
            self.runner.python, "-m", "unifiedreward.toy.sd_pretrain", self.world["sd_model"], str(output_dir),
            "--resolution", str(self.args.resolution), "--seed", str(self.args.seed), "--lighting_flaws", "1",
        ])
        return str(output_dir)

    def sift_understanding(self, name: str, policy: str, prompts: Path, output_dir: Path, candidates: int) -> None:
        media_dir = self.work / "und-prompts"
        self.runner.run(name, [
            self.unifiedreward, "sift", "--input", str(prompts), "--media-dir", str(media_dir),
            "--output-dir", str(output_dir), *self.judge_flags("sift"), "--policy", policy,
            "--num-candidates", str(candidates), "--max-new-tokens", str(self.args.answer_tokens),
            "--temperature", "1.0", "--mode", "logit", "--seed", str(self.args.seed), "--no-progress",
        ])

    def generate_images(self, name: str, prompts: Path, output_dir: Path, candidates: int,
                        lora: Path | None = None) -> None:
        args = self.args
        self.runner.run(name, [
            self.runner.python, "-m", "integrations.diffusers.generate_candidates",
            "--pretrained_model_name_or_path", self.diffusion, "--prompts", str(prompts), "--output_dir",
            str(output_dir), "--num_images_per_prompt", str(candidates), "--num_inference_steps",
            str(args.inference_steps), "--height", str(args.resolution), "--width", str(args.resolution),
            "--seed", str(args.seed), "--device", args.device, *(["--lora_weights", str(lora)] if lora else []),
        ])

    # ------------------------------------------------------------------ stage 4
    def align(self) -> dict:
        self.aligned_policy = self.work / "policy-dpo" / "dpo"
        self.aligned_lora = self.work / "sd-dpo"
        policy, diffusion = self.runner.side_by_side(
            lambda: self.train_policy("04-trl-dpo", self.work / "sift-und" / "pairs.jsonl", self.work / "policy-dpo"),
            lambda: self.train_diffusion("04-diffusion-dpo", self.work / "sift-gen", self.aligned_lora))
        return {"policy": policy, "diffusion": diffusion}

    def train_policy(self, name: str, pairs: Path, policy_run: Path) -> dict:
        """TRL DPO of the (warmed-up) policy on ``pairs``; the aligned policy lands in ``policy_run/dpo``."""
        args = self.args
        self.runner.run(name, [
            self.runner.python, "examples/trl/sift_then_dpo.py", "--policy", self.policy,
            "--pairs", str(pairs), "--output-dir", str(policy_run),
            "--num-train-epochs", str(args.policy_epochs), "--batch-size", "4", "--learning-rate", str(args.policy_lr),
            "--beta", str(args.policy_beta), "--sft-weight", str(args.policy_sft_weight), "--seed", str(args.seed),
            *(["--use-cpu"] if args.device == "cpu" else []),
        ])
        report = results.read_json_if(policy_run / "dpo_report.json") or {}
        report.pop("log_history", None)
        return report

    def train_diffusion(self, name: str, dataset: Path, lora_dir: Path) -> dict:
        """Diffusion-DPO of a LoRA on the base pipeline, on the Pick-a-Pic pairs in ``dataset``."""
        args = self.args
        latent_sampling = args.latent_sampling or ("sample" if args.diffusion_model else "mode")
        self.runner.run(name, [
            self.runner.script("accelerate"), "launch",
            *(["--config_file", str(ACCELERATE_CPU)] if args.device == "cpu" else []),
            "-m", "integrations.diffusers.train_diffusion_dpo",
            "--pretrained_model_name_or_path", self.diffusion, "--dataset_name", str(dataset),
            "--output_dir", str(lora_dir), "--rank", str(args.diffusion_rank),
            "--resolution", str(args.resolution), "--latent_sampling", latent_sampling,
            "--train_batch_size", "8", "--max_train_steps", str(args.diffusion_steps),
            "--learning_rate", str(args.diffusion_lr), "--beta_dpo", str(args.diffusion_beta),
            "--mixed_precision", "no" if args.device == "cpu" else "bf16", "--report_to", "none", "--seed", str(args.seed),
            "--checkpointing_steps", "1000000",
        ])
        return results.diffusion_dpo_metrics(lora_dir / "metrics.jsonl")

    # ------------------------------------------------------------------ stage 5
    def rescore(self) -> dict:
        understanding, generation = self.runner.side_by_side(self.rescore_understanding, self.rescore_generation)
        return {"understanding": understanding, **generation}

    def rescore_understanding(self) -> dict:
        scores = {}
        for when, policy in (("before", self.policy), ("after", str(self.aligned_policy))):
            output_dir = self.work / "heldout-und" / when
            self.sift_understanding(f"05-answers-{when}", policy, self.prompts["und"]["test"], output_dir,
                                    self.args.heldout_candidates)
            scores[when] = results.sift_scores(output_dir)
        return results.compare(scores)

    def rescore_generation(self) -> dict:
        gen_test = self.prompts["gen"]["test"]
        items = []
        for when, lora in (("before", None), ("after", self.aligned_lora)):
            output_dir = self.work / "heldout-gen" / when
            self.generate_images(f"05-images-{when}", gen_test, output_dir, self.args.heldout_candidates, lora)
            items.append((when, output_dir))
        score_input = self.work / "heldout-gen" / "items.jsonl"
        image_score_items(items, score_input)
        score_output = self.work / "heldout-gen" / "scores.jsonl"
        self.runner.run("05-score-images", [
            self.unifiedreward, "score", *self.judge_flags("dash"), "--template", GEN_POINT_TEMPLATE,
            "--mode", "logit", "--input", str(score_input), "--media-root", str(self.work / "heldout-gen"),
            "--output", str(score_output),
        ])
        pair_input = self.work / "heldout-gen" / "pairs.jsonl"
        image_pair_items(items[0][1], items[1][1], pair_input)
        pair_output = self.work / "heldout-gen" / "head_to_head.jsonl"
        self.runner.run("05-compare-images", [
            self.unifiedreward, "compare", *self.judge_flags("dash"), "--template", GEN_PAIR_TEMPLATE, "--swap",
            "--mode", "logit", "--input", str(pair_input), "--output", str(pair_output),
        ])
        return {"generation": results.compare(results.image_scores(score_output)),
                "generation_head_to_head": results.head_to_head(pair_output)}

    # ------------------------------------------------------------------ stage 6
    def control(self) -> dict:
        """The same DPO runs on the same pairs with chosen/rejected swapped (``--control``: in every pair, or for a
        random half), and the same held-out prompts: if the gain comes from the judge's preferences, the control
        must not show it."""
        understanding, generation = self.runner.side_by_side(self.control_understanding, self.control_generation)
        return {"control": self.args.control, "swapped_pairs": {"understanding": understanding["swapped"],
                                                                "generation": generation["swapped"]},
                "policy": understanding["training"], "diffusion": generation["training"]}

    def control_understanding(self) -> dict:
        pairs = self.work / "sift-und" / "pairs.control.jsonl"  # beside pairs.jsonl: same relative image paths
        swapped = ground_truth.write_control_pairs(self.work / "sift-und" / "pairs.jsonl", pairs, self.args.seed,
                                                   self.args.control)
        run_dir = self.work / "control" / "policy-dpo"
        training = self.train_policy("06-trl-dpo-control", pairs, run_dir)
        self.sift_understanding("06-answers-control", str(run_dir / "dpo"), self.prompts["und"]["test"],
                                self.work / "heldout-und" / "control", self.args.heldout_candidates)
        return {"swapped": swapped, "training": training}

    def control_generation(self) -> dict:
        control_dir = self.work / "control"
        swapped = ground_truth.write_control_image_pairs(self.work / "sift-gen", control_dir / "sift-gen",
                                                         self.args.seed, self.args.control)
        training = self.train_diffusion("06-diffusion-dpo-control", control_dir / "sift-gen", control_dir / "sd-dpo")
        self.generate_images("06-images-control", self.prompts["gen"]["test"], self.work / "heldout-gen" / "control",
                             self.args.heldout_candidates, control_dir / "sd-dpo")
        return {"swapped": swapped, "training": training}

    def ground_truth(self, summary: dict) -> dict:
        """The oracles' verdicts (``demo_stages.ground_truth``) on the held-out answers and images."""
        und_prompts = self.prompts["und"]["test"]
        answers = {when: ground_truth.answer_scores(und_prompts, self.work / "heldout-und" / when)
                   for when in ("before", "after", "control")}
        images = {when: ground_truth.image_scores(self.work / "heldout-gen" / when)
                  for when in ("before", "after", "control")}
        bench = summary["bench"]
        judge = {"accuracy": bench["after"]["diff"], "accuracy_before": bench["before"]["diff"],
                 "pairs": bench["rows"], **(bench.get("points") or {})}
        return ground_truth.section(
            judge, ground_truth.paired(answers["before"], answers["after"]),
            ground_truth.paired(images["before"], images["after"]),
            {"understanding": ground_truth.paired(answers["before"], answers["control"]),
             "generation": ground_truth.paired(images["before"], images["control"]),
             # the judge's pairs against the control's: how much of the gain the judge's preference explains
             "dpo_vs_control": {"understanding": ground_truth.paired(answers["control"], answers["after"]),
                                "generation": ground_truth.paired(images["control"], images["after"])},
             "kind": summary["control"]["control"], "swapped_pairs": summary["control"]["swapped_pairs"]})


def toy_base_dir(role: str, scale: float) -> Path:
    """Where the toy ``role`` base is cached: keyed by the code that builds it and the step scale."""
    cache = Path(os.environ.get("UNIFIEDREWARD_CACHE") or Path.home() / ".cache" / "unifiedreward-hooks")
    code = b"".join((REPO_ROOT / "unifiedreward" / "toy" / name).read_bytes() for name in TOY_BASE_SOURCES)
    key = hashlib.sha256(code + f"{role}:{scale}".encode()).hexdigest()[:12]
    return cache / "toy-vlm" / f"{role}-{key}"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    demo = Demo(args)
    summary: dict = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    stages = [
        ("reward", "1. train the reward model (LLaMA-Factory)", demo.train_reward),
        ("bench", "2. benchmark it before/after (unifiedreward bench)", demo.bench_reward),
        ("sift", "3. sift policy answers and generated images into pairs", demo.sift_pairs),
        ("dpo", "4. DPO the policy (TRL) and the diffusion model (Diffusion-DPO)", demo.align),
        ("rescore", "5. re-score the aligned models on held-out prompts", demo.rescore),
        ("control", f"6. control: DPO on the same pairs, {ground_truth.CONTROLS[args.control]}", demo.control),
    ]
    started = time.perf_counter()
    status = 0
    for name, title, method in stages:
        try:
            with demo.runner.stage(name, title):
                summary[name] = method()
        except CommandFailed as error:
            logger.error("%s", error)
            logger.error("stage %r failed; log: %s", name, error.log)
            summary["failed"] = {"stage": name, "error": str(error), "log": str(error.log)}
            status = 1
            break
    if status == 0 and not args.policy_model and not args.diffusion_model:  # the oracles know the toy world only
        summary["ground_truth"] = demo.ground_truth(summary)
    summary["stages"] = [vars(stage) for stage in demo.runner.stages]
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    summary["total_cpu_seconds"] = round(sum(stage.cpu_seconds for stage in demo.runner.stages), 1)
    paths = report_writer.write_report(summary, args.report_dir, demo.work)
    print(report_writer.text_summary(summary))
    print(f"report: {paths['html']}\nsummary: {paths['json']}")
    return status


if __name__ == "__main__":
    sys.exit(main())
