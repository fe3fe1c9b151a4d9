"""Read benchmark rows from local files (json / jsonl / csv / parquet), a saved HF dataset, or the Hub.

``datasets`` and ``pyarrow`` are optional and imported only when a source needs them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reward_core.text_lines import iter_lines

HF_PREFIX = "hf:"


def iter_records(source: str | Path, *, subset: str | None = None, split: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield the rows of ``source`` as plain dicts, in file order.

    ``source`` is a ``.json`` (a list of rows, or a dict holding one), ``.jsonl``, ``.csv`` or
    ``.parquet`` file, a directory written by ``Dataset.save_to_disk``, or ``hf:<repo_id>`` for
    ``datasets.load_dataset(repo_id, subset, split=split)``.
    """
    text = str(source)
    if text.startswith(HF_PREFIX):
        yield from _iter_hf(_load_hub(text[len(HF_PREFIX):], subset, split))
        return
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"benchmark data not found: {path}")
    if path.is_dir():
        yield from _iter_hf(_load_from_disk(path, split))
        return
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _iter_jsonl(path)
    elif suffix == ".json":
        yield from _json_rows(json.loads(path.read_text(encoding="utf-8")), path)
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            yield from csv.DictReader(handle)
    elif suffix == ".parquet":
        yield from _iter_parquet(path)
    else:
        raise ValueError(f"unsupported benchmark file {path.name!r}: use .json, .jsonl, .csv, .parquet or a dataset dir")


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    # An unreadable line stays a row (keeping the row count honest): the loader reports it as invalid.
    for line in iter_lines(path):
        if line.error is not None:
            yield {"__error__": f"line {line.number}: {line.error}"}
            continue
        try:
            yield json.loads(line.text)
        except json.JSONDecodeError as exc:
            yield {"__error__": f"line {line.number}: invalid JSON ({exc.msg})"}


def _json_rows(data: Any, path: Path) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) == 1:
            return lists[0]
    raise ValueError(f"{path}: expected a JSON list of rows (or a dict holding exactly one list)")


def _iter_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading .parquet needs pyarrow: pip install pyarrow") from exc
    for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
        yield from batch.to_pylist()


def _datasets():
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("loading HF datasets needs the `datasets` package: pip install datasets") from exc
    return datasets


def _load_hub(repo_id: str, subset: str | None, split: str | None):
    datasets = _datasets()
    loaded = datasets.load_dataset(repo_id, subset)
    return _pick_split(loaded, split, repo_id)


def _load_from_disk(path: Path, split: str | None):
    return _pick_split(_datasets().load_from_disk(str(path)), split, str(path))


def _pick_split(loaded: Any, split: str | None, name: str):
    if not hasattr(loaded, "keys"):  # a single Dataset
        return loaded
    if split is None:
        if len(loaded) != 1:
            raise ValueError(f"{name} has splits {sorted(loaded.keys())}: choose one with --split")
        split = next(iter(loaded.keys()))
    if split not in loaded:
        raise ValueError(f"{name} has no split {split!r} (has {sorted(loaded.keys())})")
    return loaded[split]


def _iter_hf(dataset: Any) -> Iterator[dict[str, Any]]:
    """Rows of a ``datasets.Dataset``; image columns stay encoded ({"bytes", "path"}) until judged."""
    datasets = _datasets()
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    yield from dataset
