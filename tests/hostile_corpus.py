"""A hostile-input corpus, generated on the fly (no binary blobs in the repository).

`build(root, good_images, good_videos)` writes the bad media next to copies of good ones and returns
:class:`Case` lists for image and video templates. Each case says whether it is good (must be scored) or
bad (must fail alone, with ``reason`` in its error). `Tally` counts what a command did with the cases.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    """One corpus item: ``media`` as it appears in a JSONL row (paths relative to the corpus root)."""

    name: str
    media: Any
    reason: str | None = None  # None = a good item, which must be scored

    @property
    def good(self) -> bool:
        return self.reason is None


@dataclass
class Tally:
    """Items tried / failed with the expected reason / scored, for one command."""

    command: str
    tried: int = 0
    failed_with_reason: int = 0
    scored: int = 0
    wrong: list[str] = field(default_factory=list)

    def add(self, case: Case, status: str, error: str | None) -> None:
        self.tried += 1
        if case.good and status == "ok":
            self.scored += 1
        elif not case.good and status != "ok" and error and case.reason.lower() in error.lower():
            self.failed_with_reason += 1
        else:
            self.wrong.append(f"{case.name}: expected {case.reason or 'ok'}, got {status}: {error}")

    def line(self) -> str:
        return (f"{self.command}: {self.tried} tried, {self.failed_with_reason} failed with their reason, "
                f"{self.scored} scored")

    def check(self) -> None:
        print(self.line())
        assert not self.wrong, "\n".join(self.wrong)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 30000) -> bytes:
    """A ~50 KB PNG whose header claims ``side`` x ``side`` grayscale pixels (900 M for the default)."""
    rows = zlib.compress(b"\x00" * (side + 1) * 1500, 9)  # the first rows; the header alone is the bomb
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def _png(image: Image.Image, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def write_images(root: Path, good: Path) -> list[Case]:
    """Bad and unusual images in ``root/img`` (good ones derived from the image ``good``)."""
    folder = root / "img"
    folder.mkdir(parents=True, exist_ok=True)
    base = Image.open(good).convert("RGB")
    shutil.copyfile(good, folder / "good.png")
    data = (folder / "good.png").read_bytes()
    files = {
        "bomb.png": bomb_png(),
        "truncated.png": data[: len(data) // 2],
        "zero.png": b"",
        "text.png": b"just some text, not an image\n",
        "wide.png": _png(Image.new("RGB", (2010, 10), (200, 30, 30))),  # aspect ratio 201
    }
    cmyk = io.BytesIO()
    base.convert("CMYK").save(cmyk, format="JPEG")
    files["cmyk.jpg"] = cmyk.getvalue()
    gray16 = np.asarray(base.convert("L"), dtype=np.uint16) * 257
    files["gray16.png"] = _png(Image.fromarray(gray16))
    files["palette.png"] = _png(base.convert("P", palette=Image.Palette.ADAPTIVE), transparency=0)
    animated = io.BytesIO()
    frames = [base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), base.rotate(90)]
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["animated.gif"] = animated.getvalue()
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    (folder / "a-directory.png").mkdir(exist_ok=True)
    return [
        Case("good", "img/good.png"),
        Case("cmyk", "img/cmyk.jpg"),
        Case("16-bit", "img/gray16.png"),
        Case("palette+transparency", "img/palette.png"),
        Case("animated", "img/animated.gif"),
        Case("string media", "img/good.png"),  # "media": "img/good.png", not a list
        Case("bomb", "img/bomb.png", "decompression bomb"),
        Case("truncated", "img/truncated.png", "cannot decode image"),
        Case("zero-byte", "img/zero.png", "cannot decode image"),
        Case("not an image", "img/text.png", "cannot decode image"),
        Case("aspect ratio 201", "img/wide.png", "aspect ratio"),
        Case("directory", "img/a-directory.png", "is a directory"),
        Case("missing", "img/missing.png", "file not found"),
        Case("url to a closed port", "http://127.0.0.1:9/x.png", "remote URLs are not fetched"),
        Case("NUL in path", "img/go\x00od.png", "NUL byte"),
    ]


def write_videos(root: Path, good: Path) -> list[Case]:
    """Bad and unusual videos in ``root/vid`` (a 1-frame one encoded from the first frame of ``good``)."""
    import decord

    from unifiedreward.toy.data import write_video

    folder = root / "vid"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(good, folder / "good.mp4")
    data = (folder / "good.mp4").read_bytes()
    first = Image.fromarray(decord.VideoReader(str(good))[0].asnumpy())
    write_video([first], folder / "one-frame.mp4")
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "a-directory.mp4").mkdir(exist_ok=True)
    return [
        Case("good video", "vid/good.mp4"),
        Case("1-frame video", "vid/one-frame.mp4", "frame"),
        Case("zero-byte video", "vid/zero.mp4", "empty file"),
        Case("truncated video", "vid/truncated.mp4", "cannot decode video"),
        Case("directory video", "vid/a-directory.mp4", "is a directory"),
        Case("missing video", "vid/missing.mp4", "file not found"),
        Case("url video", "http://127.0.0.1:9/v.mp4", "remote URLs are not fetched"),
    ]


# JSONL lines that are not items at all, with the reason each must fail with.
INVALID_LINES = [
    ("invalid JSON", '{"id": "broken", "media": ["img/good.png"', "invalid json"),
    ("not an object", '["img/good.png"]', "json object"),
    ("media not paths", '{"id": "numbers", "media": [5]}', "path string"),
    ("fields not an object", '{"id": "fields", "media": ["img/good.png"], "fields": "a red cube"}', "'fields'"),
]
