"""The page the reports share: one HTML file, inline CSS and script, no network, thumbnails loaded lazily.

Cards carry a ``data-status``; the filter buttons show the cards of one status. A thumbnail that fails to
load is replaced by a visible "media missing" label and counted in the header.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

from reward_core.atomic_files import atomic_write_text

from .thumbs import Thumb

TEXT_LIMIT = 4000  # characters of judge text kept per call

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2430}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #d8dce3;padding:10px 18px;z-index:2}
h1{font-size:19px;margin:0 0 6px}
.stats{font-size:13px;color:#4a5566}.stats b{color:#1d2430}
.filters button{margin:6px 6px 0 0;padding:3px 10px;border:1px solid #b9c0cc;border-radius:12px;background:#fff;
cursor:pointer;font-size:13px}.filters button.on{background:#1d2430;color:#fff}
main{padding:14px 18px}
.card{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:0 0 12px;padding:10px 12px}
.card h2{font-size:14px;margin:0 0 6px;font-weight:600}
.prompt{font-size:13px;margin:0 0 8px;white-space:pre-wrap}
.badge{display:inline-block;font-size:11px;padding:1px 7px;border-radius:9px;margin-left:6px;color:#fff}
.kept,.correct{background:#2b8a3e}.dropped,.misjudged{background:#b7791f}.failed{background:#c92a2a}
.tie{background:#667085}
.row{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.cand{border:2px solid #e4e7ec;border-radius:5px;padding:4px;font-size:12px;max-width:360px}
.cand.chosen{border-color:#2b8a3e}.cand.rejected{border-color:#c92a2a}
.cand .tag{font-weight:600}.cand.chosen .tag{color:#2b8a3e}.cand.rejected .tag{color:#c92a2a}
.cand img{display:block;background:#eef0f3}
.answer{white-space:pre-wrap;max-height:9em;overflow:auto;background:#f8f9fb;padding:4px;margin-top:3px}
.missing{display:block;background:#fdecea;color:#8a1c1c;padding:6px;font-size:12px;max-width:260px;overflow-wrap:anywhere}
.outcomes{font-size:12px;color:#4a5566;margin:6px 0 0;padding-left:18px}
details{font-size:12px;margin-top:6px}pre{white-space:pre-wrap;background:#f8f9fb;padding:6px;margin:4px 0}
table.metrics{border-collapse:collapse;font-size:13px;margin:0 0 14px}
table.metrics td,table.metrics th{border:1px solid #d8dce3;padding:3px 8px;text-align:left}
.hidden{display:none}
"""

SCRIPT = """
(function(){
  var missing=0;
  function broken(img){
    var label=document.createElement('span');label.className='missing';
    label.textContent='media missing: '+img.getAttribute('src');img.replaceWith(label);
    missing+=1;var m=document.getElementById('missing');
    if(m){m.textContent=missing+' media could not be shown';}
  }
  document.querySelectorAll('img').forEach(function(img){
    if(location.hash==='#eager'){img.loading='eager';}
    img.addEventListener('error',function(){broken(img);});
    if(img.complete&&img.naturalWidth===0&&img.getAttribute('src')){broken(img);}
  });
  var buttons=document.querySelectorAll('.filters button');
  buttons.forEach(function(b){b.addEventListener('click',function(){
    buttons.forEach(function(o){o.classList.toggle('on',o===b);});
    var want=b.dataset.status;
    document.querySelectorAll('.card[data-status]').forEach(function(c){
      c.classList.toggle('hidden',want!=='all'&&c.dataset.status!==want);});
  });});
})();
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def clip(text: str | None, limit: int = TEXT_LIMIT) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters]"


def relative_url(path: str) -> str:
    """The URL of a file at ``path`` relative to the page: percent-encoded and starting with ``./`` or ``../``,
    so no file name (``javascript:x.png``, ``a#b.png``) reads as a scheme, a query or a fragment."""
    url = quote(path)
    return url if url.startswith("../") else "./" + url


def media_html(thumb: Thumb, alt: str) -> str:
    """An ``<img>`` (linked to the original when it is a file) or the reason the medium cannot be shown."""
    if thumb.src is None:
        return f'<span class="missing">{esc(alt)}: {esc(thumb.error)}</span>'
    img = (f'<img src="{esc(relative_url(thumb.src))}" width="{thumb.width}" height="{thumb.height}" '
           f'loading="lazy" decoding="async" alt="{esc(alt)}">')
    return f'<a href="{esc(relative_url(thumb.original))}">{img}</a>' if thumb.original else img


def details(summary: str, texts: Iterable[tuple[str, str | None]]) -> str:
    """Judge texts folded away until asked for."""
    body = "".join(f"<b>{esc(label)}</b><pre>{esc(clip(text))}</pre>" for label, text in texts if text)
    return f"<details><summary>{esc(summary)}</summary>{body}</details>" if body else ""


def card(status: str, title: str, body: str, badge: str | None = None) -> str:
    label = esc(badge or status)
    return (f'<section class="card" data-status="{esc(status)}"><h2>{esc(title)}'
            f'<span class="badge {esc(status)}">{label}</span></h2>{body}</section>')


def metrics_table(rows: Sequence[tuple[str, object]]) -> str:
    cells = "".join(f"<tr><th>{esc(name)}</th><td>{esc(value)}</td></tr>" for name, value in rows)
    return f'<table class="metrics">{cells}</table>'


def page(title: str, stats: Sequence[tuple[str, object]], cards: Sequence[tuple[str, str]], intro: str = "") -> str:
    """The whole page: ``cards`` are ``(status, html)``; one filter button per status present."""
    counts = Counter(status for status, _ in cards)
    buttons = ['<button class="on" data-status="all">all ' + str(len(cards)) + "</button>"]
    buttons += [f'<button data-status="{esc(s)}">{esc(s)} {n}</button>' for s, n in sorted(counts.items())]
    stat_html = " · ".join(f"{esc(name)} <b>{esc(value)}</b>" for name, value in stats)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width\"><title>{esc(title)}</title>"
        f"<style>{STYLE}</style></head><body><header><h1>{esc(title)}</h1>"
        f'<div class="stats">{stat_html} <span id="missing"></span></div>'
        f'<div class="filters">{"".join(buttons)}</div></header><main>{intro}'
        + "\n".join(body for _, body in cards)
        + f"</main><script>{SCRIPT}</script></body></html>\n"
    )


def write_page(report_dir: str | os.PathLike, text: str) -> Path:
    """Write ``index.html`` atomically into ``report_dir``."""
    target = Path(report_dir) / "index.html"
    atomic_write_text(target, text)
    return target
