"""Interchangeable model backends behind one small protocol; add one file and one registry line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.backends.base import (
    Backend,
    ChoiceQuery,
    Distribution,
    TextQuery,
    options_from_logprobs,
)


def _transformers(model_dir: Path, **options: Any) -> Backend:
    from engine.backends.transformers_backend import TransformersBackend

    return TransformersBackend(model_dir, **options)


REGISTRY: dict[str, Callable[..., Backend]] = {
    "transformers": _transformers,
}


def create_backend(kind: str, model_dir: Path, **options: Any) -> Backend:
    """Instantiate the backend registered under `kind`."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown backend {kind!r}; available: {', '.join(REGISTRY)}")
    return REGISTRY[kind](model_dir, **options)


__all__ = ["REGISTRY", "Backend", "ChoiceQuery", "Distribution", "TextQuery", "create_backend",
           "options_from_logprobs"]
