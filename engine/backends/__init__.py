"""Interchangeable model backends behind one protocol; add one file and one registry line.

A backend's file holds its `Options` model (what a scenario's `backend_options` may say) and
`build(model_dir, adapters, seed, options)`; it imports its heavy packages (torch, vllm, aiohttp)
only when built, so checking a scenario's options costs no heavy import. A missing package is an
input error that says what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from engine.backends.base import (
    Adapters,
    Backend,
    BackendModule,
    ChoiceQuery,
    Distribution,
    TextQuery,
    options_from_logprobs,
)

# The only list of backend names: each names the module holding its Options and build().
REGISTRY: dict[str, str | ModuleType | BackendModule] = {
    "transformers": "engine.backends.transformers_backend",
    "vllm": "engine.backends.vllm_backend",
    "openai": "engine.backends.openai_backend",
}

Location = tuple[Any, ...]


def register(name: str, backend: str | ModuleType | BackendModule) -> None:
    """Make a backend available under `name`: a module path, a module, or any object with
    `Options` and `build` (a test's own backend)."""
    REGISTRY[name] = backend


def backend_names() -> tuple[str, ...]:
    """Every registered backend's name, in registration order."""
    return tuple(REGISTRY)


def backend_module(kind: str) -> BackendModule:
    """The module (or object) registered under `kind`: its Options and build()."""
    entry = REGISTRY[kind]
    return cast(BackendModule, importlib.import_module(entry) if isinstance(entry, str) else entry)


def option_problems(kind: str, options: Mapping[str, Any]) -> list[tuple[Location, str]]:
    """(location within the options, message) for every problem of a backend's options."""
    model = backend_module(kind).Options
    try:
        model.model_validate(options)
    except ValidationError as exc:
        return [(tuple(err["loc"]), _message(kind, model, err)) for err in exc.errors()]
    return []


def _message(kind: str, model: type[BaseModel], err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown option for backend '{kind}'; allowed: {', '.join(model.model_fields)}"
    return str(err["msg"])


def backend_options(kind: str, options: Mapping[str, Any] | BaseModel | None) -> BaseModel:
    """The backend's validated options (an instance of its Options model is taken as it is);
    raises pydantic's ValidationError where option_problems() names problems."""
    model = backend_module(kind).Options
    if isinstance(options, model):
        return options
    if isinstance(options, BaseModel):
        options = options.model_dump()
    return model.model_validate(dict(options or {}))


def create_backend(kind: str, model_dir: Path, *, adapters: Adapters | None = None, seed: int = 0,
                   options: Mapping[str, Any] | BaseModel | None = None) -> Backend:
    """Instantiate the backend registered under `kind` (options already validated or not)."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown backend {kind!r}; available: {', '.join(REGISTRY)}")
    return backend_module(kind).build(model_dir, dict(adapters or {}), seed,
                                      backend_options(kind, options))


__all__ = ["REGISTRY", "Backend", "ChoiceQuery", "Distribution", "TextQuery", "backend_names",
           "backend_options", "create_backend", "option_problems", "options_from_logprobs",
           "register"]
