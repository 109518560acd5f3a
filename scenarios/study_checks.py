"""Whole-file checks of a scenario's `study:` block (scenarios/schema.py `Study`).

What can be known from the file and its data is checked here, when the scenario loads (so
`validate` reports it with its line): sampling strategies that name an unknown demographic or
condition, duplicate variant names, an ablation without a persona for it, an unknown model, and
holdouts or pilots larger than the data. Whether each pilot fits in the rows the seeded holdout
leaves is known only once the holdout is drawn: engine/study.py checks that before any training.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scenarios.errors import Problem, shown
from scenarios.human_data import HumanData
from scenarios.schema import BUILTIN_PREFIX, DEFAULT_GRID, Scenario, StudyVariant

if TYPE_CHECKING:
    from scenarios.loader import LoadedScenario

RESERVED_NAMES = frozenset({"base", "human"})  # the base policy, the reference sample


def study_problems(loaded: LoadedScenario, human: HumanData | None, at: Any) -> Iterator[Problem]:
    """Every problem of the study block; `at(loc, message)` places one at its line."""
    s = loaded.scenario
    study = s.study
    if study is None:
        return
    if s.population.source != "twins":
        yield at(("study",), "a study finetunes on human rows and evaluates their twins: it needs "
                 "population source 'twins' with a data file")
        return
    if DEFAULT_GRID in study.grids:
        yield at(("study", "grids", DEFAULT_GRID), f"'{DEFAULT_GRID}' names the study block's own "
                 "settings; give this grid another name")
    rows = None if human is None else len(human.table)
    yield from _grid(loaded, human, at, ("study",), study.variants, study.holdout, study.model,
                     study.participants, rows)
    for name, grid in study.grids.items():
        yield from _grid(loaded, human, at, ("study", "grids", name), grid.variants or [],
                         grid.holdout, grid.model, grid.participants, rows)


def _grid(loaded: LoadedScenario, human: HumanData | None, at: Any, loc: tuple[Any, ...],
          variants: list[StudyVariant], holdout: float | int | None, model: str | None,
          participants: int | None, rows: int | None) -> Iterator[Problem]:
    """One grid's own settings (what it inherits is checked where it is written)."""
    if rows is not None and isinstance(holdout, int) and holdout >= rows:
        yield at((*loc, "holdout"), f"a holdout of {holdout} leaves no rows for the pilots: the "
                 f"data has {rows} rows")
    if participants is not None and isinstance(holdout, int) and participants > holdout:
        yield at((*loc, "participants"), f"{participants} twins asked of a holdout of {holdout}")
    if model is not None:
        problem = study_model_problem(loaded, model)
        if problem:
            yield at((*loc, "model"), problem)
    seen: set[str] = set()
    for i, variant in enumerate(variants):
        where = (*loc, "variants", i)
        if variant.name in seen:
            yield at((*where, "name"), f"variant '{variant.name}' is named twice")
        elif variant.name in RESERVED_NAMES:
            yield at((*where, "name"), f"'{variant.name}' is reserved (base is the model without "
                     "an adapter, human the reference); give the variant another name")
        seen.add(variant.name)
        for message in _sample_problems(loaded.scenario, human, variant):
            yield at((*where, "sample"), message)
        group = _condition_rows(loaded.scenario, human, variant.sample)
        if isinstance(variant.pilot, int) and group is not None and variant.pilot > group:
            yield at((*where, "pilot"), f"a pilot of {variant.pilot} is larger than the condition "
                     f"{variant.sample.partition(':')[2]}, which has {group} rows")
        elif isinstance(variant.pilot, int) and rows is not None and variant.pilot >= rows:
            yield at((*where, "pilot"), f"a pilot of {variant.pilot} is not smaller than the data "
                     f"({rows} rows), and the holdout needs rows too")
        if not variant.demographics:
            yield from _ablation(loaded.scenario, at, (*where, "demographics"))


def _sample_problems(s: Scenario, human: HumanData | None, variant: StudyVariant) -> Iterator[str]:
    """What is wrong with a variant's `sample` (its syntax is the schema's)."""
    kind, _, rest = variant.sample.partition(":")
    demographics = s.population.demographics
    if kind == "balanced":
        columns = set() if human is None else set(map(str, human.table.columns))
        if rest not in demographics and rest not in columns:
            yield (f"unknown demographic '{shown(rest)}' for balanced:; demographics: "
                   + (", ".join(demographics) or "none"))
        return
    if kind != "condition":
        return
    factor, _, level = rest.partition("=")
    known = s.conditions.get(factor)
    if known is None or known.column is None:
        yield (f"unknown condition '{shown(factor)}'; conditions: "
               + (", ".join(s.conditions) or "none"))
        return
    if level not in known.levels:
        yield (f"condition {factor} has no level '{shown(level)}'; its levels are: "
               + ", ".join(known.levels))


def _condition_rows(s: Scenario, human: HumanData | None, sample: str) -> int | None:
    """How many data rows a `condition:NAME=VALUE` pilot may come from (None: not one)."""
    kind, _, rest = sample.partition(":")
    factor, _, level = rest.partition("=")
    known = s.conditions.get(factor)
    if kind != "condition" or human is None or known is None or known.column is None \
            or known.column not in human.table.columns:
        return None
    return int((human.table[known.column].astype(str) == level).sum())


def _ablation(s: Scenario, at: Any, loc: tuple[Any, ...]) -> Iterator[Problem]:
    """A variant without demographics needs a persona without them."""
    from scenarios.checks import demographics_in_persona

    used = demographics_in_persona(s)
    if s.persona_without_demographics is None and used:
        yield at(loc, "a variant without demographics needs 'persona_without_demographics' (the "
                 f"persona or instructions use {', '.join(used)})")


def study_model_problem(loaded: LoadedScenario, model: str) -> str | None:
    """Why the study's model cannot be used (names and files only; nothing is loaded)."""
    from scenarios.checks import builtin_model_problem

    if model.startswith(BUILTIN_PREFIX):
        return builtin_model_problem(model)
    path = loaded.resolve(str(Path(model).expanduser()))
    if not (path / "config.json").is_file():
        return (f"'{shown(model)}' is neither a built-in model nor a local Hugging Face model "
                f"directory (no config.json in {path})")
    return None
