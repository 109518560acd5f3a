"""The plain-language headline of a report, on a real scored run (builtin:tiny: random weights,
not a pretrained model; the flagship's reference is a SYNTHETIC STAND-IN)."""

from __future__ import annotations

import copy
import re
import shutil
from typing import Any

import pytest

from analysis.headline import coefficient_tally, deviation_of, headline_lines, measures, tally


@pytest.fixture(scope="module")
def report(flagship_reference_run, tmp_path_factory) -> dict[str, Any]:
    from analysis.report import score_run

    run_dir = tmp_path_factory.mktemp("headline") / "run"
    shutil.copytree(flagship_reference_run, run_dir)
    return score_run(run_dir, bootstrap=20, seed=0)


def _pooled_comparisons(report: dict[str, Any]) -> list[dict[str, Any]]:
    comparison = ("js_distance", "wasserstein", "js_distance_belief_mean", "gap_difference",
                  "participants_contradicting_difference", "sign_f1", "false_positive_rate",
                  "ci_overlap", "unique_structures_ratio", "entropy_bits_ratio", "spread_ratio")
    return [row for rows in report["tables"].values() for row in rows
            if row["metric"] in comparison and row["subgroup"] is None and row["round"] is None]


def _both_estimable(row: dict[str, Any]) -> bool:
    return all(not row["policies"][p]["not_estimable"] for p in ("base", "tuned"))


def _counts(line: str) -> tuple[int, ...]:
    found = re.search(r"on (\d+) of (\d+) measures, farther on (\d+)(?:, tied on (\d+))?", line)
    assert found, line
    return tuple(int(g or 0) for g in found.groups())


def test_the_headline_of_a_real_run_counts_every_estimable_pooled_comparison(report):
    lines = headline_lines(report)
    assert lines[0] == "the reference is a SYNTHETIC STAND-IN, not human data"
    pair = next(line for line in lines if line.startswith("tuned is closer to the reference"))
    closer, compared, farther, tied = _counts(pair)
    expected = sum(_both_estimable(row) for row in _pooled_comparisons(report))
    assert expected >= 10
    assert compared == expected
    assert closer + farther + tied == compared
    assert re.search(r"within the noise ceiling on \d+ of \d+", pair)


def _idealise(report: dict[str, Any], policy: str) -> dict[str, Any]:
    """A copy where `policy` scores what a perfect simulator would, on every pooled comparison."""
    ideal = copy.deepcopy(report)
    for row in _pooled_comparisons(ideal):
        cell = row["policies"][policy]
        if not cell["not_estimable"]:
            metric = row["metric"]
            cell["value"] = 1.0 if metric.endswith("_ratio") or metric in (
                "sign_f1", "ci_overlap") else 0.0
    return ideal


def test_a_perfect_policy_is_never_farther_and_always_within_the_noise(report):
    ideal = _idealise(report, "tuned")
    found = measures(ideal)
    t = tally(found, "tuned", "base")
    assert t.farther == 0 and t.closer > 0
    pair = next(line for line in headline_lines(ideal) if line.startswith("tuned"))
    with_ceiling = sum(m.noise is not None and "tuned" in m.deviation for m in found)
    assert f"within the noise ceiling on {with_ceiling} of {with_ceiling}" in pair
    swapped = tally(found, "base", "tuned")
    assert (swapped.closer, swapped.farther, swapped.ties) == (t.farther, t.closer, t.ties)


def test_subgroup_and_per_round_rows_do_not_count(report):
    changed = copy.deepcopy(report)
    for rows in changed["tables"].values():
        for row in rows:
            if (row["subgroup"] is not None or row["round"] is not None) and \
                    deviation_of(row["metric"]) and not row["policies"]["tuned"]["not_estimable"]:
                row["policies"]["tuned"]["value"] = 0.5
    assert headline_lines(changed) == headline_lines(report)


def test_a_not_estimable_cell_drops_out_of_the_count(report):
    changed = copy.deepcopy(report)
    row = next(r for r in _pooled_comparisons(changed) if _both_estimable(r))
    row["policies"]["tuned"] = {"value": None, "ci": None, "n": None, "n_human": None,
                                "not_estimable": "not estimable: test"}
    before = _counts(next(x for x in headline_lines(report) if x.startswith("tuned")))
    after = _counts(next(x for x in headline_lines(changed) if x.startswith("tuned")))
    assert after[1] == before[1] - 1


def test_ratios_are_judged_on_the_log_scale_and_differences_by_size():
    assert deviation_of("spread_ratio")(2.0) == pytest.approx(deviation_of("spread_ratio")(0.5))
    assert deviation_of("gap_difference")(-0.2) == pytest.approx(0.2)
    assert deviation_of("sign_f1")(0.75) == pytest.approx(0.25)
    assert deviation_of("entropy_bits") is None  # a level, compared through its ratio


def test_human_data_say_humans_and_coefficients_are_compared_by_distance(report):
    human = copy.deepcopy(report)
    human["reference"]["synthetic_standin"] = False
    lines = headline_lines(human)
    assert not any("STAND-IN" in line for line in lines)
    assert any(line.startswith("tuned is closer to the humans than base") for line in lines)
    for regression in human["regressions"]:
        for term in regression["terms"]:
            if term["human"] and term["policies"]["tuned"]:
                term["policies"]["tuned"]["estimate"] = term["human"]["estimate"]
    coefficients = coefficient_tally(human, "tuned", "base")
    assert coefficients.farther == 0
