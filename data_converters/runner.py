"""Drive a row converter over an input file: stream, validate, report, write atomically."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from .records import iter_rows
from .report import ConversionFailed, ConversionReport, RowError
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
) -> ConversionReport:
    """Convert every row of ``input_path`` with ``convert_row`` into JSONL at ``output_path``.

    ``convert_row`` returns the output record, ``None`` to leave a valid row out (a filter), or
    raises :class:`RowError` for an invalid row: the row is reported with its line/row number and
    skipped. With ``strict`` the first invalid row raises
    :class:`ConversionFailed` instead. The output file only appears once the whole input is done.
    """
    report = ConversionReport(input_path=os.fspath(input_path), output_path=os.fspath(output_path))
    with atomic_open(output_path) as stream:
        for row in tqdm(iter_rows(input_path), desc="convert", unit="row", disable=not progress):
            report.rows_read += 1
            try:
                if row.error is not None:
                    raise RowError(row.error)
                record = convert_row(row.data)
            except RowError as error:
                if strict:
                    raise ConversionFailed(f"{row.location}: {error}") from error
                report.add_problem(row.location, str(error))
                continue
            if record is None:
                report.rows_filtered += 1
                continue
            write_jsonl_line(stream, record)
            report.rows_written += 1
    for problem in report.problems[:20]:
        logger.warning("skipped %s", problem)
    logger.info(report.summary())
    return report
