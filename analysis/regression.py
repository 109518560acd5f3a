"""Fit the scenario's regressions (statsmodels formula API) on a participant-round table.

Variables: question ids (the answer, categorical in option order), indicators (0/1), condition
factors (categorical, first declared level = reference), demographics and `round`. The dependent
variable, when it is a question, is coded by option index: 0/1 for a two-option logit, the outcome
code for mnlogit (first option present = reference), the index for ols. Standard errors are
cluster-robust by participant (rounds of one participant are not independent). A fit that cannot
be estimated (perfect separation, singular design, no convergence) is returned with the reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from formulaic import Formula
from formulaic.errors import FormulaicError
from scipy.stats import norm
from statsmodels.tools import sm_exceptions

from analysis.errors import AnalysisInputError
from analysis.experiment import Experiment, RegressionSpec

Z95 = float(norm.ppf(0.975))
FAMILIES = {"logit": smf.logit, "mnlogit": smf.mnlogit, "ols": smf.ols}
COLUMNS = ["estimate", "se", "low", "high", "p"]


@dataclass(frozen=True)
class Fit:
    """A fitted regression's coefficients (term -> estimate, se, 95% CI, p), or why not."""

    coefficients: pd.DataFrame
    n: int
    participants: int
    not_estimable: str | None = None

    @property
    def estimable(self) -> bool:
        """Whether the fit produced coefficients."""
        return self.not_estimable is None


def unfit(reason: str, n: int = 0, participants: int = 0) -> Fit:
    """A fit that could not be estimated, with the reason."""
    return Fit(pd.DataFrame(columns=COLUMNS), n, participants, f"not estimable: {reason}")


def variables(spec: RegressionSpec) -> tuple[str, set[str]]:
    """The dependent variable and every variable a regression's formula reads."""
    try:
        formula = Formula(spec.formula)
    except FormulaicError as exc:
        raise AnalysisInputError(
            f"regression '{spec.name}': formula {spec.formula!r} does not parse ({exc})") from None
    lhs = sorted(formula.lhs.required_variables) if hasattr(formula, "lhs") else []
    if len(lhs) != 1:
        raise AnalysisInputError(f"regression '{spec.name}': formula {spec.formula!r} needs "
                                 "exactly one dependent variable left of '~'")
    return lhs[0], set(formula.required_variables)


def known_variables(experiment: Experiment) -> list[str]:
    """Names a formula may use."""
    return ([q.id for q in experiment.questions] + [i.name for i in experiment.indicators]
            + experiment.attributes + ["round"])


def check_formulas(experiment: Experiment, where: str) -> set[str]:
    """Raise on a formula naming an unknown variable; return the attributes formulas use."""
    known = known_variables(experiment)
    used: set[str] = set()
    for spec in experiment.regressions:
        _, names = variables(spec)
        unknown = sorted(names - set(known))
        if unknown:
            raise AnalysisInputError(
                f"{where}: regression '{spec.name}': formula {spec.formula!r} names unknown "
                f"variable(s) {unknown}; known variables are {known}")
        used |= names
    return used & set(experiment.attributes)


def _dependent(frame: pd.DataFrame, name: str,
               spec: RegressionSpec) -> tuple[pd.Series, list[str]] | str:
    """The dependent variable coded for the family with its outcome labels, or why it cannot be."""
    values = frame[name]
    if isinstance(values.dtype, pd.CategoricalDtype):
        labels = [str(c) for c in values.cat.categories]
        if spec.family == "logit" and len(labels) != 2:
            return "logit needs a 0/1 dependent; declare an indicator or use mnlogit"
        values = pd.Series(values.cat.codes, index=frame.index)
    else:
        values = pd.to_numeric(values, errors="coerce")
        labels = [format(v, "g") for v in sorted(values.dropna().unique())]
    if values.isna().any():
        return f"dependent variable '{name}' is not numeric or categorical"
    if values.nunique() < 2:
        return f"dependent variable '{name}' does not vary"
    if spec.family == "logit" and not values.isin([0, 1]).all():
        return f"logit needs a 0/1 dependent; '{name}' has other values"
    return values, labels


def prepare(table: pd.DataFrame, spec: RegressionSpec,
            experiment: Experiment) -> tuple[pd.DataFrame, list[str]] | str:
    """Complete-case rows a fit reads and the dependent's outcome labels, or why there are none."""
    dependent, names = variables(spec)
    frame = table[sorted(names | {"participant_id"})].dropna().copy()
    if frame.empty:
        return "no complete rows for the formula's variables"
    for factor in experiment.factors:
        if factor.name in frame.columns:
            text = frame[factor.name].astype(str)
            present = set(text.unique())
            levels = [lv for lv in factor.levels if lv in present]
            frame[factor.name] = pd.Categorical(
                text, categories=levels + sorted(present - set(factor.levels)))
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].cat.remove_unused_categories()
    coded = _dependent(frame, dependent, spec)
    if isinstance(coded, str):
        return coded
    frame[dependent] = coded[0]
    return frame, coded[1]


def _coefficients(result: object, spec: RegressionSpec, outcomes: list[str]) -> pd.DataFrame:
    params, bse, pvalues = result.params, result.bse, result.pvalues
    if spec.family == "mnlogit":
        # Columns are positional: column j is outcome j + 1 against outcome 0 (the reference).
        dependent = variables(spec)[0]
        index = [f"{term}[{dependent}={outcomes[j + 1]}]"
                 for j in range(params.shape[1]) for term in params.index]
        params, bse, pvalues = (pd.Series(np.asarray(x).T.ravel(), index=index)
                                for x in (params, bse, pvalues))
    frame = pd.DataFrame({"estimate": params, "se": bse, "p": pvalues})
    frame["low"] = frame["estimate"] - Z95 * frame["se"]
    frame["high"] = frame["estimate"] + Z95 * frame["se"]
    return frame[COLUMNS]


def _problem(caught: list[warnings.WarningMessage], result: object) -> str | None:
    kinds = {type(w.message) for w in caught}
    if sm_exceptions.PerfectSeparationWarning in kinds:
        return "perfect separation (a predictor determines the outcome)"
    retvals = getattr(result, "mle_retvals", None) or {}
    if sm_exceptions.ConvergenceWarning in kinds or retvals.get("converged") is False:
        return "the likelihood maximisation did not converge"
    if sm_exceptions.HessianInversionWarning in kinds:
        return "singular Hessian (coefficients not identified)"
    if not np.all(np.isfinite(np.asarray(result.bse))):
        return "standard errors not finite (singular covariance)"
    return None


def fit(table: pd.DataFrame, spec: RegressionSpec, experiment: Experiment) -> Fit:
    """Fit one regression on a participant-round table; never raises on estimation problems."""
    prepared = prepare(table, spec, experiment)
    if isinstance(prepared, str):
        return unfit(prepared)
    frame, outcomes = prepared
    n, groups = len(frame), pd.factorize(frame["participant_id"])[0]
    participants = int(groups.max()) + 1
    if participants < 2:
        return unfit("fewer than 2 participants", n, participants)
    try:
        model = FAMILIES[spec.family](spec.formula, frame)
        exog = np.asarray(model.exog, float)
        if n <= exog.shape[1]:
            return unfit(f"{n} rows for {exog.shape[1]} coefficients", n, participants)
        if np.linalg.matrix_rank(exog) < exog.shape[1]:
            return unfit("singular design matrix (collinear or constant terms)", n, participants)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            options = {"cov_type": "cluster", "cov_kwds": {"groups": groups}}
            result = model.fit(**options) if spec.family == "ols" else model.fit(disp=0, **options)
    except (np.linalg.LinAlgError, sm_exceptions.PerfectSeparationError) as exc:
        return unfit(f"{type(exc).__name__}: {exc}", n, participants)
    except Exception as exc:  # a failed fit is a report cell, never a crash of the whole score
        return unfit(f"estimation failed ({type(exc).__name__}: {exc})", n, participants)
    problem = _problem(caught, result)
    if problem is not None:
        return unfit(problem, n, participants)
    return Fit(_coefficients(result, spec, outcomes), n, participants)


def rescale(fit_: Fit, factor: float) -> Fit:
    """The same estimates with standard errors times `factor` (p and 95% CI recomputed)."""
    if not fit_.estimable:
        return fit_
    frame = fit_.coefficients.copy()
    frame["se"] = frame["se"] * factor
    frame["low"] = frame["estimate"] - Z95 * frame["se"]
    frame["high"] = frame["estimate"] + Z95 * frame["se"]
    frame["p"] = 2 * norm.sf(np.abs(frame["estimate"] / frame["se"]))
    return Fit(frame, fit_.n, fit_.participants)
