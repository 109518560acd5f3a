"""Who takes part: twins of human rows, or draws from declared marginals, and their conditions."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from contracts.demographics import derive
from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario
from scenarios.missing_values import excluded_rows

# Independent random streams derived from the one run seed.
STREAM_ASSIGNMENT = 1
STREAM_SAMPLING = 2
STREAM_ANSWERS = 3
STREAM_PILOT = 4
STREAM_TRAINING = 5
STREAM_NETWORK = 6


# How a twin names its human row when the data have no id column: "row" + the row's number.
ROW_ID_PREFIX = "row"
DATA_ROW_MEANING = ("1-based number of the data row: the first row under the CSV header is 1; the "
                    "leading '#' note lines, the header and blank lines are not counted")


@dataclass(frozen=True)
class ParticipantSpec:
    """A participant to simulate: id, demographics and assigned (or recorded) condition.

    `data_row` is, for a twin, the 1-based number of the human data row it is the twin of
    (DATA_ROW_MEANING); None for a draw from marginals."""

    participant_id: str
    demographics: dict[str, Any] = field(hash=False)
    condition: dict[str, str] = field(hash=False)
    data_row: int | None = None


def build_population(loaded: LoadedScenario, n: int | None, seed: int,
                     ids: Sequence[str] | None = None) -> list[ParticipantSpec]:
    """Twins of the data rows (only those in `ids` when given; a seeded subset of n when asked)
    or n draws from marginals."""
    pop = loaded.scenario.population
    if pop.source == "twins":
        return _twins(loaded, n, seed, ids)
    if ids is not None:
        raise InputError([Problem(str(loaded.path), None, "--twins",
                                  "a marginal population has no human rows to choose twins from")])
    if n is not None and n < 1:
        raise InputError([Problem("command line", None, "--participants",
                                  f"asked for {n} participants; expected at least 1")])
    size = n or pop.size
    if not size:
        raise InputError([Problem(str(loaded.path), None, "population.size",
                                  "marginals need a size: set population.size or --participants")])
    return _from_marginals(loaded, size, seed)


def _twins(loaded: LoadedScenario, n: int | None, seed: int,
           ids: Sequence[str] | None) -> list[ParticipantSpec]:
    assert loaded.human is not None, "twins need the human data (checked at load)"
    s, table = loaded.scenario, loaded.human.table
    names = twin_ids(loaded)
    positions = np.flatnonzero(twin_rows_mask(loaded)) if ids is None \
        else _positions(loaded, names, ids)
    if n is not None and not 1 <= n <= len(positions):
        rows = (f"{len(positions)} were chosen" if ids is not None else
                f"the data has {len(table)} rows" if len(positions) == len(table) else
                f"{len(positions)} of the data's {len(table)} rows are twins (exclude_missing)")
        raise InputError([Problem("command line", None, "--participants",  # a flag, not the CSV
                                  f"asked for {n} twins; {rows} ({loaded.human.path})")])
    if n is not None and n < len(positions):
        rng = np.random.default_rng([seed, STREAM_SAMPLING])
        positions = np.sort(rng.choice(positions, size=n, replace=False))
    specs = []
    for pos in positions:
        row = table.iloc[int(pos)]
        pid = names[int(pos)]
        demographics = {name: derive(_plain(row[col]), s.population.spec(name))
                        for name, col in s.population.columns.items()}
        condition = {name: str(row[f.column]) for name, f in s.conditions.items() if f.column}
        specs.append(ParticipantSpec(pid, demographics, condition, data_row=int(pos) + 1))
    return _randomised(s.conditions, specs, seed)


def _randomised(factors: dict[str, Any], specs: list[ParticipantSpec],
                seed: int) -> list[ParticipantSpec]:
    """Twins given the levels of each `assign: random` factor, seeded and balanced, on top of
    their recorded conditions (in the scenario's order of factors)."""
    drawn = {k: f.levels for k, f in factors.items() if f.assign == "random"}
    if not drawn:
        return specs
    cells = assign_conditions(drawn, len(specs), seed)
    return [ParticipantSpec(spec.participant_id, spec.demographics,
                            {k: cell.get(k, spec.condition.get(k, "")) for k in factors},
                            spec.data_row) for spec, cell in zip(specs, cells, strict=True)]


def twin_rows_mask(loaded: LoadedScenario) -> np.ndarray:
    """Which data rows may have twins: all but those `population.exclude_missing` excludes."""
    assert loaded.human is not None, "twins need the human data (checked at load)"
    return ~excluded_rows(loaded.scenario, loaded.human.table)


def twin_rows_record(loaded: LoadedScenario, specs: Sequence[ParticipantSpec]) -> dict[str, Any] | None:
    """The manifest's `twin_rows`: for each twin, the human data row it is the twin of.

    Scoring reads it to compare a run's twins with their own human rows only (a holdout is never
    scored against its pilot), also when the data have no id column. None for marginals."""
    if loaded.scenario.population.source != "twins":
        return None
    return {"id_column": loaded.scenario.population.id_column, "data_row": DATA_ROW_MEANING,
            "rows": {s.participant_id: s.data_row for s in specs}}


def twin_ids(loaded: LoadedScenario) -> list[str]:
    """Each human row's participant id, as its twin is named: the id column's value, else
    'row' + the row's 1-based number (DATA_ROW_MEANING), e.g. row1 for the first data row. The
    derived ids are stable for a given data file: the same bytes give the same rows."""
    assert loaded.human is not None, "twins need the human data (checked at load)"
    id_column = loaded.scenario.population.id_column
    if id_column:
        ids = loaded.human.table[id_column]
        if ids.isna().any():  # refused at load; str() would name a twin 'nan'
            line = loaded.human.file_line(int(ids.isna().to_numpy().nonzero()[0][0]))
            raise InputError([Problem(str(loaded.human.path), line, id_column,
                                      "empty cell; expected a participant id")])
        return [str(v) for v in ids]  # read as text at load: '001' stays '001'
    return [f"{ROW_ID_PREFIX}{i + 1}" for i in range(len(loaded.human.table))]


def _positions(loaded: LoadedScenario, names: list[str], ids: Sequence[str]) -> np.ndarray:
    """Data-file positions of the given participant ids (in file order); unknown ids are errors."""
    wanted = set(ids)
    unknown = sorted(wanted - set(names))
    excluded = sorted(wanted & {names[i] for i in np.flatnonzero(~twin_rows_mask(loaded))})
    if excluded and not unknown:
        assert loaded.human is not None
        raise InputError([Problem(str(loaded.human.path), None, "--twins",
                                  f"{len(excluded)} participant id(s) name rows that "
                                  "population.exclude_missing excludes (a value is missing), "
                                  f"e.g. {', '.join(excluded[:5])}")])
    if unknown:
        assert loaded.human is not None
        raise InputError([Problem(str(loaded.human.path), None, "--twins",
                                  f"{len(unknown)} participant id(s) are not in this data file, "
                                  f"e.g. {', '.join(unknown[:5])}")])
    return np.array([i for i, name in enumerate(names) if name in wanted], dtype=int)


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
