"""LLaMA-Factory integration: shipped training recipes and dataset registration.

Recipes live in ``integrations/llamafactory/recipes/`` and run with the stock CLI::

    llamafactory-cli train integrations/llamafactory/recipes/qwen2_5vl_full_sft.yaml \\
        dataset_dir=data dataset=unifiedreward_sft key=value ...

See ``docs/llamafactory.md``. Data files come from ``unifiedreward convert`` (:mod:`data_converters`).
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from data_converters.dataset_info import dataset_info_entry, merge_dataset_info

__all__ = ["recipe_path", "register_dataset"]


def register_dataset(
    dataset_info: str | os.PathLike[str],
    name: str,
    data_file: str | os.PathLike[str],
    *,
    ranking: bool = False,
    num_samples: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Add ``name`` -> ``data_file`` to LLaMA-Factory's ``dataset_info.json`` and return the entry.

    ``dataset_info`` is the JSON file or the ``dataset_dir`` folder holding it; existing entries of
    other datasets are kept. ``file_name`` is written relative to ``dataset_dir`` when the data file
    lies inside it (absolute otherwise). ``ranking=True`` for pairwise (DPO / RM) files;
    ``num_samples`` draws that many rows at random (``report.num_samples`` of a ``random:N`` / ``N%``
    conversion). Parallel calls on one file are serialised by a lock file beside it.
    """
    dataset_info = os.fspath(dataset_info)
    if os.path.isdir(dataset_info) or not dataset_info.endswith(".json"):
        dataset_info = os.path.join(dataset_info, "dataset_info.json")
    dataset_dir = os.path.dirname(os.path.abspath(dataset_info))
    data_file = os.path.abspath(data_file)
    inside = os.path.commonpath([data_file, dataset_dir]) == dataset_dir
    file_name = os.path.relpath(data_file, dataset_dir) if inside else data_file
    entry = dataset_info_entry(file_name, ranking=ranking, num_samples=num_samples)
    merge_dataset_info(dataset_info, {name: entry}, overwrite=overwrite)
    return entry


def recipe_path(name: str) -> str:
    """Absolute path of a shipped recipe, e.g. ``recipe_path("qwen2_5vl_full_sft")``."""
    file_name = name if name.endswith((".yaml", ".json")) else f"{name}.yaml"
    path = resources.files(__name__).joinpath("recipes", file_name)
    if not path.is_file():
        raise FileNotFoundError(f"no shipped recipe {file_name!r}")
    return os.fspath(path)
