"""Write ``datasets`` splits as a folder that ``datasets.load_dataset(path)`` reads: the Hub's parquet layout.

A ``save_to_disk`` folder only opens with ``load_from_disk``; ``load_dataset`` refuses it, and the frameworks'
own example scripts (TRL's ``dpo_vlm.py``, diffusers' ``train_diffusion_dpo.py``) call ``load_dataset``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def split_file(folder: str | os.PathLike, split: str) -> Path:
    """Where a split lives: ``data/<split>-00000-of-00001.parquet`` (the Hub's file naming, so the split keeps its name)."""
    return Path(folder) / "data" / f"{split}-00000-of-00001.parquet"


def write_dataset_folder(splits: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Each split (a ``datasets.Dataset``) as one parquet file under ``path``; ``load_dataset(path)`` gives them back.

    Media cells given as paths (``Image`` features) are embedded as bytes, so the folder stands alone. The folder
    is built under a temporary name and swapped in whole: a reader sees the previous folder or the new one.
    """
    from datasets.table import embed_table_storage

    path = Path(path)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for split, dataset in splits.items():
        target = split_file(staging, split)
        target.parent.mkdir(parents=True, exist_ok=True)
        embedded = dataset.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True)
        embedded.with_format(None).to_parquet(str(target))
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)
    return path
