"""Regression fit control (`fit: {se, maxiter, method}`), reasons for fits that cannot be
estimated, and `validate`'s check of each family's dependent (issue 14, spec E), on Chile."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from analysis.regression import RegressionSpec, fit
from analysis.samples import participant_rounds
from scenarios.schema import Regression
from tests.conftest import run_cli
from tests.h1_chile import CHILE, chile_resolved, chile_table, experiment, human_sample


def _rows(table=None, resolved=None):
    exp = experiment(resolved)
    return participant_rounds(human_sample(exp, chile_table() if table is None else table),
                              exp), exp


def test_default_fit_is_cluster_and_classical_or_robust_change_only_the_errors() -> None:
    rows, exp = _rows()
    formula = "vote_yes ~ statusquo + C(sex)"
    base = fit(rows, RegressionSpec("r", "logit", formula), exp)
    same = fit(rows, RegressionSpec("r", "logit", formula, "cluster", None, "newton"), exp)
    classical = fit(rows, RegressionSpec("r", "logit", formula, "classical"), exp)
    robust = fit(rows, RegressionSpec("r", "logit", formula, "robust", 200, "bfgs"), exp)
    assert base.coefficients.equals(same.coefficients)
    assert np.allclose(base.coefficients["estimate"], classical.coefficients["estimate"])
    assert np.allclose(base.coefficients["estimate"], robust.coefficients["estimate"], atol=1e-3)
    assert not np.allclose(base.coefficients["se"], classical.coefficients["se"])


def test_too_few_iterations_say_the_fit_did_not_converge() -> None:
    rows, exp = _rows()
    result = fit(rows, RegressionSpec("r", "logit", "vote_yes ~ statusquo + age", "cluster", 1,
                                      "bfgs"), exp)
    assert not result.estimable and "did not converge" in result.not_estimable


def test_a_quasi_separating_level_is_named() -> None:
    """Keep the real rows of strong supporters who vote yes only: the statusquo level "2"
    then predicts yes perfectly (quasi-separation), and the reason names its term."""
    table = chile_table()
    table = table[~((table["statusquo_bin"] == 2.0) & (table["vote"] == "N"))]
    resolved = copy.deepcopy(chile_resolved())
    resolved["stages"][0]["questions"][0].pop("coding")  # statusquo as categories
    rows, exp = _rows(table, resolved)
    result = fit(rows, RegressionSpec("r", "logit", "vote_yes ~ statusquo"), exp)
    assert not result.estimable
    assert "separation by 'statusquo[T.2]'" in result.not_estimable, result.not_estimable


def test_a_singular_design_names_the_columns() -> None:
    rows, exp = _rows()
    rows["income"] = 2 * rows["age"]  # collinear with age
    result = fit(rows, RegressionSpec("r", "ols", "statusquo ~ age + income"), exp)
    assert not result.estimable and "'income'" in result.not_estimable


def test_ols_takes_no_solver_settings() -> None:
    with pytest.raises(ValidationError, match="ols is solved exactly"):
        Regression.model_validate({"name": "r", "family": "ols", "formula": "y ~ x",
                                   "fit": {"maxiter": 10}})
    dumped = Regression.model_validate({"name": "r", "family": "ols", "formula": "y ~ x"})
    assert "fit" not in dumped.model_dump(by_alias=True)


@pytest.mark.parametrize(("family", "formula", "message"), [
    ("logit", "vote ~ statusquo", "logit needs a 0/1 dependent"),
    ("mnlogit", "vote_yes ~ statusquo", "is not a question"),
    ("ols", "vote ~ statusquo", "unordered categorical question with 4 options"),
    ("logit", "age ~ statusquo", "demographic 'age' has values"),
])
def test_validate_refuses_a_dependent_the_family_cannot_fit(tmp_path: Path, family: str,
                                                            formula: str, message: str) -> None:
    text = CHILE.read_text(encoding="utf-8")
    old = "      family: logit\n"
    assert old in text
    text = text.replace(old, f"      family: {family}\n").replace(
        "formula: vote_yes ~ statusquo + C(sex) + age + C(education) + I(income / 1000)",
        f"formula: {formula}")
    text = text.replace("data: data/", f"data: {CHILE.parent}/data/")
    path = tmp_path / "chile.yaml"
    path.write_text(text, encoding="utf-8")
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and message in result.stdout + result.stderr, result.stderr
