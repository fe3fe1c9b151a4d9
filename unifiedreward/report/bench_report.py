"""The bench report: the metrics, then every misjudged or failed pair with both candidates and the verdicts.

``write_bench_report`` runs at the end of ``unifiedreward bench``, while the pairs' media are at hand: it
writes the thumbnails and ``report/pairs.json`` (what the page shows of each listed pair), then the page.
``render_bench_dir`` re-renders the page from ``metrics.json`` and ``report/pairs.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reward_core.atomic_files import atomic_write_text
from unifiedreward.bench.runner import PairOutcome

from .html import card, details, esc, media_html, metrics_table, page, write_page
from .thumbs import Thumb, make_thumb

PAIRS_FILE = "pairs.json"
MAX_LISTED = 1000  # pairs listed on the page (misjudged first, then failed)
_HUMAN = {1: "A better", -1: "B better", 0: "tie"}


def judged_status(outcome: PairOutcome) -> str:
    """``correct`` / ``misjudged`` (wrong side, or a tie on a decided pair) / ``failed`` / ``tie`` (human tie)."""
    if not outcome.ok:
        return "failed"
    if outcome.item.human == 0:
        return "tie"
    margin = outcome.margin
    return "correct" if margin != 0 and (margin > 0) == (outcome.item.human > 0) else "misjudged"


def _presentation(p) -> dict[str, Any]:
    return {"order": p.order, "margin": p.margin, "status": p.result.status.value, "winner": p.result.winner,
            "probs": p.result.probs, "error": p.result.error, "text": p.result.text}


def _listed_pair(outcome: PairOutcome, kind: str, report_dir: Path) -> dict[str, Any]:
    item = outcome.item
    if kind == "answers":
        candidates = [{"text": str(c)} for c in item.candidates]
    else:
        candidates = [{"thumb": asdict(make_thumb(c, report_dir))} for c in item.candidates]
    return {
        "id": item.id, "status": judged_status(outcome), "human": item.human, "category": item.category,
        "fields": dict(item.fields), "context": [asdict(make_thumb(m, report_dir)) for m in item.context_media],
        "candidates": candidates, "margin": outcome.margin, "error": outcome.error,
        "presentations": [_presentation(p) for p in outcome.presentations],
    }


def write_bench_report(outcomes: Sequence[PairOutcome], kind: str, out_dir: str | os.PathLike) -> Path:
    """Thumbnails + ``report/pairs.json`` for the misjudged and failed pairs, then ``report/index.html``."""
    report_dir = Path(out_dir) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    rank = {"misjudged": 0, "failed": 1}
    listed = sorted((o for o in outcomes if judged_status(o) in rank), key=lambda o: rank[judged_status(o)])
    pairs = [_listed_pair(o, kind, report_dir) for o in listed[:MAX_LISTED]]
    counts = {status: sum(judged_status(o) == status for o in outcomes)
              for status in ("correct", "misjudged", "failed", "tie")}
    data = {"kind": kind, "counts": counts, "listed": len(pairs), "pairs": pairs}
    atomic_write_text(report_dir / PAIRS_FILE, json.dumps(data, ensure_ascii=False) + "\n")
    return render_bench_dir(out_dir)


def _verdict_line(p: dict[str, Any]) -> str:
    shown = "A, B" if p["order"] == "AB" else "B, A"
    if p["status"] != "ok" or p["margin"] is None:
        return f"shown {shown}: {p['status']} ({p['error']})"
    side = "A" if p["margin"] > 0 else "B" if p["margin"] < 0 else "neither"
    probs = ", ".join(f"P({k})={v:.3f}" for k, v in (p.get("probs") or {}).items() if v is not None)
    return f"shown {shown}: judge prefers {side} (margin {p['margin']:+.3f}{'; ' + probs if probs else ''})"


def pair_card(pair: dict[str, Any]) -> str:
    text = pair["fields"].get("prompt") or pair["fields"].get("question") or ""
    parts = [f'<p class="prompt">{esc(text)}</p>']
    if pair["context"]:
        parts.append('<div class="row">' + "".join(media_html(Thumb(**t), "context") for t in pair["context"])
                     + "</div>")
    human = pair["human"]
    cands = []
    for index, (name, candidate) in enumerate(zip("AB", pair["candidates"])):
        preferred = (human == 1 and index == 0) or (human == -1 and index == 1)
        role = "chosen" if preferred else "rejected" if human != 0 else ""
        tag = f"{name}" + (" (human preferred)" if preferred else "")
        body = (f'<div class="answer">{esc(candidate["text"])}</div>' if "text" in candidate
                else media_html(Thumb(**candidate["thumb"]), f"candidate {name}"))
        cands.append(f'<div class="cand {role}"><span class="tag">{esc(tag)}</span>{body}</div>')
    parts.append('<div class="row">' + "".join(cands) + "</div>")
    lines = [f"human: {_HUMAN.get(human, human)}"] + [_verdict_line(p) for p in pair["presentations"]]
    if pair["error"]:
        lines.append(f"error: {pair['error']}")
    parts.append('<ul class="outcomes">' + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>")
    parts.append(details("judge text", [(f"shown {p['order']}", p["text"]) for p in pair["presentations"]]))
    title = pair["id"] + (f" · {pair['category']}" if pair.get("category") else "")
    return card(pair["status"], title, "".join(parts))


def render_bench_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir/report/index.html`` from ``metrics.json`` and ``report/pairs.json``."""
    out_dir = Path(out_dir)
    metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    data = json.loads((out_dir / "report" / PAIRS_FILE).read_text(encoding="utf-8"))
    counts = data["counts"]
    stats = [("pairs", metrics.get("n_pairs")), *counts.items()]
    rows = [("benchmark", metrics.get("benchmark")), ("model", metrics.get("model")),
            ("template", metrics.get("template")), ("mode", metrics.get("mode")), ("swap", metrics.get("swap"))]
    rows += [(name, "n/a" if value is None else f"{value:.4f}") for name, value in metrics.get("metrics", {}).items()]
    intro = f'<section class="card"><h2>Metrics</h2>{metrics_table(rows)}'
    shown = data["listed"]
    total = counts.get("misjudged", 0) + counts.get("failed", 0)
    intro += f"<p>Listed below: {shown} of {total} misjudged or failed pairs.</p></section>"
    cards = [(pair["status"], pair_card(pair)) for pair in data["pairs"]]
    return write_page(out_dir / "report", page(f"Bench: {metrics.get('benchmark')}", stats, cards, intro))
