"""Self-contained HTML reports (one ``index.html`` + lazily loaded thumbnails, no network) of sift and bench runs.

``render_report(DIR)`` picks the kind from the folder's contents; ``unifiedreward report DIR`` is the CLI form.
``sift``, ``sift_images`` and ``bench`` write theirs into ``OUTPUT/report/`` when they finish.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def report_kind(out_dir: str | os.PathLike) -> str:
    """``"sift"`` (sift*.jsonl records) or ``"bench"`` (metrics.json + report/pairs.json); else ValueError."""
    from unifiedreward.sift import RESULTS_GLOB

    from .bench_report import PAIRS_FILE

    out_dir = Path(out_dir)
    if any(out_dir.glob(RESULTS_GLOB)):
        return "sift"
    if (out_dir / "metrics.json").is_file() and (out_dir / "report" / PAIRS_FILE).is_file():
        return "bench"
    raise ValueError(f"{out_dir}: neither a sift output (sift*.jsonl) nor a bench output (metrics.json + "
                     f"report/{PAIRS_FILE})")


def render_report(out_dir: str | os.PathLike, progress: bool = False) -> Path:
    """Re-render ``out_dir/report/index.html``; returns its path."""
    if report_kind(out_dir) == "sift":
        from .sift_report import render_sift_dir

        return render_sift_dir(out_dir, progress=progress)
    from .bench_report import render_bench_dir

    return render_bench_dir(out_dir)


def try_report(make, *args, **kwargs) -> Path | None:
    """Run a report writer at the end of a run: a failure is logged, never raised (the run's data are written)."""
    try:
        path = make(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the report must not undo a finished run
        logger.error("could not write the HTML report: %s: %s", type(error).__name__, error)
        return None
    logger.info("report: %s", path)
    return path
