"""`score` prints one narrow table per measure (policies as columns) that fits 80 columns, the
headline, and where the browser report is; report.json is what score_run writes. On a real run
(builtin:tiny: random weights, not a pretrained model; the reference is a SYNTHETIC STAND-IN)."""

from __future__ import annotations

import io
import json
import re
import shutil
from typing import Any

import pytest
from rich.console import Console

from analysis.headline import headline_lines
from analysis.metrics import count_metrics
from analysis.render import print_report
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def scored_copy(flagship_reference_run, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("narrow") / "run"
    shutil.copytree(flagship_reference_run, run_dir)
    result = run_cli("score", str(run_dir), "--bootstrap", "20", "--seed", "3")
    assert result.returncode == 0, result.stderr
    return run_dir, result


def _printed(report: dict[str, Any], width: int = 80) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    print_report(report, console)
    return console.export_text()


def test_no_printed_line_is_wider_than_80_and_no_number_is_broken(scored_copy):
    run_dir, _ = scored_copy
    report = json.loads((run_dir / "report.json").read_text())
    text = _printed(report)
    assert max(len(line) for line in text.splitlines()) <= 80
    tokens = set(re.findall(r"-?\d+\.\d{3}", text))
    checked = 0
    for rows in report["tables"].values():
        for row in rows:
            if row["subgroup"] is None and row["metric"] not in count_metrics():
                for cell in row["policies"].values():
                    if cell["value"] is not None:
                        assert f"{cell['value']:.3f}" in tokens, (row["metric"], row["item"])
                        checked += 1
    assert checked >= 40


def test_one_table_per_measure_with_a_column_per_policy(scored_copy):
    run_dir, _ = scored_copy
    report = json.loads((run_dir / "report.json").read_text())
    text = _printed(report)
    metrics = {row["metric"] for rows in report["tables"].values() for row in rows}
    for metric in metrics:
        assert len(re.findall(rf"^{metric}: ", text, flags=re.M)) == 1, metric
    headers = [line for line in text.splitlines() if line.startswith("┃ item ")]
    assert len(headers) == len(metrics)
    assert all("base" in line and "tuned" in line for line in headers)
    assert "human split-half ceiling" in " ".join(text.split())


def test_score_prints_the_headline_and_the_way_to_the_browser_report(scored_copy):
    run_dir, result = scored_copy
    report = json.loads((run_dir / "report.json").read_text())
    stdout = " ".join(result.stdout.split())
    for line in headline_lines(report):
        assert f"- {line}" in stdout
    assert "tuned is closer to the reference than base on" in stdout
    assert f"python run.py report {run_dir}" in result.stderr
    lines = [line for line in result.stdout.splitlines() if line != str(run_dir / "report.json")]
    assert max(len(line) for line in lines) <= 80


def test_report_json_is_what_score_run_writes(scored_copy, tmp_path):
    from analysis.report import score_run

    run_dir, _ = scored_copy
    again = tmp_path / "run"
    shutil.copytree(run_dir, again)
    (again / "report.json").unlink()
    score_run(again, bootstrap=20, seed=3)
    first = json.loads((run_dir / "report.json").read_text())
    second = json.loads((again / "report.json").read_text())
    first["run_dir"] = second["run_dir"] = ""
    assert first == second
