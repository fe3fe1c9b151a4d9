"""``env/make_venv.sh`` when two builders meet: the second waits and reuses, a dead one's leftovers are rebuilt.

The real script runs, copied into a throw-away checkout with a tiny environment: its only requirement is
pip (already in every new venv) and the checkout is a one-module project, so nothing is downloaded
(``PIP_NO_INDEX``; ``PIP_USE_PEP517=false`` installs the project editable without fetching setuptools/wheel).
The cache is a temporary folder, never the shared one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "env" / "make_venv.sh"
BUILD_MESSAGE = "creating tiny environment"


def _checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A checkout holding a copy of the script and a tiny environment; the environment variables to run it."""
    root = tmp_path / "checkout"
    (root / "env").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "env" / "make_venv.sh")
    (root / "env" / "requirements-tiny.txt").write_text("pip\n")
    (root / "env" / "constraints-tiny.txt").write_text("")
    (root / "env" / "imports-tiny.txt").write_text("pip\n")
    (root / "setup.py").write_text('import setuptools\nsetuptools.setup(name="tinyproj", py_modules=["tinyproj"])\n')
    (root / "tinyproj.py").write_text("")
    env = {**os.environ, "UNIFIEDREWARD_CACHE": str(tmp_path / "cache"), "PIP_NO_INDEX": "1",
           "PIP_USE_PEP517": "false"}
    return root, env


def _start(root: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(["bash", str(root / "env" / "make_venv.sh"), "tiny"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _finish(run: subprocess.Popen) -> str:
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    return err


def _environments(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "cache" / "venvs").glob("tiny-*") if p.is_dir()]


def _wait_for_partial_build(tmp_path: Path, run: subprocess.Popen) -> Path:
    """The environment folder of a build that has started and not finished."""
    deadline = time.monotonic() + 120
    while not _environments(tmp_path):
        assert run.poll() is None and time.monotonic() < deadline, "the first build never started"
        time.sleep(0.01)
    target = _environments(tmp_path)[0]
    assert not (target / ".complete").exists() and run.poll() is None, "the first build ended too soon to race"
    return target


def _assert_one_intact_environment(tmp_path: Path, root: Path) -> None:
    (target,) = _environments(tmp_path)
    assert (target / ".complete").is_file()
    assert (root / ".venv-tiny").resolve() == target.resolve()
    subprocess.run([str(root / ".venv-tiny" / "bin" / "python"), "-c", "import pip, tinyproj"], check=True)


def test_two_parallel_builds_of_one_environment_build_it_once(tmp_path):
    root, env = _checkout(tmp_path)
    first = _start(root, env)
    _wait_for_partial_build(tmp_path, first)
    second = _start(root, env)  # e.g. `make demo` and `make test` in two terminals
    first_log, second_log = _finish(first), _finish(second)
    assert BUILD_MESSAGE in first_log
    assert "waiting for another build of tiny" in second_log and BUILD_MESSAGE not in second_log, second_log
    _assert_one_intact_environment(tmp_path, root)


def test_a_killed_builders_partial_environment_is_rebuilt(tmp_path):
    root, env = _checkout(tmp_path)
    killed = _start(root, env)
    partial = _wait_for_partial_build(tmp_path, killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert partial.is_dir() and not (partial / ".complete").exists()
    assert BUILD_MESSAGE in _finish(_start(root, env))
    _assert_one_intact_environment(tmp_path, root)
