"""Rules of the `network:` block that need the rest of the scenario or its data.

The switch names a factor and one of its levels; summarised questions exist and have options;
a stochastic block model's `by` is a demographic or a condition; an edge list file exists, has
`source` and `target` columns and names only participants of the data; and the templates work
both with a neighbours summary and without one (round 1, the hidden condition).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd

from scenarios.schema import Scenario

if TYPE_CHECKING:
    from scenarios.errors import Problem
    from scenarios.human_data import HumanData
    from scenarios.loader import LoadedScenario

NEIGHBOURS = "neighbours"  # the template variable (agents/stimulus/social.py)
MAX_UNKNOWN = 5


def summarised_questions(s: Scenario) -> list[str]:
    """The ids of the questions whose answers neighbours are told (default: all with options)."""
    assert s.network is not None
    return list(s.network.summarise or [q.id for q in s.questions if q.options])


def neighbours_sample(s: Scenario) -> dict[str, Any]:
    """A `neighbours` value with every summarised question and option, for template checks."""
    wanted = summarised_questions(s)
    questions = [q for q in s.questions if q.id in wanted and q.options]
    share = {q.id: {o: 1 / len(q.option_ids) for o in q.option_ids} for q in questions}
    return {"round": s.rounds[0].id, "count": 1, "degree": 1, "share": share,
            "majority": {q.id: q.option_ids[0] for q in questions}}


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def network_problems(loaded: LoadedScenario, human: HumanData | None, at: Any) -> Iterator[Problem]:
    """Every problem of the `network:` block (none without one)."""
    s = loaded.scenario
    net = s.network
    if net is None:
        return
    taken = set(s.conditions) | set(s.population.demographics) | set(s.population.marginals)
    taken |= {name for r in s.rounds for name in r.variables}
    if NEIGHBOURS in taken:
        yield at(("network",), f"'{NEIGHBOURS}' is the network's template variable; rename the "
                 "condition, demographic or round variable of that name")
    if net.show is not None:
        factor = s.conditions.get(net.show.factor)
        if factor is None:
            yield at(("network", "show", "factor"), f"no condition '{net.show.factor}'; expected "
                     f"one of: {', '.join(s.conditions) or '(none)'}"
                     f"{_hint(net.show.factor, list(s.conditions))}")
        elif net.show.level not in factor.levels:
            yield at(("network", "show", "level"), f"'{net.show.level}' is not a level of "
                     f"'{net.show.factor}'; expected one of: {', '.join(factor.levels)}")
    with_options = [q.id for q in s.questions if q.options]
    for i, qid in enumerate(net.summarise or []):
        if qid not in with_options:
            yield at(("network", "summarise", i), f"no question '{qid}' with options; expected "
                     f"one of: {', '.join(with_options)}{_hint(qid, with_options)}")
    if net.by is not None:
        names = [*s.population.demographics, *s.population.marginals, *s.conditions]
        if net.by not in names:
            yield at(("network", "by"), f"'{net.by}' is neither a demographic nor a condition; "
                     f"expected one of: {', '.join(names)}{_hint(net.by, names)}")
    if net.edges is not None:
        yield from _edge_problems(loaded, human, at)


def _edge_problems(loaded: LoadedScenario, human: HumanData | None, at: Any) -> Iterator[Problem]:
    net = loaded.scenario.network
    assert net is not None and net.edges is not None
    path = loaded.resolve(net.edges)
    if not path.is_file():
        yield at(("network", "edges"), f"no edge list file {path}")
        return
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        yield at(("network", "edges"), f"{path} is not a readable CSV: {exc}")
        return
    lacking = [c for c in ("source", "target") if c not in table.columns]
    if lacking:
        yield at(("network", "edges"), f"{path} needs columns source and target (participant "
                 f"ids); it lacks {', '.join(lacking)} (it has {', '.join(table.columns)})")
        return
    pop = loaded.scenario.population
    if human is None or pop.source != "twins":
        return
    if pop.id_column and pop.id_column in human.table.columns:
        known = {str(v) for v in human.table[pop.id_column]}
    else:  # 'row' + the data row's number (agents/population.py twin_ids)
        known = {f"row{i + 1}" for i in range(len(human.table))}
    for column in ("source", "target"):
        unknown = [(i, v) for i, v in enumerate(table[column]) if v not in known]
        for i, value in unknown[:MAX_UNKNOWN]:
            # the file's line: the header is line 1 (comment lines are not counted here)
            yield at(("network", "edges"), f"{path} line {i + 2}, column {column}: '{value}' is "
                     "not a participant id of the data")
        if len(unknown) > MAX_UNKNOWN:
            yield at(("network", "edges"), f"{path}: {len(unknown) - MAX_UNKNOWN} more unknown "
                     f"ids in column {column}")
