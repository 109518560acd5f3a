"""Which model a run uses: the scenario's `model:` (or `--model`) as a local model directory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from scenarios.checks import builtin_model_problem
from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario
from scenarios.schema import BUILTIN_MODELS, BUILTIN_PREFIX


def model_directory(loaded: LoadedScenario) -> Path:
    """The local model directory a scenario's `model:` names (embedded models are built)."""
    model = loaded.scenario.model
    if model.startswith(BUILTIN_PREFIX):
        from engine.tiny_model import ensure_builtin

        try:
            return ensure_builtin(model)
        except ValueError as exc:
            raise InputError([Problem(str(loaded.path), None, "model", str(exc))]) from None
    path = Path(model).expanduser()
    path = path if path.is_absolute() else loaded.resolve(model)
    if not (path / "config.json").is_file():
        raise InputError([Problem(str(loaded.path), None, "model",
                                  f"'{model}' is neither a built-in model ({', '.join(BUILTIN_MODELS)}) "
                                  f"nor a local Hugging Face model directory (no config.json in {path})")])
    return path


def check_model(loaded: LoadedScenario) -> None:
    """Refuse an unknown built-in model, a missing package or a directory without config.json,
    without building or loading anything."""
    model = loaded.scenario.model
    if model.startswith(BUILTIN_PREFIX):
        if (message := builtin_model_problem(model)) is not None:  # unknown, or its package missing
            raise InputError([Problem(str(loaded.path), None, "model", message)])
    else:
        model_directory(loaded)  # a local directory: checked for config.json, nothing loaded


def with_model(loaded: LoadedScenario, model: str | None) -> LoadedScenario:
    """The scenario with its `model:` replaced by `--model` (None: unchanged). A local directory
    is made absolute against the working directory, where the command line was typed; the run's
    fingerprint and request record the model, so a run directory never mixes two models."""
    if model is None:
        return loaded
    if not model.startswith(BUILTIN_PREFIX):
        model = str(Path(model).expanduser().resolve())
    return replace(loaded, scenario=loaded.scenario.model_copy(update={"model": model}))
