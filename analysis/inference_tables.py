"""The inference section's regression tables: classical, naive and PPI++ coefficients per term.

Design matrices are built exactly as scoring builds them (analysis.regression: the checked
formula grammar, formulaic in a namespace holding only C and I), once over the labelled humans,
their twins and the unlabelled twins together, so every part has the same columns; rows are
participant x round and variances are cluster-robust by participant. mnlogit has no PPI++ here
(ppi_py has none either): its classical and naive cells are scoring's statsmodels fits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.experiment import Experiment, RegressionSpec
from analysis.inference import Estimate, not_estimable, z_value
from analysis.inference_regression import (
    FAMILIES,
    as_estimates,
    part,
    ppi_coefficients,
    single_sample,
)
from analysis.regression import checked, design, fit, prepare
from analysis.samples import Sample, participant_rounds

SEP = "\x1f"  # joins a part's tag to a participant id inside one concatenated table
MNLOGIT_NOTE = ("PPI++ is implemented for logit and ols (ppi_py has no multinomial logit); "
                "declare an indicator and fit it with logit")


def _tagged(sample: Sample, experiment: Experiment, tag: str) -> pd.DataFrame:
    table = participant_rounds(sample, experiment)
    table["participant_id"] = tag + SEP + table["participant_id"].astype(str)
    return table


def _matrices(spec: RegressionSpec, experiment: Experiment, tables: list[pd.DataFrame]
              ) -> tuple[pd.Series, pd.DataFrame, pd.Series] | str:
    prepared = prepare(pd.concat(tables, ignore_index=True), spec, experiment)
    if isinstance(prepared, str):
        return prepared
    frame, _ = prepared
    try:
        y, x = design(checked(spec, experiment), frame)
    except Exception as exc:  # a design that cannot be built is a marked cell, never a crash
        return f"design matrix failed ({type(exc).__name__}: {exc})"
    return y.astype(float), x.astype(float), frame.loc[x.index, "participant_id"].astype(str)


def _split(y: pd.Series, x: pd.DataFrame, ids: pd.Series, tag: str, order: list[str] | None):
    mask = ids.str.startswith(tag + SEP).to_numpy()
    bare = ids[mask].str.partition(SEP)[2].to_numpy()
    if order is not None:
        order = [i for i in order if i in set(bare)]
    return part(x.to_numpy()[mask], y.to_numpy()[mask], bare, order)


def _statsmodels_cells(table: pd.DataFrame, spec: RegressionSpec, experiment: Experiment,
                       alpha: float) -> tuple[dict[str, Estimate], str | None, int]:
    result = fit(table, spec, experiment)
    if not result.estimable:
        return {}, result.not_estimable, result.participants
    z = z_value(alpha)
    cells = {term: Estimate(float(r.estimate), float(r.estimate - z * r.se),
                            float(r.estimate + z * r.se), float(r.se), result.participants)
             for term, r in result.coefficients.iterrows()}
    return cells, None, result.participants


def _mnlogit(spec: RegressionSpec, experiment: Experiment, parts: dict[str, tuple[Sample, ...]],
             alpha: float) -> dict[str, Any]:
    human = next(iter(parts.values()))[0]
    classical, reason, n = _statsmodels_cells(participant_rounds(human, experiment), spec,
                                              experiment, alpha)
    policies, naive = {}, {}
    for name, (_, twin, unlabelled) in parts.items():
        table = pd.concat([_tagged(twin, experiment, "t"), _tagged(unlabelled, experiment, "u")],
                          ignore_index=True)
        naive[name], why, _ = _statsmodels_cells(table, spec, experiment, alpha)
        policies[name] = {"naive_not_estimable": why, "ppi_not_estimable":
                          f"not estimable: {MNLOGIT_NOTE}", "lambda": None}
    terms = list(dict.fromkeys([*classical, *(t for cells in naive.values() for t in cells)]))
    missing = not_estimable(MNLOGIT_NOTE, n).to_json()
    return _table(spec, {"participants": n, "not_estimable": reason}, policies, [
        {"term": term, "classical": _cell(classical.get(term)),
         "policies": {name: {"naive": _cell(naive[name].get(term)), "ppi": missing}
                      for name in parts}} for term in terms])


def _cell(estimate: Estimate | None) -> dict[str, Any] | None:
    return None if estimate is None else estimate.to_json()


def _table(spec: RegressionSpec, classical: dict[str, Any], policies: dict[str, Any],
           terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": spec.name, "family": spec.family, "formula": spec.formula,
            "classical": classical, "policies": policies, "terms": terms}


def regression_table(spec: RegressionSpec, experiment: Experiment,
                     parts: dict[str, tuple[Sample, Sample, Sample]],
                     alpha: float) -> dict[str, Any]:
    """One regression: classical (labelled humans), naive (all twins) and PPI++ per policy."""
    if spec.family not in FAMILIES:
        return _mnlogit(spec, experiment, parts, alpha)
    human = next(iter(parts.values()))[0]
    labelled = [str(i) for i in human.participant_ids]
    human_table = _tagged(human, experiment, "h")
    built = _matrices(spec, experiment, [human_table])
    if isinstance(built, str):
        classical_cells: dict[str, Estimate] = {}
        classical_reason: str | None = f"not estimable: {built}"
        n = 0
    else:
        y, x, ids = built
        result = single_sample(spec.family, _split(y, x, ids, "h", None), alpha, "labelled human")
        n = int(ids.nunique())
        classical_reason = None if not isinstance(result, str) else f"not estimable: {result}"
        cells = as_estimates(result, x.shape[1], n)
        classical_cells = {} if isinstance(result, str) else dict(zip(x.columns, cells, strict=True))
    policies, per_policy = {}, {}
    for name, (_, twin, unlabelled) in parts.items():
        built = _matrices(spec, experiment, [human_table, _tagged(twin, experiment, "t"),
                                             _tagged(unlabelled, experiment, "u")])
        if isinstance(built, str):
            policies[name] = {"naive_not_estimable": f"not estimable: {built}",
                              "ppi_not_estimable": f"not estimable: {built}", "lambda": None}
            per_policy[name] = ({}, {})
            continue
        y, x, ids = built
        human_part = _split(y, x, ids, "h", labelled)
        twin_part = _split(y, x, ids, "t", labelled)
        unlabelled_part = _split(y, x, ids, "u", None)
        simulated_mask = ~ids.str.startswith("h" + SEP).to_numpy()
        simulated = part(x.to_numpy()[simulated_mask], y.to_numpy()[simulated_mask],
                         ids[simulated_mask].to_numpy())
        naive = single_sample(spec.family, simulated, alpha, "simulated")
        ppi = ppi_coefficients(spec.family, human_part, twin_part, unlabelled_part, alpha)
        d = x.shape[1]
        naive_cells = as_estimates(naive, d, simulated.clusters)
        ppi_cells = as_estimates(ppi, d, human_part.clusters, unlabelled_part.clusters)
        policies[name] = {
            "naive_not_estimable": f"not estimable: {naive}" if isinstance(naive, str) else None,
            "ppi_not_estimable": f"not estimable: {ppi}" if isinstance(ppi, str) else None,
            "lambda": None if isinstance(ppi, str) else ppi_cells[0].lam}
        per_policy[name] = (dict(zip(x.columns, naive_cells, strict=True)),
                            dict(zip(x.columns, ppi_cells, strict=True)))
    terms = list(dict.fromkeys([*classical_cells, *(t for a, _ in per_policy.values() for t in a)]))
    rows = [{"term": term, "classical": _cell(classical_cells.get(term)),
             "policies": {name: {"naive": _cell(a.get(term)), "ppi": _cell(b.get(term))}
                          for name, (a, b) in per_policy.items()}} for term in terms]
    return _table(spec, {"participants": n, "not_estimable": classical_reason}, policies, rows)


def regression_tables(experiment: Experiment, parts: dict[str, tuple[Sample, Sample, Sample]],
                      chosen: set[str], alpha: float) -> list[dict[str, Any]]:
    """Every chosen regression of the scenario."""
    with np.errstate(all="ignore"):
        return [regression_table(spec, experiment, parts, alpha)
                for spec in experiment.regressions if spec.name in chosen]
