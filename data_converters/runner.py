"""Drive a row converter over an input file: stream, validate, report, write atomically."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from .records import iter_rows
from .report import ConversionFailed, ConversionReport, NoRowsConverted, RowError
from .sampling import RowSampler
from .writers import atomic_open, write_jsonl_line

logger = logging.getLogger(__name__)

RowConverter = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def convert_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    convert_row: RowConverter,
    *,
    strict: bool = False,
    progress: bool = False,
    sampler: RowSampler | None = None,
) -> ConversionReport:
    """Convert every row of ``input_path`` with ``convert_row`` into JSONL at ``output_path``.

    ``convert_row`` returns the output record, ``None`` to leave a valid row out (a filter), or
    raises :class:`RowError` for an invalid row: the row is reported with its line/row number and
    skipped. With ``strict`` the first invalid row raises
    :class:`ConversionFailed` instead. The output file only appears once the whole input is done,
    and never when no row survives (:class:`NoRowsConverted`). ``sampler`` keeps the first or last
    N valid rows (upstream's ``first:N`` / ``end:N``); the others count as filtered.
    """
    report = ConversionReport(input_path=os.fspath(input_path), output_path=os.fspath(output_path))
    sampler = sampler or RowSampler()
    layout = VideoLayout()
    with atomic_open(output_path) as stream:
        for row in tqdm(iter_rows(input_path), desc="convert", unit="row", disable=not progress):
            report.rows_read += 1
            try:
                if row.error is not None:
                    raise RowError(row.error)
                record = convert_row(row.data)
                if record is not None:
                    layout.check(record)
            except RowError as error:
                if strict:
                    raise ConversionFailed(f"{row.location}: {error}") from error
                report.add_problem(row.location, str(error))
                continue
            if record is None:
                report.rows_filtered += 1
                continue
            for kept in sampler.offer(record):
                write_jsonl_line(stream, kept)
        for kept in sampler.finish():
            write_jsonl_line(stream, kept)
        report.rows_written, report.rows_filtered = sampler.written, report.rows_filtered + sampler.dropped
        if report.rows_written == 0:
            raise NoRowsConverted(report)
    for problem in report.problems[:20]:
        logger.warning("skipped %s", problem)
    logger.info(report.summary())
    return report


class VideoLayout:
    """All videos of one output file must be files or all frame lists: LLaMA-Factory loads the
    ``videos`` column with one Arrow type, so a mix fails the whole dataset at load time."""

    def __init__(self) -> None:
        self.frames: bool | None = None

    def check(self, record: dict[str, Any]) -> None:
        for video in record.get("videos") or []:
            frames = isinstance(video, list)
            if self.frames is None:
                self.frames = frames
            elif frames != self.frames:
                have, got = ("frame folders", "a video file") if self.frames else ("video files", "a frame folder")
                raise RowError(f"this file's videos are {have}; {got} cannot share its 'videos' column "
                               "(convert it into a separate dataset, or extract the files' frames: --extract-frames)")
