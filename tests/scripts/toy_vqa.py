"""The toy world's image questions as a TRL prompt dataset, shared by the GRPO scripts here."""

from __future__ import annotations

import json
from pathlib import Path


def toy_vqa_dataset(world: str, count: int):
    """``(manifest, dataset)``: the first ``count`` toy questions, ``prompt`` as a chat and ``image`` as an Image."""
    from datasets import Dataset, Image

    manifest = json.loads((Path(world) / "manifest.json").read_text())
    questions = Path(manifest["data"]["und_prompts"])
    rows = [json.loads(line) for line in questions.read_text().splitlines()][:count]
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": r["question"]}], "image": str(questions.parent / r["image"])}
         for r in rows]
    ).cast_column("image", Image())
    return manifest, dataset
