"""Heterogeneity: unique belief structures, entropy and spread, simulated beside human."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from analysis.metrics.heterogeneity import entropy_bits, spread
from tests import analysis_fixtures as fx


def _same_answers(n: int) -> object:
    """A degenerate simulation: every participant gives the same answers every round."""
    table = fx.participants(n, seed=5)
    for r in fx.ROUNDS:
        table[f"r{r}_belief_location"] = "north"
        table[f"r{r}_belief_truth"] = "p41_60"
        table[f"r{r}_attack"] = "north"
    return table


def test_degenerate_simulation_has_one_unique_structure(tmp_path: Path) -> None:
    human = fx.participants(50, seed=1)
    report = fx.score(tmp_path, human, {"base": _same_answers(50)})
    overall = fx.rows(report, "heterogeneity", "unique_structures", subgroup=None)[0]
    assert overall["policies"]["base"]["value"] == 1
    assert overall["policies"]["base"]["n"] == 50
    spread_rows = fx.rows(report, "heterogeneity", "spread_ratio", subgroup=None)
    assert all(r["policies"]["base"]["value"] == 0 for r in spread_rows)


def test_unique_structures_count_distinct_belief_tuples(tmp_path: Path) -> None:
    human = fx.participants(4, seed=1)
    # structures over (location, truth) x 2 rounds: participants 0 and 1 share one
    human["r1_belief_location"] = ["north", "north", "south", "north"]
    human["r2_belief_location"] = ["both", "both", "both", "both"]
    human["r1_belief_truth"] = ["p00_20", "p00_20", "p00_20", "p00_20"]
    human["r2_belief_truth"] = ["p00_20", "p00_20", "p00_20", "p21_40"]
    human["r1_attack"] = ["north", "south", "north", "south"]  # actions do not count
    report = fx.score(tmp_path, human, {"twin": human}, bootstrap=10)
    row = fx.rows(report, "heterogeneity", "unique_structures", subgroup=None)[0]
    assert row["human"]["value"] == 3
    assert row["policies"]["twin"]["value"] == 3


def test_participants_with_a_missing_belief_are_left_out_and_counted(tmp_path: Path) -> None:
    human = fx.participants(20, seed=1).astype(object)
    human.loc[0, "r2_belief_truth"] = np.nan
    report = fx.score(tmp_path, human, {"twin": fx.participants(20, seed=1)}, bootstrap=10)
    row = fx.rows(report, "heterogeneity", "unique_structures", subgroup=None)[0]
    assert row["human"]["n"] == 19
    assert report["samples"]["human"]["missing_answers"]["belief_truth"] == 1


def test_spread_of_ordered_questions_is_the_std_of_the_option_index() -> None:
    counts = np.array([1.0, 0, 0, 0, 1])  # half at index 0, half at index 4
    assert spread(counts, ordered=True) == pytest.approx(2.0)


def test_spread_of_unordered_questions_is_sqrt_gini_simpson() -> None:
    counts = np.array([2.0, 1, 1, 0])
    assert spread(counts, ordered=False) == pytest.approx(math.sqrt(1 - (0.25 + 0.0625 * 2)))


def test_entropy_in_bits() -> None:
    assert entropy_bits(np.array([1.0, 1, 1, 1])) == pytest.approx(2.0)
    assert entropy_bits(np.array([5.0, 0])) == pytest.approx(0.0)


def test_ratios_carry_intervals_and_a_ceiling(tmp_path: Path) -> None:
    report = fx.score(tmp_path, fx.participants(60, seed=1), {"p": fx.participants(60, seed=2)})
    row = fx.rows(report, "heterogeneity", "spread_ratio", item="belief_truth", subgroup=None)[0]
    low, high = row["policies"]["p"]["ci"]
    assert low <= row["policies"]["p"]["value"] <= high
    assert row["ceiling"]["splits"] == 5
    assert 0.5 < row["ceiling"]["value"] < 2
