"""Sample rows in the schemas of the released UnifiedReward training sets, with tiny real media.

The schemas follow upstream's LLaVA-NeXT loader (``llava/train/train.py``: ``image`` | ``images`` |
``video`` joined onto ``image_folder``; a ``video`` that is a folder is read as its sorted frames, an
``images`` list longer than 2 as the frames of one video: VideoDPO's 16 per pair, VideoFeedback's 8),
its ``train_data.yaml`` folders and the Think README (see shared/reference/upstream-unifiedreward.md).
The released files themselves cannot be downloaded here, so column names that no upstream code
confirms are marked ``assumed``. Prompts are rendered by reward_core's templates, with LLaVA's
``<image>`` tokens in front as in the released files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from reward_core.prompts import get_template
from unifiedreward.toy.data import write_video

IMAGE_SIZE = (56, 56)
FRAME_SIZE = (56, 56)


@dataclass(frozen=True)
class Family:
    """One released dataset (or half of one): its rows, the input file name and a note on the schema."""

    name: str
    file_name: str
    rows: list[dict[str, Any]]
    schema: str


def _image(root: Path, relative: str, color: tuple[int, int, int]) -> str:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", IMAGE_SIZE, color).save(path)
    return relative


def _video(root: Path, relative: str, shade: int) -> str:
    frames = [Image.new("RGB", FRAME_SIZE, (shade, 16 * i, 255 - shade)) for i in range(8)]
    write_video(frames, root / relative, fps=4)
    return relative


def _frames(root: Path, folder: str, shade: int, count: int = 8) -> list[str]:
    """``count`` frames of one video as a list of image paths (upstream's 8 frames per video)."""
    return [_image(root, f"{folder}/{index:02d}.jpg", (shade, 15 * index, 160)) for index in range(count)]


def _frame_folder(root: Path, relative: str, shade: int, frames: int = 6) -> str:
    for index in range(frames):  # unpadded numbers: natural order matters (frame_2 before frame_10)
        _image(root, f"{relative}/frame_{index * 5}.jpg", (shade, 30 * index, 90))
    return relative


def _turns(human: str, gpt: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]


def _prompt(key: str, **fields: str) -> str:
    return get_template(key).render(**fields)


def released_families(root: Path, rows_per_family: int = 2) -> list[Family]:
    """Write the media under ``root`` (the LLaVA ``image_folder``) and return the sample rows of every family."""
    root = Path(root)
    families: list[Family] = []

    def pairs_of_images(folder: str) -> list[dict]:
        rows = []
        for i in range(rows_per_family):
            images = [_image(root, f"{folder}/{i}_{slot}.png", (40 * i, 200, 60 * slot)) for slot in (0, 1)]
            text = _prompt("image_generation.pair_rank.v1", prompt=f"a green square number {i}")
            rows.append({"id": f"{folder}-{i}", "images": images,
                         "conversations": _turns("<image>\n <image>\n" + text, f"Image {1 + i % 2} is better.")})
        return rows

    families.append(Family("evalmuse_pairwise", "EvalMuse_pairwise.json", pairs_of_images("EvalMuse/images"),
                           "LLaVA items, images: [2], <image>\\n <image>\\n prompt (train_data.yaml EvalMuse/pairwise)"))
    families.append(Family("hpd", "HPD.json", pairs_of_images("HPD"), "LLaVA items, images: [2]"))
    families.append(Family("oip", "OIP.json", pairs_of_images("OIP"), "LLaVA items, images: [2]"))
    families.append(Family("evalmuse_pointwise", "EvalMuse_pointwise.json", [
        {"id": f"em-point-{i}", "image": _image(root, f"EvalMuse/images/p{i}.png", (10, 10 * i, 200)),
         "conversations": _turns("<image>\n" + _prompt("image_generation.point_score.v1", prompt=f"a blue cat {i}"),
                                 f"cat (object): 1\nblue (attribute): 1\nFinal Score: {3 + i % 3}")}
        for i in range(rows_per_family)], "LLaVA items, image: str"))
    families.append(Family("llava_critic_pairwise", "LLaVA-critic_pairwise.json", [
        {"id": f"critic-pair-{i}", "image": _image(root, f"LLaVA-critic/pairwise/{i}.png", (200, 90, 10 * i)),
         "conversations": _turns("<image>\n" + _prompt("image_understanding.pair_rank.v1", question="What is shown?",
                                                       answer1="An orange square.", answer2="A dog."),
                                 "Answer 1 is better. It describes the orange square; the second names a dog.")}
        for i in range(rows_per_family)], "LLaVA items, image: str; free-text targets (upstream issue #28)"))
    families.append(Family("llava_critic_pointwise", "LLaVA-critic_pointwise.json", [
        {"id": f"critic-point-{i}", "image": _image(root, f"LLaVA-critic/pointwise/{i}.png", (90, 10 * i, 10)),
         "conversations": _turns("<image>\n" + _prompt("image_understanding.point_score.v1",
                                                       question="What colour is it?", response="Brown."),
                                 f"The response names the colour correctly.\nFinal Score: {80 + i}")}
        for i in range(rows_per_family)], "LLaVA items, image: str, 0-100 score"))
    families.append(Family("videodpo", "VideoDPO.json", [
        {"id": f"videodpo-{i}",
         "images": [frame for slot in (0, 1)  # video 1's 8 frames, then video 2's
                    for frame in _frames(root, f"VideoDPO/frames/{i}_{slot}", 60 * slot + 10 * i)],
         "conversations": _turns("<image>\n" + _prompt("video_generation.pair_rank.v1", prompt=f"a ball {i}"),
                                 "Video 1 is better")}
        for i in range(rows_per_family)],
        "LLaVA items, images: 16 frames (8 of video 1, then 8 of video 2), one <image>: upstream's loader reads "
        "more than 2 images as one video (llava/train/train.py _get_item)"))
    families.append(Family("lift_hra", "LiFT-HRA.json", [
        {"id": f"lift-{i}", "video": _video(root, f"LiFT-HRA/{i}.mp4", 30 * i),
         "conversations": _turns("<image>\n" + _prompt("video_generation.point_score.v1", prompt=f"a bird {i}"),
                                 "visual quality: 3\ntemporal consistency: 3\ndynamic degree: 2\n"
                                 "text-to-video alignment: 3\nfactual consistency: 3\nFinal Score: 7")}
        for i in range(rows_per_family)], "LLaVA items, video: one mp4, one <image> for the video"))
    families.append(Family("videofeedback", "VideoFeedback.json", [
        {"id": f"vf-{i}", "images": _frames(root, f"VideoFeedback/frames/clip_{i}", 40 * i),
         "conversations": _turns("<image>\n" + _prompt("video_generation.point_score.v1", prompt=f"a car {i}"),
                                 "visual quality: 2\ntemporal consistency: 3\ndynamic degree: 3\n"
                                 "text-to-video alignment: 2\nfactual consistency: 3\nFinal Score: 5")}
        for i in range(rows_per_family)],
        "LLaVA items, images: 8 frames of one video, one <image> (image_folder VideoFeedback/frames in train_data.yaml)"))
    families.append(Family("sharegptvideo_pairwise", "ShareGPTVideo_pairwise.json", [
        {"id": f"sgv-pair-{i}", "video": _frame_folder(root, f"ShareGPTVideo/videos/v{i}", 20 * i, frames=11),
         "conversations": _turns("<image>\n" + _prompt("video_understanding.pair_rank.v1", question="What moves?",
                                                       answer1="A red bar.", answer2="Nothing."),
                                 "The first answer matches the video.\nOverall Judgment: Answer 1 is better than Answer 2.")}
        for i in range(rows_per_family)], "LLaVA items, video: a frame folder (ShareGPTVideo + videos)"))
    families.append(Family("sharegptvideo_pointwise", "ShareGPTVideo_pointwise.json", [
        {"id": f"sgv-point-{i}", "video": _frame_folder(root, f"ShareGPTVideo/videos/p{i}", 50 + 20 * i),
         "conversations": _turns("<image>\n" + _prompt("video_understanding.point_score.v1", question="What moves?",
                                                       response="A bar."), "Final Score: 4")}
        for i in range(rows_per_family)], "LLaVA items, video: a frame folder"))
    families.append(Family("think_cot", "ImageGen-CoT-Reward-5K.json", [
        {"images": [_image(root, f"ImageGen-CoT-Reward-5K/{i}_{slot}.png", (20, 100 * slot, 50 * i)) for slot in (0, 1)],
         "conversations": _turns(_prompt("think.image_generation.pair_rank", prompt=f"a tree {i}"),
                                 "<think>\n1. Semantic consistency: Image 1 (8/10); Image 2 (6/10)\nTotal score:\n"
                                 "Image 1: 8\nImage 2: 6\n</think>\n<answer>Image 1 is better</answer>")}
        for i in range(rows_per_family)], "Think README: conversations + images: [2], no <image> tokens"))
    families.append(Family("think_grpo", "grpo_train_data.json", [
        {"images": [_image(root, f"grpo/{i}_{slot}.png", (100, 20 * i, 100 * slot)) for slot in (0, 1)],
         "problem": _prompt("think.image_generation.pair_rank", prompt=f"a lake {i}"),
         "solution": "<answer>Image 2 is better</answer>"}
        for i in range(rows_per_family)], "Think grpo_train_data.json: {problem, solution, images}"))
    families.append(Family("unifiedreward_2_0_score", "UnifiedReward-2.0-T2X-score-data.parquet", [
        {"image": {"bytes": _png_bytes((30 * i, 60, 90)), "path": f"t2x_{i}.png"},
         "conversations": _turns("<image>\n" + _prompt("image_generation.point_score.v1", prompt=f"a hat {i}"),
                                 f"Final Score: {2 + i}")}
        for i in range(rows_per_family)], "assumed: HF parquet with embedded image bytes"))
    return families


def _png_bytes(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", IMAGE_SIZE, color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_family(family: Family, folder: Path) -> Path:
    """The family's rows as the released file type (JSON array, or parquet for HF-hosted data)."""
    import json

    path = Path(folder) / family.file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(family.rows), path)
    else:
        path.write_text(json.dumps(family.rows, indent=2), encoding="utf-8")
    return path
