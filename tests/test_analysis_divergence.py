"""Distributional alignment: JS and Wasserstein distances, bootstrap intervals, subgroups."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from analysis.metrics.divergence import js_distance, wasserstein_ordered
from tests import analysis_fixtures as fx


def test_identical_samples_give_zero_js_distance(tmp_path: Path) -> None:
    human = fx.participants(120, seed=1)
    report = fx.score(tmp_path, human, {"twin": human})
    for row in fx.rows(report, "divergence", "js_distance", subgroup=None):
        cell = row["policies"]["twin"]
        assert cell["value"] == pytest.approx(0.0, abs=1e-12)
        assert 0.0 <= cell["ci"][0] <= cell["ci"][1] < 0.3  # bootstrap noise only


def _with_location(n: int, answers: list[str]):
    table = fx.participants(n, seed=0)
    for r in fx.ROUNDS:
        table[f"r{r}_belief_location"] = answers
    return table


def test_js_distance_matches_the_closed_form(tmp_path: Path) -> None:
    # human: half north, half south; simulated: uniform over the four options
    human = _with_location(8, ["north", "south"] * 4)
    simulated = _with_location(8, ["north", "south", "both", "neither"] * 2)
    m = np.array([3 / 8, 3 / 8, 1 / 8, 1 / 8])
    kl_p = 2 * 0.5 * math.log2(0.5 / m[0])
    kl_q = 2 * 0.25 * math.log2(0.25 / m[0]) + 2 * 0.25 * math.log2(0.25 / m[2])
    expected = math.sqrt((kl_p + kl_q) / 2)
    report = fx.score(tmp_path, human, {"uniform": simulated}, bootstrap=20)
    pooled = fx.rows(report, "divergence", "js_distance", item="belief_location", round=None,
                     subgroup=None)[0]
    per_round = fx.rows(report, "divergence", "js_distance", item="belief_location", round=2,
                        subgroup=None)[0]
    assert pooled["policies"]["uniform"]["value"] == pytest.approx(expected)
    assert per_round["policies"]["uniform"]["value"] == pytest.approx(expected)
    assert pooled["policies"]["uniform"]["n"] == 16  # 8 participants x 2 rounds


def test_js_distance_is_one_for_disjoint_answers() -> None:
    assert js_distance(np.array([3.0, 0]), np.array([0, 5.0])) == pytest.approx(1.0)


def test_vectorised_wasserstein_equals_scipy() -> None:
    rng = np.random.default_rng(0)
    p, q = rng.integers(0, 20, (50, 5)).astype(float), rng.integers(0, 20, (50, 5)).astype(float)
    ours = wasserstein_ordered(p, q)
    support = np.arange(5)
    theirs = [wasserstein_distance(support, support, a, b) for a, b in zip(p, q, strict=True)]
    np.testing.assert_allclose(ours, theirs)


def test_wasserstein_only_for_ordered_questions(tmp_path: Path) -> None:
    report = fx.score(tmp_path, fx.participants(40, seed=1), {"p": fx.participants(40, seed=2)},
                    bootstrap=20)
    items = {r["item"] for r in fx.rows(report, "divergence", "wasserstein")}
    assert items == {"belief_truth"}


def test_bootstrap_is_seeded(tmp_path: Path) -> None:
    human, sim = fx.participants(60, seed=1), fx.participants(60, seed=2)
    first = fx.score(tmp_path / "a", human, {"p": sim}, bootstrap=50)
    again = fx.score(tmp_path / "b", human, {"p": sim}, bootstrap=50)
    assert first["tables"] == again["tables"]


def test_subgroups_have_their_own_rows(tmp_path: Path) -> None:
    report = fx.score(tmp_path, fx.participants(80, seed=1), {"p": fx.participants(80, seed=2)},
                    bootstrap=20)
    groups = {r["group"] for r in fx.rows(report, "divergence", "js_distance",
                                          subgroup="ethnicity")}
    assert groups == {"Black", "White"}
    assert report["subgroups"] == {"ethnicity": ["Black", "White"]}


def test_a_single_member_subgroup_is_marked_not_estimable(tmp_path: Path) -> None:
    human = fx.participants(30, seed=1)
    human.loc[0, "Ethnicity"] = "Asian"
    report = fx.score(tmp_path, human, {"twin": human}, bootstrap=20)
    lonely = fx.rows(report, "divergence", "js_distance", group="Asian")
    assert lonely
    for row in lonely:
        assert "not estimable" in row["policies"]["twin"]["not_estimable"]
        assert row["policies"]["twin"]["value"] is None
    gaps = fx.rows(report, "coherence", "gap", group="Asian")
    assert "not estimable" in gaps[0]["policies"]["twin"]["not_estimable"]
