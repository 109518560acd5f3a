"""Shared fixtures: the flagship scenario, the built-in tiny model and its backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLAGSHIP = ROOT / "scenarios" / "security_disclosure.yaml"


@pytest.fixture(scope="session")
def flagship():
    """The flagship scenario, loaded and validated."""
    from scenarios.loader import load_scenario

    return load_scenario(FLAGSHIP)


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """The built-in tiny model's directory (built once, cached)."""
    from engine.tiny_model import ensure_builtin

    return ensure_builtin("builtin:tiny")


@pytest.fixture(scope="session")
def tiny_backend(tiny_dir):
    """A transformers backend over builtin:tiny, shared by the tests of a session."""
    from engine.backends.transformers_backend import TransformersBackend

    return TransformersBackend(tiny_dir)


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run `python run.py ...` as a user would; capture its output."""
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
