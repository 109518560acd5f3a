"""Metrics are registered once (analysis/metrics/): the report, the printed tables and the
schema doc follow the registry."""

from __future__ import annotations

import io
import pkgutil
import re
from pathlib import Path

from rich.console import Console

import analysis.metrics
from analysis.metrics import count_metrics, sections, subgroup_metrics
from analysis.render import print_report
from tests import analysis_fixtures as fx

DOC = Path(__file__).resolve().parent.parent / "docs" / "report-schema.md"


def test_every_registered_metric_is_documented_in_the_report_schema() -> None:
    documented = set(re.findall(r"^\| (\w+) \| `(\w+)` \|", DOC.read_text(encoding="utf-8"),
                                re.MULTILINE))
    registered = {(s.key, m.name) for s in sections() for m in s.metrics}
    assert registered - documented == set()
    assert documented - registered == set()  # and the doc lists no metric that is not computed


def test_every_module_of_the_metrics_package_is_a_registered_section() -> None:
    modules = {m.name for m in pkgutil.iter_modules(analysis.metrics.__path__)}
    assert len(sections()) == len(modules)
    assert [s.key for s in sections()] == ["heterogeneity", "divergence", "coherence",
                                           "regression_recovery"]


def test_the_report_and_the_printed_tables_follow_the_registry(tmp_path: Path) -> None:
    report = fx.score(tmp_path, fx.participants(40, seed=1), {"p": fx.participants(40, seed=2)},
                      bootstrap=5, splits=3)
    assert list(report["tables"]) == [s.key for s in sections()]
    metrics = {s.key: {m.name for m in s.metrics} for s in sections()}
    for key, rows in report["tables"].items():
        assert {r["metric"] for r in rows} <= metrics[key]
    console = Console(file=io.StringIO(), width=300, record=True)
    print_report(report, console)
    printed = console.export_text()
    for section in sections():
        assert section.title in printed
    assert "unique_structures" in count_metrics() and "js_distance" in subgroup_metrics()
