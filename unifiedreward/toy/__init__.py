"""Offline toy world: tiny real Qwen2.5-VL and Stable Diffusion checkpoints plus synthetic reward data."""

from __future__ import annotations

__all__ = ["build_world", "load_world"]


def __getattr__(name: str):
    # Lazy so that importing the CLI (or `unifiedreward.toy.data`) does not pull in torch and transformers.
    if name in __all__:
        from . import world

        return getattr(world, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
