"""The records a report is made of: a cell, a noise-ceiling cell and a table row.

A row holds one value per policy (the simulated-vs-human metric) beside the human reference and
the human split-half noise ceiling, so every table prints with one column per policy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from analysis.resampling import interval


@dataclass(frozen=True)
class Cell:
    """One estimate: value, 95% bootstrap interval, n used; or why it is not estimable."""

    value: float | None = None
    ci: tuple[float, float] | None = None
    n: int | None = None
    n_human: int | None = None
    not_estimable: str | None = None


@dataclass(frozen=True)
class Ceiling:
    """A metric computed human-vs-human on split halves, raw and corrected to full size."""

    value: float | None = None
    range: tuple[float, float] | None = None
    corrected: float | None = None
    corrected_range: tuple[float, float] | None = None
    splits: int = 0
    n_half: float | None = None
    not_estimable: str | None = None


@dataclass(frozen=True)
class Row:
    """One line of a report table: policies side by side, the human value, the ceiling."""

    metric: str
    item: str | None = None
    round: int | None = None
    subgroup: str | None = None
    group: str | None = None
    human: Cell | None = None
    policies: dict[str, Cell] = field(default_factory=dict)
    ceiling: Ceiling | None = None


def estimate(value: float, draws: np.ndarray | None = None, n: int | None = None,
             n_human: int | None = None, reason: str = "no answers to compare") -> Cell:
    """A cell from a point value and its bootstrap draws; a non-finite value is not estimable."""
    if value is None or not np.isfinite(value):
        return not_estimable(reason, n, n_human)
    ci = interval(np.asarray(draws)) if draws is not None else None
    return Cell(float(value), ci, n, n_human)


def not_estimable(reason: str, n: int | None = None, n_human: int | None = None) -> Cell:
    """A cell marked not estimable, with the reason."""
    return Cell(n=n, n_human=n_human, not_estimable=f"not estimable: {reason}")


def ceiling(values: np.ndarray, corrected: np.ndarray | None = None, n_half: float | None = None,
            reason: str = "too few human participants to split") -> Ceiling:
    """Summarise per-split values (mean and 2.5-97.5% range over splits)."""
    values = np.asarray(values, float)
    finite = np.isfinite(values)
    if not finite.any():
        return Ceiling(not_estimable=f"not estimable: {reason}")
    raw = _spread(values[finite])
    fixed = (None, None) if corrected is None else _spread(np.asarray(corrected, float))
    return Ceiling(raw[0], raw[1], fixed[0], fixed[1], int(finite.sum()), n_half)


def _spread(values: np.ndarray) -> tuple[float | None, tuple[float, float] | None]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(values.mean()), (float(low), float(high))


def to_json(record: Any) -> Any:
    """A dataclass (or nested dicts/lists of them) as plain JSON values; NaN becomes null."""
    if hasattr(record, "__dataclass_fields__"):
        record = asdict(record)
    if isinstance(record, dict):
        return {str(k): to_json(v) for k, v in record.items()}
    if isinstance(record, list | tuple):
        return [to_json(v) for v in record]
    if isinstance(record, np.generic):
        record = record.item()
    if isinstance(record, float) and not math.isfinite(record):
        return None
    return record
