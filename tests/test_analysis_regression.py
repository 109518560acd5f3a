"""Regression recovery: known coefficients come back with their signs; failures are reported."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from analysis.metrics.recovery import recovery
from analysis.regression import Fit
from analysis.render import print_report
from tests import analysis_fixtures as fx

CHOICE = [{"name": "attack_choice", "family": "logit",
           "formula": "attack_north ~ believes_north + C(values) + C(disclosure)"}]


def _logit_sample(n: int, seed: int, belief_effect: float = -1.5,
                  unequal_effect: float = 1.0) -> pd.DataFrame:
    """Participants whose raids follow a known logit model (disclosure has no effect)."""
    rng = np.random.default_rng(seed)
    table = fx.participants(n, seed=seed)
    unequal = (table["value_structure"] == "unequal").to_numpy()
    for r in fx.ROUNDS:
        believes_north = np.isin(table[f"r{r}_belief_location"], ["north", "both"])
        logit = 0.2 + belief_effect * believes_north + unequal_effect * unequal
        north = rng.random(n) < 1 / (1 + np.exp(-logit))
        table[f"r{r}_attack"] = np.where(north, "north", "south")
    return table


def _terms(report: dict) -> dict[str, dict]:
    return {t["term"]: t for t in report["regressions"][0]["terms"]}


def test_known_logit_coefficients_recover_their_signs(tmp_path: Path) -> None:
    report = fx.score(tmp_path, _logit_sample(600, seed=1), {"same": _logit_sample(600, seed=2)},
                      resolved=fx.scenario(regressions=CHOICE), bootstrap=10)
    terms = _terms(report)
    for source in ("human", "same"):
        belief = terms["believes_north"][source] if source == "human" else \
            terms["believes_north"]["policies"][source]
        values = terms["C(values)[T.unequal]"][source] if source == "human" else \
            terms["C(values)[T.unequal]"]["policies"][source]
        assert belief["estimate"] < 0 and belief["significant"]
        assert values["estimate"] > 0 and values["significant"]
        assert belief["ci"][0] < -1.5 < belief["ci"][1]
    f1 = fx.rows(report, "regression_recovery", "sign_f1")[0]
    assert f1["policies"]["same"]["value"] == pytest.approx(1.0)
    assert f1["ceiling"]["splits"] > 0


def test_reversed_effects_give_zero_sign_f1(tmp_path: Path) -> None:
    reversed_ = _logit_sample(600, seed=2, belief_effect=1.5, unequal_effect=-1.0)
    report = fx.score(tmp_path, _logit_sample(600, seed=1), {"reversed": reversed_},
                      resolved=fx.scenario(regressions=CHOICE), bootstrap=10)
    f1 = fx.rows(report, "regression_recovery", "sign_f1")[0]
    assert f1["policies"]["reversed"]["value"] == pytest.approx(0.0)


def test_perfect_separation_is_reported_not_raised(tmp_path: Path) -> None:
    separated = fx.participants(100, seed=2)
    for r in fx.ROUNDS:
        believes = np.isin(separated[f"r{r}_belief_location"], ["north", "both"])
        separated[f"r{r}_attack"] = np.where(believes, "north", "south")
    report = fx.score(tmp_path, _logit_sample(100, seed=1), {"separated": separated},
                      resolved=fx.scenario(regressions=CHOICE), bootstrap=10)
    fit = report["regressions"][0]["policies"]["separated"]
    assert "separation" in fit["not_estimable"] or "converge" in fit["not_estimable"]
    f1 = fx.rows(report, "regression_recovery", "sign_f1")[0]
    assert f1["policies"]["separated"]["not_estimable"]


def test_singular_design_is_reported_not_raised(tmp_path: Path) -> None:
    collinear = [{"name": "collinear", "family": "logit",
                  "formula": "attack_north ~ believes_north + I(1 - believes_north)"}]
    report = fx.score(tmp_path, fx.participants(60, seed=1), {"p": fx.participants(60, seed=2)},
                      resolved=fx.scenario(regressions=collinear), bootstrap=10)
    assert "singular" in report["regressions"][0]["human"]["not_estimable"]


def test_mnlogit_terms_are_named_by_outcome(tmp_path: Path) -> None:
    spec = [{"name": "where", "family": "mnlogit",
             "formula": "belief_location ~ C(disclosure) + round"}]
    report = fx.score(tmp_path, fx.participants(200, seed=1), {"p": fx.participants(200, seed=2)},
                      resolved=fx.scenario(regressions=spec), bootstrap=10)
    terms = _terms(report)
    assert "C(disclosure)[T.vague][belief_location=south]" in terms
    assert "round[belief_location=neither]" in terms
    assert report["regressions"][0]["human"]["not_estimable"] is None
    out = io.StringIO()
    print_report(report, Console(file=out, width=200))
    assert "C(disclosure)[T.vague][belief_location=south]" in out.getvalue()  # not eaten as markup


def test_ols_on_an_ordered_question_uses_the_option_index(tmp_path: Path) -> None:
    spec = [{"name": "trust", "family": "ols", "formula": "belief_truth ~ C(values)"}]
    report = fx.score(tmp_path, fx.participants(100, seed=1), {"p": fx.participants(100, seed=2)},
                      resolved=fx.scenario(regressions=spec), bootstrap=10)
    intercept = _terms(report)["Intercept"]["human"]["estimate"]
    assert 0 <= intercept <= 4


def _fit(rows: dict[str, tuple[float, float, float, float]]) -> Fit:
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "p", "low", "high"])
    frame["se"] = 0.1
    return Fit(frame[["estimate", "se", "low", "high", "p"]], 100, 50)


def test_recovery_metrics_on_hand_built_fits() -> None:
    human = _fit({"Intercept": (3, 0.001, 2, 4), "a": (1, 0.01, 0.5, 1.5),
                  "b": (-1, 0.01, -1.5, -0.5), "c": (0.5, 0.5, -0.5, 1.5),
                  "d": (0.1, 0.9, -1, 1.2)})
    simulated = _fit({"Intercept": (-3, 0.001, -4, -2), "a": (1, 0.01, 0.6, 1.4),
                      "b": (1, 0.01, 0.5, 1.5), "c": (0.4, 0.01, 0.1, 0.7)})
    result = recovery(human, simulated)
    assert result.sign_f1 == pytest.approx(2 * 1 / (2 + 3))  # a agrees; b flips; c false +
    assert result.false_positive_rate == pytest.approx(1 / 2)  # c of {c, d}
    assert result.ci_overlap == pytest.approx(2 / 3)  # a, c overlap; b does not; d absent
    assert result.terms == 4  # intercept excluded
