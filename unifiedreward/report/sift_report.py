"""The sift report: per prompt its candidates (thumbnails or answers), scores, pair outcomes, chosen/rejected."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from reward_core.media import IMAGE_SUFFIXES
from unifiedreward.sift import RESULTS_GLOB, SiftRecord, read_records

from .html import card, details, esc, media_html, page, write_page
from .thumbs import VIDEO_SUFFIXES, make_thumb


def _is_media_path(candidate: object) -> bool:
    """A media file name that exists on disk (even as a FIFO, a folder or a dangling link: the card says so)."""
    return (isinstance(candidate, str) and candidate.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            and os.path.lexists(candidate))


def _score(value: float | None) -> str:
    return "score failed" if value is None else f"score {value:.4g}"


def _candidate(record: SiftRecord, index: int, report_dir: Path) -> str:
    value = record.candidates[index]
    role = {record.chosen_index: "chosen", record.rejected_index: "rejected"}.get(index, "")
    tag = f"#{index}" + (f" {role}" if role else "")
    score = record.scores[index] if index < len(record.scores) else None
    if value is None:
        body = '<span class="missing">candidate not recorded</span>'
    elif _is_media_path(value):
        body = media_html(make_thumb(value, report_dir), f"candidate {index}")
    else:
        body = f'<div class="answer">{esc(value)}</div>'
    return (f'<div class="cand {role}"><span class="tag">{esc(tag)}</span> · {esc(_score(score))}{body}</div>')


def _outcome(pair) -> str:
    head = f"#{pair.a} vs #{pair.b}: "
    if pair.status == "decisive":
        return head + f"#{pair.winner} better"
    if pair.status == "failed":
        return head + f"failed ({pair.error})"
    return head + pair.status


def record_card(record: SiftRecord, report_dir: Path) -> str:
    text = record.fields.get("question") or record.fields.get("prompt") or ""
    shared = list(record.meta.get("images") or []) + ([record.meta["video"]] if record.meta.get("video") else [])
    parts = [f'<p class="prompt">{esc(text)}</p>']
    if shared:
        thumbs = "".join(media_html(make_thumb(m, report_dir), "prompt medium") for m in shared)
        parts.append(f'<div class="row">{thumbs}</div>')
    parts.append('<div class="row">' + "".join(_candidate(record, i, report_dir)
                                                for i in range(len(record.candidates))) + "</div>")
    lines = [_outcome(pair) for pair in record.pairs]
    if record.reason:
        lines.append(f"{record.status}: {record.reason}")
    parts.append('<ul class="outcomes">' + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>")
    texts = [(f"pair #{p.a} vs #{p.b}", p.text) for p in record.pairs]
    texts += [(f"point score #{i}", t) for i, t in enumerate(record.point_texts)]
    parts.append(details("judge text", texts))
    return card(record.status, str(record.id), "".join(parts))


def render_sift_records(records: Sequence[SiftRecord], report_dir: str | os.PathLike, title: str,
                        progress: bool = False) -> Path:
    """Write ``report_dir/index.html`` (and its thumbnails) for these sift records."""
    report_dir = Path(report_dir)
    records = sorted(records, key=lambda r: r.order)
    cards = [(r.status, record_card(r, report_dir))
             for r in tqdm(records, desc="report", unit="prompt", disable=not progress)]
    counts = Counter(r.status for r in records)
    reasons = Counter(r.reason for r in records if r.reason)
    stats = [("prompts", len(records)), *((status, counts.get(status, 0)) for status in ("kept", "dropped", "failed"))]
    intro = ""
    if reasons:
        items = "".join(f"<li>{esc(reason)}: {count}</li>" for reason, count in reasons.most_common(8))
        intro = f'<section class="card"><h2>Why prompts were not kept</h2><ul class="outcomes">{items}</ul></section>'
    return write_page(report_dir, page(title, stats, cards, intro))


def render_sift_dir(out_dir: str | os.PathLike, report_dir: str | os.PathLike | None = None,
                    progress: bool = False) -> Path:
    """The report of a sift output folder (``unifiedreward sift`` or ``sift_images``): ``out_dir/report/``."""
    out_dir = Path(out_dir)
    paths = sorted(out_dir.glob(RESULTS_GLOB))
    if not paths:
        raise FileNotFoundError(f"{out_dir}: no {RESULTS_GLOB} records")
    return render_sift_records(read_records(paths), report_dir or out_dir / "report",
                               f"Sift: {out_dir.name}", progress=progress)
