"""What each column of a data file looks like, for `run.py new`: id, categorical, ordinal,
numeric or free text, and the role it is proposed for (scenarios/scaffold.py writes the file).

The guesses are only proposals: the file `new` writes says what was inferred for each column,
and the author moves, keeps or deletes each entry.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

# A categorical column has at most this many distinct values (more: free text or an id). It is
# also where `validate` starts warning about subgroups (spec F).
MAX_LEVELS = 12
# An ordinal column is a small whole-number scale: 1-5, 0-6, 0-10 (at most this wide).
MAX_SCALE_WIDTH = 10
# A numeric question has one option per value, each with a letter: 26 at most.
MAX_NUMERIC_VALUES = 26
# Scales of up to this many points are written as a likert question with one worded option per
# point; longer ones as `type: numeric` (the options are the numbers).
MAX_WORDED_POINTS = 7
ROUND_COLUMN = re.compile(r"^r(\d+)_(.+)$")  # r1_attack: the answer of round 1
OPTION_ID = re.compile(r"^\S{1,64}$")  # spec A: 1-64 printable characters, no whitespace
ID_WORDS = ("id", "respondent", "participant", "case", "serial", "caseid", "subject", "pid")
# Column names that usually hold who the respondent is (not an answer): proposed demographics.
DEMOGRAPHIC_WORDS = (
    "age", "sex", "gender", "female", "male", "race", "black", "white", "ethnic", "ethnicity",
    "hispanic", "region", "state", "country", "urban", "rural", "population", "educ",
    "education", "school", "degree", "income", "wage", "earnings", "marital", "married", "occup",
    "occupation", "prestige", "workstat", "employ", "employment", "relig", "religion", "born",
    "year", "cohort", "household", "language")
TREATMENT_WORDS = ("treatment", "treat", "condition", "arm", "group", "version", "variant")
MISSING_WORDS = ("dk", "don't know", "dont know", "refused", "na", "n/a", "missing", "no answer",
                 "iap", ".", "-", "?")


@dataclass(frozen=True)
class Column:
    """One data column as `new` sees it."""

    name: str
    kind: str  # id | categorical | ordinal | numeric | text | empty | constant
    rows: int
    missing: int  # empty cells
    values: tuple[str, ...] = ()  # distinct values as text, numbers ascending (few only)
    counts: tuple[int, ...] = ()
    distinct: int = 0
    is_number: bool = False
    whole: bool = False  # numbers that are all whole
    low: float | None = None
    high: float | None = None
    quartiles: tuple[float, ...] = ()
    missing_codes: tuple[str, ...] = ()  # values that look like "no answer" (DK, refused)

    @property
    def option_ids_ok(self) -> bool:
        """Whether every value can be an option id as it is (no whitespace, 64 characters)."""
        return all(OPTION_ID.match(v) for v in self.values)

    def describe(self) -> str:
        """One line for the comment above the column's entry."""
        missing = f"; {self.missing} of {self.rows} rows empty" if self.missing else ""
        if self.kind in ("categorical", "ordinal"):
            shown = ", ".join(f"{v} ({c})" for v, c in zip(self.values, self.counts, strict=True))
            return f"{self.kind}, {self.distinct} values: {shown}{missing}"
        if self.kind == "numeric":
            return (f"numeric, {self.distinct} values from {number_text(self.low)} to "
                    f"{number_text(self.high)}{missing}")
        return f"{self.kind}, {self.distinct} distinct values{missing}"


def number_text(value: float | None) -> str:
    """A number as a data value's text: 36.0 -> "36", 0.5 -> "0.5"."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def name_words(name: str) -> list[str]:
    """A column name's words (lower case): "value_structure" -> ["value", "structure"]."""
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def looks_like(name: str, words: tuple[str, ...]) -> bool:
    """Whether a column name is, or starts with, one of `words` (word by word)."""
    parts = name_words(name)
    return any(p == w or (len(w) > 3 and p.startswith(w)) for p in parts for w in words)


def profile(name: str, cells: pd.Series) -> Column:
    """Infer one column's kind from its cells (read as pandas infers them)."""
    rows = len(cells)
    present = cells.dropna()
    if present.dtype == object or pd.api.types.is_string_dtype(present.dtype):
        present = present.astype(str).str.strip()
        present = present[present != ""]
    missing = rows - len(present)
    distinct = int(present.nunique())
    if distinct == 0:
        return Column(name, "empty", rows, missing)
    if pd.api.types.is_bool_dtype(present.dtype):
        present = present.map(lambda b: "true" if b else "false")
    if pd.api.types.is_numeric_dtype(present.dtype):
        return _numeric(name, present.astype(float), rows, missing, distinct)
    return _text(name, present.astype(str), rows, missing, distinct)


def _counted(present: pd.Series, key: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    counts = present.value_counts()
    order = sorted(counts.index, key=key)
    return tuple(str(k) for k in order), tuple(int(counts[k]) for k in order)


def _numeric(name: str, present: pd.Series, rows: int, missing: int, distinct: int) -> Column:
    whole = bool((present % 1 == 0).all())
    low, high = float(present.min()), float(present.max())
    quartiles = tuple(float(q) for q in present.quantile([0.25, 0.5, 0.75]))
    base: dict[str, Any] = {"rows": rows, "missing": missing, "distinct": distinct,
                            "is_number": True, "whole": whole, "low": low, "high": high,
                            "quartiles": quartiles}
    if distinct == 1:
        return Column(name, "constant", values=(number_text(low),), counts=(len(present),), **base)
    if distinct == rows and whole and looks_like(name, ID_WORDS):
        return Column(name, "id", **base)
    if distinct > MAX_LEVELS:
        return Column(name, "numeric", **base)
    counts = present.value_counts()
    order = sorted(counts.index)
    values = tuple(number_text(v) for v in order)
    scale = whole and distinct >= 3 and high - low <= MAX_SCALE_WIDTH
    return Column(name, "ordinal" if scale else "categorical", values=values,
                  counts=tuple(int(counts[v]) for v in order), **base)


def _text(name: str, present: pd.Series, rows: int, missing: int, distinct: int) -> Column:
    codes = tuple(sorted({v for v in present.unique() if v.strip().lower() in MISSING_WORDS}))
    if codes:  # "no answer" codes are not answers: the options are the other values
        present = present[~present.isin(codes)]
        distinct = int(present.nunique())
        if distinct == 0:
            return Column(name, "empty", rows, missing, missing_codes=codes)
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.notna().all():  # a scale with "DK" among its numbers is a scale
            column = _numeric(name, numbers.astype(float), rows, missing, distinct)
            return replace(column, missing_codes=codes)
    base: dict[str, Any] = {"rows": rows, "missing": missing, "distinct": distinct,
                            "missing_codes": codes}
    if distinct == 1:
        return Column(name, "constant", values=(str(present.iloc[0]),), **base)
    if distinct == rows and (looks_like(name, ID_WORDS) or distinct > MAX_LEVELS):
        return Column(name, "id", **base)
    if distinct > MAX_LEVELS:
        return Column(name, "text", **base)
    values, counts = _counted(present, key=str)
    return Column(name, "categorical", values=values, counts=counts, **base)


@dataclass(frozen=True)
class AskedColumn:
    """A question proposed from a column, or from one column per round (r1_x, r2_x, ...)."""

    question_id: str
    human_column: str  # a column, or a template with {round}
    column: Column  # its values (every round's, for a round template)


@dataclass
class Proposal:
    """Which role each column is proposed for."""

    columns: list[Column]
    id_column: str | None = None
    demographics: list[Column] = field(default_factory=list)
    conditions: list[Column] = field(default_factory=list)  # written as conditions
    condition_candidates: list[Column] = field(default_factory=list)  # written commented out
    questions: list[AskedColumn] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    unused: list[tuple[Column, str]] = field(default_factory=list)


def identifier(text: str, taken: set[str]) -> str:
    """A scenario identifier made from a column name, unique among `taken` (which it joins)."""
    base = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower() or "column"
    base = f"q_{base}" if base[0].isdigit() else base
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _round_groups(table: pd.DataFrame) -> dict[str, dict[int, str]]:
    """Answers recorded once per round (r1_x, r2_x, ...): base name -> {round: column}."""
    groups: dict[str, dict[int, str]] = {}
    for name in table.columns:
        found = ROUND_COLUMN.match(str(name))
        if found:
            groups.setdefault(found.group(2), {})[int(found.group(1))] = str(name)
    return {base: rounds for base, rounds in groups.items() if len(rounds) >= 2}


def propose(table: pd.DataFrame) -> Proposal:
    """Profile every column and propose its role (see the module's docstring)."""
    groups = _round_groups(table)
    in_rounds = {c for rounds in groups.values() for c in rounds.values()}
    columns = [profile(str(c), table[c]) for c in table.columns]
    plan = Proposal(columns)
    taken: set[str] = set()
    for base, rounds in groups.items():
        stacked = pd.concat([table[c] for c in rounds.values()], ignore_index=True)
        plan.questions.append(AskedColumn(identifier(base, taken), f"r{{round}}_{base}",
                                          profile(base, stacked)))
        plan.rounds = sorted(set(plan.rounds) | set(rounds))
    for column in (c for c in columns if c.name not in in_rounds):
        _place(plan, column, taken, repeated=bool(groups))
    return plan


def _place(plan: Proposal, column: Column, taken: set[str], repeated: bool) -> None:
    """One column's role: id, demographic, condition, question or unused (with why)."""
    kind = column.kind
    if kind == "id" and plan.id_column is None:
        plan.id_column = column.name
    elif kind in ("empty", "constant", "id"):
        plan.unused.append((column, f"{kind}: nothing to learn from it"))
    elif looks_like(column.name, DEMOGRAPHIC_WORDS) and kind != "text":
        plan.demographics.append(column)
    elif kind in ("categorical", "ordinal") and column.distinct <= 6 and (
            repeated or looks_like(column.name, TREATMENT_WORDS)):
        plan.conditions.append(column)  # fixed per participant while the answers vary by round
    elif kind in ("categorical", "ordinal") or _numeric_question(column):
        if kind == "categorical" and column.distinct <= 6:
            plan.condition_candidates.append(column)
        plan.questions.append(AskedColumn(identifier(column.name, taken), column.name, column))
    elif kind == "numeric":
        plan.unused.append((column, "numeric with many values: to ask it, bin it into a new "
                                    "column of a few values (or use it as a demographic)"))
    else:
        plan.unused.append((column, "free text: not an answer to choose from options"))


def _numeric_question(column: Column) -> bool:
    """A whole-number column narrow enough to be asked as `type: numeric` (one option a value)."""
    return (column.kind == "numeric" and column.whole and column.low is not None
            and column.high is not None and column.high - column.low < MAX_NUMERIC_VALUES)


def band_edges(column: Column) -> list[float]:
    """Ascending bin edges from the quartiles, rounded to a few significant figures, the first
    at or below the smallest value (so every row falls in a band)."""
    assert column.low is not None
    edges = [_round_down(column.low), *(_nice(q) for q in column.quartiles)]
    if column.whole:  # whole-number data get whole-number edges ("18-29", not "17.5-29.5")
        edges = [float(math.floor(column.low)), *(float(round(e)) for e in edges[1:])]
    unique: list[float] = []
    for edge in edges:
        if not unique or edge > unique[-1]:
            unique.append(edge)
    return unique


def _nice(value: float) -> float:
    if value == 0:
        return 0.0
    digits = 1 - math.floor(math.log10(abs(value)))  # two significant figures
    return float(round(value, digits))


def _round_down(value: float) -> float:
    nice = _nice(value)
    if nice <= value:
        return nice
    step = 10 ** (math.floor(math.log10(abs(value))) - 1) if value else 1
    return float(math.floor(value / step) * step)


def band_labels(edges: list[float], whole: bool) -> list[str]:
    """One label per band: "18-29" ... "65+" (whole numbers), "0.5-1.2" ... "3+" otherwise."""
    labels = []
    for low, high in itertools.pairwise(edges):
        top = high - 1 if whole and high - 1 > low else high
        labels.append(f"{number_text(low)}-{number_text(top)}" if top != low
                      else number_text(low))
    return [*labels, f"{number_text(edges[-1])}+"]
