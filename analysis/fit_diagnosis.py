"""Why a regression could not be estimated: which columns are collinear, which term separates
the outcome, which levels only one respondent has. Each returns "" when it finds nothing, or a
clause ("; ...") that analysis.regression appends to the not-estimable reason."""

from __future__ import annotations

import numpy as np
import pandas as pd

MAX_NAMED = 3


def _named(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


def collinear_columns(exog: pd.DataFrame) -> str:
    """The design columns that add nothing: constant or a combination of earlier columns."""
    matrix = np.asarray(exog, float)
    kept: list[int] = []
    redundant = []
    for j, name in enumerate(exog.columns):
        trial = matrix[:, [*kept, j]]
        if np.linalg.matrix_rank(trial) > len(kept):
            kept.append(j)
        else:
            redundant.append(str(name))
    return f": {_named(redundant)} repeat earlier columns or are constant" if redundant else ""


def _separating(y: np.ndarray, x: np.ndarray) -> str | None:
    """'perfect' or 'quasi' when x separates the 0/1 outcome y, else None."""
    distinct = np.unique(x)
    if len(distinct) < 2:
        return None
    if len(distinct) == 2:  # a dummy: where it is on, the outcome is constant
        on = x == distinct[1]
        return "quasi" if len(np.unique(y[on])) == 1 or len(np.unique(y[~on])) == 1 else None
    low, high = x[y == 0], x[y == 1]
    if not len(low) or not len(high):
        return None
    if low.max() < high.min() or high.max() < low.min():
        return "perfect"
    if low.max() <= high.min() or high.max() <= low.min():
        return "quasi"
    return None


def separation(endog: pd.Series, exog: pd.DataFrame) -> str:
    """The terms whose values separate the outcome (for mnlogit, one outcome from the rest)."""
    y_all = np.asarray(endog, float)
    outcomes = np.unique(y_all)
    targets = [y_all] if set(outcomes) <= {0.0, 1.0} else [(y_all == k).astype(float)
                                                           for k in outcomes]
    found: dict[str, str] = {}
    for column in exog.columns:
        if str(column).startswith("Intercept"):
            continue
        x = np.asarray(exog[column], float)
        for y in targets:
            kind = _separating(y, x)
            if kind is not None:
                found.setdefault(str(column), kind)
    if not found:
        return ""
    kind = "perfect" if "perfect" in found.values() else "quasi"
    return (f"; {kind} separation by {_named(list(found))} (where it is on, or beyond a "
            "threshold, every row has the same outcome): merge or drop that level or term")


def sparse_levels(frame: pd.DataFrame, exog: pd.DataFrame) -> str:
    """Levels of the categorical regressors that only one respondent has."""
    lonely = []
    for column in frame.columns:
        values = frame[column]
        if column == "participant_id" or not isinstance(values.dtype, pd.CategoricalDtype):
            continue
        people = frame.groupby(values, observed=True)["participant_id"].nunique()
        lonely += [f"{column}={level}" for level, count in people.items() if count == 1]
    return f"; level(s) with one respondent: {_named(lonely)}" if lonely else ""
