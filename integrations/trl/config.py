"""Where the module-level reward functions get their reward model and options.

``trl grpo --reward_funcs integrations.trl.rewards.pointwise_reward`` cannot pass constructor
arguments, so the defaults come from a config file and environment variables (env wins):

- ``UNIFIEDREWARD_CONFIG``: a YAML or JSON file. Top-level keys configure the backend (``model``,
  ``server``, ``server_model``, ``device``, ``dtype``, ``batch_size``); a section per reward
  (``pointwise``, ``pairwise``, ``multidim``) holds that reward's constructor arguments.
- ``UNIFIEDREWARD_MODEL`` (local checkpoint) or ``UNIFIEDREWARD_SERVER`` (OpenAI-compatible URL),
  ``UNIFIEDREWARD_SERVER_MODEL``, ``UNIFIEDREWARD_DEVICE``, ``UNIFIEDREWARD_DTYPE``,
  ``UNIFIEDREWARD_BATCH_SIZE``, ``UNIFIEDREWARD_MODE`` (every reward), and
  ``UNIFIEDREWARD_<SECTION>_TEMPLATE`` (e.g. ``UNIFIEDREWARD_POINTWISE_TEMPLATE``).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKEND_KEYS = ("model", "server", "server_model", "device", "dtype", "batch_size")
_ENV_BACKEND = {key: f"UNIFIEDREWARD_{key.upper()}" for key in BACKEND_KEYS}


@dataclass
class RewardConfig:
    """Backend settings plus per-reward sections."""

    model: str | None = None
    server: str | None = None
    server_model: str | None = None
    device: str | None = None
    dtype: str = "auto"
    batch_size: int = 8
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> RewardConfig:
        environ = dict(os.environ if environ is None else environ)
        data: dict[str, Any] = {}
        if environ.get("UNIFIEDREWARD_CONFIG"):
            data = load_file(Path(environ["UNIFIEDREWARD_CONFIG"]))
        backend = {key: data[key] for key in BACKEND_KEYS if key in data}
        sections = {key: dict(value) for key, value in data.items() if key not in BACKEND_KEYS}
        for key, variable in _ENV_BACKEND.items():
            if environ.get(variable):
                backend[key] = environ[variable]
        if "batch_size" in backend:
            backend["batch_size"] = int(backend["batch_size"])
        for name in ("pointwise", "pairwise", "multidim"):
            section = sections.setdefault(name, {})
            if environ.get("UNIFIEDREWARD_MODE"):
                section["mode"] = environ["UNIFIEDREWARD_MODE"]
            if environ.get(f"UNIFIEDREWARD_{name.upper()}_TEMPLATE"):
                section["template"] = environ[f"UNIFIEDREWARD_{name.upper()}_TEMPLATE"]
        return cls(**backend, sections=sections)

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.sections.get(name, {}))

    def cache_key(self) -> tuple:
        return (self.model, self.server, self.server_model, self.device, self.dtype, self.batch_size)


def load_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


_MODELS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def load_reward_model(config: RewardConfig) -> Any:
    """The configured ``UnifiedReward``, loaded once per process and shared by every reward function."""
    from reward_core import UnifiedReward

    with _LOCK:
        key = config.cache_key()
        if key not in _MODELS:
            if config.server:
                _MODELS[key] = UnifiedReward.from_server(config.server, model=config.server_model)
            elif config.model:
                _MODELS[key] = UnifiedReward.from_pretrained(
                    config.model, device=config.device, dtype=config.dtype, batch_size=config.batch_size
                )
            else:
                raise RuntimeError(
                    "no reward model configured: set UNIFIEDREWARD_MODEL (checkpoint path) or "
                    "UNIFIEDREWARD_SERVER (OpenAI-compatible URL), or `model`/`server` in UNIFIEDREWARD_CONFIG"
                )
        return _MODELS[key]
