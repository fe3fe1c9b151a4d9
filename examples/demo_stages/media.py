"""The demo report's media: held-out images of the same prompt and seed before/after Diffusion-DPO, and held-out
answers before/after policy DPO, drawn with the shared report blocks (`unifiedreward.report`)."""

from __future__ import annotations

import json
from pathlib import Path

from unifiedreward.report.html import card, esc, media_html
from unifiedreward.report.thumbs import make_thumb
from unifiedreward.sift import RESULTS_GLOB, read_records

from demo_stages.toy_inputs import candidate_records

MAX_PROMPTS = 12


def _head_to_head(path: Path) -> dict[str, int | None]:
    """``prompt id/index`` -> winner (1 = base image, 2 = aligned image, 0 = tie, None = failed)."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["id"]: row.get("winner") if row.get("status") == "ok" else None for row in rows}


def _verdict(winner: int | None) -> str:
    return {1: "judge prefers base", 2: "judge prefers aligned", 0: "tie"}.get(winner, "judge failed")


def generation_cards(work_dir: Path, report_dir: Path) -> list[str]:
    before_dir, after_dir = work_dir / "heldout-gen" / "before", work_dir / "heldout-gen" / "after"
    if not (before_dir.is_dir() and after_dir.is_dir()):
        return []
    after = {record["id"]: record for record in candidate_records(after_dir)}
    duel = _head_to_head(work_dir / "heldout-gen" / "head_to_head.jsonl")
    cards = []
    for record in candidate_records(before_dir)[:MAX_PROMPTS]:
        if record["id"] not in after:
            continue
        columns = []
        for index, (base, aligned) in enumerate(zip(record["images"], after[record["id"]]["images"])):
            verdict = _verdict(duel.get(f"{record['id']}/{index}"))
            columns.append(
                f'<div class="cand"><span class="tag">seed #{index}</span> · {esc(verdict)}<div class="row">'
                f"{media_html(make_thumb(before_dir / base, report_dir), 'base')}"
                f"{media_html(make_thumb(after_dir / aligned, report_dir), 'aligned')}</div>"
                "<div>base · aligned</div></div>"
            )
        body = f'<p class="prompt">{esc(record["prompt"])}</p><div class="row">{"".join(columns)}</div>'
        cards.append(card("generation", str(record["id"]), body, badge="same seeds"))
    return cards


def _records(folder: Path) -> dict:
    return {record.id: record for record in read_records(sorted(folder.glob(RESULTS_GLOB)))}


def _answers(record, name: str) -> str:
    lines = "".join(
        f'<div class="answer">{esc("failed" if score is None else f"{score:.3g}")} · {esc(answer)}</div>'
        for answer, score in zip(record.candidates, record.scores)
    )
    return f'<div class="cand"><span class="tag">{esc(name)}</span>{lines}</div>'


def understanding_cards(work_dir: Path, report_dir: Path) -> list[str]:
    before_dir, after_dir = work_dir / "heldout-und" / "before", work_dir / "heldout-und" / "after"
    if not (before_dir.is_dir() and after_dir.is_dir()):
        return []
    before, after = _records(before_dir), _records(after_dir)
    cards = []
    for item_id in sorted(before, key=lambda i: before[i].order)[:MAX_PROMPTS]:
        if item_id not in after:
            continue
        record = before[item_id]
        images = "".join(media_html(make_thumb(m, report_dir), "image") for m in record.meta.get("images", []))
        body = (f'<p class="prompt">{esc(record.fields.get("question", ""))}</p><div class="row">{images}'
                f"{_answers(record, 'base policy')}{_answers(after[item_id], 'aligned policy')}"
                "</div>")
        cards.append(card("understanding", str(item_id), body, badge="answers and judge scores"))
    return cards


def media_sections(work_dir: Path, report_dir: Path) -> str:
    """HTML sections (empty when the held-out stage did not run)."""
    sections = [("Held-out images: base vs aligned, same prompt and seed", generation_cards(work_dir, report_dir)),
                ("Held-out answers: base vs aligned policy", understanding_cards(work_dir, report_dir))]
    return "".join(f"<h2>{esc(title)}</h2>{''.join(cards)}" for title, cards in sections if cards)
