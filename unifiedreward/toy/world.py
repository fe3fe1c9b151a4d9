"""Build the whole offline toy world (checkpoints + data) into one directory and describe it in a manifest."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from .data import build_data, default_counts, read_jsonl
from .qwen import PixelLimits, QwenSize, build_qwen2_5_vl
from .sd import SDSize, build_stable_diffusion
from .tokenization import QWEN_SPECIAL_TOKENS, scene_texts, train_qwen_tokenizer

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_NUM_ITEMS = 100
WORLD_PARTS = ("reward-qwen2_5_vl", "policy-qwen2_5_vl", "sd", "data")


def build_world(
    out_dir: str | Path,
    seed: int = 0,
    num_items: int = DEFAULT_NUM_ITEMS,
    counts: dict[str, int] | None = None,
    reward_size: QwenSize = QwenSize(),
    policy_size: QwenSize = QwenSize(),
    pixels: PixelLimits = PixelLimits(),
    sd_size: SDSize = SDSize(),
) -> dict:
    """Write ``reward-qwen2_5_vl/``, ``policy-qwen2_5_vl/``, ``sd/``, ``data/`` and ``manifest.json``.

    Everything is a pure function of ``seed`` (and the sizes): two builds give identical files.
    ``num_items`` sets the records per data file (videos get a tenth); ``counts`` overrides single files.
    Returns the manifest, whose paths are absolute.
    """
    started = time.perf_counter()
    root = Path(out_dir).resolve()
    for part in WORLD_PARTS:  # a rebuild must not keep files of an earlier, larger world
        shutil.rmtree(root / part, ignore_errors=True)
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)

    tokenizer = train_qwen_tokenizer()
    reward_name, policy_name, sd_name, data_name = WORLD_PARTS
    reward_dir = build_qwen2_5_vl(root / reward_name, tokenizer, seed=seed, size=reward_size, pixels=pixels)
    policy_dir = build_qwen2_5_vl(root / policy_name, tokenizer, seed=seed + 1, size=policy_size, pixels=pixels)
    sd_dir = build_stable_diffusion(root / sd_name, scene_texts(), seed=seed, size=sd_size)
    data_files = build_data(root / data_name, seed=seed, counts={**default_counts(num_items), **(counts or {})})

    manifest = {
        "version": MANIFEST_VERSION,
        "seed": seed,
        "num_items": num_items,
        "root": str(root),
        "reward_model": str(reward_dir),
        "policy_model": str(policy_dir),
        "sd_model": str(sd_dir),
        "data_dir": str(root / data_name),
        "data": {name: str(path) for name, path in data_files.items()},
        "counts": {name: _split_counts(path) for name, path in data_files.items()},
        "special_tokens": {token: tokenizer.token_to_id(token) for token in QWEN_SPECIAL_TOKENS},
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    logger.info("toy world built in %.1fs at %s", manifest["build_seconds"], root)
    return manifest


def _split_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in read_jsonl(path):
        counts[record["split"]] = counts.get(record["split"], 0) + 1
    return counts


def load_world(out_dir: str | Path) -> dict | None:
    """The manifest of a complete world in ``out_dir`` (every listed path exists), else None."""
    manifest_path = Path(out_dir) / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("version") != MANIFEST_VERSION or Path(manifest.get("root", "")) != Path(out_dir).resolve():
        return None
    paths = [manifest["reward_model"], manifest["policy_model"], manifest["sd_model"], *manifest["data"].values()]
    return manifest if all(Path(path).exists() for path in paths) else None
