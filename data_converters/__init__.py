"""Converters from UnifiedReward / preference / toy-world data to LLaMA-Factory datasets.

All converters stream their input (constant memory), validate every row (invalid rows are reported
with their line or row number and skipped; ``strict=True`` fails instead) and write their output
atomically (a temporary file renamed at the end, never a half file).
"""

from .api import convert_preference, convert_toy_judge, convert_unifiedreward
from .dataset_info import dataset_info_entry, merge_dataset_info
from .media_paths import MediaResolver
from .records import Row, iter_rows
from .report import ConversionFailed, ConversionReport, NoRowsConverted, RowError
from .runner import convert_file
from .sampling import SamplingStrategy

__all__ = [
    "ConversionFailed",
    "ConversionReport",
    "MediaResolver",
    "NoRowsConverted",
    "Row",
    "RowError",
    "SamplingStrategy",
    "convert_file",
    "convert_preference",
    "convert_toy_judge",
    "convert_unifiedreward",
    "dataset_info_entry",
    "iter_rows",
    "merge_dataset_info",
]
