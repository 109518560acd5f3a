"""The Chile plebiscite scenario on real human data (FLACSO/Chile 1988, via carData):
the vendored file keeps every original cell, validates, and a `study` on builtin:tiny runs end to
end and is scored on all four measures, each policy beside the human noise ceiling.

builtin:tiny has random weights: these tests check the machinery on real data, not the figures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.scenario_scores import assert_scored_with_ceilings, ci_study

CHILE = ROOT / "scenarios" / "chile_plebiscite.yaml"
DATA = ROOT / "scenarios" / "data" / "chile_plebiscite_1988.csv"
SHARED = ROOT.parent / "shared" / "data" / "chile_plebiscite_1988.csv"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_vendored_file_keeps_every_original_cell_and_bins_statusquo_at_the_stated_edges():
    vendored = rows(DATA)
    assert len(vendored) == 2700
    assert [r["respondent"] for r in vendored] == [str(i) for i in range(1, 2701)]
    if SHARED.exists():  # the project's copy of carData's file, where the checkout has it
        original = rows(SHARED)
        assert [{k: r[k] for k in original[0]} for r in vendored] == original
    edges = (-1.0, -0.5, 0.5, 1.0)  # data/chile_plebiscite_1988.md
    for row in vendored:
        if not row["statusquo"]:
            assert row["statusquo_bin"] == ""
            continue
        value, binned = float(row["statusquo"]), int(row["statusquo_bin"])
        assert binned == sum(value >= e for e in edges) - 2
    counts = {b: sum(r["statusquo_bin"] == b for r in vendored) for b in ("-2", "-1", "0", "1", "2")}
    assert counts == {"-2": 677, "-1": 419, "0": 621, "1": 316, "2": 650}  # as the .md states


@pytest.mark.skipif(not SHARED.exists(), reason="the checkout has no ../shared/data")
def test_the_vendoring_script_remakes_the_vendored_file_byte_for_byte(tmp_path):
    from scenarios.data.make_chile_plebiscite import vendor

    assert vendor(SHARED, tmp_path / "chile.csv") == 2700
    assert (tmp_path / "chile.csv").read_bytes() == DATA.read_bytes()


def test_the_chile_scenario_validates_and_reports_its_missing_values():
    result = run_cli("validate", str(CHILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chile_plebiscite" in result.stdout and "1 rounds, 2 stages, 2 questions" in result.stdout
    # The missing-values report: every column with empty cells, with its count (measured in
    # data/chile_plebiscite_1988.md).
    lines = result.stdout.splitlines()
    for column, count in (("vote", 168), ("income", 98), ("statusquo_bin", 17),
                          ("education", 11), ("age", 1)):
        assert any(column in line and str(count) in line for line in lines), (column, result.stdout)


def test_a_twin_missing_education_is_told_not_stated_and_the_row_missing_age_is_no_twin():
    with DATA.open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    no_education = next(r["respondent"] for r in table if not r["education"] and r["age"])
    shown = run_cli("preview", str(CHILE), "--participant", no_education)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "Your education: not stated." in shown.stdout
    no_age = next(r["respondent"] for r in table if not r["age"])
    refused = run_cli("preview", str(CHILE), "--participant", no_age)
    assert refused.returncode == 2 and "2699" in refused.stdout + refused.stderr


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """The scenario's `ci` grid (builtin:tiny, 20 holdout twins, one 4-twin pilot), end to end."""
    return ci_study(tmp_path_factory.mktemp("chile"), CHILE)


def test_a_study_on_builtin_tiny_scores_all_four_measures_per_policy_with_ceilings(study):
    result = run_cli("score", str(study / "run"), "--bootstrap", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((study / "run" / "report.json").read_text(encoding="utf-8"))
    assert not report["reference"].get("synthetic_standin")  # real human data
    assert_scored_with_ceilings(result.stdout, report, ["base", "ft"])
    # The binned status quo (coding: linear) is one regressor, its option values -2..2.
    terms = [t["term"] for fit in report["regressions"] for t in fit["terms"]]
    assert not [t for t in terms if "statusquo" in t and t != "statusquo"], terms


def test_both_coherence_rules_are_scored_against_the_holdouts_recorded_answers(study):
    manifest = json.loads((study / "run" / "manifest.json").read_text(encoding="utf-8"))
    report = json.loads((study / "run" / "report.json").read_text(encoding="utf-8"))
    holdout = set(manifest["twin_rows"]["rows"])
    human = [r for r in rows(DATA) if r["respondent"] in holdout and r["vote"]
             and r["statusquo_bin"]]
    gaps = {r["item"]: r["human"] for r in report["tables"]["coherence"]
            if r["metric"] == "gap" and r["subgroup"] is None}
    rules = {"yes_while_opposing": lambda r: r["vote"] == "Y" and int(r["statusquo_bin"]) < 0,
             "no_while_supporting": lambda r: r["vote"] == "N" and int(r["statusquo_bin"]) > 0}
    for name, contradicts in rules.items():
        item = next(item for item in gaps if name in item)
        assert gaps[item]["n"] == len(human)
        assert gaps[item]["value"] == pytest.approx(sum(map(contradicts, human)) / len(human))
