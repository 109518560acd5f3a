"""report.json: its layout, one column per policy, the ceiling, and the printed tables."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from analysis.render import print_report
from analysis.resampling import bootstrap_weights, ceiling_factor, split_masks
from tests import analysis_fixtures as fx

SECTIONS = {"heterogeneity", "divergence", "coherence", "regression_recovery"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("report")
    return fx.score(folder, fx.participants(80, seed=1),
                    {"base": fx.participants(80, seed=2), "tuned": fx.participants(80, seed=3)})


def test_report_json_is_written_and_strict_json(report: dict) -> None:
    written = Path(report["run_dir"]) / "report.json"
    text = written.read_text(encoding="utf-8")
    assert "NaN" not in text
    assert json.loads(text) == report


def test_every_row_has_one_cell_per_policy(report: dict) -> None:
    assert report["policies"] == ["base", "tuned"]
    assert set(report["tables"]) == SECTIONS
    for section in SECTIONS:
        for row in report["tables"][section]:
            assert set(row["policies"]) == {"base", "tuned"}
            assert set(row) == {"metric", "item", "round", "subgroup", "group", "human",
                                "policies", "ceiling"}


def test_comparison_rows_carry_a_noise_ceiling(report: dict) -> None:
    for metric in ("js_distance", "gap_difference", "spread_ratio", "sign_f1"):
        section = next(s for s in SECTIONS if fx.rows(report, s, metric))
        row = fx.rows(report, section, metric)[0]
        assert row["ceiling"] is not None
        assert row["ceiling"]["splits"] > 0 or row["ceiling"]["not_estimable"]


def test_header_flags_a_synthetic_reference(report: dict) -> None:
    assert report["reference"]["synthetic_standin"] is True
    out = io.StringIO()
    print_report(report, Console(file=out, width=200))
    text = out.getvalue()
    assert "SYNTHETIC STAND-IN" in text
    assert "base" in text and "tuned" in text and "human split-half ceiling" in text


def test_human_reference_is_not_flagged(tmp_path: Path) -> None:
    resolved = fx.scenario()
    resolved["reference_note"] = "Prolific sample, wave 1"
    human = fx.participants(30, seed=1)
    folder = tmp_path
    csv = fx.write_human(folder / "human.csv", human, note="human data")
    run = fx.write_run(folder / "run", {"p": fx.participants(30, seed=2)}, csv, resolved)
    from analysis.report import score_run

    report = score_run(run, bootstrap=10, splits=3)
    out = io.StringIO()
    print_report(report, Console(file=out, width=200))
    assert report["reference"]["synthetic_standin"] is False
    assert "SYNTHETIC" not in out.getvalue()


def test_bootstrap_weights_resample_every_participant_count() -> None:
    weights = bootstrap_weights(7, 500, np.random.default_rng(0))
    assert weights.shape == (500, 7)
    assert (weights.sum(axis=1) == 7).all()
    assert weights.mean() == pytest.approx(1.0, abs=0.05)


def test_split_halves_partition_the_participants() -> None:
    masks = split_masks(9, 30, np.random.default_rng(0))
    assert (masks.sum(axis=1) == 4).all()
    assert len({m.tobytes() for m in masks}) > 1


def test_half_size_correction_is_one_over_root_two_for_equal_halves() -> None:
    assert ceiling_factor(np.array(50), np.array(50)) == pytest.approx(np.sqrt(0.5))


def test_correction_follows_the_simulated_sample_size() -> None:
    # 100 simulated against 100 human: (1/100 + 1/100) / (1/50 + 1/50) -> 1/sqrt(2);
    # 25 simulated: (1/25 + 1/100) / (1/50 + 1/50) = 1.25 -> sqrt(1.25)
    assert ceiling_factor(np.array(50), np.array(50), 25) == pytest.approx(np.sqrt(1.25))


def test_corrected_ceiling_predicts_the_distance_of_an_independent_sample(
        tmp_path: Path) -> None:
    """A simulation that is a fresh draw from the human population sits near the ceiling."""
    human, fresh = fx.participants(400, seed=10), fx.participants(400, seed=11)
    report = fx.score(tmp_path, human, {"fresh": fresh}, bootstrap=10, splits=40)
    rows = fx.rows(report, "divergence", "js_distance", subgroup=None)
    simulated = np.mean([r["policies"]["fresh"]["value"] for r in rows])
    corrected = np.mean([r["ceiling"]["corrected"] for r in rows])
    raw = np.mean([r["ceiling"]["value"] for r in rows])
    assert corrected < raw
    assert abs(simulated - corrected) < abs(simulated - raw)


def test_analysis_imports_nothing_from_the_other_rooms() -> None:
    import ast

    folder = Path(__file__).resolve().parent.parent / "analysis"
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in {"engine", "agents", "scenarios"}, path.name


def test_a_twins_run_is_scored_against_its_twins_human_counterparts_only(tmp_path: Path) -> None:
    human = fx.participants(120, seed=1)
    holdout = human.iloc[40:100]  # e.g. twins of a holdout; the other rows were a pilot
    report = fx.score(tmp_path, human, {"base": holdout.assign(r1_attack="north")})
    assert report["samples"]["human"]["participants"] == 60
    assert any("60 human rows whose twins were simulated" in note for note in report["notes"])
