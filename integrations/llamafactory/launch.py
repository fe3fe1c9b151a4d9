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


def run_train(
    recipe: str | os.PathLike[str],
    overrides: dict[str, Any],
    *,
    cli: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    timeout: float | None = None,
) -> TrainRun:
    """Run a recipe with ``overrides`` (``output_dir`` is required) and return the exit code, time and log."""
    cli = cli or find_llamafactory_cli()
    if cli is None:
        raise FileNotFoundError("llamafactory-cli not found (create .venv-llamafactory or set LLAMAFACTORY_ENV)")
    command = [cli, "train", os.fspath(recipe), *(format_override(k, v) for k, v in overrides.items())]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_DISABLED="true",
               TOKENIZERS_PARALLELISM="false", DISABLE_VERSION_CHECK="1", CUDA_VISIBLE_DEVICES="")
    env.pop("FORCE_TORCHRUN", None)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    logger.info("running %s", " ".join(command))
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    log = completed.stdout + completed.stderr
    if completed.returncode != 0:
        logger.error("llamafactory-cli train failed (exit %d):\n%s", completed.returncode, log[-4000:])
    return TrainRun(completed.returncode, seconds, os.fspath(overrides["output_dir"]), log)
