"""The tree's layers: `reward_core` (the judge library) imports nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> top-level packages of this project it must never import
FORBIDDEN = {
    "reward_core": {"unifiedreward", "data_converters", "integrations"},
    "data_converters": {"unifiedreward", "integrations"},
    "unifiedreward": {"integrations"},  # except its CLI, which drives everything
}
ON_TOP = {"unifiedreward/cli"}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
        if not any(path.relative_to(ROOT).as_posix().startswith(top) for top in ON_TOP)
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_reward_core_holds_only_the_judge_library():
    """The CLI, sift, bench, toy world and reports live in `unifiedreward`."""
    names = {path.stem for path in (ROOT / "reward_core").iterdir()}
    assert not {name for name in names if name.startswith("cli") or name in {"sift", "bench", "toy", "report"}}
