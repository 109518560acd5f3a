"""The pilot: which human rows a policy is finetuned on, and the conversations it learns from.

The human rows split into a pilot (finetuning data) and a holdout (the twins a policy is judged on).

Three ways to draw the pilot, as in the paper: at random; in equal shares across the groups of a
demographic column (`balanced:ethnicity`); or from one treatment group only
(`condition:disclosure=specific`). The split is seeded from the one run seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.conversation import Message
from agents.population import STREAM_PILOT, twin_ids, twin_rows_mask
from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario

# Beside agents.population's streams (1-5): a study's evaluation holdout.
STREAM_HOLDOUT = 6


@dataclass(frozen=True)
class Sampling:
    """How the pilot is drawn: 'random', 'balanced' (by `column`) or 'condition' (factor = level)."""

    kind: str
    column: str | None = None
    factor: str | None = None
    level: str | None = None

    def __str__(self) -> str:
        if self.kind == "balanced":
            return f"balanced:{self.column}"
        if self.kind == "condition":
            return f"condition:{self.factor}={self.level}"
        return "random"


@dataclass(frozen=True)
class PilotSplit:
    """Pilot and holdout participant ids, each in data-file order; together they are every row."""

    pilot: list[str]
    holdout: list[str]
    sampling: Sampling
    size: float | int
    note: str = ""


def parse_sampling(text: str, where: str) -> Sampling:
    """'random', 'balanced:COLUMN' or 'condition:NAME=VALUE' (`where` names the file in errors)."""
    kind, _, rest = text.partition(":")
    if kind == "random" and not rest:
        return Sampling("random")
    if kind == "balanced" and rest:
        return Sampling("balanced", column=rest)
    if kind == "condition" and "=" in rest:
        factor, _, level = rest.partition("=")
        if factor and level:
            return Sampling("condition", factor=factor, level=level)
    raise InputError([Problem(where, None, "--sample", f"'{text}' is not a sampling strategy; "
                              "expected random, balanced:COLUMN or condition:NAME=VALUE")])


def parse_pilot_size(text: str, where: str) -> float | int:
    """A fraction in (0, 1) ('0.1') or a participant count ('93')."""
    try:
        count = int(text)
    except ValueError:
        count = None
    try:
        fraction = float(text) if count is None else float("nan")
    except ValueError:
        fraction = float("nan")
    if count is not None and count >= 1:
        return count
    if not 0 < fraction < 1:
        raise InputError([Problem(where, None, "--pilot", f"'{text}' is neither a fraction in (0, 1) "
                                  "nor a whole number of participants")])
    return fraction


def split_pilot(loaded: LoadedScenario, size: float | int, sampling: Sampling,
                seed: int) -> PilotSplit:
    """Draw the pilot from the human rows; every other row is the holdout."""
    assert loaded.human is not None, "twins need the human data (checked at load)"
    table = loaded.human.table
    ids = twin_ids(loaded)
    eligible = _eligible(loaded, sampling)
    n = _pilot_count(str(loaded.path), size, int(eligible.sum()), sampling)
    rng = np.random.default_rng([seed, STREAM_PILOT])
    note = ""
    if sampling.kind == "balanced":
        column = _balanced_column(loaded, sampling.column or "")
        rows = np.flatnonzero(twin_rows_mask(loaded))  # every row unless exclude_missing
        picked, note = _balanced(table[column].astype(str).to_numpy()[rows], n, rng)
        chosen = rows[picked]
    else:
        chosen = rng.choice(np.flatnonzero(eligible), size=n, replace=False)
    in_pilot = np.zeros(len(table), dtype=bool)
    in_pilot[chosen] = True
    holdout = ~in_pilot & twin_rows_mask(loaded)
    return PilotSplit([ids[i] for i in np.flatnonzero(in_pilot)],
                      [ids[i] for i in np.flatnonzero(holdout)], sampling, size, note)


def draw_holdout(loaded: LoadedScenario, size: float | int, seed: int) -> list[str]:
    """A seeded evaluation holdout (a fraction of all rows, or a count), in data-file order.

    A study draws it first and every pilot from the rows left (`split_pilot_from_pool`), so all
    policies are judged on the same twins and none of them is in any pilot."""
    ids, kept = twin_ids(loaded), twin_rows_mask(loaded)
    rows = np.flatnonzero(kept)
    n = max(1, round(size * len(rows))) if isinstance(size, float) else size
    if not 1 <= n < len(rows):
        raise InputError([Problem(str(loaded.path), None, "holdout", f"a holdout of {n} leaves "
                                  f"no pilot rows: the data has {len(rows)} rows"
                                  + ("" if kept.all() else " that are twins (exclude_missing)"))])
    rng = np.random.default_rng([seed, STREAM_HOLDOUT])
    if kept.all():  # the draw every run made before exclusions existed
        return [ids[i] for i in np.sort(rng.choice(len(ids), size=n, replace=False))]
    return [ids[i] for i in np.sort(rng.choice(rows, size=n, replace=False))]


def split_pilot_from_pool(loaded: LoadedScenario, size: float | int, sampling: Sampling,
                          seed: int, holdout: list[str], key: int) -> PilotSplit:
    """Draw a pilot from the rows outside `holdout` (the study's pool); the split's holdout is
    `holdout` itself, the twins every policy is evaluated on.

    A fraction is a fraction of ALL rows (of all rows of the treatment group for
    `condition:`), as the paper states its pilots; a pilot the pool cannot give is an error.
    `key` seeds the draw beside `seed` (a study keys it by sampling and size, so variants that
    ask for the same pilot get the same rows)."""
    assert loaded.human is not None, "twins need the human data (checked at load)"
    table, ids = loaded.human.table, twin_ids(loaded)
    eligible = _eligible(loaded, sampling)
    in_pool = ~np.isin(np.array(ids, dtype=object), np.array(holdout, dtype=object))
    n = max(1, round(size * int(eligible.sum()))) if isinstance(size, float) else size
    available = np.flatnonzero(eligible & in_pool)
    if n > len(available):
        group = "" if sampling.kind != "condition" else f" of {sampling.factor}={sampling.level}"
        raise InputError([Problem(str(loaded.path), None, "pilot", f"a pilot of {n} is larger "
                                  f"than the {len(available)} rows{group} left outside the "
                                  f"holdout of {len(holdout)}")])
    rng = np.random.default_rng([seed, STREAM_PILOT, key])
    note = ""
    if sampling.kind == "balanced":
        column = _balanced_column(loaded, sampling.column or "")
        picked, note = _balanced(table[column].astype(str).to_numpy()[available], n, rng)
        chosen = available[picked]
    else:
        chosen = rng.choice(available, size=n, replace=False)
    return PilotSplit([ids[i] for i in np.sort(chosen)], list(holdout), sampling, size, note)


def _eligible(loaded: LoadedScenario, sampling: Sampling) -> np.ndarray:
    """Rows the pilot may come from: every row, or one treatment group's."""
    assert loaded.human is not None
    table, where = loaded.human.table, str(loaded.path)
    if sampling.kind != "condition":
        return twin_rows_mask(loaded)
    factors = loaded.scenario.conditions
    factor = factors.get(sampling.factor or "")
    if factor is None or factor.column is None:
        known = ", ".join(n for n, f in factors.items() if f.column) or "none"
        raise InputError([Problem(where, None, "--sample", f"unknown condition '{sampling.factor}'; "
                                  f"conditions with a data column: {known}")])
    recorded = table[factor.column].astype(str)
    if sampling.level not in factor.levels or not (recorded == sampling.level).any():
        raise InputError([Problem(where, None, "--sample", f"condition {sampling.factor} has no "
                                  f"level '{sampling.level}' in the data; its levels are: "
                                  + ", ".join(factor.levels))])
    return (recorded == sampling.level).to_numpy() & twin_rows_mask(loaded)


def _pilot_count(where: str, size: float | int, available: int, sampling: Sampling) -> int:
    """How many participants a fraction or a count means (a fraction of the eligible rows)."""
    group = "rows" if sampling.kind != "condition" else f"rows in {sampling.factor}={sampling.level}"
    if isinstance(size, float):
        return max(1, round(size * available))
    if not 1 <= size <= available:
        raise InputError([Problem(where, None, "--pilot", f"asked for a pilot of {size}; the data "
                                  f"has {available} {group} (a count must be 1..{available})")])
    return size


def _balanced_column(loaded: LoadedScenario, name: str) -> str:
    """A demographic name (ethnicity) or a data column, as the data column to balance on."""
    assert loaded.human is not None
    demographics = loaded.scenario.population.columns
    column = demographics.get(name, name)
    if column not in loaded.human.table.columns:
        raise InputError([Problem(str(loaded.path), None, "--sample", f"unknown column '{name}' "
                                  "for balanced:; demographics: " + ", ".join(demographics)
                                  + "; data columns: " + ", ".join(map(str, loaded.human.table.columns)))])
    return column


def _balanced(groups: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Equal shares per group; a group smaller than its share gives all its rows and the shortfall
    is shared equally among the larger groups (so the pilot keeps its size)."""
    names = sorted(set(groups.tolist()))
    sizes = {g: int((groups == g).sum()) for g in names}
    quota = dict.fromkeys(names, 0)
    left, open_groups = n, list(names)
    while left and open_groups:
        share, extra = divmod(left, len(open_groups))
        # Which groups get the +1 of an uneven split is drawn, not alphabetical.
        lucky = set(rng.permutation(open_groups)[:extra].tolist())
        for g in open_groups:
            quota[g] += min(share + (g in lucky), sizes[g] - quota[g])
        left = n - sum(quota.values())
        open_groups = [g for g in open_groups if quota[g] < sizes[g]]
    chosen = [rng.choice(np.flatnonzero(groups == g), size=quota[g], replace=False) for g in names]
    short = [g for g in names if quota[g] == sizes[g] and quota[g] < max(quota.values())]
    note = ("groups smaller than an equal share gave all their rows: " + ", ".join(
        f"{g} ({sizes[g]})" for g in short)) if short else ""
    return np.concatenate(chosen).astype(int), note


@dataclass(frozen=True)
class PilotExample:
    """One training example: the conversation a twin would be asked, and its human's answer
    (engine/pilot_schedule.py makes them from SurveyModel's schedule)."""

    participant_id: str
    round_id: int
    question_id: str
    messages: tuple[Message, ...]
    labels: tuple[str, ...]
    label: str
