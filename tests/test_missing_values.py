"""Missing values on the real Chile 1988 survey: codes, excluded rows, the validate report, a
missing human answer that keeps its twin and leaves scoring (counted), and survey weights."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from agents.population import build_population
from analysis.comparison import one_hot
from analysis.experiment import experiment_from_resolved
from analysis.metrics.coherence import _shares
from analysis.run_dir import read_human_table
from analysis.samples import sample_from_human
from scenarios.loader import load_scenario
from tests.chile_scenarios import chile_table, write_chile
from tests.conftest import run_cli


def test_validate_reports_each_columns_missing_rows_and_what_is_done(tmp_path) -> None:
    table = chile_table()
    result = run_cli("validate", str(write_chile(tmp_path)))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    n = table.isna().sum()
    assert f"age: {n['age']} row(s) missing -> the row is excluded" in out
    assert f"income: {n['income']} row(s) missing -> demographic income: left missing" in out
    assert f"education: {n['education']} row(s) missing -> demographic education: shown as " \
           "'not stated'" in out
    assert f"vote: {n['vote']} row(s) missing -> the twin is kept; that answer is excluded " \
           "from scoring" in out
    assert f"rows excluded: {n['age']} of {len(table)}" in out


def test_missing_value_codes_are_missing_cells_and_counted_as_codes(tmp_path) -> None:
    table = chile_table().astype({"income": object})
    coded = table["income"].isna()
    table.loc[coded, "income"] = "DK"  # as a survey codes "don't know"
    refused = run_cli("validate", str(write_chile(tmp_path / "a", table=table)))
    assert refused.returncode == 2 and "'DK' is not a whole number" in refused.stderr
    first = int(coded.to_numpy().nonzero()[0][0]) + 2  # the header is line 1
    assert f"chile.csv:{first}: income:" in refused.stderr
    path = write_chile(tmp_path / "b", table=table,
                       extra="  missing_codes: [DK]\n  exclude_missing: [age]\n")
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert f"income: {int(coded.sum())} row(s) missing ({int(coded.sum())} coded)" in result.stdout
    twins = build_population(load_scenario(path), None, 0)
    assert {s.demographics["income"] for s in twins if coded.iloc[s.data_row - 1]} == {None}


def test_a_questions_own_missing_code_applies_to_its_column_only(tmp_path) -> None:
    table = chile_table().astype({"vote": object})
    table.loc[table["vote"].isna(), "vote"] = "9"
    refused = run_cli("validate", str(write_chile(tmp_path / "a", table=table)))
    assert refused.returncode == 2 and "value '9' is not one of" in refused.stderr
    path = write_chile(tmp_path / "b", table=table, question_extra="        missing_codes: [9]\n")
    result = run_cli("validate", str(path))
    missing = int(chile_table()["vote"].isna().sum())
    assert result.returncode == 0 and f"vote: {missing} row(s) missing ({missing} coded)" \
        in result.stdout


def test_exclude_missing_rows_are_not_twins(tmp_path) -> None:
    table = chile_table()
    path = write_chile(tmp_path, extra="  exclude_missing: [age, income]\n")
    twins = build_population(load_scenario(path), None, 0)
    dropped = table["age"].isna() | table["income"].isna()
    assert len(twins) == int((~dropped).sum())
    assert not any(dropped.iloc[s.data_row - 1] for s in twins)
    result = run_cli("validate", str(path))
    assert f"rows excluded: {int(dropped.sum())} of {len(table)}" in result.stdout


def _seed_with_missing_votes(path, n: int) -> tuple[int, list[int]]:
    """A seed whose n-twin sample holds human rows without a vote (and those rows)."""
    loaded, votes = load_scenario(path), chile_table()["vote"]
    for seed in range(50):
        rows = [s.data_row for s in build_population(loaded, n, seed)]
        missing = [r for r in rows if pd.isna(votes.iloc[r - 1])]
        if missing:
            return seed, missing
    raise AssertionError("no seed samples a row without a vote")


def test_a_missing_human_vote_keeps_the_twin_and_its_cell_is_counted_not_scored(tmp_path) -> None:
    path = write_chile(tmp_path / "s", subgroups="sex")
    seed, missing = _seed_with_missing_votes(path, 30)
    out = tmp_path / "run"
    ran = run_cli("run", str(path), "--participants", "30", "--seed", str(seed), "--out", str(out))
    assert ran.returncode == 0, ran.stderr
    responses = pd.read_parquet(out / "responses.parquet")
    assert {f"row{r}" for r in missing} <= set(responses["participant_id"])  # twins kept
    scored = run_cli("score", str(out))
    assert scored.returncode == 0, scored.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["samples"]["human"]["participants"] == 30
    assert report["samples"]["human"]["missing_answers"]["vote"] == len(missing)
    js = next(r for r in report["tables"]["divergence"] if r["metric"] == "js_distance"
              and r["item"] == "vote" and r["subgroup"] is None and r["round"] is None)
    assert js["policies"]["base"]["n_human"] == 30 - len(missing)


def test_survey_weights_change_the_human_answer_distribution(tmp_path) -> None:
    # `population` (the size of the respondent's community) stands in for a weights column
    path = write_chile(tmp_path, extra="  exclude_missing: [age]\n  weights: population\n")
    loaded = load_scenario(path)
    experiment = experiment_from_resolved(loaded.scenario.model_dump(mode="json", by_alias=True),
                                          "test")
    sample = sample_from_human(read_human_table(loaded.human.path).table, experiment, "test")
    counts = one_hot(sample, experiment).sum(axis=(0, 1))
    table = chile_table()
    table = table[table["age"].notna() & table["vote"].notna()]
    options = ["Y", "N", "U", "A"]
    weighted = table.groupby("vote")["population"].sum().reindex(options)
    plain = table["vote"].value_counts().reindex(options)
    np.testing.assert_allclose(counts / counts.sum(), weighted / weighted.sum())
    assert np.abs(weighted / weighted.sum() - plain / plain.sum()).max() > 0.01
    assert sample.weights is not None and sample.weights.mean() == pytest.approx(1.0)


def test_negative_weights_are_refused_naming_the_line(tmp_path) -> None:
    table = chile_table()
    table.loc[4, "population"] = -1
    path = write_chile(tmp_path, table=table, extra="  exclude_missing: [age]\n  weights: population\n")
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and "chile.csv:6: population: weight '-1'" in result.stderr


def test_coherence_shares_weight_the_human_participants() -> None:
    contradicted, answered = np.array([1.0, 0.0, 1.0]), np.array([1.0, 1.0, 1.0])
    draws = np.ones((1, 3))
    value, _, n = _shares(contradicted, answered, draws, np.array([3.0, 1.0, 0.0]))
    assert value == pytest.approx(3 / 4) and n == 3
