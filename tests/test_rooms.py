"""The one-way doors between the rooms (docs/design.md), read from every module's imports.

engine may import agents and scenarios; agents may import scenarios; scenarios and analysis
import no other room; every room may import the contracts, and the contracts import nothing of
the project. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"engine", "agents", "scenarios", "analysis", "contracts", "run", "tests", "scripts",
           "benchmarks"}
DOORS = {
    "engine": {"agents", "scenarios", "contracts"},
    "agents": {"scenarios", "contracts"},
    "scenarios": {"contracts"},
    "analysis": {"contracts"},
    "contracts": set(),
}


def imported(path: Path) -> set[str]:
    """The top-level names of every absolute import in a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("room", sorted(DOORS))
def test_a_room_imports_only_the_rooms_its_doors_open_to(room: str) -> None:
    allowed = DOORS[room] | {room}
    files = sorted((ROOT / room).rglob("*.py"))
    assert files, f"{room}/ has no modules"
    crossings = {str(path.relative_to(ROOT)): sorted(imported(path) & PROJECT - allowed)
                 for path in files}
    assert {path: names for path, names in crossings.items() if names} == {}
