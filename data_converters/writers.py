"""Write outputs all-or-nothing (:mod:`reward_core.atomic_files`): a temporary file in the target folder,
renamed on success; a killed run's temporary files are removed by the next write of the same output."""

from __future__ import annotations

import json
import os
from typing import IO, Any

from reward_core.atomic_files import atomic_open

__all__ = ["atomic_open", "write_json_atomic", "write_jsonl_line"]


def write_jsonl_line(stream: IO[str], record: dict[str, Any]) -> None:
    stream.write(json.dumps(record, ensure_ascii=False))
    stream.write("\n")


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> None:
    with atomic_open(path) as stream:
        json.dump(value, stream, ensure_ascii=False, indent=2)
        stream.write("\n")
