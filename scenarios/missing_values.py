"""Missing values and derived demographics in the human data: which cells are missing (codes
included), which rows are not twins, the checks of long-form demographics and weights, the
`validate` report of what is done with each missing value, and the subgroup warnings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from contracts.demographics import derive, unreadable
from scenarios.errors import Problem, shown
from scenarios.human_data import HumanData
from scenarios.questions import Question
from scenarios.schema import Scenario

if TYPE_CHECKING:
    from scenarios.loader import LoadedScenario

MAX_LEVELS = 12  # a subgroup column with more levels than this is warned about
MIN_LEVEL_ROWS = 5  # ... and so is one with a level of fewer rows than this
MAX_VALUE_PROBLEMS = 10

At = Callable[[tuple[Any, ...], str], Problem]


def question_codes(s: Scenario, question: Question) -> list[str]:
    """The codes that mean "no answer" in a question's human column: the population's, then
    the question's own `missing_codes`."""
    own = getattr(question, "missing_codes", None) or []
    return list(dict.fromkeys([*s.population.missing_codes, *map(str, own)]))


def column_codes(s: Scenario) -> dict[str, list[str]]:
    """Each data column read (demographics, conditions, answers, weights, exclusions) and the
    missing-value codes that apply to it."""
    pop, codes = s.population, list(s.population.missing_codes)
    columns = [*pop.columns.values(), *(f.column for f in s.conditions.values() if f.column),
               *exclusion_columns(s), *([pop.weights] if pop.weights else [])]
    found = {c: list(codes) for c in columns}
    for q in s.questions if pop.source == "twins" else []:
        for r in s.rounds if q.human_column else []:
            column = q.column_for(r.id) or ""
            found[column] = list(dict.fromkeys([*found.get(column, []), *question_codes(s, q)]))
    return found


def exclusion_columns(s: Scenario) -> list[str]:
    """The data columns `exclude_missing` names (a demographic's name stands for its column)."""
    return [s.population.columns.get(name, name) for name in s.population.exclude_missing]


def excluded_rows(s: Scenario, table: pd.DataFrame) -> np.ndarray:
    """Rows that are not twins: missing a value `exclude_missing` names (a demographic with bins
    is missing below its first edge too). Codes are empty cells already (with_missing_codes)."""
    out = np.zeros(len(table), dtype=bool)
    for name, column in zip(s.population.exclude_missing, exclusion_columns(s), strict=True):
        if column not in table.columns:
            continue
        out |= table[column].isna().to_numpy()
        spec = s.population.spec(name)
        if spec is not None and spec.get("bins"):
            derived = [_derived_or_none(v, spec) for v in table[column]]
            out |= np.array([v is None or v == spec.get("missing") for v in derived], dtype=bool)
    return out


def _derived_or_none(raw: Any, spec: dict[str, Any] | None) -> Any:
    try:
        return derive(raw, spec)
    except ValueError:
        return None


def demographic_values(s: Scenario, table: pd.DataFrame, name: str) -> list[Any]:
    """A demographic's derived values (contracts.demographics.derive), one per row."""
    spec = s.population.spec(name)
    return [derive(v, spec) for v in table[s.population.columns[name]]]


def population_problems(s: Scenario, human: HumanData, at: At) -> Iterator[Problem]:
    """exclude_missing names, long-form demographics' unreadable cells, the weights column."""
    pop, columns, file = s.population, set(human.table.columns), str(human.path)
    for i, name in enumerate(pop.exclude_missing):
        if name not in pop.demographics and name not in columns:
            yield at(("population", "exclude_missing", i), f"'{shown(name)}' is neither a "
                     "demographic nor a column of " + file)
    kept = ~excluded_rows(s, human.table)
    for name in pop.demographics:
        spec = pop.spec(name)
        if spec is None or pop.columns[name] not in columns:
            continue
        column = pop.columns[name]
        bad = [(i, why) for i, v in enumerate(human.table[column])
               if kept[i] and (why := unreadable(v, spec)) is not None]
        for count, (i, why) in enumerate(bad):
            if count == MAX_VALUE_PROBLEMS:
                yield Problem(file, None, column, f"... and {len(bad) - count} more such values")
                break
            yield Problem(file, human.file_line(i), column, f"demographic '{name}': {why}")
    if pop.weights:
        yield from _weight_problems(human, pop.weights, kept, at)


def _weight_problems(human: HumanData, column: str, kept: np.ndarray, at: At) -> Iterator[Problem]:
    if column not in human.table.columns:
        yield at(("population", "weights"), f"unknown column '{shown(column)}' (survey weights) "
                 f"in {human.path}")
        return
    values = pd.to_numeric(human.table[column], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(kept & ~(np.isfinite(values) & (values >= 0)))
    for position in bad[:MAX_VALUE_PROBLEMS]:
        yield Problem(str(human.path), human.file_line(int(position)), column,
                      f"weight '{shown(human.table[column].iloc[position])}'; expected a "
                      "non-negative number (a row without a weight can be excluded: "
                      "population.exclude_missing)")
    if not len(bad) and kept.any() and values[kept].sum() <= 0:
        yield at(("population", "weights"), "every weight is 0; expected some positive weights")


def missing_report(loaded: LoadedScenario) -> list[str]:
    """What `validate` says about missing values: per column read, how many rows are missing
    (codes included) and what is done with them (nothing when no value is missing)."""
    s, human = loaded.scenario, loaded.human
    if human is None:
        return []
    table, pop = human.table, s.population
    excluded = excluded_rows(s, table)
    done: dict[str, str] = {}
    for name, column in pop.columns.items():
        spec = pop.spec(name) or {}
        what = f"demographic {name}: " + (
            f"shown as '{spec['missing']}'" if spec.get("missing") else "left missing (None)")
        done[column] = f"{done[column]}; {what}" if column in done else what
    for name, factor in s.conditions.items():
        if factor.column:
            done.setdefault(factor.column, f"condition {name}")
    for column in column_codes(s):
        if column not in done and column in table.columns and column not in exclusion_columns(s):
            done[column] = ("the twin is kept; that answer is excluded from scoring"
                            if column != pop.weights else "survey weights")
    for column in exclusion_columns(s):
        done[column] = "the row is excluded (not a twin, not in the human reference)"
    lines = [f"missing values in {human.path.name} ({len(table)} rows; codes: "
             + (", ".join(pop.missing_codes) or "none") + ")"]
    clean = []
    for column, what in done.items():
        if column not in table.columns:
            continue
        n = int(table[column].isna().sum())
        if not n:
            clean.append(column)
            continue
        coded = human.coded.get(column, 0)
        lines.append(f"  {column}: {n} row(s) missing" + (f" ({coded} coded)" if coded else "")
                     + f" -> {what}")
    if len(lines) == 1 and not pop.missing_codes and not pop.exclude_missing:
        return []  # nothing is missing and nothing is declared: the one-line summary says it all
    if pop.exclude_missing:
        lines.append(f"  rows excluded: {int(excluded.sum())} of {len(table)} "
                     f"(exclude_missing: {', '.join(pop.exclude_missing)})")
    if clean:
        lines.append("  no missing values in: " + ", ".join(clean))
    return lines


def subgroup_warnings(s: Scenario, human: HumanData | None, at: At) -> Iterator[Problem]:
    """A subgroup column with more than MAX_LEVELS levels, or a level with fewer than
    MIN_LEVEL_ROWS rows, makes cells that are not estimable: suggest bins or labels."""
    if human is None:
        return
    kept = ~excluded_rows(s, human.table)
    for i, group in enumerate(s.analysis.subgroups):
        if group in s.population.demographics:
            column = s.population.columns[group]
            if column not in human.table.columns:
                continue
            try:
                values = pd.Series(demographic_values(s, human.table, group), dtype=object)
            except ValueError:
                continue  # reported as a problem
        elif group in s.conditions and s.conditions[group].column in human.table.columns:
            values = human.table[s.conditions[group].column]
        else:
            continue
        counts = values[kept].dropna().map(str).value_counts()
        if len(counts) > MAX_LEVELS:
            yield at(("analysis", "subgroups", i), f"subgroup '{group}' has {len(counts)} levels "
                     f"in the data (more than {MAX_LEVELS}): few rows per level make cells not "
                     "estimable; give the demographic bins (long form: {column: ..., bins: "
                     "[...], labels: [...]})")
        elif (small := counts[counts < MIN_LEVEL_ROWS]).size:
            yield at(("analysis", "subgroups", i), f"subgroup '{group}' has {small.size} level(s) "
                     f"with fewer than {MIN_LEVEL_ROWS} rows ("
                     + ", ".join(f"{shown(k)}: {v}" for k, v in small.head(5).items())
                     + "): merge them with labels or bins")
