"""Bad input gives an AnalysisInputError naming the file and what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.errors import AnalysisInputError
from analysis.report import score_run
from tests import analysis_fixtures as fx


def _run(tmp_path: Path, human=None, resolved=None) -> Path:
    table = fx.participants(30, seed=1) if human is None else human
    csv = fx.write_human(tmp_path / "human.csv", table)
    return fx.write_run(tmp_path / "run", {"p": fx.participants(30, seed=2)}, csv, resolved)


def test_a_run_directory_without_responses_is_an_input_error(tmp_path: Path) -> None:
    run = _run(tmp_path)
    (run / "responses.parquet").unlink()
    with pytest.raises(AnalysisInputError, match=r"responses\.parquet: missing"):
        score_run(run, bootstrap=10)


def test_a_missing_run_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(AnalysisInputError, match="not a run directory"):
        score_run(tmp_path / "nowhere")


def test_a_run_directory_without_manifest_is_an_input_error(tmp_path: Path) -> None:
    run = _run(tmp_path)
    (run / "manifest.json").unlink()
    with pytest.raises(AnalysisInputError, match=r"manifest\.json: missing"):
        score_run(run, bootstrap=10)


def test_human_data_missing_a_question_column_names_it(tmp_path: Path) -> None:
    run = _run(tmp_path, human=fx.participants(30, seed=1).drop(columns=["r2_attack"]))
    with pytest.raises(AnalysisInputError, match=r"human\.csv: missing required column.*r2_attack"):
        score_run(run, bootstrap=10)


def test_human_data_missing_a_subgroup_column_names_it(tmp_path: Path) -> None:
    run = _run(tmp_path, human=fx.participants(30, seed=1).drop(columns=["Ethnicity"]))
    with pytest.raises(AnalysisInputError, match="Ethnicity"):
        score_run(run, bootstrap=10)


def test_an_answer_that_is_not_an_option_is_an_input_error(tmp_path: Path) -> None:
    human = fx.participants(30, seed=1)
    human.loc[3, "r1_attack"] = "east"
    run = _run(tmp_path, human=human)
    with pytest.raises(AnalysisInputError, match=r"r1_attack.*'east'.*expected one of"):
        score_run(run, bootstrap=10)


def test_a_formula_naming_an_unknown_variable_is_an_input_error(tmp_path: Path) -> None:
    spec = [{"name": "bad", "family": "logit", "formula": "attack_north ~ income + C(values)"}]
    run = _run(tmp_path, resolved=fx.scenario(regressions=spec))
    with pytest.raises(AnalysisInputError, match=r"regression 'bad'.*unknown variable.*income"):
        score_run(run, bootstrap=10)


def test_a_formula_that_does_not_parse_is_an_input_error(tmp_path: Path) -> None:
    spec = [{"name": "bad", "family": "logit", "formula": "attack_north ~ +* values"}]
    run = _run(tmp_path, resolved=fx.scenario(regressions=spec))
    with pytest.raises(AnalysisInputError, match="does not parse"):
        score_run(run, bootstrap=10)


def test_no_human_data_anywhere_asks_for_human(tmp_path: Path) -> None:
    run = fx.write_run(tmp_path / "run", {"p": fx.participants(10, seed=2)}, None)
    with pytest.raises(AnalysisInputError, match="--human"):
        score_run(run, bootstrap=10)


def test_human_override_replaces_the_manifest_path(tmp_path: Path) -> None:
    run = fx.write_run(tmp_path / "run", {"p": fx.participants(20, seed=2)}, None)
    csv = fx.write_human(tmp_path / "other.csv", fx.participants(20, seed=1), note="pilot wave")
    report = score_run(run, human=csv, bootstrap=10, splits=3)
    assert report["reference"]["path"] == str(csv)
    assert report["reference"]["note"] == "pilot wave"


def test_missing_human_answers_are_dropped_per_metric(tmp_path: Path) -> None:
    human = fx.participants(30, seed=1).astype(object)
    human.loc[:4, "r1_belief_location"] = np.nan
    report = fx.score(tmp_path, human, {"p": fx.participants(30, seed=2)}, bootstrap=10)
    row = fx.rows(report, "divergence", "js_distance", item="belief_location", round=1,
                  subgroup=None)[0]
    assert row["policies"]["p"]["n_human"] == 25
    assert report["samples"]["human"]["missing_answers"]["belief_location"] == 5


def test_unknown_subgroup_column_is_an_input_error(tmp_path: Path) -> None:
    run = _run(tmp_path, resolved=fx.scenario(subgroups=["income"]))
    with pytest.raises(AnalysisInputError, match=r"subgroups.*'income'"):
        score_run(run, bootstrap=10)


def test_corrupt_manifest_is_an_input_error(tmp_path: Path) -> None:
    run = _run(tmp_path)
    (run / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(AnalysisInputError, match="not valid JSON"):
        score_run(run, bootstrap=10)
    (run / "manifest.json").write_text(json.dumps({"run_id": "x"}), encoding="utf-8")
    with pytest.raises(AnalysisInputError, match="scenario"):
        score_run(run, bootstrap=10)
