"""How the human reference table is read as the scenario says: missing-value codes, rows
`exclude_missing` drops, derived demographics (contracts.demographics, as the engine derives
them for the twins) and survey weights. Read from the resolved population record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import AnalysisInputError
from contracts.demographics import bin_index, derive, is_missing, number


@dataclass(frozen=True)
class HumanRules:
    """The population's rules for the human rows (all empty: the table is read as it is)."""

    specs: dict[str, dict[str, Any]] = field(default_factory=dict)  # long-form demographics
    missing_codes: tuple[str, ...] = ()
    exclude_missing: tuple[str, ...] = ()
    weights: str | None = None
    question_codes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # question id ->


def human_rules(population: Mapping[str, Any], stages: list[Any]) -> HumanRules:
    """The rules a resolved population (and its questions' `missing_codes`) state."""
    specs = {name: dict(d) for name, d in (population.get("demographics") or {}).items()
             if isinstance(d, Mapping)}
    codes = {str(q["id"]): tuple(map(str, q["missing_codes"])) for stage in stages
             for q in stage.get("questions") or [] if q.get("missing_codes")}
    return HumanRules(specs, tuple(map(str, population.get("missing_codes") or ())),
                      tuple(map(str, population.get("exclude_missing") or ())),
                      population.get("weights") or None, codes)


def without_codes(values: pd.Series, codes: tuple[str, ...]) -> pd.Series:
    """A column with its missing-value codes made empty (NaN)."""
    if not codes:
        return values
    return values.where(~values.map(lambda v: not pd.isna(v) and is_missing(v, codes)))


def prepared_human(table: pd.DataFrame, columns: dict[str, tuple[str, ...]],
                   rules: HumanRules, demographics: dict[str, str]) -> pd.DataFrame:
    """The table with codes made empty in each column read (`columns`: column -> its codes,
    the population's plus a question's own) and `exclude_missing`'s rows dropped."""
    if not rules.missing_codes and not rules.question_codes and not rules.exclude_missing:
        return table
    table = table.copy()
    for column, codes in columns.items():
        if column in table.columns:
            table[column] = without_codes(table[column], codes)
    drop = np.zeros(len(table), dtype=bool)
    for name in rules.exclude_missing:
        column = demographics.get(name, name)
        if column not in table.columns:
            raise AnalysisInputError(f"population.exclude_missing names '{name}', which is no "
                                     "column of the human data")
        drop |= table[column].isna().to_numpy()
        bins = (rules.specs.get(name) or {}).get("bins")
        if bins:
            drop |= np.array([(x := number(v)) is not None and bin_index(x, bins) is None
                              for v in table[column]], dtype=bool)
    return table[~drop]


def analysis_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A long-form demographic without its `missing` text: what subgroups and regressions read."""
    return {key: value for key, value in spec.items() if key != "missing"}


def prompt_only_missing(attributes: pd.DataFrame, specs: dict[str, Any]) -> pd.DataFrame:
    """A run's recorded demographics with each long form's `missing` text back to missing: the
    twins were shown it, but it is no value of the demographic (no subgroup, no regression level)."""
    for name, spec in specs.items():
        text = (spec or {}).get("missing")
        if text is not None and name in attributes.columns:
            attributes[name] = attributes[name].where(attributes[name] != text, None)
    return attributes


def derived_column(values: pd.Series, spec: dict[str, Any] | None) -> pd.Series:
    """A demographic's values as analysis sees them: as the twins carry them (derive), except
    that a missing value stays missing (the long form's `missing` text is for prompts only); a
    short form is left as read."""
    if spec is None:
        return values
    spec = analysis_spec(spec)
    try:
        return pd.Series([derive(None if pd.isna(v) else v, spec) for v in values],
                         index=values.index, dtype=object)
    except ValueError as exc:
        raise AnalysisInputError(f"demographic column '{spec.get('column')}': {exc}") from None


def survey_weights(table: pd.DataFrame, rules: HumanRules, where: str) -> np.ndarray | None:
    """The rows' survey weights scaled to average 1 (None: unweighted)."""
    if rules.weights is None:
        return None
    if rules.weights not in table.columns:
        raise AnalysisInputError(f"{where}: no weights column '{rules.weights}'")
    values = pd.to_numeric(table[rules.weights], errors="coerce").to_numpy(dtype=float)
    if len(values) and (not np.isfinite(values).all() or (values < 0).any() or values.sum() <= 0):
        raise AnalysisInputError(f"{where}: column '{rules.weights}' holds weights that are "
                                 "missing, negative or all 0; expected non-negative numbers")
    return values / values.mean() if len(values) else values
