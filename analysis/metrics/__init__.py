"""The metrics of a report, registered once: every module of this package is one report section.

A module here declares `SECTION`, a `Section` naming its report.json table, its printed title,
its metrics and the function that computes its rows. The report (`analysis.report`), the printer
(`analysis.render`) and the schema doc's test iterate `sections()`, so adding a metric is adding
one module here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.cells import Row
    from analysis.comparison import Comparison


@dataclass(frozen=True)
class Metric:
    """One metric of a section: its name in report rows and how the printed tables show it."""

    name: str
    by_subgroup: bool = False  # printed for each subgroup too (pooled over rounds only)
    count: bool = False  # printed as a whole number


@dataclass(frozen=True)
class Scored:
    """What a section computed: its table rows and any top-level report entries it adds."""

    rows: list[Row]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    """One table of report.json: key, printed title, metrics, and how its rows are computed.

    `position` orders the sections in report.json and in print (lower first)."""

    key: str
    title: str
    position: int
    metrics: tuple[Metric, ...]
    score: Callable[[Comparison], Scored]


@cache
def sections() -> tuple[Section, ...]:
    """Every section of this package, in report order."""
    found = []
    for module in pkgutil.iter_modules(__path__):
        found.append(importlib.import_module(f"{__name__}.{module.name}").SECTION)
    return tuple(sorted(found, key=lambda s: s.position))


def subgroup_metrics() -> frozenset[str]:
    """Metrics printed for each subgroup, not only for everyone."""
    return frozenset(m.name for s in sections() for m in s.metrics if m.by_subgroup)


def count_metrics() -> frozenset[str]:
    """Metrics whose values are counts (printed without decimals)."""
    return frozenset(m.name for s in sections() for m in s.metrics if m.count)
