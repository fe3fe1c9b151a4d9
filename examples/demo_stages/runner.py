"""Run the demo's commands as subprocesses: one log file per command, wall time per stage, independent chains of
commands side by side."""

from __future__ import annotations

import logging
import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("demo")

REPO_ROOT = Path(__file__).resolve().parents[2]

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
    "WANDB_MODE": "disabled",
    "DISABLE_VERSION_CHECK": "1",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "PYTHONUNBUFFERED": "1",
}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CommandFailed(RuntimeError):
    """A demo command exited non-zero; ``log`` holds its stdout and stderr."""

    def __init__(self, name: str, returncode: int, log: Path):
        super().__init__(f"{name} failed (exit {returncode}); see {log}")
        self.log = log


@dataclass
class Stage:
    """One numbered stage of the demo: its commands and wall time."""

    name: str
    title: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system time of the stage's commands (all their threads)
    commands: list[dict] = field(default_factory=list)


@dataclass
class Runner:
    """Runs commands with the demo's environment (offline, ``threads`` CPU threads) and logs them.

    ``python`` is the main env's interpreter; console scripts (``unifiedreward``, ``accelerate``) are
    taken from its ``bin/`` folder so the demo runs the same entry points a user types. ``lanes`` chains of
    commands may run at once (:meth:`side_by_side`), each command with ``threads`` threads.
    """

    log_dir: Path
    threads: int = 1
    lanes: int = 1
    device_env: dict[str, str] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)

    @property
    def python(self) -> str:
        return sys.executable

    def script(self, name: str) -> str:
        """A console script installed next to the running interpreter (falls back to PATH)."""
        candidate = Path(sys.executable).parent / name
        return str(candidate) if candidate.exists() else name

    def env(self) -> dict[str, str]:
        env = {**os.environ, **OFFLINE_ENV, **self.device_env}
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        return env

    @contextmanager
    def stage(self, name: str, title: str):
        stage = Stage(name, title)
        self.stages.append(stage)
        logger.info("== %s: %s", name, title)
        started, cpu_started = time.perf_counter(), _children_cpu_seconds()
        try:
            yield stage
        finally:
            stage.seconds = round(time.perf_counter() - started, 1)
            stage.cpu_seconds = round(_children_cpu_seconds() - cpu_started, 1)
            logger.info("== %s done in %.0f s (%.0f CPU s)", name, stage.seconds, stage.cpu_seconds)

    def side_by_side(self, *chains: Callable[[], object]) -> list:
        """Run independent chains of commands, ``lanes`` at a time; their results in order. A failing chain's
        error is raised once every chain has ended (the others' logs are complete)."""
        with ThreadPoolExecutor(max_workers=max(1, self.lanes)) as pool:
            futures = [pool.submit(chain) for chain in chains]
        return [future.result() for future in futures]

    def run(self, name: str, command: list[str]) -> Path:
        """Run ``command`` from the repository root; its output goes to ``log_dir/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        printable = shlex.join(command)
        logger.info("$ %s", printable)
        started = time.perf_counter()
        with log.open("w", encoding="utf-8") as handle:
            handle.write(f"$ {printable}\n\n")
            handle.flush()
            try:
                returncode = subprocess.run(command, cwd=REPO_ROOT, env=self.env(), stdout=handle,
                                            stderr=subprocess.STDOUT, text=True).returncode
            except OSError as error:  # e.g. the LLaMA-Factory env was never created
                handle.write(f"cannot start {command[0]}: {error}\n")
                returncode = 127
        seconds = round(time.perf_counter() - started, 1)
        if self.stages:
            self.stages[-1].commands.append({"name": name, "command": printable, "seconds": seconds, "log": str(log)})
        if returncode != 0:
            raise CommandFailed(name, returncode, log)
        logger.info("   %s: %.0f s (log %s)", name, seconds, log)
        return log
