"""UnifiedReward vision-language reward models as a library.

``from reward_core import UnifiedReward`` is cheap: names are imported on first use, and nothing here
imports a trainer package (trl, diffusers, datasets, peft, accelerate, llamafactory).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "UnifiedReward": "reward_core.model",
    "JudgeItem": "reward_core.model",
    "RewardResult": "reward_core.results",
    "Status": "reward_core.results",
    "VideoFrames": "reward_core.media",
    "VideoSpec": "reward_core.media",
    "get_template": "reward_core.prompts",
    "register_template": "reward_core.prompts",
    "list_templates": "reward_core.prompts",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from reward_core.media import VideoFrames, VideoSpec
    from reward_core.model import JudgeItem, UnifiedReward
    from reward_core.prompts import get_template, list_templates, register_template
    from reward_core.results import RewardResult, Status


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reward_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
