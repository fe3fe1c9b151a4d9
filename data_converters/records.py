"""Stream input rows from JSON arrays, JSONL and parquet in constant memory.

Every row comes with a human-readable location (``file.json:line 12``, ``file.parquet:row 7``) so
that validation errors point at the offending input. A row that cannot even be decoded is yielded
as a :class:`Row` whose ``error`` is set; the caller reports it and goes on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from reward_core.text_lines import iter_lines

_CHUNK_CHARS = 1 << 16
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
    for line in iter_lines(path):
        location = f"{name}:line {line.number}"
        if line.error is not None:
            yield Row(location, error=line.error)
            continue
        try:
            value = json.loads(line.text)
        except json.JSONDecodeError as error:
            yield Row(location, error=f"invalid JSON ({error.msg}, column {error.colno})")
            continue
        yield _as_row(location, value)


def _iter_json_array(path: str) -> Iterator[Row]:
    """Decode a top-level JSON array one element at a time.

    Only the current element (plus one read chunk) is held in memory. An element that fails to
    decode is delimited by a scanner that tracks strings and bracket depth, reported, and the next
    one is read: one broken element never loses the rows after it. A string cut by a raw newline
    (invalid JSON) ends at that newline, so the scanner resynchronises on the next line.
    """
    name = os.path.basename(path)
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:  # bad bytes fail their element only
        elements = _ArrayElements(handle)
        if not elements.open_array():
            yield Row(f"{name}:line {elements.line}", error="expected a JSON array ('[') at the top level")
            return
        for line, value, problem in elements:
            location = f"{name}:line {line}"
            yield Row(location, error=problem) if problem is not None else _as_row(location, value)


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as decoded by "surrogateescape"


def _not_utf8(escaped: str) -> str:
    return f"not UTF-8: byte 0x{ord(escaped) - 0xDC00:02x}"


_STRING_STOP = re.compile(r'["\\\n]')
_STRUCTURE_STOP = re.compile(r'["\[\]{},\n]')


class _ArrayElements:
    """Split the text of a top-level JSON array into element texts, chunk by chunk.

    Iterating yields ``(line, value, None)`` per element, or ``(line, None, reason)`` for an
    element that does not decode or a malformed array (a missing ',' is reported and scanning goes
    on). After a broken element, the fragments up to the next object that decodes belong to it
    and are skipped silently. Each element is first decoded by the C decoder in place (fast); only when that fails is
    the element's extent found by the scanner, decoded again (it may just have crossed the end of
    the buffer) or reported.
    """

    def __init__(self, handle: IO[str]):
        self.handle, self.buffer, self.pos, self.line, self.eof = handle, "", 0, 1, False
        self.decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        chunk = "" if self.eof else self.handle.read(_CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        self.buffer, self.pos = self.buffer[self.pos:] + chunk, 0
        return True

    def _peek(self) -> str:
        """Skip whitespace (counting lines); the next character, '' at the end of the file."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in _WHITESPACE:
                self.line += self.buffer[self.pos] == "\n"
                self.pos += 1
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self._fill():
                return ""

    def open_array(self) -> bool:
        if self._peek() != "[":
            return False
        self.pos += 1
        return True

    def __iter__(self) -> Iterator[tuple[int, Any, str | None]]:
        expect_value, recovering = True, False
        while True:
            char = self._peek()
            if not char:
                yield self.line, None, "unexpected end of file inside the JSON array"
                return
            if char == "]":
                return
            if char == "," and not expect_value:
                self.pos += 1
                expect_value = True
                continue
            line = self.line
            if not expect_value and not recovering:
                yield line, None, f"expected ',' or ']' before this element, found {char!r}"
            if char == ",":  # an empty element (",,"): report it, keep going
                if not recovering:
                    yield line, None, "empty array element"
                self.pos += 1
                continue
            value, problem, complete = self._next_element()
            if recovering and (problem is not None or not isinstance(value, dict)):
                pass  # the rest of a broken element: skipped until the next object decodes
            else:
                recovering = problem is not None
                yield line, value, problem
            if not complete:
                return
            expect_value = False

    def _next_element(self) -> tuple[Any, str | None, bool]:
        """(value, None, True) | (None, reason, True) | (None, reason, False) at the end of the file."""
        try:
            value, end = self.decoder.raw_decode(self.buffer, self.pos)
            if end < len(self.buffer) - 1 or self.eof:  # a scalar at the buffer's edge may continue
                undecodable = _UNDECODABLE.search(self.buffer, self.pos, end)
                self.line += self.buffer.count("\n", self.pos, end)
                self.pos = end
                return (None, _not_utf8(undecodable.group()), True) if undecodable else (value, None, True)
        except json.JSONDecodeError:
            pass
        text, complete = self._scan_element()
        if not complete:
            return None, "unexpected end of file inside an array element", False
        undecodable = _UNDECODABLE.search(text)
        if undecodable:
            return None, _not_utf8(undecodable.group()), True
        try:
            return json.loads(text), None, True
        except json.JSONDecodeError as error:
            return None, f"invalid JSON ({error.msg})", True

    def _scan_element(self) -> tuple[str, bool]:
        """Consume one element: up to the ',' or ']' at array level. Returns (text, reached a delimiter)."""
        parts, depth, in_string = [], 0, False
        while True:
            if self.pos >= len(self.buffer) and not self._fill():
                return "".join(parts), False
            stop = (_STRING_STOP if in_string else _STRUCTURE_STOP).search(self.buffer, self.pos)
            if stop is None:
                parts.append(self.buffer[self.pos:])
                self.pos = len(self.buffer)
                continue
            char, end = stop.group(), stop.end()
            if char == "\\":  # an escape: keep the next character whatever it is
                if end >= len(self.buffer):
                    parts.append(self.buffer[self.pos:end])
                    self.pos = end
                    if not self._fill():
                        return "".join(parts), False
                    end = 1
                    parts.append(self.buffer[:end])
                    self.pos = end
                    continue
                end += 1
            elif char == "\n":
                self.line += 1
                in_string = False  # JSON strings hold no raw newline: the string was broken here
            elif char == '"':
                in_string = not in_string
            elif char in "[{":
                depth += 1
            elif char in "]}":
                if depth == 0 and char == "]":
                    parts.append(self.buffer[self.pos:stop.start()])
                    self.pos = stop.start()
                    return "".join(parts), True
                depth = max(0, depth - 1)
            elif char == "," and depth == 0:
                parts.append(self.buffer[self.pos:stop.start()])
                self.pos = stop.start()
                return "".join(parts), True
            parts.append(self.buffer[self.pos:end])
            self.pos = end


def _iter_parquet(path: str, batch_size: int = 256) -> Iterator[Row]:
    """Rows of a parquet file, row group by row group: an unreadable group is one error row
    (naming its rows) and the groups after it are still read."""
    import pyarrow.parquet as pq

    name = os.path.basename(path)
    parquet = pq.ParquetFile(path)
    row_number = 0
    for group in range(parquet.num_row_groups):
        group_end = row_number + parquet.metadata.row_group(group).num_rows
        try:
            for batch in parquet.iter_batches(batch_size=batch_size, row_groups=[group]):
                for value in batch.to_pylist():
                    yield Row(f"{name}:row {row_number}", data=value)
                    row_number += 1
        except Exception as error:  # pyarrow raises OSError / ArrowInvalid for corrupt pages
            yield Row(f"{name}:rows {row_number}-{group_end - 1}", error=f"unreadable row group {group} ({error})")
        row_number = group_end
