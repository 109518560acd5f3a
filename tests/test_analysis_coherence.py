"""Belief-action coherence: the gap is exact on hand-built answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import analysis_fixtures as fx


def _hand_built() -> object:
    """3 participants x 2 rounds; contradicting participant-rounds: (0, r1), (2, r1), (2, r2)."""
    table = fx.participants(3, seed=1)
    table["r1_belief_location"] = ["north", "both", "south"]
    table["r1_attack"] = ["north", "north", "south"]
    table["r2_belief_location"] = ["south", "neither", "north"]
    table["r2_attack"] = ["north", "south", "north"]
    return table


def test_gap_is_exact_on_hand_built_answers(tmp_path: Path) -> None:
    table = _hand_built()
    report = fx.score(tmp_path, table, {"twin": table}, bootstrap=20)
    gap = fx.rows(report, "coherence", "gap", subgroup=None)[0]
    assert gap["human"]["value"] == pytest.approx(3 / 6)
    assert gap["policies"]["twin"]["value"] == pytest.approx(3 / 6)
    assert gap["human"]["n"] == 6
    people = fx.rows(report, "coherence", "participants_contradicting", subgroup=None)[0]
    assert people["human"]["value"] == pytest.approx(2 / 3)
    difference = fx.rows(report, "coherence", "gap_difference", subgroup=None)[0]
    assert difference["policies"]["twin"]["value"] == pytest.approx(0.0)


def test_degenerate_simulation_gap(tmp_path: Path) -> None:
    human = _hand_built()
    always = fx.participants(3, seed=2)
    for r in fx.ROUNDS:  # believes north, raids north: every round contradicts
        always[f"r{r}_belief_location"] = "north"
        always[f"r{r}_attack"] = "north"
    report = fx.score(tmp_path, human, {"base": always}, bootstrap=20)
    gap = fx.rows(report, "coherence", "gap", subgroup=None)[0]
    assert gap["policies"]["base"]["value"] == pytest.approx(1.0)
    difference = fx.rows(report, "coherence", "gap_difference", subgroup=None)[0]
    assert difference["policies"]["base"]["value"] == pytest.approx(0.5)


def test_rounds_missing_an_answer_are_dropped_from_the_gap(tmp_path: Path) -> None:
    human = _hand_built().astype(object)
    human.loc[0, "r1_attack"] = np.nan  # drops the contradicting (0, r1)
    report = fx.score(tmp_path, human, {"twin": _hand_built()}, bootstrap=20)
    gap = fx.rows(report, "coherence", "gap", subgroup=None)[0]
    assert gap["human"]["n"] == 5
    assert gap["human"]["value"] == pytest.approx(2 / 5)


def test_gap_difference_has_a_split_half_ceiling(tmp_path: Path) -> None:
    human = fx.participants(80, seed=1)
    report = fx.score(tmp_path, human, {"p": fx.participants(80, seed=2)})
    row = fx.rows(report, "coherence", "gap_difference", subgroup=None)[0]
    ceiling = row["ceiling"]
    assert ceiling["value"] >= 0
    assert ceiling["corrected"] == pytest.approx(ceiling["value"] * np.sqrt(0.5), rel=1e-6)
