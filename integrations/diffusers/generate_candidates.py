"""Generate N candidate images (or videos) per prompt with any diffusers text-to-image / text-to-video pipeline.

    python -m integrations.diffusers.generate_candidates --pretrained_model_name_or_path stabilityai/sdxl-turbo \\
        --prompts prompts.jsonl --num_images_per_prompt 10 --output_dir candidates \\
        --num_inference_steps 1 --guidance_scale 0 [--lora_weights diffusion-dpo-lora]

``prompts.jsonl`` has one object per line with ``prompt`` (or ``caption``) and optionally ``id``; other keys are kept
as metadata. Each image has its own seed (``seed + prompt_index * num_images_per_prompt + j``, one generator per
image), so any candidate can be regenerated alone. Output::

    output_dir/images/<id>/<j>.png
    output_dir/images/<id>/candidates.json   # written last: its presence marks the prompt complete
    output_dir/candidates.jsonl              # every complete prompt: id, prompt, images (relative), seeds, meta
    output_dir/summary.json

Text-to-video pipelines (AnimateDiff, TextToVideoSD, CogVideoX, Wan, LTX, ...: their output has ``.frames``) write
``output_dir/videos/<id>/<j>.mp4`` at ``--fps`` instead (the record next to them lists ``videos``); ``--num_frames``
sets the clip length. A rerun skips complete prompts; a prompt whose generation fails is logged, counted, and retried
next run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from reward_core.media import write_video

logger = logging.getLogger(__name__)

CANDIDATES_FILE = "candidates.jsonl"
PROMPT_RECORD = "candidates.json"


@dataclass
class PromptJob:
    index: int
    id: str
    prompt: str
    seeds: list[int]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationSummary:
    prompts: int = 0
    generated: int = 0
    skipped: int = 0
    failed: int = 0
    images_written: int = 0  # candidates written: images, or videos for a text-to-video pipeline
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)


def read_prompts(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Prompt records from a JSONL file (``prompt`` or ``caption`` required); ids default to the line index."""
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        record = json.loads(line)
        text = record.get("prompt", record.get("caption"))
        if not isinstance(text, str):
            raise ValueError(f"{path}:{number + 1}: no 'prompt' or 'caption' string")
        records.append(record)
    return records


def plan_jobs(records: list[dict[str, Any]], num_images_per_prompt: int, seed: int) -> list[PromptJob]:
    jobs, seen = [], set()
    for index, record in enumerate(records):
        job_id = str(record.get("id", f"prompt-{index:06d}"))
        if job_id in seen or "/" in job_id or job_id in ("", ".", ".."):
            raise ValueError(f"Prompt id {job_id!r} is duplicated or not a valid folder name.")
        seen.add(job_id)
        base = seed + index * num_images_per_prompt
        meta = {k: v for k, v in record.items() if k not in ("id", "prompt", "caption")}
        text = record.get("prompt", record.get("caption"))
        jobs.append(PromptJob(index, job_id, text, [base + j for j in range(num_images_per_prompt)], meta))
    return jobs


def find_record(output_dir: Path, job_id: str) -> Path | None:
    """The prompt's record: under ``images/<id>/`` (image pipelines) or ``videos/<id>/`` (video pipelines)."""
    for kind in ("images", "videos"):
        record_path = output_dir / kind / job_id / PROMPT_RECORD
        if record_path.is_file():
            return record_path
    return None


def is_complete(output_dir: Path, job: PromptJob) -> bool:
    record_path = find_record(output_dir, job.id)
    if record_path is None:
        return False
    record = json.loads(record_path.read_text(encoding="utf-8"))
    media = record.get("images", record.get("videos", []))
    return record.get("seeds") == job.seeds and all((output_dir / p).is_file() for p in media)


def write_prompt_record(output_dir: Path, job: PromptJob, candidates: list, fps: float = 8) -> None:
    """Save the images (PIL) or videos (lists of PIL frames), then atomically write the record marking completion."""
    is_video = isinstance(candidates[0], list)
    kind = "videos" if is_video else "images"
    folder = output_dir / kind / job.id
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for j, candidate in enumerate(candidates):
        name = f"{kind}/{job.id}/{j}.{'mp4' if is_video else 'png'}"
        if is_video:
            write_video(candidate, output_dir / name, fps=fps)
        else:
            candidate.save(output_dir / name)
        paths.append(name)
    record = {"id": job.id, "prompt": job.prompt, kind: paths, "seeds": job.seeds, "meta": job.meta}
    if is_video:
        record["fps"] = fps
    tmp = folder / (PROMPT_RECORD + ".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, folder / PROMPT_RECORD)


def video_frames(frames: Any) -> list[list[Image.Image]]:
    """A video pipeline's ``.frames`` (lists of PIL, a ``(B, F, H, W, C)`` array in [0, 1] or uint8, or a
    ``(B, F, C, H, W)`` tensor in [0, 1]) -> one list of RGB PIL frames per video."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().float().cpu().permute(0, 1, 3, 4, 2).numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim != 5:
            raise ValueError(f"Expected (batch, frames, height, width, channels) video frames, got {frames.shape}.")
        if frames.dtype != np.uint8:
            if not np.isfinite(frames).all():
                raise ValueError("The pipeline produced non-finite video frames.")
            frames = (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
        return [[Image.fromarray(frame) for frame in video] for video in frames]
    return [[frame.convert("RGB") for frame in video] for video in frames]


def generate_prompt(pipeline, job: PromptJob, batch_size: int, device: str, call_kwargs: dict[str, Any]) -> list:
    """All candidates of one prompt, ``batch_size`` per pipeline call, one seeded generator per candidate.

    Image pipelines give PIL images, video pipelines (output ``.frames``) lists of PIL frames.
    """
    candidates = []
    for start in range(0, len(job.seeds), batch_size):
        seeds = job.seeds[start : start + batch_size]
        generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        output = pipeline(prompt=[job.prompt] * len(seeds), generator=generators, **call_kwargs)
        batch = video_frames(output.frames) if hasattr(output, "frames") else list(output.images)
        if len(batch) != len(seeds):
            raise ValueError(f"The pipeline returned {len(batch)} candidates for {len(seeds)} seeds.")
        candidates.extend(batch)
    return candidates


def collect_candidates(output_dir: Path, jobs: list[PromptJob]) -> int:
    """Rewrite ``candidates.jsonl`` from the per-prompt records of complete prompts, in input order."""
    lines = []
    for job in jobs:
        record_path = find_record(output_dir, job.id)
        if record_path is not None:
            lines.append(record_path.read_text(encoding="utf-8").strip())
    tmp = output_dir / (CANDIDATES_FILE + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, output_dir / CANDIDATES_FILE)
    return len(lines)


def generate_candidates(
    pipeline,
    prompts: list[dict[str, Any]],
    output_dir: str | os.PathLike,
    num_images_per_prompt: int = 10,
    seed: int = 0,
    batch_size: int = 4,
    progress: bool = True,
    fps: float = 8,
    **call_kwargs: Any,
) -> GenerationSummary:
    """Generate the missing candidates of ``prompts`` into ``output_dir``; ``call_kwargs`` go to the pipeline.

    ``fps`` is the frame rate written into the mp4 files of a text-to-video pipeline (ignored for images).
    """
    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(prompts, num_images_per_prompt, seed)
    summary = GenerationSummary(prompts=len(jobs))
    todo = [job for job in jobs if not is_complete(output_dir, job)]
    summary.skipped = len(jobs) - len(todo)
    if summary.skipped:
        logger.info("Resuming: %d of %d prompts already complete.", summary.skipped, len(jobs))
    device = pipeline.device.type
    pipeline.set_progress_bar_config(disable=True)
    for job in tqdm(todo, desc="prompts", disable=not progress):
        try:
            images = generate_prompt(pipeline, job, batch_size, device, call_kwargs)
            write_prompt_record(output_dir, job, images, fps=fps)
        except Exception as error:  # one bad prompt must not stop the run
            logger.error("Prompt %s failed: %s", job.id, error)
            summary.failed += 1
            summary.errors[job.id] = f"{type(error).__name__}: {error}"
            continue
        summary.generated += 1
        summary.images_written += len(images)
    collect_candidates(output_dir, jobs)
    summary.seconds = round(time.perf_counter() - started, 2)
    (output_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2), encoding="utf-8")
    logger.info(
        "Candidates: %d prompts, %d generated, %d skipped (complete), %d failed, %d candidates in %.1fs.",
        summary.prompts, summary.generated, summary.skipped, summary.failed, summary.images_written, summary.seconds,
    )
    return summary


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrained_model_name_or_path", required=True)
    parser.add_argument("--prompts", required=True, help="JSONL with 'prompt' (or 'caption') and optional 'id'.")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_images_per_prompt", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=4, help="Images per pipeline call.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_inference_steps", type=int, default=None)
    parser.add_argument("--guidance_scale", type=float, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--num_frames", type=int, default=None, help="Video pipelines: frames per clip.")
    parser.add_argument("--fps", type=float, default=8, help="Video pipelines: frame rate of the written mp4.")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--variant", default=None)
    parser.add_argument("--lora_weights", default=None,
                        help="LoRA to load into the pipeline (e.g. train_diffusion_dpo.py's --output_dir).")
    parser.add_argument("--torch_dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--device", default=None, help="Default: cuda if available, else cpu.")
    parser.add_argument("--max_prompts", type=int, default=None)
    return parser.parse_args(input_args)


def main(input_args: list[str] | None = None) -> GenerationSummary:
    from diffusers import DiffusionPipeline

    args = parse_args(input_args)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = DiffusionPipeline.from_pretrained(
        args.pretrained_model_name_or_path,
        revision=args.revision,
        variant=args.variant,
        dtype=getattr(torch, args.torch_dtype),
    ).to(device)
    if args.lora_weights:
        pipeline.load_lora_weights(args.lora_weights)
    prompts = read_prompts(args.prompts)[: args.max_prompts]
    call_kwargs = {
        name: getattr(args, name)
        for name in ("num_inference_steps", "guidance_scale", "height", "width", "num_frames")
        if getattr(args, name) is not None
    }
    summary = generate_candidates(
        pipeline, prompts, args.output_dir, args.num_images_per_prompt, args.seed, args.batch_size, fps=args.fps,
        **call_kwargs,
    )
    if summary.failed:
        raise SystemExit(f"{summary.failed} prompts failed; rerun to retry them (see {args.output_dir}/summary.json).")
    return summary


if __name__ == "__main__":
    main()
