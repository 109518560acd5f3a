"""Fit the scenario's regressions (statsmodels) on a participant-round table.

Variables: question ids (the answer, categorical in option order), indicators (0/1), condition
factors (categorical, first declared level = reference), demographics and `round`. The dependent
variable, when it is a question, is coded by option index: 0/1 for a two-option logit, the outcome
code for mnlogit (first option present = reference), the index for ols; a question with
`coding: linear` enters as its option's value. Standard errors are cluster-robust by participant
(rounds of one participant are not independent) unless the regression's `fit` says otherwise. A
fit that cannot be estimated (perfect separation, singular design, no convergence) is returned
with the reason, naming the term or columns at fault (analysis/fit_diagnosis.py).

A formula is data, never code: it is checked against the grammar of contracts.formula right before
each fit, and its design matrices are built by formulaic in a namespace holding only `C` and `I`
(no numpy, no builtins, no caller's frame; statsmodels' formula API would evaluate the formula in
the caller's frame). Columns are ordered as the formula API orders them (its "legacy" patsy order),
so coefficient names and order are what `smf.logit(formula, data)` gives.
"""

from __future__ import annotations

import builtins
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, ModelMatrices, model_matrix
from formulaic.materializers import PandasMaterializer
from formulaic.transforms import C
from formulaic.transforms.identity import identity
from formulaic.utils.layered_mapping import LayeredMapping
from scipy.stats import norm
from statsmodels.discrete.discrete_model import Logit, MNLogit
from statsmodels.regression.linear_model import OLS
from statsmodels.tools import sm_exceptions

from analysis.errors import AnalysisInputError
from analysis.experiment import Experiment, RegressionSpec
from analysis.experiment import check_formulas as check_grammar
from analysis.fit_diagnosis import collinear_columns, separation, sparse_levels
from contracts.formula import ALLOWED_CALLS, CheckedFormula, FormulaError, check_formula

Z95 = float(norm.ppf(0.975))
FAMILIES = {"logit": Logit, "mnlogit": MNLogit, "ols": OLS}
COLUMNS = ["estimate", "se", "low", "high", "p"]


class _Unavailable:
    """What a builtin's name means inside a formula: nothing that can be called."""

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise FormulaError("formula: builtins are not available to formulas")


# formulaic evaluates factors with `eval(code, {}, namespace)`; an empty globals dict still lends
# the builtins, so their names are shadowed here (data columns such as `round` come first).
_UNAVAILABLE = _Unavailable()
NAMESPACE: dict[str, Any] = {name: _UNAVAILABLE for name in [*dir(builtins), "__builtins__"]}
NAMESPACE |= dict(zip(ALLOWED_CALLS, (C, identity), strict=True))


class RestrictedMaterializer(PandasMaterializer):
    """formulaic's pandas materializer, evaluating in the data and NAMESPACE only.

    The stock materializer layers the caller's context and formulaic's transforms (`np`, `log`,
    splines) under the data; here the context passed in is ignored and nothing else is reachable.
    """

    REGISTER_NAME = "survey_twins_restricted"
    REGISTER_INPUTS = ()  # never chosen for data by itself; only when named, as `design` does
    REGISTER_PRECEDENCE = -1

    def __init__(self, data: Any, context: Any = None, **params: Any) -> None:
        super().__init__(data, context=None, **params)
        self.layered_context = LayeredMapping(
            LayeredMapping(self.data_context, name="data"),
            LayeredMapping(NAMESPACE, name="transforms"),
        )


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


def checked(spec: RegressionSpec, experiment: Experiment) -> CheckedFormula:
    """The regression's formula checked against the grammar; an AnalysisInputError if outside."""
    try:
        return check_formula(spec.formula, experiment.formula_variables)
    except FormulaError as exc:
        raise AnalysisInputError(f"regression '{spec.name}': {exc}") from None


def variables(spec: RegressionSpec, experiment: Experiment) -> tuple[str, set[str]]:
    """The dependent variable and every variable a regression's formula reads."""
    formula = checked(spec, experiment)
    return formula.dependent, set(formula.variables)


def check_formulas(experiment: Experiment, where: str) -> set[str]:
    """Raise on a formula outside the grammar or naming an unknown variable; return the
    attributes the formulas use."""
    used = {name for formula in check_grammar(experiment, where).values()
            for name in formula.variables}
    return used & set(experiment.attributes)


def _legacy_order(matrices: ModelMatrices) -> list[str]:
    """The right-hand columns in the order statsmodels' formula API gives them (patsy's order:
    intercept, all-categorical terms by degree, then terms grouped by their numeric factors);
    mirrors statsmodels.formula._manager.FormulaManager._legacy_orderer, which cannot be given
    the restricted materializer."""
    spec = matrices.rhs.model_spec
    categorical = set(spec.factor_contrasts)
    terms = [t for t in spec.terms if t.degree > 0]
    cats = sorted((t for t in terms if all(f in categorical for f in t.factors)),
                  key=lambda t: t.degree)
    groups: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    for term in terms:
        if term not in cats:
            groups[tuple(sorted(str(f) for f in term.factors if f not in categorical))].append(term)
    ordered = [t for t in spec.terms if t.degree == 0] + cats
    ordered += [t for group in groups.values() for t in sorted(group, key=lambda t: t.degree)]
    columns = list(matrices.rhs.columns)
    return [c for term in ordered for c in columns[spec.term_slices[term]]]


def design(formula: CheckedFormula, frame: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """The dependent column and the design matrix of a checked formula, built in NAMESPACE."""
    matrices = model_matrix(Formula(formula.text, _ordering="none"), frame, context={},
                            materializer=RestrictedMaterializer, na_action="raise")
    return matrices.lhs.iloc[:, 0], matrices.rhs[_legacy_order(matrices)]


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
    dependent, names = variables(spec, experiment)
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


def _coefficients(result: object, spec: RegressionSpec, dependent: str,
                  outcomes: list[str]) -> pd.DataFrame:
    params, bse, pvalues = result.params, result.bse, result.pvalues
    if spec.family == "mnlogit":
        # Columns are positional: column j is outcome j + 1 against outcome 0 (the reference).
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


def fit_options(spec: RegressionSpec, groups: np.ndarray) -> dict[str, Any]:
    """statsmodels' fit arguments: the standard errors, and the method and iterations of a
    maximum-likelihood family (unset: today's cluster-robust fit with statsmodels' defaults)."""
    covariance: dict[str, Any] = {
        "cluster": {"cov_type": "cluster", "cov_kwds": {"groups": groups}},
        "classical": {"cov_type": "nonrobust"},
        "robust": {"cov_type": "HC0"},
    }[spec.se]
    if spec.family == "ols":
        return covariance
    solver = {"method": spec.method} if spec.method else {}
    solver |= {"maxiter": spec.maxiter} if spec.maxiter else {}
    return {"disp": 0, **solver, **covariance}


def _why(spec: RegressionSpec, endog: pd.Series, exog: pd.DataFrame, frame: pd.DataFrame) -> str:
    """What made a likelihood fit fail: the term that separates the outcome, levels answered
    by one respondent ('' when neither is found)."""
    if spec.family == "ols":
        return ""
    return separation(endog, exog) + sparse_levels(frame, exog)


def fit(table: pd.DataFrame, spec: RegressionSpec, experiment: Experiment) -> Fit:
    """Fit one regression on a participant-round table; never raises on estimation problems.

    Raises AnalysisInputError when the formula is outside the grammar: it is checked again here,
    right before anything is evaluated, whoever built `spec`."""
    formula = checked(spec, experiment)
    prepared = prepare(table, spec, experiment)
    if isinstance(prepared, str):
        return unfit(prepared)
    frame, outcomes = prepared
    n, groups = len(frame), pd.factorize(frame["participant_id"])[0]
    participants = int(groups.max()) + 1
    if participants < 2:
        return unfit("fewer than 2 participants", n, participants)
    try:
        endog, exog_frame = design(formula, frame)
        model = FAMILIES[spec.family](endog, exog_frame)
        exog = np.asarray(model.exog, float)
        if n <= exog.shape[1]:
            return unfit(f"{n} rows for {exog.shape[1]} coefficients", n, participants)
        if np.linalg.matrix_rank(exog) < exog.shape[1]:
            return unfit("singular design matrix (collinear or constant terms"
                         f"{collinear_columns(exog_frame)})", n, participants)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = model.fit(**fit_options(spec, groups))
    except (np.linalg.LinAlgError, sm_exceptions.PerfectSeparationError) as exc:
        return unfit(f"{type(exc).__name__}: {exc}{_why(spec, endog, exog_frame, frame)}", n,
                     participants)
    except Exception as exc:  # a failed fit is a report cell, never a crash of the whole score
        return unfit(f"estimation failed ({type(exc).__name__}: {exc})", n, participants)
    problem = _problem(caught, result)
    if problem is not None:
        return unfit(problem + _why(spec, endog, exog_frame, frame), n, participants)
    return Fit(_coefficients(result, spec, formula.dependent, outcomes), n, participants)


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
