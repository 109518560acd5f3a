"""Print a report as rich tables: one column per policy, the human value and the noise ceiling.

Every row of report.json is printed for everyone; for subgroups only the headline metrics pooled
over rounds (the rest stay in report.json).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from analysis.metrics import count_metrics, sections, subgroup_metrics


def _number(value: float | None, count: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if count else f"{value:.3f}"


def format_cell(cell: dict[str, Any] | None, count: bool = False) -> str:
    """'value [low, high]', or 'n/e' for a not-estimable cell, or '' when absent."""
    if cell is None:
        return ""
    if cell.get("not_estimable"):
        return "[yellow]n/e[/]"
    text = _number(cell.get("value"), count)
    if cell.get("ci"):
        low, high = cell["ci"]
        text += f" [dim][{_number(low)}, {_number(high)}][/]"
    return text


def format_ceiling(ceiling: dict[str, Any] | None) -> str:
    """Split-half value, then the value corrected to full sample size."""
    if ceiling is None:
        return ""
    if ceiling.get("not_estimable"):
        return "[yellow]n/e[/]"
    text = _number(ceiling.get("value"))
    if ceiling.get("corrected") is not None:
        text += f" [dim](corr. {_number(ceiling['corrected'])})[/]"
    return text


def _scope(row: dict[str, Any]) -> str:
    return "all" if row.get("subgroup") is None else escape(f"{row['subgroup']}={row['group']}")


def _shown(row: dict[str, Any]) -> bool:
    if row.get("subgroup") is None:
        return True
    return row["metric"] in subgroup_metrics() and row.get("round") is None


def _reasons(rows: list[dict[str, Any]], policies: list[str]) -> list[str]:
    found: list[str] = []
    for row in rows:
        cells = [row.get("human"), row.get("ceiling"), *(row["policies"].get(p) for p in policies)]
        for cell in cells:
            reason = (cell or {}).get("not_estimable")
            if reason and reason not in found:
                found.append(reason)
    return found


def section_table(title: str, rows: list[dict[str, Any]], policies: list[str]) -> Table:
    """One report section as a table: metric, item, round, scope, human, policies, ceiling."""
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("metric", no_wrap=True)
    for column in ("item", "round", "scope", "human"):
        table.add_column(column, overflow="fold")
    for policy in policies:
        table.add_column(escape(policy), overflow="fold")
    table.add_column("human split-half ceiling", overflow="fold")
    shown = [r for r in rows if _shown(r)]
    for row in shown:
        count = row["metric"] in count_metrics()
        table.add_row(
            row["metric"], escape(row.get("item") or ""), "pooled" if row.get("round") is None
            else str(row["round"]), _scope(row), format_cell(row.get("human"), count),
            *(format_cell(row["policies"].get(p), count) for p in policies),
            format_ceiling(row.get("ceiling")))
    reasons = _reasons(shown, policies)
    if reasons:
        table.caption = escape("n/e = " + "; ".join(reasons[:6])
                               + ("; ..." if len(reasons) > 6 else ""))
        table.caption_justify = "left"
    return table


def coefficient_table(regression: dict[str, Any], policies: list[str]) -> Table:
    """Side-by-side coefficients of one regression (* = significant at 0.05)."""
    table = Table(title=escape(f"{regression['name']} ({regression['family']}): "
                               f"{regression['formula']}"), title_justify="left")
    table.add_column("term", overflow="fold")
    for name in ("human", *policies):
        table.add_column(escape(name), overflow="fold")

    def entry(value: dict[str, Any] | None) -> str:
        if value is None:
            return "-"
        low, high = value["ci"]
        star = "*" if value["significant"] else ""
        return f"{value['estimate']:.3f}{star} [dim][{low:.2f}, {high:.2f}][/]"

    for term in regression["terms"]:
        table.add_row(escape(term["term"]), entry(term["human"]),
                      *(entry(term["policies"].get(p)) for p in policies))
    fits = {"human": regression["human"], **regression["policies"]}
    failed = [f"{name}: {fit['not_estimable']}" for name, fit in fits.items()
              if fit.get("not_estimable")]
    if failed:
        table.caption = escape("; ".join(failed))
        table.caption_justify = "left"
    return table


def print_header(report: dict[str, Any], console: Console) -> None:
    """Run, scenario, reference (flagged when a synthetic stand-in) and settings."""
    reference = report["reference"]
    settings = report["settings"]
    console.rule(escape(f"Scoring run {report.get('run_id')} — scenario "
                        f"{report['scenario']['name']}"))
    if reference.get("synthetic_standin"):
        console.print("[bold red]Reference: SYNTHETIC STAND-IN, not human data.[/] "
                      f"{escape(reference['path'])}")
    else:
        console.print(f"Reference: {escape(reference['path'])}")
    samples = report["samples"]
    sizes = ", ".join(f"{escape(p)} {samples['policies'][p]['participants']}"
                      for p in report["policies"])
    console.print(f"Participants: human {samples['human']['participants']}; {sizes}. "
                  f"Bootstrap {settings['bootstrap']} (95% intervals), {settings['splits']} "
                  f"human split halves, seed {settings['seed']}.")


def print_report(report: dict[str, Any], console: Console) -> None:
    """Print every section of a report with one column per policy plus the ceiling."""
    print_header(report, console)
    policies = list(report["policies"])
    for section in sections():
        rows = report["tables"].get(section.key) or []
        if rows:
            console.print(section_table(section.title, rows, policies))
    for regression in report.get("regressions", []):
        console.print(coefficient_table(regression, policies))
    for note in report.get("notes", []):
        console.print(f"[dim]note: {escape(note)}[/]")
    if report.get("inference"):  # written by `run.py infer` (docs/inference.md)
        from analysis.inference_render import print_inference

        print_inference(report["inference"], console)
