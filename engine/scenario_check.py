"""A scenario file checked as a run needs it: the file (scenarios.loader) and its backend.

The scenario format knows no backend (scenarios import nothing of the engine), so the loader is
handed the registered names and each backend's option check; it reports their problems as its own
(file, line of the YAML key, field, message), in the same one InputError.
"""

from __future__ import annotations

from pathlib import Path

from engine.backends import backend_names, option_problems
from scenarios.loader import BackendRules, LoadedScenario, load_scenario


def load_checked(path: str | Path) -> LoadedScenario:
    """Read and validate a scenario file and its backend's name and options; raise one
    InputError listing every problem found."""
    return load_scenario(path, backends=BackendRules(backend_names(), option_problems))
