"""Stimulus sources, one file each: importing this package imports every file in it, and each
file registers its source with `stimulus_source` (a new source is one new file)."""

from __future__ import annotations

import importlib
import pkgutil

from agents.stimulus.base import (
    ROUND,
    STIMULUS_SOURCES,
    SourceContext,
    SourceFactory,
    StimulusSource,
    active_sources,
    stimulus_source,
    stimulus_variables,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ROUND", "STIMULUS_SOURCES", "SourceContext", "SourceFactory", "StimulusSource", "active_sources",
           "stimulus_source", "stimulus_variables"]
