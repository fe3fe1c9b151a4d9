"""Run an ``unifiedreward`` command that stops itself (SIGSTOP) each time it opens a file under OUT for writing.

    python tests/scripts/stop_at_writes.py OUT unifiedreward-args...   # prints "OPENED path" before each stop

The test waits for each stop, inspects OUT (what a ``kill -9`` at that point leaves on disk), then resumes
the process (SIGCONT) or kills it there. Nothing of the command is replaced: ``open`` is only wrapped to stop.
"""

from __future__ import annotations

import builtins
import io
import os
import signal
import sys

OUT = os.path.abspath(sys.argv[1]) + os.sep
_open = io.open


def _stopping_open(file, mode="r", *args, **kwargs):
    handle = _open(file, mode, *args, **kwargs)
    if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and os.path.abspath(file).startswith(OUT):
        print(f"OPENED {os.fspath(file)}", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    return handle


builtins.open = io.open = _stopping_open

if __name__ == "__main__":
    from unifiedreward.cli import main

    sys.exit(main(sys.argv[2:]))
