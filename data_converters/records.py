"""Stream input rows from JSON arrays, JSONL and parquet in constant memory.

Every row comes with a human-readable location (``file.json:line 12``, ``file.parquet:row 7``) so
that validation errors point at the offending input. A row that cannot even be decoded is yielded
as a :class:`Row` whose ``error`` is set; the caller reports it and goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_CHUNK_CHARS = 1 << 16
_LOOKAHEAD = 64  # characters that must follow a decoded element before it is trusted
_WHITESPACE = " \t\r\n"


@dataclass
class Row:
    """One decoded input row (``data``) or the reason it could not be decoded (``error``)."""

    location: str
    data: dict[str, Any] | None = None
    error: str | None = None


def iter_rows(path: str | os.PathLike[str]) -> Iterator[Row]:
    """Yield the rows of ``path``; the format follows the extension (.json, .jsonl, .parquet)."""
    path = os.fspath(path)
    if path.endswith(".parquet"):
        yield from _iter_parquet(path)
    elif path.endswith((".jsonl", ".ndjson")):
        yield from _iter_jsonl(path)
    elif path.endswith(".json"):
        yield from _iter_json_array(path)
    else:
        raise ValueError(f"{path}: unsupported input format (expected .json, .jsonl or .parquet)")


def _as_row(location: str, value: Any) -> Row:
    if not isinstance(value, dict):
        return Row(location, error=f"expected a JSON object, got {type(value).__name__}")
    return Row(location, data=value)


def _iter_jsonl(path: str) -> Iterator[Row]:
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = f"{name}:line {line_number}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                yield Row(location, error=f"invalid JSON ({error.msg}, column {error.colno})")
                continue
            yield _as_row(location, value)


def _iter_json_array(path: str) -> Iterator[Row]:
    """Decode a top-level JSON array one element at a time.

    Only the current element (plus one read chunk) is held in memory. An element that fails to
    decode ends the stream with an error row, since the array's structure is lost from there on.
    """
    name = os.path.basename(path)
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as handle:
        buffer, pos, line_number, eof = "", 0, 1, False

        def fill() -> bool:
            """Append the next chunk, dropping what was already consumed."""
            nonlocal buffer, pos, eof
            chunk = "" if eof else handle.read(_CHUNK_CHARS)
            if not chunk:
                eof = True
                return False
            buffer, pos = buffer[pos:] + chunk, 0
            return True

        def next_char() -> str:
            """Skip whitespace (counting lines) and return the next character, '' at the end."""
            nonlocal pos, line_number
            while True:
                while pos < len(buffer) and buffer[pos] in _WHITESPACE:
                    line_number += buffer[pos] == "\n"
                    pos += 1
                if pos < len(buffer):
                    return buffer[pos]
                if not fill():
                    return ""

        if next_char() != "[":
            yield Row(f"{name}:line {line_number}", error="expected a JSON array ('[') at the top level")
            return
        pos += 1
        expect_value, empty = True, True
        while True:
            char = next_char()
            if not char:
                yield Row(f"{name}:line {line_number}", error="unexpected end of file inside the JSON array")
                return
            if char == "]" and (empty or not expect_value):
                return
            if not expect_value:
                if char != ",":
                    yield Row(f"{name}:line {line_number}", error=f"expected ',' or ']', found {char!r}")
                    return
                pos += 1
                expect_value = True
                continue
            location = f"{name}:line {line_number}"
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                    # A number at the chunk edge may be cut short: decode again with more text after it.
                    if end > len(buffer) - _LOOKAHEAD and fill():
                        continue
                    break
                except json.JSONDecodeError as error:
                    if fill():
                        continue
                    line = line_number + buffer.count("\n", pos, error.pos)
                    yield Row(f"{name}:line {line}", error=f"invalid JSON ({error.msg})")
                    return
            line_number += buffer.count("\n", pos, end)
            pos = end
            expect_value, empty = False, False
            yield _as_row(location, value)


def _iter_parquet(path: str, batch_size: int = 256) -> Iterator[Row]:
    import pyarrow.parquet as pq

    name = os.path.basename(path)
    row_number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        for value in batch.to_pylist():
            yield Row(f"{name}:row {row_number}", data=value)
            row_number += 1
