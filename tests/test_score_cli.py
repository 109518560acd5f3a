"""`run.py score` on a real engine run: the four measures per policy, the ceiling, report.json."""

from __future__ import annotations

import json

from engine.runner import run_scenario
from tests.conftest import run_cli


def test_score_prints_the_measures_and_writes_report_json(flagship, tiny_backend, tmp_path):
    run_scenario(flagship, participants=60, out=tmp_path / "run", backend=tiny_backend)
    result = run_cli("score", str(tmp_path / "run"), "--bootstrap", "50", "--seed", "1")
    assert result.returncode == 0, result.stderr
    for heading in ("Heterogeneity", "Distributional alignment", "coherence", "Regression", "ceiling"):
        assert heading.lower() in result.stdout.lower(), heading
    assert "SYNTHETIC STAND-IN" in result.stdout
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["policies"] == ["base"]
    assert report["samples"]["human"]["participants"] == 60  # the twins' counterparts only


def test_score_on_a_folder_without_responses_exits_2(tmp_path):
    result = run_cli("score", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "manifest.json" in result.stderr
