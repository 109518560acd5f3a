"""The pilot split: what each sampling strategy draws, and clear errors for impossible pilots."""

from __future__ import annotations

import collections

import pytest

from agents.pilot import Sampling, parse_pilot_size, parse_sampling, split_pilot
from agents.population import build_population, twin_ids
from scenarios.errors import InputError
from tests.conftest import FLAGSHIP, run_cli


def ethnicity_of(flagship, ids: list[str]) -> collections.Counter:
    table = flagship.human.table.set_index("participant_id")
    return collections.Counter(table.loc[ids, "ethnicity"])


def test_a_random_pilot_has_the_requested_size_and_the_holdout_is_every_other_row(flagship):
    split = split_pilot(flagship, 0.1, Sampling("random"), seed=7)
    assert len(split.pilot) == 93 and len(split.holdout) == 929 - 93
    assert not set(split.pilot) & set(split.holdout)
    assert sorted(split.pilot + split.holdout) == sorted(twin_ids(flagship))
    assert len(split_pilot(flagship, 30, Sampling("random"), seed=7).pilot) == 30


def test_the_split_is_seeded(flagship):
    a = split_pilot(flagship, 0.1, Sampling("random"), seed=7)
    assert a == split_pilot(flagship, 0.1, Sampling("random"), seed=7)
    assert a.pilot != split_pilot(flagship, 0.1, Sampling("random"), seed=8).pilot


def test_a_balanced_pilot_takes_equal_shares_of_each_ethnicity(flagship):
    split = split_pilot(flagship, 0.1, parse_sampling("balanced:ethnicity", "s"), seed=3)
    counts = ethnicity_of(flagship, split.pilot)
    assert sum(counts.values()) == 93 and len(counts) == 5
    assert max(counts.values()) - min(counts.values()) <= 1
    assert split.note == ""


def test_a_group_smaller_than_its_share_gives_all_its_rows_and_the_rest_share_the_shortfall(flagship):
    # 400 / 5 groups = 80 each, but Other has 69 and Mixed 71 rows: both give all of them and
    # the 260 left are shared by White, Black and Asian (87, 87, 86).
    split = split_pilot(flagship, 400, Sampling("balanced", column="ethnicity"), seed=3)
    counts = ethnicity_of(flagship, split.pilot)
    assert counts["Other"] == 69 and counts["Mixed"] == 71
    assert sorted(counts[g] for g in ("White", "Black", "Asian")) == [86, 87, 87]
    assert "Other (69)" in split.note and "Mixed (71)" in split.note


def test_a_condition_pilot_comes_from_that_treatment_group_only(flagship):
    sampling = parse_sampling("condition:disclosure=specific", "s")
    split = split_pilot(flagship, 0.25, sampling, seed=3)
    table = flagship.human.table.set_index("participant_id")
    group = int((table["disclosure"] == "specific").sum())
    assert len(split.pilot) == round(0.25 * group)
    assert set(table.loc[split.pilot, "disclosure"]) == {"specific"}
    assert len(split.holdout) == 929 - len(split.pilot)
    assert str(sampling) == "condition:disclosure=specific"


def test_the_holdout_population_is_exactly_the_holdout_or_a_seeded_subset_of_it(flagship):
    split = split_pilot(flagship, 0.1, Sampling("random"), seed=7)
    everyone = build_population(flagship, None, 7, split.holdout)
    assert [s.participant_id for s in everyone] == split.holdout
    some = [s.participant_id for s in build_population(flagship, 50, 7, split.holdout)]
    assert len(some) == 50 and set(some) <= set(split.holdout)
    assert some == [s.participant_id for s in build_population(flagship, 50, 7, split.holdout)]


@pytest.mark.parametrize("size", ["1.5", "0", "0.0", "1.0", "-0.2", "ten", "nan"])
def test_a_pilot_size_that_is_neither_fraction_nor_count_is_refused(size):
    with pytest.raises(InputError, match="--pilot"):
        parse_pilot_size(size, "scenario.yaml")


@pytest.mark.parametrize(("size", "sample", "expected"), [
    (5000, "random", "the data has 929 rows"),
    (500, "condition:disclosure=specific", "rows in disclosure=specific"),
    (10, "balanced:colour", "unknown column 'colour'"),
    (10, "condition:disclosure=loud", "no level 'loud'"),
    (10, "condition:colour=red", "unknown condition 'colour'"),
])
def test_impossible_pilots_are_clear_errors(flagship, size, sample, expected):
    with pytest.raises(InputError, match=expected) as caught:
        split_pilot(flagship, size, parse_sampling(sample, str(flagship.path)), seed=1)
    problem = caught.value.problems[0]
    assert problem.file == str(flagship.path) and problem.field in ("--pilot", "--sample")


def test_an_unknown_sampling_strategy_lists_the_known_ones():
    with pytest.raises(InputError, match="random, balanced:COLUMN or condition:NAME=VALUE"):
        parse_sampling("stratified", "scenario.yaml")


@pytest.mark.parametrize(("args", "expected"), [
    (["--pilot", "1.5"], "neither a fraction in (0, 1)"),
    (["--pilot", "5000"], "the data has 929 rows"),
    (["--pilot", "0.1", "--sample", "balanced:colour"], "unknown column 'colour'"),
    (["--pilot", "0.1", "--sample", "condition:disclosure=loud"], "no level 'loud'"),
])
def test_the_finetune_command_reports_bad_input_without_a_traceback(tmp_path, args, expected):
    result = run_cli("finetune", str(FLAGSHIP), *args, "--out", str(tmp_path / "ft"))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "ft").exists()
