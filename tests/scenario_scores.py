"""What the real-data scenario tests check of a scored run: the four measures, each printed with
a column per policy beside the human noise ceiling, and a value or a reason in report.json."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli

# The four measures: the section titles `score` prints (analysis/render.py) and their tables.
SECTIONS = ("Heterogeneity", "Distributional alignment", "Belief-action coherence",
            "Regression recovery")
TABLES = ("heterogeneity", "divergence", "coherence", "regression_recovery")


def sections(printed: str) -> dict[str, str]:
    """The text `score` printed under each of the four measures' titles, by title (a title line
    is the title, then a rule of box-drawing dashes)."""
    found: dict[str, str] = {}
    current = None
    for line in printed.splitlines():
        if "\u2500\u2500" in line and not line.startswith(("\u2500", "\u2514", "\u250f")):
            current = next((t for t in SECTIONS if line.startswith(t)), None)
            if current:
                found[current] = ""
        elif current:
            found[current] += line + "\n"
    return found


def assert_scored_with_ceilings(printed: str, report: dict, policies: list[str]) -> None:
    """Each of the four measures is printed with a column per policy and the ceiling, and
    report.json has, for everyone, a value or the reason there is none for every policy."""
    printed_sections = sections(printed)
    assert set(printed_sections) == set(SECTIONS), list(printed_sections)
    for title, text in printed_sections.items():
        headers = [line for line in text.splitlines() if "\u2503" in line]  # table headers
        assert any("ceiling" in h and all(p in h for p in policies) for h in headers), title
    assert report["policies"] == policies
    for table in TABLES:
        everyone = [r for r in report["tables"][table] if r["subgroup"] is None]
        assert everyone, table
        for row in everyone:
            assert set(row["policies"]) == set(policies)
            for cell in row["policies"].values():
                assert cell["value"] is not None or cell["not_estimable"], (table, row["metric"])
    # The comparison measures carry the human split-half ceiling beside the policies.
    for table in ("divergence", "coherence"):
        ceilings = [r["ceiling"] for r in report["tables"][table] if r["ceiling"]]
        assert any(c["value"] is not None for c in ceilings), table


def ci_study(folder: Path, scenario: Path) -> Path:
    """The scenario's `ci` grid run end to end as `study` into `folder`/study (its run dir)."""
    out = folder / "study"
    result = run_cli("study", str(scenario), "--grid", "ci", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return out
