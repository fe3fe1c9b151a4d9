"""Version shims so the same code runs on TRL 0.24 (LLaMA-Factory env) and TRL 1.x."""

from __future__ import annotations

import importlib.metadata
import logging
import sys

from packaging.version import Version

logger = logging.getLogger(__name__)


def _version(package: str) -> Version | None:
    try:
        return Version(importlib.metadata.version(package))
    except importlib.metadata.PackageNotFoundError:
        return None


TRL_VERSION = _version("trl")
TRANSFORMERS_VERSION = _version("transformers")

# TRL 0.29 rebuilt VLM DPO (on-the-fly processing, image_grid_thw kept) and made its own import guards.
TRL_HAS_VISION_DPO = TRL_VERSION is not None and TRL_VERSION >= Version("0.29.0")


def needs_import_guard_fix() -> bool:
    """trl < 0.29 on transformers >= 5.3 reads ``(exists, None)`` tuples as "package available"."""
    return (
        TRL_VERSION is not None
        and TRL_VERSION < Version("0.29.0")
        and TRANSFORMERS_VERSION is not None
        and TRANSFORMERS_VERSION >= Version("5.3.0")
    )


def fix_trl_import_guards() -> list[str]:
    """Turn trl's tuple-valued ``_<pkg>_available`` flags back into booleans; returns the names fixed.

    trl 0.24 stores ``_weave_available = _is_package_available("weave")``; transformers >= 5.3 returns a
    2-tuple there, which is always truthy, so ``from trl import DPOTrainer`` tries to import absent
    optional packages (weave, llm_blender, mergekit, ...). The flags are module globals read at call time,
    so fixing them before any trainer module is imported is enough.
    """
    if not needs_import_guard_fix():
        return []
    import trl.import_utils as trl_import_utils  # lazy module: does not import the trainers

    fixed = []
    for name, value in vars(trl_import_utils).items():
        if name.startswith("_") and name.endswith("_available") and isinstance(value, tuple):
            setattr(trl_import_utils, name, bool(value[0]))
            fixed.append(name)
    if fixed:
        logger.debug("patched trl import guards: %s", ", ".join(fixed))
    broken = [m for m in ("trl.trainer.callbacks", "trl.trainer.judges") if m in sys.modules]
    if broken:
        logger.warning("trl trainer modules were imported before the import-guard fix: %s", broken)
    return fixed


def ensure_warnings_issued(model: object) -> object:
    """trl < 0.29 trainers write ``model.warnings_issued[...]``; transformers 5 models no longer have it."""
    if not hasattr(model, "warnings_issued"):
        model.warnings_issued = {}
    return model


def ensure_nested_gather(trainer: object) -> object:
    """trl 0.24's OnlineDPO/NashMD/XPO log through ``Trainer._nested_gather``, gone in transformers 5."""
    if not hasattr(trainer, "_nested_gather"):
        trainer._nested_gather = trainer.accelerator.gather
    return trainer
