"""HTML reports of sift, bench and the demo: the media themselves, rendered in a real headless Chromium.

Chromium is Debian's ``chromium`` (``make test`` installs it); the page is opened from disk the way a person
opens it, screenshotted, and its DOM read after every image had the chance to load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from html import escape, unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from unifiedreward.cli import main as cli_main
from unifiedreward.report import render_report
from unifiedreward.report.sift_report import render_sift_records
from unifiedreward.sift import PairOutcome, SiftRecord, SiftWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from demo_stages import report as demo_report  # noqa: E402


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.cards: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "section" and attrs.get("data-status"):
            self.cards.append(attrs["data-status"])


def parse_page(path: Path) -> _Images:
    parser = _Images()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def assert_images_resolve(page: Path) -> _Images:
    """Every ``<img>`` is lazy, sized, and points at a decodable file next to the page."""
    parsed = parse_page(page)
    for attrs in parsed.images:
        if attrs["src"].startswith("data:"):
            continue
        assert attrs.get("loading") == "lazy" and attrs.get("width") and attrs.get("height")
        with Image.open(page.parent / attrs["src"]) as image:
            image.load()
    return parsed


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium (apt-get install chromium)")
    return path


def chromium_args(tmp_path: Path) -> list[str]:
    return [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=15000"]


def dump_dom(url: str, tmp_path: Path, *flags: str) -> str:
    """The DOM of ``url`` in headless Chromium once its scripts and timers have run."""
    return subprocess.run([*chromium_args(tmp_path), *flags, "--dump-dom", url], capture_output=True, text=True,
                          timeout=120, check=True).stdout


def browse(page: Path, tmp_path: Path) -> tuple[str, Image.Image]:
    """(DOM after load with every image fetched eagerly, screenshot) of ``page`` in headless Chromium."""
    dom = dump_dom(page.resolve().as_uri() + "#eager", tmp_path)
    shot = tmp_path / f"{page.parent.name}-screenshot.png"
    subprocess.run([*chromium_args(tmp_path), f"--screenshot={shot}", "--window-size=1280,1400",
                    page.resolve().as_uri()],
                   capture_output=True, timeout=120, check=True)
    return dom, Image.open(shot).convert("RGB")


def assert_looks_rendered(dom: str, screenshot: Image.Image, min_images: int) -> None:
    assert ">media missing: " not in dom  # no <img> failed to load in the browser (the page script marks them)
    assert len(re.findall(r"<img ", dom)) >= min_images
    colors = screenshot.resize((320, 350)).getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 50, "the screenshot is (nearly) blank"


def _image(path: Path, color: tuple[int, int, int], size=(64, 48)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return str(path)


def _record(i: int, status: str, candidates: list, scores: list, **extra) -> SiftRecord:
    kept = status == "kept"
    pairs = [PairOutcome(0, 1, 0 if kept else None, "decisive" if kept else "failed",
                         None if kept else "parse_error: no verdict", text=f"Image 1 is better. ({i})")]
    return SiftRecord(id=f"p{i}", order=i, status=status, reason=None if kept else "no decisive pair",
                      chosen_index=0 if kept else None, rejected_index=1 if kept else None,
                      chosen_score=scores[0] if kept else None, rejected_score=scores[1] if kept else None,
                      candidates=candidates, scores=scores, pairs=pairs, fields={"prompt": f"prompt {i}"},
                      meta={}, point_texts=[f"Final Score: {s}" for s in scores], **extra)


def sift_fixture(root: Path, toy_world: dict) -> Path:
    """A sift output folder: image, video, corrupt-image and text candidates, kept / dropped / failed."""
    out = root / "sift-out"
    corrupt = root / "media" / "corrupt.png"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    video = str(Path(toy_world["data_dir"]) / json.loads(
        Path(toy_world["data"]["video_points"]).read_text().splitlines()[0])["video"])
    records = [
        _record(0, "kept", [_image(root / "media/a.png", (220, 30, 30)), _image(root / "media/b.png", (30, 30, 220))],
                [4.0, 2.0]),
        _record(1, "dropped", [_image(root / "media/c.png", (30, 200, 30), (300, 40)), str(corrupt)], [3.0, None]),
        _record(2, "kept", [video, video], [3.5, 1.0]),
        _record(3, "failed", ["The shape is <b>yellow</b>.", "A blue square."], [None, None]),
    ]
    with SiftWriter(out / "sift.jsonl") as writer:
        for record in records:
            writer.append(record)
    return out


def test_sift_report_shows_candidates_scores_outcomes_and_reasons(toy_world, tmp_path):
    out = sift_fixture(tmp_path, toy_world)
    page = render_report(out)
    assert page == out / "report" / "index.html"
    parsed = assert_images_resolve(page)
    assert parsed.cards == ["kept", "dropped", "kept", "failed"]
    html = page.read_text()
    assert len(parsed.images) == 5  # a, b, c and the video's frame strip twice (the corrupt PNG has none)
    assert "corrupt.png: cannot decode image" in html
    assert "&lt;b&gt;yellow&lt;/b&gt;" in html and "<b>yellow</b>" not in html  # answers are escaped
    assert "#0 chosen" in html and "#1 rejected" in html and "score 4" in html and "score failed" in html
    assert "Final Score: 4.0" in html and "Image 1 is better. (0)" in html  # judge text, folded
    assert "failed (parse_error: no verdict)" in html and "no decisive pair" in html
    strip = Image.open(page.parent / [i for i in parsed.images if i["width"] != parsed.images[0]["width"]][0]["src"])
    assert strip.width > 2 * strip.height  # a video is a strip of frames


def test_sift_report_in_chromium(toy_world, tmp_path):
    page = render_report(sift_fixture(tmp_path, toy_world))
    dom, screenshot = browse(page, tmp_path)
    assert_looks_rendered(dom, screenshot, min_images=5)
    assert dom.count('data-status="kept"') == 2 + 1  # two cards and the filter button


SCRIPT_NAMED = "javascript:void(document.title='pwned');void'x'.png"  # a valid script URL, and a PNG file name

# Loads the report in a frame, clicks the link of the file named like a script URL, and writes down where the
# link points and the frame's title afterwards (a script URL would have run in the frame and set it).
CLICKER = """<!DOCTYPE html><title>clicker</title><iframe id="f" src="%s"></iframe><pre id="result"></pre><script>
var frame = document.getElementById('f'), result = document.getElementById('result');
frame.addEventListener('load', function () {
  if (result.textContent) { return; }
  var links = Array.prototype.filter.call(frame.contentDocument.querySelectorAll('a'),
      function (a) { return a.getAttribute('href').indexOf('pwned') >= 0; });
  result.textContent = 'links=' + links.length + ' protocol=' + links[0].protocol;
  links[0].click();
  setTimeout(function () { result.textContent += ' title=' + frame.contentDocument.title; }, 2000);
});
</script>"""


def test_a_medium_named_like_a_script_url_is_linked_as_a_file(tmp_path):
    out = tmp_path / "sift-out"
    named = _image(out / "report" / SCRIPT_NAMED, (220, 30, 30))  # inside the report folder: a bare relative path
    with SiftWriter(out / "sift.jsonl") as writer:
        writer.append(_record(0, "kept", [named, _image(tmp_path / "b.png", (30, 30, 220))], [4.0, 2.0]))
    page = render_report(out)
    hrefs = re.findall(r'<a href="([^"]*)"', page.read_text())
    assert len(hrefs) == 2
    for href in hrefs:  # each resolves, against the page, to the file it shows
        url = urllib.parse.urlsplit(urllib.parse.urljoin(page.as_uri(), unescape(href)))
        assert url.scheme == "file" and Path(urllib.parse.unquote(url.path)).is_file(), href

    clicker = tmp_path / "clicker.html"
    clicker.write_text(CLICKER % escape(page.as_uri()))
    dom = dump_dom(clicker.as_uri(), tmp_path, "--allow-file-access-from-files")
    result = re.search(r'<pre id="result">([^<]*)</pre>', dom).group(1)
    assert result.startswith("links=1 protocol=file: ") and "pwned" not in result.split("title=")[1], result


def test_special_files_in_a_report_say_what_they_are(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    os.mkfifo(media / "fifo.png")
    (media / "zero.png").symlink_to("/dev/zero")
    (media / "folder.png").mkdir()
    (media / "dangling.png").symlink_to(media / "gone.png")
    out = tmp_path / "sift-out"
    with SiftWriter(out / "sift.jsonl") as writer:
        writer.append(_record(0, "dropped", [str(media / "fifo.png"), str(media / "zero.png")], [None, None]))
        writer.append(_record(1, "dropped", [str(media / "folder.png"), str(media / "dangling.png")], [None, None]))
    page = unescape(render_report(out).read_text())
    assert "fifo.png: not a regular file: FIFO" in page
    assert "zero.png: not a regular file: character device (a symlink to /dev/zero)" in page
    assert "folder.png: is a directory, not a file" in page
    assert f"dangling.png: file not found (a symlink to {media / 'gone.png'}, which does not exist)" in page


def test_sift_report_page_weight_for_1000_prompts(tmp_path):
    images = [_image(tmp_path / f"m/{i}.png", (i * 5 % 255, 80, 200 - i), (512, 512)) for i in range(40)]
    records = [_record(i, "kept" if i % 3 else "dropped", [images[i % 40], images[(i + 7) % 40]], [4.0, 1.5])
               for i in range(1000)]
    page = render_sift_records(records, tmp_path / "report", "1000 prompts")
    parsed = parse_page(page)
    assert len(parsed.cards) == 1000 and len(parsed.images) == 2000
    assert all(attrs["loading"] == "lazy" for attrs in parsed.images)
    thumbs = list((tmp_path / "report" / "thumbs").iterdir())
    assert len(thumbs) == 40  # one thumbnail per distinct medium
    assert max(path.stat().st_size for path in thumbs) < 12_000
    assert page.stat().st_size < 3_000_000  # HTML for 1,000 prompts, judge texts included


def test_bench_report_lists_every_misjudged_and_failed_pair(toy_world, tmp_path):
    rows = []
    for r in [json.loads(line) for line in Path(toy_world["data"]["image_pairs"]).read_text().splitlines()][:8]:
        first, second = (str(Path(toy_world["data_dir"]) / image) for image in r["images"])
        rows.append({"prompt": r["prompt"], "left_image": first, "right_image": second,
                     "vote_type": "leftvote" if r["winner"] == 1 else "rightvote"})
    rows[1]["left_image"] = str(tmp_path / "missing.png")  # a failed pair
    data = tmp_path / "genai.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "bench"
    status = cli_main(["bench", "--benchmark", "genai-bench-image", "--data", str(data), "--model",
                       toy_world["reward_model"], "--mode", "logit", "--device", "cpu", "--output", str(out),
                       "--no-progress"])
    assert status == 1  # one pair failed (exit status 1); the report and metrics are still written
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    expected = {p["id"]: "failed" if p["status"] != "ok" else
                "correct" if p["margin"] != 0 and (p["margin"] > 0) == (p["human"] > 0) else "misjudged"
                for p in predictions}
    page = out / "report" / "index.html"
    parsed = assert_images_resolve(page)
    listed = sorted(s for s in expected.values() if s != "correct")
    assert sorted(parsed.cards) == listed and "failed" in listed
    assert len(parsed.images) == 2 * listed.count("misjudged") + 1  # the failed pair shows its one readable image
    html = page.read_text()
    assert "missing.png: file not found" in html and "human preferred" in html
    before = html
    assert cli_main(["report", str(out), "--no-progress"]) == 0  # re-rendered from the folder alone
    assert page.read_text() == before

    dom, screenshot = browse(page, tmp_path)
    assert_looks_rendered(dom, screenshot, min_images=len(parsed.images))


def _demo_work_dir(root: Path) -> Path:
    """The held-out outputs of a demo run, in the files its tools write (generate_candidates, compare, sift)."""
    work = root / "demo-work"
    for when, shade in (("before", 60), ("after", 200)):
        folder = work / "heldout-gen" / when
        images = [_image(folder / f"p0/{i}.png", (shade, shade, 40 * i)) for i in range(2)]
        record = {"id": "p0", "prompt": "a bright red circle", "images": [str(Path(p).relative_to(folder))
                                                                          for p in images], "seeds": [0, 1]}
        (folder / "candidates.jsonl").write_text(json.dumps(record) + "\n")
        with SiftWriter(work / "heldout-und" / when / "sift.jsonl") as writer:
            answer = "The shape is red." if when == "after" else "blue blue"
            writer.append(SiftRecord("q0", 0, "kept", None, 0, 1, 3.0, 1.0, [answer, "It is a circle."], [3.0, 1.0],
                                     [], {"question": "What colour is the shape?"},
                                     {"images": [_image(root / "und/q0.png", (200, 20, 20))]}))
    rows = [{"id": "p0/0", "status": "ok", "winner": 2}, {"id": "p0/1", "status": "parse_error", "winner": None}]
    (work / "heldout-gen" / "head_to_head.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return work


def test_demo_report_shows_same_seed_images_and_answers_before_and_after(tmp_path):
    work = _demo_work_dir(tmp_path)
    summary = {"stages": [], "total_seconds": 1.0, "total_cpu_seconds": 1.0}
    paths = demo_report.write_report(summary, tmp_path / "demo-report", work)
    page = paths["html"]
    parsed = assert_images_resolve(page)
    html = page.read_text()
    assert parsed.cards == ["generation", "understanding"]
    assert len([i for i in parsed.images if not i["src"].startswith("data:")]) == 4 + 1  # 2 seeds x 2, the question
    assert "judge prefers aligned" in html and "judge failed" in html
    assert "The shape is red." in html and "blue blue" in html

    dom, screenshot = browse(page, tmp_path)
    assert_looks_rendered(dom, screenshot, min_images=5)


def test_report_cli_rejects_a_folder_it_does_not_know(tmp_path, capsys):
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "neither a sift output" in capsys.readouterr().err
