"""Regression recovery: does the simulated data reproduce the human regressions' inferences?

Over the slope coefficients (intercepts excluded) of the human fit, a coefficient's sign label is
+1 / -1 when significant (p < 0.05) with that sign and 0 otherwise.
- sign-F1: positives are the human-significant coefficients; a simulated coefficient agrees when
  it is significant with the same sign. F1 = 2 TP / (#human significant + #simulated significant).
- false-positive rate: simulated significant / all, over the coefficients not significant in the
  human fit.
- CI overlap: share of coefficients (present in both fits) whose 95% intervals overlap.
A term missing from the simulated fit (a level never answered) counts as not significant.
Ceiling: the same metrics between human split halves (A as reference, B as candidate); the
corrected value rescales half A's standard errors by sqrt(n_A / n_human) and half B's by
sqrt(n_B / n_simulated), so their significance matches the sizes of the real comparison
(the estimates keep their half-size noise, so the corrected ceiling is approximate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.cells import Cell, Row, ceiling, estimate, not_estimable
from analysis.comparison import Comparison
from analysis.experiment import Experiment, RegressionSpec
from analysis.metrics import Metric, Scored, Section
from analysis.regression import Fit, fit, rescale
from analysis.resampling import mean_size
from analysis.samples import Sample, participant_rounds

ALPHA = 0.05
METRICS = ("sign_f1", "false_positive_rate", "ci_overlap")


@dataclass(frozen=True)
class Recovery:
    """Recovery metrics of a candidate fit against a reference fit (NaN = undefined)."""

    sign_f1: float
    false_positive_rate: float
    ci_overlap: float
    terms: int


def slopes(fit_: Fit) -> pd.DataFrame:
    """The coefficients without intercepts."""
    frame = fit_.coefficients
    return frame[~frame.index.str.startswith("Intercept")]


def sign_labels(frame: pd.DataFrame, alpha: float = ALPHA) -> pd.Series:
    """+1 / -1 for coefficients significant with that sign, 0 otherwise."""
    return np.sign(frame["estimate"]) * (frame["p"] < alpha)


def recovery(reference: Fit, candidate: Fit) -> Recovery:
    """Sign-F1, false-positive rate and CI overlap of candidate against reference."""
    ref, cand = slopes(reference), slopes(candidate)
    ref_sign = sign_labels(ref)
    cand_sign = sign_labels(cand).reindex(ref.index).fillna(0)
    agree = int(((ref_sign != 0) & (cand_sign == ref_sign)).sum())
    positives, predicted = int((ref_sign != 0).sum()), int((cand_sign != 0).sum())
    negatives = ref_sign == 0
    shared = ref.index.intersection(cand.index)
    overlap = (np.maximum(ref.loc[shared, "low"], cand.loc[shared, "low"])
               <= np.minimum(ref.loc[shared, "high"], cand.loc[shared, "high"]))
    return Recovery(
        sign_f1=2 * agree / (positives + predicted) if positives + predicted else np.nan,
        false_positive_rate=float((cand_sign[negatives] != 0).mean()) if negatives.any()
        else np.nan,
        ci_overlap=float(overlap.mean()) if len(shared) else np.nan,
        terms=len(ref),
    )


UNDEFINED = {
    "sign_f1": "no coefficient is significant in either fit",
    "false_positive_rate": "every human coefficient is significant",
    "ci_overlap": "no coefficient is present in both fits",
}


def _cells(human_fit: Fit, fits: dict[str, Fit]) -> dict[str, dict[str, Cell]]:
    cells: dict[str, dict[str, Cell]] = {m: {} for m in METRICS}
    for name, candidate in fits.items():
        for metric in METRICS:
            if not human_fit.estimable:
                cells[metric][name] = not_estimable(f"human fit {human_fit.not_estimable}")
            elif not candidate.estimable:
                cells[metric][name] = Cell(n=candidate.n, n_human=human_fit.n,
                                           not_estimable=candidate.not_estimable)
            else:
                value = getattr(recovery(human_fit, candidate), metric)
                cells[metric][name] = estimate(value, None, candidate.n, human_fit.n,
                                               reason=UNDEFINED[metric])
    return cells


def _split_values(table: pd.DataFrame, halves: np.ndarray, spec: RegressionSpec,
                  experiment: Experiment, sizes: tuple[float, float],
                  ) -> dict[str, tuple[np.ndarray, ...]]:
    """Recovery of half B against half A per split: raw, and with SEs at full sizes."""
    human_n, simulated_n = sizes
    rounds = len(experiment.rounds)
    raw = {m: np.full(len(halves), np.nan) for m in METRICS}
    corrected = {m: np.full(len(halves), np.nan) for m in METRICS}
    for s, in_a in enumerate(halves):
        rows_a = np.repeat(in_a, rounds)
        fit_a, fit_b = fit(table[rows_a], spec, experiment), fit(table[~rows_a], spec, experiment)
        if not (fit_a.estimable and fit_b.estimable):
            continue
        plain = recovery(fit_a, fit_b)
        fixed = recovery(rescale(fit_a, np.sqrt(fit_a.participants / human_n)),
                         rescale(fit_b, np.sqrt(fit_b.participants / simulated_n)))
        for metric in METRICS:
            raw[metric][s], corrected[metric][s] = getattr(plain, metric), getattr(fixed, metric)
    return {m: (raw[m], corrected[m]) for m in METRICS}


def coefficient_table(spec: RegressionSpec, human_fit: Fit, fits: dict[str, Fit]) -> dict:
    """Side-by-side coefficients: one entry per human term (and terms only a policy has)."""
    def entry(fit_: Fit, term: str) -> dict | None:
        if not fit_.estimable or term not in fit_.coefficients.index:
            return None
        row = fit_.coefficients.loc[term]
        return {"estimate": row["estimate"], "ci": [row["low"], row["high"]], "p": row["p"],
                "significant": bool(row["p"] < ALPHA)}

    terms = list(human_fit.coefficients.index)
    terms += [t for f in fits.values() for t in f.coefficients.index if t not in terms]
    summary = {name: {"n": f.n, "participants": f.participants, "not_estimable": f.not_estimable}
               for name, f in fits.items()}
    return {
        "name": spec.name, "family": spec.family, "formula": spec.formula,
        "human": {"n": human_fit.n, "participants": human_fit.participants,
                  "not_estimable": human_fit.not_estimable},
        "policies": summary,
        "terms": [{"term": t, "human": entry(human_fit, t),
                   "policies": {name: entry(f, t) for name, f in fits.items()}} for t in terms],
    }


def regression_section(experiment: Experiment, human: Sample, policies: list[Sample],
                        halves: np.ndarray) -> tuple[list[Row], list[dict]]:
    """Recovery rows (sign-F1, FPR, CI overlap, with ceilings) and the coefficient tables."""
    human_table = participant_rounds(human, experiment)
    policy_tables = {p.name: participant_rounds(p, experiment) for p in policies}
    rows: list[Row] = []
    tables: list[dict] = []
    for spec in experiment.regressions:
        human_fit = fit(human_table, spec, experiment)
        fits = {name: fit(table, spec, experiment) for name, table in policy_tables.items()}
        cells = _cells(human_fit, fits)
        human_n = human_fit.participants or human.n
        simulated_n = mean_size([f.participants for f in fits.values() if f.estimable])
        splits = _split_values(human_table, halves, spec, experiment,
                               (human_n, simulated_n or human_n))
        for metric in METRICS:
            raw, corrected = splits[metric]
            rows.append(Row(metric, spec.name, None, None, None, None, cells[metric],
                            ceiling(raw, corrected, float(halves.sum(1).mean()),
                                    reason="the split-half fits are not estimable or the "
                                    "metric is undefined on every split")))
        tables.append(coefficient_table(spec, human_fit, fits))
    return rows, tables


def _scored(comparison: Comparison) -> Scored:
    rows, tables = regression_section(comparison.experiment, comparison.human,
                                      comparison.policies, comparison.halves)
    return Scored(rows, {"regressions": tables})


SECTION = Section(
    key="regression_recovery",
    title="Regression recovery (against the human fit)",
    position=40,
    metrics=tuple(Metric(name) for name in METRICS),
    score=_scored,
)
