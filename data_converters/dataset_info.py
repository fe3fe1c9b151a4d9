"""Build LLaMA-Factory ``dataset_info.json`` entries and merge them into an existing file."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from typing import Any

from .writers import write_json_atomic

# OpenAI-style role/content tags, as in LLaMA-Factory's shipped ``mllm_demo`` entry.
MESSAGE_TAGS = {
    "role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system",
}


def dataset_info_entry(
    file_name: str,
    *,
    ranking: bool = False,
    num_samples: int | None = None,
) -> dict[str, Any]:
    """The ``dataset_info.json`` entry for a file written by this package's converters.

    Converter records always carry ``images`` and ``videos`` lists (possibly empty); a per-row
    system prompt is a leading ``system`` message (``system_tag``). ``num_samples`` makes
    LLaMA-Factory draw that many rows at random (upstream's ``random:N`` mix).
    """
    columns: dict[str, str] = {"messages": "messages", "images": "images", "videos": "videos"}
    if ranking:
        columns["chosen"] = "chosen"
        columns["rejected"] = "rejected"
    entry: dict[str, Any] = {"file_name": file_name, "formatting": "sharegpt"}
    if ranking:
        entry["ranking"] = True
    if num_samples is not None:
        entry["num_samples"] = int(num_samples)
    entry["columns"] = columns
    entry["tags"] = dict(MESSAGE_TAGS)
    return entry


def merge_dataset_info(
    path: str | os.PathLike[str], entries: dict[str, dict[str, Any]], overwrite: bool = False
) -> dict[str, Any]:
    """Add ``entries`` to the ``dataset_info.json`` at ``path`` (created if absent), atomically.

    Other datasets in the file are kept untouched. An existing entry with the same name but
    different content raises ``ValueError`` unless ``overwrite``; an identical one is a no-op.
    """
    path = os.fspath(path)
    with dataset_info_lock(path):
        return _merge_locked(path, entries, overwrite)


@contextlib.contextmanager
def dataset_info_lock(path: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``<path>.lock``: parallel registrations (one converter per dataset,
    all writing one ``dataset_info.json``) read-modify-write one at a time and lose no entry."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _merge_locked(path: str, entries: dict[str, dict[str, Any]], overwrite: bool) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
        if not isinstance(info, dict):
            raise ValueError(f"{path}: expected a JSON object of dataset entries")
    for name, entry in entries.items():
        if name in info and info[name] != entry and not overwrite:
            raise ValueError(f"{path}: dataset {name!r} already exists with different settings (use overwrite)")
        info[name] = entry
    write_json_atomic(path, info)
    return info
