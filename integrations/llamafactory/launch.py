"""Run ``llamafactory-cli train <recipe> key=value ...`` from Python (e.g. from a benchmark or a test)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Overrides that let a shipped GPU recipe run on a CPU-only machine.
CPU_OVERRIDES: dict[str, Any] = {
    "bf16": False,
    "deepspeed": None,
    "preprocessing_num_workers": 1,
    "dataloader_num_workers": 0,
    "ddp_timeout": 1800,
}


@dataclass
class TrainRun:
    """Outcome of one ``llamafactory-cli train`` call."""

    returncode: int
    seconds: float
    output_dir: str
    log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


REPO_ROOT = Path(__file__).resolve().parents[2]


def find_llamafactory_cli(env_dir: str | os.PathLike[str] | None = None) -> str | None:
    """``llamafactory-cli`` of the LLaMA-Factory env, else the one on PATH.

    The env is ``env_dir``, else ``$LLAMAFACTORY_ENV``, else the checkout's ``.venv-llamafactory``.
    """
    env_dir = env_dir or os.environ.get("LLAMAFACTORY_ENV") or REPO_ROOT / ".venv-llamafactory"
    candidate = Path(env_dir) / "bin" / "llamafactory-cli"
    if candidate.is_file():
        return str(candidate)
    return shutil.which("llamafactory-cli")


def format_override(key: str, value: Any) -> str:
    """One OmegaConf command-line override (``None`` -> ``null``, bools lower-case)."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = str(value)
    return f"{key}={text}"


# What the offline toy runs and tests add to the caller's environment (never needed on a real cluster).
OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_DISABLED": "true", "TOKENIZERS_PARALLELISM": "false",
}

def train_command(recipe: str | os.PathLike[str], overrides: dict[str, Any], cli: str) -> list[str]:
    """``[cli, "train", recipe, key=value, ...]``. LLaMA-Factory's launcher re-splits the arguments
    on spaces when it starts torchrun, so a value containing a space is refused here."""
    arguments = [format_override(k, v) for k, v in overrides.items()]
    for argument in arguments:
        if any(char.isspace() for char in argument):
            raise ValueError(f"override {argument!r} contains whitespace, which llamafactory-cli's torchrun "
                             "launch would split into two arguments")
    return [cli, "train", os.fspath(recipe), *arguments]


def train_env(cli: str, env: dict[str, str] | None = None, threads: int | None = None) -> dict[str, str]:
    """The caller's environment plus ``env``, as a shell running ``llamafactory-cli train`` would have it.

    GPUs stay visible and the launcher variables (``FORCE_TORCHRUN``, ``NNODES``, ``NPROC_PER_NODE``...)
    pass through untouched. The CLI's folder goes first on ``PATH``: the launcher starts ``torchrun``
    by name, which must be the one of the same environment.
    """
    merged = {**os.environ, **(env or {})}
    merged["PATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(cli)), merged.get("PATH", "")])
    if threads:
        merged["OMP_NUM_THREADS"] = merged["MKL_NUM_THREADS"] = str(threads)
    return merged


def run_train(
    recipe: str | os.PathLike[str],
    overrides: dict[str, Any],
    *,
    cli: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    threads: int | None = None,
    timeout: float | None = None,
) -> TrainRun:
    """Run ``llamafactory-cli train recipe key=value ...`` exactly as from a shell and return its
    exit code, wall time and log (``output_dir`` is required in ``overrides``).

    ``env`` adds variables (e.g. ``{"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "8"}`` or :data:`OFFLINE_ENV`);
    nothing is removed, so GPUs and the caller's launcher settings apply. ``cwd`` defaults to the
    repository root, where the recipes' ``deepspeed:`` paths resolve.
    """
    cli = cli or find_llamafactory_cli()
    if cli is None:
        raise FileNotFoundError("llamafactory-cli not found (create .venv-llamafactory or set LLAMAFACTORY_ENV)")
    command = train_command(recipe, overrides, cli)
    logger.info("running %s", " ".join(command))
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd or REPO_ROOT, env=train_env(cli, env, threads), capture_output=True,
                               text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    log = completed.stdout + completed.stderr
    if completed.returncode != 0:
        logger.error("llamafactory-cli train failed (exit %d):\n%s", completed.returncode, log[-4000:])
    return TrainRun(completed.returncode, seconds, os.fspath(overrides["output_dir"]), log)
