"""Who takes part: twins of human rows, or draws from declared marginals, and their conditions."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario

# Independent random streams derived from the one run seed.
STREAM_ASSIGNMENT = 1
STREAM_SAMPLING = 2
STREAM_ANSWERS = 3


@dataclass(frozen=True)
class ParticipantSpec:
    """A participant to simulate: id, demographics and assigned (or recorded) condition."""

    participant_id: str
    demographics: dict[str, Any] = field(hash=False)
    condition: dict[str, str] = field(hash=False)


def build_population(loaded: LoadedScenario, n: int | None, seed: int) -> list[ParticipantSpec]:
    """Twins of the data rows (a seeded subset of n when asked) or n draws from marginals."""
    pop = loaded.scenario.population
    if pop.source == "twins":
        return _twins(loaded, n, seed)
    size = n or pop.size
    if not size:
        raise InputError([Problem(str(loaded.path), None, "population.size",
                                  "marginals need a size: set population.size or --participants")])
    return _from_marginals(loaded, size, seed)


def _twins(loaded: LoadedScenario, n: int | None, seed: int) -> list[ParticipantSpec]:
    assert loaded.human is not None, "twins need the human data (checked at load)"
    s, table = loaded.scenario, loaded.human.table
    if n is not None and not 1 <= n <= len(table):
        raise InputError([Problem(str(loaded.human.path), None, "--participants",
                                  f"asked for {n} twins; the data has {len(table)} rows")])
    positions = np.arange(len(table))
    if n is not None and n < len(table):
        rng = np.random.default_rng([seed, STREAM_SAMPLING])
        positions = np.sort(rng.choice(len(table), size=n, replace=False))
    id_column = s.population.id_column
    specs = []
    for pos in positions:
        row = table.iloc[int(pos)]
        pid = str(row[id_column]) if id_column else f"row{int(pos) + 1}"
        demographics = {name: _plain(row[col]) for name, col in s.population.demographics.items()}
        condition = {name: str(row[f.column]) for name, f in s.conditions.items() if f.column}
        specs.append(ParticipantSpec(pid, demographics, condition))
    return specs


def _from_marginals(loaded: LoadedScenario, n: int, seed: int) -> list[ParticipantSpec]:
    s = loaded.scenario
    sampling = np.random.default_rng([seed, STREAM_SAMPLING])
    drawn = {
        name: sampling.choice(list(dist), size=n, p=list(dist.values()))
        for name, dist in s.population.marginals.items()
    }
    cells = assign_conditions({k: f.levels for k, f in s.conditions.items()}, n, seed)
    width = len(str(n))
    return [
        ParticipantSpec(f"S{i + 1:0{width}d}", {k: _plain(v[i]) for k, v in drawn.items()}, cells[i])
        for i in range(n)
    ]


def assign_conditions(factors: dict[str, list[str]], n: int, seed: int) -> list[dict[str, str]]:
    """Balanced random assignment to the full factorial: cell counts differ by at most one."""
    names = list(factors)
    cells = list(itertools.product(*(factors[k] for k in names))) or [()]
    rng = np.random.default_rng([seed, STREAM_ASSIGNMENT])
    order = rng.permutation(np.resize(np.arange(len(cells)), n))
    return [dict(zip(names, cells[c], strict=True)) for c in order]


def _plain(value: Any) -> Any:
    """numpy/pandas scalars to plain Python; missing values to None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value
