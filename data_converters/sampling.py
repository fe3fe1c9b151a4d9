"""Upstream's per-dataset sampling strategies (``all``, ``random:N``, ``first:N``, ``end:N``, ``N%``).

``first:N`` / ``end:N`` are applied while converting (:class:`RowSampler`); ``random:N`` and ``N%``
become LLaMA-Factory's ``num_samples`` in the ``dataset_info.json`` entry (:func:`num_samples`),
so LLaMA-Factory draws a fresh random subset (with replacement only beyond the file's size).
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_STRATEGY = re.compile(r"^(?:(all)|(random|first|end):(\d+)|(\d+(?:\.\d+)?)%)$")


@dataclass(frozen=True)
class SamplingStrategy:
    """A parsed strategy: ``kind`` is ``all`` | ``random`` | ``first`` | ``end`` | ``percent``."""

    kind: str = "all"
    amount: float = 0

    @classmethod
    def parse(cls, text: str) -> SamplingStrategy:
        match = _STRATEGY.match(text.strip())
        if match is None:
            raise ValueError(f"sampling strategy {text!r}: expected all, random:N, first:N, end:N or N%")
        if match.group(1):
            return cls()
        if match.group(2):
            amount = int(match.group(3))
            if amount <= 0:
                raise ValueError(f"sampling strategy {text!r}: N must be positive")
            return cls(match.group(2), amount)
        percent = float(match.group(4))
        if not 0 < percent <= 100:
            raise ValueError(f"sampling strategy {text!r}: the percentage must be in (0, 100]")
        return cls("percent", percent)

    def row_sampler(self) -> RowSampler:
        if self.kind in ("first", "end"):
            return RowSampler(self.kind, int(self.amount))
        return RowSampler()

    def num_samples(self, rows_written: int) -> int | None:
        """``num_samples`` for the dataset_info entry (``None``: use every row once)."""
        if self.kind == "random":
            return int(self.amount)
        if self.kind == "percent":
            return max(1, math.floor(rows_written * self.amount / 100))
        return None


class RowSampler:
    """Keeps every record (``all``), the first N or the last N (a bounded buffer)."""

    def __init__(self, kind: str = "all", limit: int = 0):
        self.kind, self.limit, self.written, self.dropped = kind, limit, 0, 0
        self._tail: collections.deque[dict[str, Any]] = collections.deque(maxlen=limit or None)

    def offer(self, record: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if self.kind == "end":
            if len(self._tail) == self.limit:
                self.dropped += 1
            self._tail.append(record)
            return
        if self.kind == "first" and self.written >= self.limit:
            self.dropped += 1
            return
        self.written += 1
        yield record

    def finish(self) -> Iterator[dict[str, Any]]:
        while self._tail:
            self.written += 1
            yield self._tail.popleft()
