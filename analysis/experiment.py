"""The analysis room's view of a scenario, read from the manifest's `scenario.resolved` record.

Analysis may not import `scenarios`; the resolved record's fields are declared once, in
`contracts.run_format` (ResolvedScenario, checked against scenarios.schema by a test), and read
here into the few records scoring needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analysis.errors import AnalysisInputError
from analysis.human_rules import HumanRules, human_rules
from contracts.answer_rules import CheckedRule, RuleError, check_rule
from contracts.formula import CheckedFormula, FormulaError, check_formula
from contracts.option_ids import option_index
from contracts.run_format import (
    ResolvedCoherenceRule,
    ResolvedPopulation,
    ResolvedQuestion,
    ResolvedScenario,
    ResolvedStage,
    question_ordered,
)

FAMILIES = frozenset({"logit", "mnlogit", "ols"})
SE_TYPES = ("cluster", "classical", "robust")
METHODS = ("newton", "bfgs", "lbfgs", "nm")


@dataclass(frozen=True)
class Question:
    """A belief or action question: its options in scale order and its human data column.

    `values` are the options' numbers when the question is a numeric scale (else None): its
    distances and spread are then measured on them rather than on option positions."""

    id: str
    kind: str
    type: str
    options: tuple[str, ...]
    human_column: str | None
    ordered: bool = False
    values: tuple[float, ...] | None = None
    coding: str = "categorical"  # or "linear": the answer enters a formula as its value

    def column_for(self, round_id: int) -> str | None:
        """The human data column holding this question's answer in a round."""
        if not self.human_column:
            return None
        try:  # `validate` allows only {round}; a manifest may have been edited since
            return self.human_column.format(round=round_id)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise AnalysisInputError(f"question '{self.id}': human_column "
                                     f"{self.human_column[:60]!r} is not a column template with "
                                     f"{{round}} as its only placeholder ({exc!r})") from None


@dataclass(frozen=True)
class Factor:
    """A between-subject condition factor and its column in the human data."""

    name: str
    levels: tuple[str, ...]
    column: str


@dataclass(frozen=True)
class CoherenceRule:
    """Pairs (belief answer, action answer) that contradict each other."""

    belief: str
    action: str
    contradicts: tuple[tuple[str, str], ...]
    name: str | None = None  # with `when`: a named expression over several answers
    when: str | None = None

    @property
    def label(self) -> str:
        """A short name for report rows."""
        return self.name if self.when is not None and self.name else f"{self.belief}->{self.action}"

    def checked(self, experiment: Experiment) -> CheckedRule:
        """The expression checked against the questions (RuleError when it names unknown ones)."""
        options = {q.id: q.options for q in experiment.questions}
        return check_rule(self.when, options,
                          {q.id for q in experiment.questions if q.values is not None})


@dataclass(frozen=True)
class Indicator:
    """A 0/1 regression variable: 1 when `question`'s answer is one of `options`."""

    name: str
    question: str
    options: tuple[str, ...]
    versus: tuple[str, ...] | None = None  # 0 only for these; other answers are missing


@dataclass(frozen=True)
class RegressionSpec:
    """A regression of the original study: name, family (logit/mnlogit/ols) and formula."""

    name: str
    family: str
    formula: str
    se: str = "cluster"  # or "classical", "robust"
    maxiter: int | None = None  # None: statsmodels' default of the family
    method: str | None = None


@dataclass(frozen=True)
class Experiment:
    """Everything scoring needs to know about the scenario."""

    name: str
    reference_note: str
    id_column: str | None
    data: str | None
    demographics: dict[str, str]
    factors: tuple[Factor, ...]
    rounds: tuple[int, ...]
    questions: tuple[Question, ...]
    coherence: tuple[CoherenceRule, ...]
    subgroups: tuple[str, ...]
    indicators: tuple[Indicator, ...]
    regressions: tuple[RegressionSpec, ...]
    # Missing codes, exclusions, long-form demographics and weights of the human rows.
    human: HumanRules = field(default_factory=HumanRules)

    @property
    def attributes(self) -> list[str]:
        """Participant-level columns: condition factors, then demographics."""
        return [f.name for f in self.factors] + list(self.demographics)

    @property
    def formula_variables(self) -> list[str]:
        """Names a regression formula may use: questions, indicators, attributes and `round`."""
        return ([q.id for q in self.questions] + [i.name for i in self.indicators]
                + self.attributes + ["round"])

    @property
    def belief_questions(self) -> list[Question]:
        """Questions of stages with kind 'belief'."""
        return [q for q in self.questions if q.kind == "belief"]

    def question_index(self, question_id: str) -> int:
        """Position of a question in `questions`."""
        return next(i for i, q in enumerate(self.questions) if q.id == question_id)


def _need(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise AnalysisInputError(f"{where}: missing '{key}' in the resolved scenario")
    return mapping[key]


def _questions(stages: list[ResolvedStage], where: str) -> tuple[Question, ...]:
    questions = []
    for s, stage in enumerate(stages):
        kind = _need(stage, "kind", f"{where}.stages[{s}]")
        for i, q in enumerate(_need(stage, "questions", f"{where}.stages[{s}]")):
            questions.append(_question(q, kind, f"{where}.stages[{s}].questions[{i}]"))
    return tuple(questions)


def _question(q: ResolvedQuestion, kind: str, at: str) -> Question:
    _need(q, "type", at)
    raw = q.get("options") or []
    options = tuple(str(o["id"]) for o in raw)
    if len(options) < 2:
        raise AnalysisInputError(f"{at}: a question needs at least two options")
    numbers = [o.get("value") for o in raw]
    values = None
    if any(v is not None for v in numbers):
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            raise AnalysisInputError(f"{at}: options {list(options)}: either every option has a "
                                     "numeric 'value' or none has")
        values = tuple(float(v) for v in numbers)
    coding = str(q.get("coding") or "categorical")
    if coding not in ("categorical", "linear") or (coding == "linear" and values is None):
        raise AnalysisInputError(f"{at}: coding {coding!r} is not 'categorical' or 'linear' "
                                 "(linear needs a value on every option)")
    return Question(_need(q, "id", at), kind, q["type"], options, q.get("human_column"),
                    question_ordered(q), values, coding)


def _coherence(rules: list[ResolvedCoherenceRule]) -> tuple[CoherenceRule, ...]:
    return tuple(
        CoherenceRule("", "", (), str(r["name"]), str(r["when"])) if r.get("when") is not None
        else CoherenceRule(r["belief"], r["action"],
                           tuple((c["belief"], c["action"]) for c in r["contradicts"]))
        for r in rules
    )


def _indicator(name: str, spec: Any) -> Indicator:
    versus = spec.get("versus")
    return Indicator(name, spec["question"], tuple(spec.get("in") or spec.get("in_") or ()),
                     None if versus is None else tuple(str(v) for v in versus))


def _regression(r: Any) -> RegressionSpec:
    fit = r.get("fit") or {}
    return RegressionSpec(r["name"], r["family"], r["formula"], str(fit.get("se") or "cluster"),
                          fit.get("maxiter"), fit.get("method"))


def experiment_from_resolved(resolved: ResolvedScenario, where: str) -> Experiment:
    """Read the resolved scenario dict; `where` names it in errors (e.g. 'manifest.json: ...')."""
    try:
        experiment = _experiment(resolved, where)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AnalysisInputError(f"{where}: malformed resolved scenario ({exc!r})") from None
    check_references(experiment, where)
    check_formulas(experiment, where)
    return experiment


def check_formulas(experiment: Experiment, where: str) -> dict[str, CheckedFormula]:
    """Every regression formula within the formula grammar (contracts.formula), by regression name.

    A manifest is as shareable as a scenario file, so its formulas are checked again here, before
    anything is scored: a formula is data, never code.
    """
    checked = {}
    for i, reg in enumerate(experiment.regressions):
        try:
            checked[reg.name] = check_formula(reg.formula, experiment.formula_variables)
        except FormulaError as exc:
            raise AnalysisInputError(f"{where}: regression '{reg.name}' "
                                     f"(analysis.regressions[{i}].formula): {exc}") from None
    return checked


def _experiment(resolved: ResolvedScenario, where: str) -> Experiment:
    population = _need(resolved, "population", where)
    analysis = resolved.get("analysis") or {}
    factors = tuple(
        Factor(name, tuple(spec.get("levels", ())), spec.get("column") or name)
        for name, spec in (resolved.get("conditions") or {}).items()
    )
    return Experiment(
        name=str(resolved.get("name", "")),
        reference_note=str(resolved.get("reference_note") or ""),
        id_column=population.get("id_column"),
        data=population.get("data"),
        demographics=_demographics(population),
        factors=factors,
        rounds=tuple(int(r["id"]) for r in _need(resolved, "rounds", where)),
        questions=_questions(_need(resolved, "stages", where), where),
        coherence=_coherence(resolved.get("coherence") or []),
        subgroups=tuple(analysis.get("subgroups") or ()),
        indicators=tuple(_indicator(name, spec)
                         for name, spec in (analysis.get("indicators") or {}).items()),
        regressions=tuple(_regression(r) for r in analysis.get("regressions") or []),
        human=human_rules(population, resolved.get("stages") or []),
    )


def _demographics(population: ResolvedPopulation) -> dict[str, str]:
    """Each demographic's name and its column in the reference data.

    Twins carry their row's values under `population.demographics` (name -> data column). A
    marginal population's participants carry the names of its `marginals` (the run's rows hold
    the drawn values under them); its reference data has each in the column `demographics` maps
    it to, else in the column of that very name.
    """
    mapped = {name: d if isinstance(d, str) else str(d["column"])  # a long form is its dict
              for name, d in (population.get("demographics") or {}).items()}
    if population.get("source") != "marginals":
        return mapped
    return {name: mapped.get(name, name) for name in population.get("marginals") or {}}


def check_references(experiment: Experiment, where: str) -> None:
    """Every name the analysis section uses must exist: questions, options, subgroup columns."""
    options = {q.id: q.options for q in experiment.questions}
    problems = []
    for rule in experiment.coherence:
        if rule.when is not None:
            try:
                rule.checked(experiment)
            except RuleError as exc:
                problems.append(f"coherence rule {rule.label}: {exc}")
            continue
        for qid in (rule.belief, rule.action):
            if qid not in options:
                problems.append(f"coherence rule {rule.label}: unknown question '{qid}'")
        for belief, action in rule.contradicts:
            if option_index(belief, options.get(rule.belief, (belief,))) is None:
                problems.append(f"coherence rule {rule.label}: '{belief}' is not an option")
            if option_index(action, options.get(rule.action, (action,))) is None:
                problems.append(f"coherence rule {rule.label}: '{action}' is not an option")
    for ind in experiment.indicators:
        unknown = [o for o in (*ind.options, *(ind.versus or ()))
                   if option_index(o, options.get(ind.question, ())) is None]
        if ind.question not in options or unknown:
            problems.append(f"indicator '{ind.name}': question '{ind.question}' has no "
                            f"option(s) {unknown or list(ind.options)}")
    for name in experiment.subgroups:
        if name not in experiment.attributes:
            problems.append(f"analysis.subgroups: '{name}' is neither a condition factor nor a "
                            f"demographic (expected one of {experiment.attributes})")
    for reg in experiment.regressions:
        if reg.family not in FAMILIES:
            problems.append(f"regression '{reg.name}': family '{reg.family}' is not one of "
                            f"{sorted(FAMILIES)}")
        if reg.se not in SE_TYPES or reg.method not in (None, *METHODS) or not (
                reg.maxiter is None or (isinstance(reg.maxiter, int) and reg.maxiter >= 1)):
            problems.append(f"regression '{reg.name}': fit {reg.se!r}/{reg.method!r}/"
                            f"{reg.maxiter!r}: expected se one of {list(SE_TYPES)}, method one of "
                            f"{list(METHODS)}, maxiter a whole number >= 1")
    if problems:
        raise AnalysisInputError(f"{where}: " + "; ".join(problems))
