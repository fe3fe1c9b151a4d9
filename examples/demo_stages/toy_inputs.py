"""Input files the demo feeds to the CLIs: toy reward-training data, a GenAI-Bench-schema file, prompt splits."""

from __future__ import annotations

import json
import random
from pathlib import Path

from integrations.diffusers.generate_candidates import CANDIDATES_FILE
from unifiedreward.toy.data import QUESTIONS, make_und_pairs, make_und_points, make_und_prompts, read_jsonl, write_jsonl
from unifiedreward.toy.scenes import COLOURS, SHAPES
from unifiedreward.toy.tasks import LIT_BACKGROUNDS, make_quality_pairs, make_quality_points

QUALITY_IMAGE_SIZE = 32  # the toy generator's resolution (the judge's processor resizes to its 56 x 56)
QUALITY_IMAGE_BLUR = 1.0  # Gaussian radius: the toy generator's images are soft
FILLER_WORDS = ("the", "is", "it", "a", "shape", "image", *COLOURS, *SHAPES)
UND_QUESTIONS = (QUESTIONS[0],)  # the toy understanding task: "What colour is the shape?" (what the toy bases see)
ANSWER_OFF_TOPIC = 1 / 3  # share of the answer-quality rows that answer another question ("It is a circle."): they
# score by the asked attribute they name, 0 unless they name the right colour


def write_quality_task(data_dir: Path, num_pairs: int, num_points: int, seed: int) -> dict[str, Path]:
    """The toy *lighting* judge task, raw records with train/test splits: quality 5 - k has k of its four
    quadrants in shadow (a quarter of the light), on a lit background, drawn at the toy generator's resolution
    and softened as it draws (the base generator is pre-trained on the same kind of scenes, see
    ``unifiedreward.toy.sd_pretrain --lighting_flaws``)."""
    options = {"flaws": ("shadow",), "backgrounds": LIT_BACKGROUNDS, "size": QUALITY_IMAGE_SIZE,
               "blur": QUALITY_IMAGE_BLUR}
    return {
        "toy_quality_pairs": write_jsonl(data_dir / "toy_quality_pairs.raw.jsonl",
                                         make_quality_pairs(data_dir, num_pairs, seed=seed, **options)),
        "toy_quality_points": write_jsonl(data_dir / "toy_quality_points.raw.jsonl",
                                          make_quality_points(data_dir, num_points, seed=seed, **options)),
    }


def gibberish(answer: str, rng: random.Random) -> str:
    """A badly formed answer: toy-vocabulary words in random order, or the reference cut short."""
    if rng.random() < 0.5:
        return " ".join(rng.choice(FILLER_WORDS) for _ in range(rng.randint(1, 6)))
    return " ".join(answer.split()[: rng.randint(0, 1)]) or rng.choice(FILLER_WORDS)


def write_answer_quality(data_dir: Path, num_points: int, seed: int) -> dict[str, Path]:
    """The toy *answer quality* judge task (0-100, the sift's understanding point template).

    ``make_und_points`` rows (correct, partly and fully wrong answers, a third of them answering another question,
    scored by the share of asked-about attributes they get right) plus, on the same images and questions, badly
    formed answers scored 0.
    """
    rng = random.Random(f"answer_quality:{seed}")
    rows = make_und_points(data_dir, num_points, seed=seed + 1000, name="answer_quality", off_topic=ANSWER_OFF_TOPIC,
                           questions=UND_QUESTIONS)
    bad = [{**row, "id": f"{row['id']}-bad", "response": gibberish(row["response"], rng), "score": 0}
           for row in rows[: num_points // 2]]
    return {"toy_answer_quality": write_jsonl(data_dir / "toy_answer_quality.raw.jsonl", rows + bad)}


def write_policy_warmstart(data_dir: Path, num_items: int, seed: int) -> Path:
    """Warm-start SFT rows for the toy policy: a mix of correct, wrong and badly formed answers.

    Images and questions are fresh scenes (not the sift or held-out prompts). Half of the rows carry the
    correct answer, a quarter a wrong one, a quarter gibberish, so the warmed-up policy samples the range
    of answers a judge can rank.
    """
    rng = random.Random(f"policy_warmstart:{seed}")
    rows = []
    for row in make_und_pairs(data_dir, num_items, seed=seed + 2000, name="policy_warmstart", questions=UND_QUESTIONS):
        good, wrong = (row["answer1"], row["answer2"]) if row["winner"] == 1 else (row["answer2"], row["answer1"])
        draw = rng.random()
        answer = good if draw < 0.5 else wrong if draw < 0.75 else gibberish(good, rng)
        rows.append({"image": row["image"], "question": row["question"], "answer": answer})
    return write_jsonl(data_dir / "policy_warmstart.jsonl", rows)


def write_genai_bench_image(pairs_path: Path, out_path: Path) -> int:
    """Held-out toy pairs as a GenAI-Bench ``image_generation`` parquet (images embedded, ``vote_type``).

    Returns the number of rows. Column layout follows TIGER-Lab/GenAI-Bench: ``prompt``, ``left_image``,
    ``right_image`` (HF Image structs ``{"bytes", "path"}``), ``vote_type`` (``leftvote`` / ``rightvote``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = pairs_path.parent
    rows = []
    for record in read_jsonl(pairs_path):
        if record["split"] != "test":
            continue
        left, right = ({"bytes": (root / path).read_bytes(), "path": Path(path).name} for path in record["images"])
        rows.append({"id": record["id"], "prompt": record["prompt"], "left_image": left, "right_image": right,
                     "vote_type": "leftvote" if record["winner"] == 1 else "rightvote"})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out_path)
    return len(rows)


def split_prompts(source: Path, out_dir: Path, limits: dict[str, int]) -> dict[str, Path]:
    """``source`` JSONL rows per ``split`` ("train" / "test"), the first ``limits[split]`` of each.

    Media paths stay relative, so the written files keep ``source``'s folder as their media root.
    """
    rows = read_jsonl(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, limit in limits.items():
        chosen = [row for row in rows if row["split"] == split][:limit]
        if not chosen:
            raise ValueError(f"{source} has no {split!r} rows")
        paths[split] = write_jsonl(out_dir / f"{source.stem}.{split}.jsonl", chosen)
    return paths


def candidate_records(candidates_dir: Path) -> list[dict]:
    """The per-prompt records (``id``, ``prompt``, ``images`` relative to the folder) of a
    ``generate_candidates`` run."""
    return read_jsonl(candidates_dir / CANDIDATES_FILE)


def image_score_items(runs: list[tuple[str, Path]], out_path: Path) -> int:
    """``unifiedreward score --input`` rows for every image of some ``generate_candidates`` runs.

    ``runs`` are ``(name, output_dir)`` with ``output_dir`` directly under ``out_path``'s folder; ids read
    ``name/prompt id/candidate index`` and media paths are relative to that folder.
    """
    items = []
    for name, candidates_dir in runs:
        for record in candidate_records(candidates_dir):
            for index, image in enumerate(record["images"]):
                items.append({"id": f"{name}/{record['id']}/{index}", "media": [f"{candidates_dir.name}/{image}"],
                              "fields": {"prompt": record["prompt"]}})
    write_jsonl(out_path, items)
    return len(items)


def image_pair_items(before_dir: Path, after_dir: Path, out_path: Path) -> int:
    """``unifiedreward compare --input`` rows: each image of ``before_dir`` (media 1) against the image the
    aligned model drew for the same prompt and seed in ``after_dir`` (media 2); ids read ``prompt id/index``.

    Both folders are ``generate_candidates`` outputs directly under ``out_path``'s folder.
    """
    after = {record["id"]: record for record in candidate_records(after_dir)}
    items = []
    for record in candidate_records(before_dir):
        if record["id"] not in after:
            continue
        pairs = zip(record["images"], after[record["id"]]["images"])
        for index, (first, second) in enumerate(pairs):
            items.append({"id": f"{record['id']}/{index}", "fields": {"prompt": record["prompt"]},
                          "media": [f"{before_dir.name}/{first}", f"{after_dir.name}/{second}"]})
    write_jsonl(out_path, items)
    return len(items)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_und_prompts(data_dir: Path, num_items: int, seed: int) -> Path:
    """The understanding prompts to sift and hold out: toy-world ``und_prompts`` rows (80 % train, 20 % test) asking
    the demo's questions (``UND_QUESTIONS``); images under ``data_dir``."""
    rows = make_und_prompts(data_dir, num_items, seed, questions=UND_QUESTIONS)
    return write_jsonl(data_dir / "und_prompts.jsonl", rows)
