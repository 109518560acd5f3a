"""Prediction-powered inference (`run.py infer`): PPI++ is valid whatever the simulation's bias,
narrower than humans alone when the simulation is informative, and refuses leaked humans."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import ppi_py
import pytest

import run as cli
from analysis.errors import AnalysisInputError
from analysis.experiment import experiment_from_resolved
from analysis.inference import (
    classical_mean,
    humans_needed,
    naive_mean,
    power_row,
    ppi_mean,
    tuned_lambda,
)
from analysis.inference_regression import part, ppi_coefficients, single_sample
from analysis.inference_run import infer_run
from analysis.inference_tables import regression_table
from analysis.samples import sample_from_human
from tests import analysis_fixtures as fx
from tests.conftest import run_cli

TRUE_MEAN = 0.3


def _draw(rng: np.random.Generator, n: int, big_n: int, bias: float, noise: float):
    """Humans Y ~ N(TRUE_MEAN, 1) and a simulation Yhat = Y + bias + noise, n labelled pairs and
    big_n unlabelled predictions (whose Y stay hidden)."""
    y = rng.normal(TRUE_MEAN, 1.0, n + big_n)
    yhat = y + bias + rng.normal(0.0, noise, n + big_n)
    return y[:n], yhat[:n], yhat[n:]


def test_ppi_covers_a_known_mean_at_its_nominal_rate_when_the_simulation_is_biased():
    rng = np.random.default_rng(20260101)
    ppi_hits = naive_hits = 0
    repetitions = 400
    for _ in range(repetitions):
        y, yhat, yhat_unlabelled = _draw(rng, n=80, big_n=800, bias=0.4, noise=0.6)
        ppi = ppi_mean(y, yhat, yhat_unlabelled, alpha=0.1)
        naive = naive_mean(np.concatenate([yhat, yhat_unlabelled]), alpha=0.1)
        ppi_hits += ppi.low <= TRUE_MEAN <= ppi.high
        naive_hits += naive.low <= TRUE_MEAN <= naive.high
    assert 0.85 <= ppi_hits / repetitions <= 0.95
    assert naive_hits / repetitions < 0.5  # the naive interval covers the simulation's mean


def test_an_unbiased_correlated_simulation_narrows_the_interval_below_humans_only():
    rng = np.random.default_rng(7)
    y, yhat, yhat_unlabelled = _draw(rng, n=100, big_n=2000, bias=0.0, noise=0.5)
    classical, ppi = classical_mean(y), ppi_mean(y, yhat, yhat_unlabelled)
    assert ppi.width < 0.8 * classical.width
    assert ppi.n_effective > 1.5 * ppi.n and ppi.correlation > 0.8 and 0 < ppi.lam <= 1


def test_the_reported_lambda_is_the_one_ppi_py_tunes():
    rng = np.random.default_rng(3)
    y, yhat, yhat_unlabelled = _draw(rng, n=60, big_n=300, bias=0.2, noise=1.0)
    ours = ppi_mean(y, yhat, yhat_unlabelled)
    low, high = ppi_py.ppi_mean_ci(y, yhat, yhat_unlabelled, alpha=0.1)  # lambda tuned inside
    assert (ours.low, ours.high) == pytest.approx((float(low[0]), float(high[0])), rel=1e-9)
    assert tuned_lambda(y, y * 0 + 1.0, yhat_unlabelled * 0 + 1.0) == 0.0  # constant: classical


def test_humans_needed_shrinks_with_the_ppi_correlation():
    alone = humans_needed(1.0, 0.2, alpha=0.1)
    assert alone == math.ceil((2 * 1.6448536 / 0.2) ** 2)
    assert humans_needed(1.0, 0.2, alpha=0.1, rho=0.0) == alone
    with_good = humans_needed(1.0, 0.2, alpha=0.1, rho=0.9)
    assert with_good < humans_needed(1.0, 0.2, alpha=0.1, rho=0.5) < alone
    assert with_good == pytest.approx(alone * (1 - 0.81), rel=0.02)  # unlimited simulation
    y = np.random.default_rng(1).normal(size=200)
    contrary = power_row(y, -y, 0.2, 0.1, 1000)  # lambda >= 0: an anti-correlated model buys nothing
    assert contrary["correlation"] < -0.99
    assert contrary["with_simulation"] == contrary["humans_only"]
    assert power_row(y, y, 0.2, 0.1, 1000)["with_simulation"] < contrary["humans_only"] / 2


def _regression_data(rng, n, big_n, bias, logistic, predicted_x):
    x = np.column_stack([np.ones(n + big_n), rng.normal(size=n + big_n)])
    beta = np.array([0.2, 0.8])
    eta = x @ beta
    y = (rng.random(n + big_n) < 1 / (1 + np.exp(-eta))).astype(float) if logistic else \
        eta + rng.normal(size=n + big_n)
    x_hat = x.copy()
    if predicted_x:  # the regressor is itself simulated: noisy and biased for everyone
        x_hat[:, 1] = x[:, 1] + 0.3 + rng.normal(0, 0.6, n + big_n)
    y_hat = np.clip(y + bias + rng.normal(0, 0.3, n + big_n), 0, 1) if logistic else \
        y + bias + rng.normal(0, 0.5, n + big_n)
    ids = np.array([f"p{i}" for i in range(n + big_n)])
    order = ids[:n].tolist()
    return (beta, part(x[:n], y[:n], ids[:n], order), part(x_hat[:n], y_hat[:n], ids[:n], order),
            part(x_hat[n:], y_hat[n:], ids[n:]))


@pytest.mark.parametrize("logistic", [False, True])
def test_regression_ppi_matches_ppi_py_when_the_covariates_are_observed(logistic):
    rng = np.random.default_rng(11)
    _, human, twin, unlabelled = _regression_data(rng, 150, 600, 0.3, logistic, False)
    family = "logit" if logistic else "ols"
    cells = ppi_coefficients(family, human, twin, unlabelled, alpha=0.1)
    lam = cells[0].lam
    point = (ppi_py.ppi_logistic_pointestimate if logistic else ppi_py.ppi_ols_pointestimate)(
        human.x, human.y, twin.y, unlabelled.x, unlabelled.y, lam=lam)
    if logistic:  # the same objective, minimised: the same coefficients
        assert [c.estimate for c in cells] == pytest.approx(list(point), abs=1e-5)
    else:  # ppi_py adds two least-squares fits (same X); here one rectified loss is minimised
        assert all(abs(c.estimate - p) < 0.1 * c.se for c, p in zip(cells, point, strict=True))
    # (The intervals are checked by coverage below: ppi_py's *_ci functions spend 10-20 s
    # compiling with numba on their first call.)


@pytest.mark.parametrize("family", ["ols", "logit"])
def test_regression_ppi_covers_the_true_slope_when_a_regressor_is_simulated_too(family):
    rng = np.random.default_rng(5)
    hits = naive_hits = 0
    repetitions = 200
    for _ in range(repetitions):
        beta, human, twin, unlabelled = _regression_data(rng, 150, 500, 0.3, family == "logit",
                                                         True)
        ppi = ppi_coefficients(family, human, twin, unlabelled, alpha=0.1)[1]
        simulated = part(np.vstack([twin.x, unlabelled.x]), np.concatenate([twin.y, unlabelled.y]),
                         np.array([f"q{i}" for i in range(650)]))
        naive = single_sample(family, simulated, 0.1, "simulated")[1]
        hits += ppi.low <= beta[1] <= ppi.high
        naive_hits += naive.low <= beta[1] <= naive.high
    assert 0.84 <= hits / repetitions <= 0.96
    assert naive_hits / repetitions < 0.5


def test_a_perfectly_separated_regression_is_a_marked_not_estimable_cell():
    experiment = experiment_from_resolved(fx.scenario(), "test")
    table = fx.participants(40, seed=2)
    for r in fx.ROUNDS:  # attack north exactly when believing north: logit has no finite maximum
        believes = table[f"r{r}_belief_location"].isin(["north", "both"])
        table[f"r{r}_attack"] = np.where(believes, "north", "south")
    sample = sample_from_human(table, experiment, "test")
    human = fx_subset(sample, range(0, 20))
    twin, unlabelled = fx_subset(sample, range(0, 20)), fx_subset(sample, range(20, 40))
    result = regression_table(experiment.regressions[0], experiment,
                              {"base": (human, twin, unlabelled)}, alpha=0.1)
    assert "not estimable" in result["classical"]["not_estimable"]
    assert "not estimable" in result["policies"]["base"]["ppi_not_estimable"]
    assert all(t["policies"]["base"]["ppi"] is None or t["policies"]["base"]["ppi"]["not_estimable"]
               for t in result["terms"])


def fx_subset(sample, rows):
    from analysis.inference_run import subset

    return subset(sample, [sample.participant_ids[i] for i in rows])


def _hand_run(tmp_path, n=40):
    """A hand-built twins run (no model): humans and a policy answering at random."""
    csv = fx.write_human(tmp_path / "human.csv", fx.participants(n, seed=1))
    return fx.write_run(tmp_path / "run", {"base": fx.participants(n, seed=9)}, csv)


def test_a_labelled_human_in_the_finetuning_pilot_is_refused_with_exit_2(tmp_path, capsys):
    run = _hand_run(tmp_path)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "training.json").write_text(json.dumps({"pilot_ids": ["P0003", "P0100"],
                                                       "holdout_ids": []}))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["policies"] = [{"name": "base", "adapter": str(adapter)}]
    (run / "manifest.json").write_text(json.dumps(manifest))
    ids = tmp_path / "labelled.txt"
    ids.write_text("P0001\nP0002\nP0003\nP0004\n")
    assert cli.main(["infer", str(run), "--rectification", str(ids)]) == 2
    refused = capsys.readouterr().err
    assert "leakage" in refused and "P0003" in refused
    assert not (run / "inference.json").exists()
    ids.write_text("# disjoint from the pilot: accepted, and the check recorded\nP0001\nP0002\n"
                   "P0004\nP0005\n")
    section = infer_run(run, rectification=ids)
    assert section["leakage"]["checked"][0]["overlap"] == 0
    assert section["labelled"]["ids"] == ["P0001", "P0002", "P0004", "P0005"]


@pytest.mark.parametrize(("args", "message"), [
    (["--estimand", "mean:no_such_question"], "unknown question"),
    (["--estimand", "effect:no_such_factor"], "unknown condition factor"),
    (["--labelled", "1.5"], "--labelled"),
    (["--labelled", "39"], "each needs at least 2"),
])
def test_bad_estimands_and_sizes_exit_2_with_a_clear_message(tmp_path, capsys, args, message):
    assert cli.main(["infer", str(_hand_run(tmp_path)), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_run_without_twins_of_humans_has_no_rectification_sample(tmp_path):
    run = _hand_run(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    population = manifest["scenario"]["resolved"]["population"]
    population["source"] = "marginals"  # personas drawn from marginals: nobody's twin
    population["marginals"] = {"ethnicity": {"White": 0.5, "Black": 0.5},
                               "gender": {"Female": 0.5, "Male": 0.5}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AnalysisInputError, match="no rectification sample"):
        infer_run(run)


def test_infer_on_a_real_finetuned_run_gives_three_estimators_and_score_carries_them(
        flagship_reference_run, tiny_lora_dir, tmp_path):
    run = Path(shutil.copytree(flagship_reference_run, tmp_path / "run"))
    adapter = Path(shutil.copytree(tiny_lora_dir, tmp_path / "adapter"))
    (adapter / "training.json").write_text(json.dumps({"pilot_ids": ["P0999"],
                                                       "holdout_ids": []}))
    manifest = json.loads((run / "manifest.json").read_text())
    for entry in manifest["policies"]:
        entry["adapter"] = str(adapter) if entry["adapter"] else None
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("infer", str(run), "--labelled", "10", "--seed", "4")
    assert result.returncode == 0, result.stderr
    for heading in ("humans only", "simulated only", "PPI++", "Humans needed"):
        assert heading in result.stdout
    section = json.loads((run / "inference.json").read_text())
    assert section["policies"] == ["base", "tuned"]
    assert section["labelled"]["count"] == 10 and section["unlabelled"]["count"] == 40
    assert section["leakage"]["checked"][0]["policy"] == "tuned"
    overall = [r for r in section["means"] if r["subgroup"] is None]
    assert {r["question"] for r in overall} == {"belief_location", "belief_truth", "attack"}
    assert all(set(r["policies"]) == {"base", "tuned"} for r in section["means"])
    assert any(r["subgroup"] == "ethnicity" for r in section["means"])
    assert {r["factor"] for r in section["effects"]} == {"disclosure", "values", "valuations"}
    assert [r["name"] for r in section["regressions"]] == ["attack_choice", "belief_location"]
    mnlogit = section["regressions"][1]["policies"]["base"]["ppi_not_estimable"]
    assert "multinomial" in mnlogit
    assert run_cli("score", str(run), "--bootstrap", "20").returncode == 0
    report = json.loads((run / "report.json").read_text())
    assert report["inference"] == section
