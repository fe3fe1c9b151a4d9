"""Write output files all-or-nothing, and clean what a killed writer left behind.

A file is written to a temporary name in its own folder (``.NAME.tmp-HOST-PID-TOKEN``), fsync'd and
renamed over ``NAME`` with ``os.replace``: a reader, or a run killed at any point (even ``kill -9``),
sees the previous complete file or the new one, never half of one. A kill does leave the temporary
file; the first write of a later process into the same folder removes every such file there whose
process (on this host) is gone, so leftovers never pile up.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def temp_name(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name beside ``path``, naming this host and process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}")


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files in ``folder`` left by processes of this host that no longer run."""
    pattern = re.compile(r"\..+\.tmp-" + _HOST + r"-(\d+)-[0-9a-f]{8}")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            match = pattern.fullmatch(entry.name)
            if match and entry.is_file(follow_symlinks=False) and not _process_alive(int(match.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    size = entry.stat(follow_symlinks=False).st_size
                    os.remove(entry.path)
                    removed.append(Path(entry.path))
                    logger.info("removed %s (%d bytes) left by a killed writer", entry.path, size)
    return removed


_swept: set[Path] = set()  # folders this process has cleaned (one scan each, however many files it writes there)


def _sweep_once(folder: Path) -> None:
    folder = folder.resolve()
    if folder not in _swept:
        remove_stale_temps(folder)
        _swept.add(folder)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing (``"w"``: UTF-8 text, ``"wb"``: bytes); it only appears there if the
    ``with`` block completes. On an exception the temporary file is removed and ``path`` is left as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    temp = temp_name(path)
    try:
        with open(temp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise
    _fsync_folder(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` all-or-nothing."""
    with atomic_open(path) as stream:
        stream.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` all-or-nothing."""
    with atomic_open(path, "wb") as stream:
        stream.write(data)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: some filesystems refuse to fsync a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
