"""Long-form demographics on the real Chile 1988 survey: formats, labels, bins, missing text; the
same derived value in personas, the run's rows and the analysis of the human rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from agents.conversation import persona_text
from agents.population import build_population
from analysis.experiment import experiment_from_resolved
from analysis.run_dir import read_human_table
from analysis.samples import sample_from_human
from contracts.demographics import bin_labels, derive
from scenarios.errors import InputError
from scenarios.loader import load_scenario
from tests.chile_scenarios import chile_table, write_chile
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def chile(tmp_path_factory):
    return load_scenario(write_chile(tmp_path_factory.mktemp("chile")))


def _twin(loaded, row: int):
    """The twin of data row `row` (1-based)."""
    return next(s for s in build_population(loaded, None, 0) if s.data_row == row)


def test_a_float_age_is_shown_as_a_whole_number_in_the_persona(chile) -> None:
    table = chile_table()
    row = int(table.index[table["age"] == 36.0][0])
    assert table["age"].dtype == float  # pandas reads the column as 36.0
    spec = _twin(chile, row + 1)
    assert spec.demographics["age"] == 36
    persona = persona_text(chile.scenario, spec.demographics, spec.condition)
    assert "36 years old" in persona and "36.0" not in persona


def test_education_codes_are_shown_as_their_labels_and_a_missing_one_as_its_text(chile) -> None:
    table = chile_table()
    coded = int(table.index[table["education"] == "PS"][0]) + 1
    empty = int(table.index[table["education"].isna()][0]) + 1
    assert "education: post-secondary." in persona_text(
        chile.scenario, _twin(chile, coded).demographics, {})
    assert "education: not stated." in persona_text(
        chile.scenario, _twin(chile, empty).demographics, {})
    assert "a woman" in {_twin(chile, 3).demographics["sex"], _twin(chile, 1).demographics["sex"]}


def test_age_bands_follow_the_bins_for_every_twin(chile) -> None:
    table = chile_table()
    bands = {s.data_row: s.demographics["age_band"] for s in build_population(chile, None, 0)}
    for position, age in table["age"].items():
        if pd.isna(age):  # exclude_missing: [age]
            assert int(position) + 1 not in bands
            continue
        expected = ("18-29" if age < 30 else "30-44" if age < 45 else "45-64" if age < 65
                    else "65+")
        assert bands[int(position) + 1] == expected
    assert set(bands.values()) == {"18-29", "30-44", "45-64", "65+"}
    assert len(bands) == len(table) - int(table["age"].isna().sum())


def test_the_engine_and_analysis_derive_the_same_value_from_their_reading_of_a_cell() -> None:
    spec = {"column": "age", "format": "integer", "labels": None, "bins": None, "missing": None}
    assert derive(36.0, spec) == derive("36.0", spec) == 36
    labels = {"column": "income", "labels": {"2500": "low"}, "bins": None, "format": None,
              "missing": "not stated"}
    assert derive(2500.0, labels) == derive("2500.0", labels) == "low"
    assert derive(float("nan"), labels) == derive(None, labels) == "not stated"
    assert bin_labels([18, 30]) == ["[18, 30)", "30+"]


def test_the_human_sample_carries_the_derived_demographics(chile) -> None:
    resolved = chile.scenario.model_dump(mode="json", by_alias=True)
    experiment = experiment_from_resolved(resolved, "test")
    table = read_human_table(chile.human.path).table  # every cell as text: "36.0"
    sample = sample_from_human(table, experiment, "test")
    twins = {f"row{s.data_row}": s.demographics for s in build_population(chile, None, 0)}
    shown_missing = 0
    for i, pid in enumerate(sample.participant_ids[:300]):
        for name in ("age", "age_band", "education", "sex"):
            human = sample.attributes[name].iloc[i]
            twin = twins[pid][name]
            # the `missing` text is shown to the twin, but analysis keeps the value missing
            if twin == "not stated" and name == "education":
                shown_missing += 1
                twin = None
            assert (None if pd.isna(human) else human) == twin, (pid, name)
    assert shown_missing > 0  # row 209 has no education


def test_a_missing_text_is_no_subgroup_or_regression_level(chile) -> None:
    """Shown in prompts only: the simulated sample (a run's rows) reads it back as missing."""
    from analysis.samples import sample_from_responses

    resolved = chile.scenario.model_dump(mode="json", by_alias=True)
    experiment = experiment_from_resolved(resolved, "test")
    frame = pd.DataFrame({"participant_id": ["a", "a", "b", "b"], "round": [1, 1, 1, 1],
                          "question_id": ["statusquo", "vote"] * 2,
                          "answer": ["1", "Y", "-1", "N"],
                          "education": ["not stated", "not stated", "primary", "primary"]})
    sample = sample_from_responses(frame, experiment, "base", "test")
    assert list(sample.labels("education")) == [None, "primary"]


def test_a_band_subgroup_has_few_levels_and_raw_age_is_warned_about(tmp_path) -> None:
    banded = load_scenario(write_chile(tmp_path / "a", subgroups="age_band"))
    assert banded.warnings == ()
    raw = load_scenario(write_chile(tmp_path / "b", subgroups="age"))
    (warning,) = raw.warnings
    assert warning.field == "analysis.subgroups[0]" and "bins" in warning.message
    assert str(chile_table()["age"].nunique()) in warning.message
    result = run_cli("validate", str(tmp_path / "b" / "chile.yaml"))
    assert result.returncode == 0 and "warning:" in result.stderr


def test_a_value_without_a_label_is_a_problem_naming_its_line(tmp_path) -> None:
    path = write_chile(tmp_path)
    path.write_text(path.read_text().replace("{F: a woman, M: a man}", "{F: a woman}"))
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    first = chile_table()["sex"].eq("M").idxmax()
    problem = caught.value.problems[0]
    assert problem.field == "sex" and problem.line == int(first) + 2  # header is line 1
    assert "'M' has no label" in problem.message


@pytest.mark.parametrize("spec, expected", [
    ("{column: age, bins: [30, 18]}", "ascending"),
    ("{column: age, bins: [18, 30], labels: [young]}", "one label per bin"),
    ("{column: age, labels: [young, old]}", "needs bins"),
    ("{column: age, format: number}", "format"),
])
def test_a_malformed_long_form_is_refused_with_exit_2(tmp_path, spec: str, expected: str) -> None:
    path = write_chile(tmp_path)
    path.write_text(path.read_text().replace(
        '{column: age, format: integer}', spec))
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and "population.demographics.age" in result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_short_form_demographics_keep_the_resolved_record_as_before(flagship) -> None:
    population = flagship.scenario.model_dump(mode="json", by_alias=True)["population"]
    assert list(population) == ["source", "data", "id_column", "demographics", "marginals", "size"]
    assert all(isinstance(column, str) for column in population["demographics"].values())


def test_a_long_form_is_recorded_as_its_dict(chile) -> None:
    population = json.loads(chile.scenario.model_dump_json(by_alias=True))["population"]
    assert population["demographics"]["region"] == "region"
    assert population["demographics"]["age_band"]["bins"] == [18, 30, 45, 65]


def test_a_population_using_every_new_field_is_recorded_as_the_contract_says(tmp_path) -> None:
    from contracts.run_format import ResolvedPopulation
    from tests.test_run_format_contract import _record_problems

    path = write_chile(tmp_path, extra="  missing_codes: [DK, -9]\n  exclude_missing: [age]\n"
                                        "  weights: population\n")
    population = json.loads(load_scenario(path).scenario.model_dump_json(by_alias=True))[
        "population"]
    assert population["missing_codes"] == ["DK", "-9"] and population["weights"] == "population"
    assert _record_problems(population, ResolvedPopulation, "population", every_key=True) == []
