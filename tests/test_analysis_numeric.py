"""Numeric questions in analysis: distances and spread on the options' values, human values by
number (7, "7" and "7.0" are the option "7")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from analysis.errors import AnalysisInputError
from analysis.experiment import experiment_from_resolved
from analysis.samples import sample_from_human
from tests import analysis_fixtures as fx

VALUES = [0, 1, 2, 10]  # unevenly spaced, so values and option positions disagree
EFFORT = fx.numeric_question("effort", VALUES)


def _with_effort(n: int, answers: list[str], seed: int) -> pd.DataFrame:
    table = fx.participants(n, seed=seed)
    for r in fx.ROUNDS:
        table[f"r{r}_effort"] = answers
    return table


def _counts(answers: list[str]) -> np.ndarray:
    return np.array([answers.count(str(v)) for v in VALUES], float)


def test_wasserstein_of_a_numeric_question_is_measured_on_its_values(tmp_path: Path) -> None:
    human_answers = ["0", "1", "1", "2"] * 5
    simulated_answers = ["1", "2", "10", "10"] * 5
    report = fx.score(tmp_path, _with_effort(20, human_answers, 1),
                      {"sim": _with_effort(20, simulated_answers, 2)},
                      resolved=fx.with_numeric(fx.scenario(), EFFORT))
    row = fx.rows(report, "divergence", "wasserstein", item="effort", round=None,
                  subgroup=None)[0]
    on_values = wasserstein_distance(VALUES, VALUES, _counts(simulated_answers),
                                     _counts(human_answers))
    on_indices = wasserstein_distance(range(4), range(4), _counts(simulated_answers),
                                      _counts(human_answers))
    assert row["policies"]["sim"]["value"] == pytest.approx(on_values)
    assert on_values != pytest.approx(on_indices)
    low, high = row["policies"]["sim"]["ci"]
    assert low <= on_values <= high  # the bootstrap uses the same support


def test_spread_of_a_numeric_question_is_the_sd_of_its_values(tmp_path: Path) -> None:
    human_answers = ["0", "10"] * 10
    report = fx.score(tmp_path, _with_effort(20, human_answers, 1),
                      {"sim": _with_effort(20, ["1", "2"] * 10, 2)},
                      resolved=fx.with_numeric(fx.scenario(), EFFORT))
    row = fx.rows(report, "heterogeneity", "spread", item="effort", subgroup=None)[0]
    assert row["human"]["value"] == pytest.approx(5.0)  # values 0 and 10, half each
    assert row["policies"]["sim"]["value"] == pytest.approx(0.5)


def test_a_human_value_is_read_as_the_option_of_that_number() -> None:
    seven = fx.numeric_question("effort", [0, 7, 14])
    experiment = experiment_from_resolved(fx.with_numeric(fx.scenario(), seven), "test")
    table = fx.participants(4, seed=3)
    table["r1_effort"] = ["7.0", "7", "14.0", " 0 "]
    table["r2_effort"] = [7, 14, None, "0.0"]
    sample = sample_from_human(table, experiment, "human.csv")
    q = experiment.question_index("effort")
    assert sample.answers[:, 0, q].tolist() == [1, 1, 2, 0]
    assert sample.answers[:, 1, q].tolist() == [1, 2, -1, 0]


def test_a_human_value_that_is_no_option_is_an_input_error() -> None:
    experiment = experiment_from_resolved(fx.with_numeric(fx.scenario(), EFFORT), "test")
    table = fx.participants(2, seed=3)
    table["r1_effort"], table["r2_effort"] = ["7.0", "1"], ["1", "1"]
    with pytest.raises(AnalysisInputError, match=r"answers \['7.0'\] to question 'effort'"):
        sample_from_human(table, experiment, "human.csv")


def test_a_numeric_manifest_question_is_ordered_with_values_and_old_ones_fall_back() -> None:
    experiment = experiment_from_resolved(fx.with_numeric(fx.scenario(), EFFORT), "test")
    by_id = {q.id: q for q in experiment.questions}
    assert by_id["effort"].ordered and by_id["effort"].values == (0.0, 1.0, 2.0, 10.0)
    assert by_id["effort"].options == ("0", "1", "2", "10")
    # the fixture's other questions are written as old manifests were: no `ordered`, no `value`
    assert by_id["belief_truth"].ordered and by_id["belief_truth"].values is None
    assert not by_id["attack"].ordered


REAL = """\
name: numeric_scoring
title: A numeric question, run and scored
model: builtin:tiny
seed: 3
population: {source: twins, data: answers.csv, id_column: pid, demographics: {age: age}}
persona: You are {{ age }} years old.
stimulus: Round {{ round }} of a short survey.
rounds: [{id: 1}, {id: 2}]
stages:
  - id: belief
    kind: belief
    questions:
      - id: scale
        type: numeric
        text: How safe do you feel?
        min: 0
        max: 10
        step: 5
        human_column: "r{round}_scale"
"""


def test_a_real_numeric_run_is_scored_on_its_values(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    (tmp_path / "scenario.yaml").write_text(REAL, encoding="utf-8")
    (tmp_path / "answers.csv").write_text(
        "pid,age,r1_scale,r2_scale\na,30,5.0,10\nb,41,5,10.0\nc,52,0,5\nd,63,10,\n",
        encoding="utf-8")
    ran = run_cli("run", str(tmp_path / "scenario.yaml"), "--out", str(tmp_path / "run"))
    assert ran.returncode == 0, ran.stderr
    scored = run_cli("score", str(tmp_path / "run"), "--bootstrap", "10")
    assert scored.returncode == 0, scored.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert report["samples"]["human"]["missing_answers"]["scale"] == 1  # only d's round 2
    spread = fx.rows(report, "heterogeneity", "spread", item="scale", subgroup=None)[0]
    human = np.array([5, 10, 5, 10, 0, 5, 10], float)
    assert spread["human"]["value"] == pytest.approx(human.std())  # on values 0, 5, 10
    assert fx.rows(report, "divergence", "wasserstein", item="scale", subgroup=None)
