"""Experiments as data: scenario files, their schema, and the human/reference data they name."""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, not with the package: importing one submodule (e.g. `scenarios.errors`, on the
# CLI's path to `--help`) must not pay for the others (formulaic, pandas, mesa).
_HOMES = {
    "InputError": "scenarios.errors",
    "Problem": "scenarios.errors",
    "LoadedScenario": "scenarios.loader",
    "load_scenario": "scenarios.loader",
    "Question": "scenarios.schema",
    "Scenario": "scenarios.schema",
    "Stage": "scenarios.schema",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """The re-exported names, each imported from its module when first asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
