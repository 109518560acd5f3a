"""The scenario file's coherence and analysis sections (re-exported by scenarios.schema).

Fields added after the first manifests are left out of the resolved record while at their
defaults, so the manifests of scenarios that do not use them stay byte-identical.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_serializer, model_validator

from contracts.answer_rules import RuleError, check_rule
from scenarios.questions import Identifier, OptionId, Strict


class Contradiction(Strict):
    """One (belief answer, action answer) pair that contradicts."""

    belief: OptionId
    action: OptionId


def _without(data: Any, unset: dict[str, Any]) -> Any:
    """The serialized record without the fields that hold their default."""
    if isinstance(data, dict):
        for name, default in unset.items():
            if name in data and data[name] == default:
                data.pop(name)
    return data


class CoherenceRule(Strict):
    """When answers contradict: pairs of one belief and one action question's answers
    (`belief`, `action`, `contradicts`), or a named expression over several answers (`name`,
    `when`; contracts/answer_rules.py)."""

    belief: Identifier | None = None
    action: Identifier | None = None
    contradicts: list[Contradiction] | None = Field(default=None, min_length=1)
    name: Identifier | None = None
    when: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> CoherenceRule:
        pairs = [self.belief, self.action, self.contradicts]
        expression = [self.name, self.when]
        if any(v is not None for v in expression):
            if any(v is not None for v in pairs):
                raise ValueError("a coherence rule is either {belief, action, contradicts} or "
                                 "{name, when}, not both")
            if None in expression:
                raise ValueError("a rule over several answers needs both 'name' (its report "
                                 "label) and 'when' (the expression)")
            try:
                check_rule(self.when)
            except RuleError as exc:
                raise ValueError(str(exc)) from None
        elif None in pairs:
            missing = [n for n, v in zip(("belief", "action", "contradicts"), pairs, strict=True)
                       if v is None]
            raise ValueError(f"a coherence rule needs {', '.join(missing)} (or 'name' and "
                             "'when' for a rule over several answers)")
        return self

    @model_serializer(mode="wrap")
    def _resolved(self, handler: Any) -> Any:
        return _without(handler(self), {"belief": None, "action": None, "contradicts": None,
                                        "name": None, "when": None})


class Indicator(Strict):
    """A 0/1 analysis variable: 1 when a question's answer is one of `in`; with `versus`, 0
    only when it is one of `versus` (other answers leave the row out), else 0 otherwise."""

    question: Identifier
    in_: list[OptionId] = Field(alias="in", min_length=1)
    versus: list[OptionId] | None = Field(default=None, min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _apart(self) -> Indicator:
        both = sorted(set(self.in_) & set(self.versus or []))
        if both:
            raise ValueError(f"answer(s) {', '.join(both)} are in both 'in' and 'versus'")
        return self

    @model_serializer(mode="wrap")
    def _resolved(self, handler: Any) -> Any:
        return _without(handler(self), {"versus": None})


class RegressionFit(Strict):
    """How a regression is fitted (unset: cluster-robust by participant, statsmodels' default
    method and iterations of the family)."""

    se: Literal["cluster", "classical", "robust"] = "cluster"
    maxiter: int | None = Field(default=None, ge=1, le=100_000)
    method: Literal["newton", "bfgs", "lbfgs", "nm"] | None = None


class Regression(Strict):
    """A regression of the original study, re-estimated on human and simulated data."""

    name: Identifier
    family: Literal["logit", "mnlogit", "ols"]
    formula: str = Field(min_length=3)
    fit: RegressionFit | None = None

    @model_validator(mode="after")
    def _fit_applies(self) -> Regression:
        if self.family == "ols" and self.fit is not None and (self.fit.maxiter or self.fit.method):
            raise ValueError("ols is solved exactly: 'maxiter' and 'method' apply to logit and "
                             "mnlogit only")
        return self

    @model_serializer(mode="wrap")
    def _resolved(self, handler: Any) -> Any:
        return _without(handler(self), {"fit": None})


class Analysis(Strict):
    """What the analysis room scores: subgroup columns, derived indicators, regressions."""

    subgroups: list[Identifier] = Field(default_factory=list)
    indicators: dict[Identifier, Indicator] = Field(default_factory=dict)
    regressions: list[Regression] = Field(default_factory=list)
