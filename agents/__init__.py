"""Who takes part: participants (mesa agents), populations and how they are prompted."""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, not with the package: importing one submodule (e.g. `agents.population`, on the
# CLI's path to `--help`) must not pay for the others (formulaic, pandas, mesa).
_HOMES = {
    "Message": "agents.conversation",
    "RoundMemory": "agents.conversation",
    "Answer": "agents.participant",
    "Participant": "agents.participant",
    "ParticipantSpec": "agents.population",
    "build_population": "agents.population",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """The re-exported names, each imported from its module when first asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
