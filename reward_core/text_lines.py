"""Read a text file line by line in bytes, so one undecodable line fails alone.

Every JSONL reader of the project (score, sift, sift_images, bench, convert) goes through
:func:`iter_lines`: a line that is not UTF-8 (Latin-1 bytes are common in scraped caption files) is
yielded with its line number and the reason, the lines after it are still read, and a last line cut
by an interrupted write (no newline, and its bytes do not decode) is reported as torn.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    """One line of a file: its 1-based ``number`` and ``text`` (no line ending), or why it is unreadable."""

    number: int
    text: str | None
    error: str | None = None
    complete: bool = True  # False for a last line without a newline (maybe cut by an interrupted write)


def iter_lines(path: str | os.PathLike[str], *, skip_blank: bool = True) -> Iterator[Line]:
    """Yield the lines of ``path`` (``\\n`` or ``\\r\\n`` endings; blank lines skipped unless asked).

    Opening the file may raise ``OSError``; once open, a line never raises: a line that is not UTF-8
    comes back with ``text=None`` and ``error`` naming the first bad byte and its column.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            complete = raw.endswith(b"\n")
            raw = raw.rstrip(b"\r\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield Line(number, None, _decode_problem(raw, error, complete), complete)
                continue
            if skip_blank and not text.strip():
                continue
            yield Line(number, text, None, complete)


def _decode_problem(raw: bytes, error: UnicodeDecodeError, complete: bool) -> str:
    if not complete and error.end == len(raw) and error.reason == "unexpected end of data":
        return f"torn last line: its final multi-byte character is cut ({len(raw)} bytes, no newline; an interrupted write)"
    return f"not UTF-8: byte 0x{raw[error.start]:02x} at column {error.start + 1} ({error.reason})"
