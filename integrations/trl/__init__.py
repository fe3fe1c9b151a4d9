"""UnifiedReward for TRL: reward functions, a pairwise judge, and a VLM preference collator.

Importing this package applies the trl<0.29 import-guard fix (see ``_compat``), so
``from trl import DPOTrainer`` works on the pinned LLaMA-Factory stack afterwards.
"""

from ._compat import fix_trl_import_guards

fix_trl_import_guards()

__all__ = ["fix_trl_import_guards"]
