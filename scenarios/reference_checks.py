"""Whole-file checks that the coherence and analysis sections name answers that exist.

Coherence rules (both forms), indicators (`in`, `versus`), subgroups, formulas, and the
dependent variable each regression family needs. Unknown names get a "did you mean".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from contracts.answer_rules import RuleError, check_rule
from contracts.formula import FormulaError, check_formula
from contracts.option_ids import option_index
from scenarios.errors import Problem, printable

if TYPE_CHECKING:
    from scenarios.human_data import HumanData
    from scenarios.schema import CoherenceRule, Scenario


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a close match among `known`, else ''."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _answer_problem(answer: str, qid: str, ids: list[str]) -> str | None:
    if option_index(answer, ids) is not None:
        return None
    return (f"'{answer}' is not an answer of '{qid}'{did_you_mean(answer, ids)}; expected one "
            "of " + ", ".join(sorted(ids)))


def coherence_problems(s: Scenario, at: Any) -> Iterator[Problem]:
    """Each rule names questions of the right stages and answers they have."""
    kinds = {q.id: st.kind for st in s.stages for q in st.questions}
    options = {q.id: q.option_ids for q in s.questions}
    for ci, rule in enumerate(s.coherence):
        if rule.when is not None:
            yield from _expression_problems(s, ci, rule, kinds, at)
            continue
        for role in ("belief", "action"):
            qid = getattr(rule, role)
            if qid not in kinds:
                yield at(("coherence", ci, role), f"unknown question '{qid}'"
                         f"{did_you_mean(qid, kinds)}; known: " + ", ".join(kinds))
            elif kinds[qid] != role:
                yield at(("coherence", ci, role), f"'{qid}' is asked in a {kinds[qid]} stage, "
                         f"expected a question of a {role} stage")
        for pi, pair in enumerate(rule.contradicts or []):
            for role in ("belief", "action"):
                qid, answer = getattr(rule, role), getattr(pair, role)
                problem = _answer_problem(answer, qid, options[qid]) if qid in options else None
                if problem:
                    yield at(("coherence", ci, "contradicts", pi, role), problem)


def _expression_problems(s: Scenario, ci: int, rule: CoherenceRule, kinds: dict[str, str],
                         at: Any) -> Iterator[Problem]:
    options = {q.id: q.option_ids for q in s.questions}
    valued = {q.id for q in s.questions if all(o.value is not None for o in q.options or [])}
    try:
        checked = check_rule(rule.when, options, valued)
    except RuleError as exc:
        yield at(("coherence", ci, "when"), printable(str(exc)))
        return
    stages = {kinds[name] for name in checked.names}
    for kind in ("belief", "action"):
        if kind not in stages:
            yield at(("coherence", ci, "when"), f"rule '{rule.name}' names no question of a "
                     f"{kind} stage; a coherence rule links beliefs to an action (it names "
                     + ", ".join(sorted(checked.names)) + ")")


def analysis_problems(s: Scenario, at: Any, people: set[str]) -> Iterator[Problem]:
    """Subgroups, indicators, formulas and each regression's dependent variable."""
    options = {q.id: q.option_ids for q in s.questions}
    groups = people | set(s.conditions)
    for gi, group in enumerate(s.analysis.subgroups):
        if group not in groups:
            yield at(("analysis", "subgroups", gi), f"unknown subgroup column '{group}'"
                     f"{did_you_mean(group, groups)}; expected a demographic or condition: "
                     + ", ".join(sorted(groups)))
    for name, ind in s.analysis.indicators.items():
        if ind.question not in options:
            yield at(("analysis", "indicators", name, "question"), f"unknown question "
                     f"'{ind.question}'{did_you_mean(ind.question, options)}")
            continue
        for field, answers in (("in", ind.in_), ("versus", ind.versus or [])):
            for value in answers:
                problem = _answer_problem(value, ind.question, options[ind.question])
                if problem:
                    yield at(("analysis", "indicators", name, field), problem)
    known = set(options) | set(s.analysis.indicators) | set(s.conditions) | people | {"round"}
    for ri, reg in enumerate(s.analysis.regressions):
        # contracts.formula owns the grammar: scoring checks the manifest's copy the same way
        try:
            dependent = check_formula(reg.formula, known).dependent
        except FormulaError as exc:
            yield at(("analysis", "regressions", ri, "formula"), printable(str(exc)))
            continue
        problem = _dependent_problem(s, reg.family, dependent, people)
        if problem:
            yield at(("analysis", "regressions", ri, "formula"), f"regression '{reg.name}': "
                     + problem)


def _dependent_problem(s: Scenario, family: str, dependent: str, people: set[str]) -> str | None:
    """Why the dependent cannot be this family's (None: it can, or only the data can tell)."""
    questions = {q.id: q for q in s.questions}
    question = questions.get(dependent)
    if family == "mnlogit":
        return None if question is not None else (
            f"mnlogit's dependent '{dependent}' is not a question (an mnlogit models the choice "
            "among a question's options)")
    if family == "logit":
        if dependent in s.analysis.indicators or dependent in people:
            return None  # an indicator is 0/1; a demographic's values are checked on the data
        if question is not None:
            values = {o.value for o in question.options or []}
            if len(question.option_ids) == 2 and (question.coding == "categorical"
                                                  or values <= {0.0, 1.0}):
                return None
        return (f"logit needs a 0/1 dependent; '{dependent}' is not an indicator, a two-option "
                "question or a 0/1 demographic: declare an indicator (analysis.indicators, with "
                "`versus` to leave other answers out) or use mnlogit")
    # An ordered scale keeps today's coding (the option's position); an unordered one has none.
    if family == "ols" and question is not None and question.coding == "categorical" \
            and not question.ordered and len(question.option_ids) > 2:
        return (f"ols on '{dependent}', an unordered categorical question with "
                f"{len(question.option_ids)} options: its answer has no number; set "
                "`coding: linear` with a `value` per option, or use mnlogit")
    return None


def dependent_data_problems(s: Scenario, human: HumanData, at: Any) -> Iterator[Problem]:
    """A logit on a demographic needs its data values to be 0/1 (missing ones aside)."""
    columns = s.population.columns
    for ri, reg in enumerate(s.analysis.regressions):
        dependent = reg.formula.split("~", 1)[0].strip()
        if reg.family != "logit" or dependent not in columns \
                or columns[dependent] not in human.table.columns:
            continue
        values = human.table[columns[dependent]].dropna().astype(str).str.strip()
        bad = sorted({v for v in values.unique()
                      if option_index(v, ["0", "1"]) is None})
        if bad:
            yield at(("analysis", "regressions", ri, "formula"), f"regression '{reg.name}': logit "
                     f"needs a 0/1 dependent; demographic '{dependent}' has values "
                     + ", ".join(bad[:5]) + ": declare an indicator or use ols")
