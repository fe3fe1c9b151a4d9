"""Input files the demo feeds to the CLIs: toy reward-training data, a GenAI-Bench-schema file, prompt splits."""

from __future__ import annotations

import json
from pathlib import Path

from reward_core.toy.data import read_jsonl, write_jsonl
from reward_core.toy.tasks import make_quality_pairs, make_quality_points


def write_quality_task(data_dir: Path, num_pairs: int, num_points: int, seed: int) -> dict[str, Path]:
    """The toy *quality* judge task (stripe artifact = low quality), raw records with train/test splits."""
    return {
        "toy_quality_pairs": write_jsonl(data_dir / "toy_quality_pairs.raw.jsonl",
                                         make_quality_pairs(data_dir, num_pairs, seed=seed)),
        "toy_quality_points": write_jsonl(data_dir / "toy_quality_points.raw.jsonl",
                                          make_quality_points(data_dir, num_points, seed=seed)),
    }


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


def image_score_items(runs: list[tuple[str, Path]], out_path: Path) -> int:
    """``unifiedreward score --input`` rows for every image of some ``generate_candidates`` runs.

    ``runs`` are ``(name, output_dir)`` with ``output_dir`` directly under ``out_path``'s folder; ids read
    ``name/prompt id/candidate index`` and media paths are relative to that folder.
    """
    items = []
    for name, candidates_dir in runs:
        for record in read_jsonl(candidates_dir / "candidates.jsonl"):
            for index, image in enumerate(record["images"]):
                items.append({"id": f"{name}/{record['id']}/{index}", "media": [f"{candidates_dir.name}/{image}"],
                              "fields": {"prompt": record["prompt"]}})
    write_jsonl(out_path, items)
    return len(items)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
