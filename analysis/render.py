"""Print a report as narrow rich tables that fit 80 columns: one table per measure, one column
per policy, beside the human value and the noise ceiling.

Every row of report.json is printed for everyone; for subgroups only the headline metrics pooled
over rounds (the rest stay in report.json).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from analysis.metrics import count_metrics, sections, subgroup_metrics
from analysis.network_render import print_network


def _number(value: float | None, count: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if count else f"{value:.3f}"


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


MEASURES = {  # what one measure's numbers mean, printed under its table's title
    "unique_structures": "distinct belief-answer tuples (count)",
    "unique_structures_ratio": "simulated / human distinct structures; 1 = as varied",
    "entropy_bits": "Shannon entropy of the answers, bits",
    "entropy_bits_ratio": "simulated / human entropy; 1 = as varied",
    "spread": "standard deviation of the answers",
    "spread_ratio": "simulated / human spread; 1 = as varied",
    "js_distance": "Jensen-Shannon distance to the human answers; 0 = same, lower is closer",
    "wasserstein": "Wasserstein distance to the human answers; lower is closer",
    "js_distance_belief_mean": "mean JS distance over the belief questions; lower is closer",
    "gap": "share of rounds whose action contradicts the belief",
    "gap_difference": "simulated gap - human gap; 0 = same",
    "participants_contradicting": "share of participants with a contradicting round",
    "participants_contradicting_difference": "simulated share - human share; 0 = same",
    "sign_f1": "significant signs recovered (F1); 1 = all",
    "false_positive_rate": "significant where the human fit is not; 0 = none",
    "ci_overlap": "share of coefficients whose 95% intervals overlap; 1 = all",
}
LEGEND = ("each cell: value, then its 95% bootstrap interval; ceiling = the human split-half "
          "ceiling, what two random halves of the human sample score against each other, "
          "corrected to these sample sizes ('raw': uncorrected), then its 2.5-97.5% range over "
          "splits: read each policy against it; n/e = not estimable")


def _cell(cell: dict[str, Any] | None, count: bool = False) -> str:
    """Value, then its interval on a second line: narrow enough for 80 columns."""
    if cell is None:
        return ""
    if cell.get("not_estimable"):
        return "[yellow]n/e[/]"
    text = _number(cell.get("value"), count)
    if cell.get("ci"):
        low, high = cell["ci"]
        text += f"\n[dim][{low:.2f}, {high:.2f}][/]"
    return text


def _ceiling_cell(ceiling: dict[str, Any] | None) -> str:
    """The corrected ceiling (else the raw one, marked), then its range over splits."""
    if ceiling is None:
        return ""
    if ceiling.get("not_estimable"):
        return "[yellow]n/e[/]"
    corrected = ceiling.get("corrected") is not None
    value = ceiling["corrected"] if corrected else ceiling.get("value")
    spread = ceiling.get("corrected_range") if corrected else ceiling.get("range")
    text = _number(value) + ("" if corrected else " [dim]raw[/]")
    if spread:
        text += f"\n[dim]{spread[0]:.2f}-{spread[1]:.2f}[/]"
    return text


def _where(row: dict[str, Any]) -> str:
    parts = [escape(row.get("item") or "")]
    if row.get("round") is not None:
        parts.append(f"round {row['round']}")
    if row.get("subgroup") is not None:
        parts.append(escape(f"{row['subgroup']}={row['group']}"))
    return "\n  ".join(parts)


def measure_table(metric: str, rows: list[dict[str, Any]], policies: list[str]) -> Table:
    """One measure: a row per item (pooled, per round, per group), a column per policy, the
    human value (level measures) and the ceiling (comparison measures)."""
    table = Table(title=f"[bold]{escape(metric)}[/]: {escape(MEASURES.get(metric, ''))}",
                  title_justify="left")
    human = any(r.get("human") is not None for r in rows)
    ceiling = any(r.get("ceiling") is not None for r in rows)
    table.add_column("item", overflow="fold", ratio=3)
    for name in (["human"] if human else []) + [escape(p) for p in policies]:
        table.add_column(name, overflow="fold", ratio=2)
    if ceiling:
        table.add_column("ceiling", overflow="fold", ratio=2)
    count = metric in count_metrics()
    for row in rows:
        table.add_row(_where(row), *([_cell(row.get("human"), count)] if human else []),
                      *(_cell(row["policies"].get(p), count) for p in policies),
                      *([_ceiling_cell(row.get("ceiling"))] if ceiling else []))
    reasons = list(dict.fromkeys(r.removeprefix("not estimable: ")
                                 for r in _reasons(rows, policies)))
    if reasons:
        more = f"; and {len(reasons) - 2} more (report.json)" if len(reasons) > 2 else ""
        table.caption = escape("n/e: " + "; ".join(reasons[:2]) + more)
        table.caption_justify = "left"
    return table


def section_tables(rows: list[dict[str, Any]], policies: list[str]) -> list[Table]:
    """A section's rows as one narrow table per measure, in the order the report holds them."""
    shown = [r for r in rows if _shown(r)]
    metrics = list(dict.fromkeys(r["metric"] for r in shown))
    return [measure_table(m, [r for r in shown if r["metric"] == m], policies) for m in metrics]


def coefficient_table(regression: dict[str, Any], policies: list[str]) -> Table:
    """Side-by-side coefficients of one regression (* = significant at 0.05)."""
    table = Table(title=escape(f"{regression['name']} ({regression['family']}): "
                               f"{regression['formula']}"), title_justify="left")
    table.add_column("term", overflow="fold", ratio=3)
    for name in ("human", *policies):
        table.add_column(escape(name), overflow="fold", ratio=2)

    def entry(value: dict[str, Any] | None) -> str:
        if value is None:
            return "-"
        low, high = value["ci"]
        star = "*" if value["significant"] else ""
        return f"{value['estimate']:.3f}{star}\n[dim][{low:.2f}, {high:.2f}][/]"

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
    console.print(f"[dim]{escape(LEGEND)}[/]")
    policies = list(report["policies"])
    for section in sections():
        rows = report["tables"].get(section.key) or []
        if rows:
            console.rule(escape(section.title), align="left", style="bold")
            for table in section_tables(rows, policies):
                console.print(table)
    if report.get("regressions"):
        console.rule("Regression coefficients (* = significant at 0.05)", align="left",
                     style="bold")
    for regression in report.get("regressions", []):
        console.print(coefficient_table(regression, policies))
    if report.get("network"):  # a run of a scenario with a `network:` block
        print_network(report["network"], console)
    for note in report.get("notes", []):
        console.print(f"[dim]note: {escape(note)}[/]")
    if report.get("inference"):  # written by `run.py infer` (docs/inference.md)
        from analysis.inference_render import print_inference

        print_inference(report["inference"], console)
