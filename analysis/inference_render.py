"""Print the inference section: classical, naive and PPI++ side by side (rich tables).

Overall means, treatment effects, regression coefficients and the power rows are printed;
subgroup rows stay in report.json / inference.json (their count is printed).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def cell_text(cell: dict[str, Any] | None, ppi: bool = False) -> str:
    """'estimate [low, high]' (PPI++: with lambda and effective n), or n/e."""
    if cell is None:
        return "-"
    if cell.get("not_estimable"):
        return "[yellow]n/e[/]"
    if cell.get("estimate") is None or not cell.get("ci") or None in cell["ci"]:
        return "-"
    low, high = cell["ci"]
    text = f"{cell['estimate']:.3f} [dim][{low:.3f}, {high:.3f}][/]"
    if ppi and cell.get("lambda") is not None:
        effective = cell.get("n_effective")
        text += f" [dim]λ={cell['lambda']:.2f}"
        text += f" n_eff={effective:.0f}[/]" if effective is not None else "[/]"
    return text


def _table(title: str, label: str, rows: list[dict[str, Any]], policies: list[str],
           describe: Any) -> Table:
    table = Table(title=escape(title), title_justify="left")
    table.add_column(label, overflow="fold")
    table.add_column("humans only", overflow="fold")
    for name in policies:
        table.add_column(escape(f"{name}: simulated only"), overflow="fold")
        table.add_column(escape(f"{name}: PPI++"), overflow="fold")
    reasons: list[str] = []
    for row in rows:
        cells = [cell_text(row["classical"])]
        for name in policies:
            entry = row["policies"].get(name) or {}
            cells += [cell_text(entry.get("naive")), cell_text(entry.get("ppi"), ppi=True)]
            for c in (row["classical"], entry.get("naive"), entry.get("ppi")):
                reason = (c or {}).get("not_estimable")
                if reason and reason not in reasons:
                    reasons.append(reason)
        table.add_row(escape(describe(row)), *cells)
    if reasons:
        table.caption = escape("n/e = " + "; ".join(reasons[:4]) + ("; ..." if len(reasons) > 4
                                                                   else ""))
        table.caption_justify = "left"
    return table


def _item(row: dict[str, Any]) -> str:
    return f"{row['question']}={row['option']}" if row.get("option") else f"{row['question']} (mean index)"


def print_inference(section: dict[str, Any], console: Console) -> None:
    """Every part of an inference section, one table each."""
    policies = list(section["policies"])
    level = f"{section['ci_level']:.0%}"
    labelled = section["labelled"]
    console.rule("Prediction-powered inference (humans only / simulated only / PPI++)")
    console.print(f"Labelled humans: {labelled['count']} ({escape(labelled['how'])}); unlabelled "
                  f"twins: {section['unlabelled']['count']}; {level} intervals. Simulated answers: "
                  f"means {escape(section['simulated_answers']['means'])}; regressions "
                  f"{escape(section['simulated_answers']['regressions'])}.")
    if section.get("synthetic_standin"):
        console.print("[bold red]The humans here are a SYNTHETIC STAND-IN, not human data.[/]")
    overall = [r for r in section["means"] if r["subgroup"] is None]
    if overall:
        console.print(_table("Means and proportions (everyone)", "estimand", overall, policies,
                             _item))
        rest = len(section["means"]) - len(overall)
        if rest:
            console.print(f"[dim]{rest} subgroup rows in inference.json / report.json[/]")
    if section["effects"]:
        console.print(_table("Treatment effects (level − reference)", "effect",
                             section["effects"], policies,
                             lambda r: f"{r['factor']}: {r['level']} − {r['reference']}, "
                                       f"{_item(r)}"))
    for regression in section["regressions"]:
        console.print(_table(f"{regression['name']} ({regression['family']}): "
                             f"{regression['formula']}", "term", regression["terms"], policies,
                             lambda r: r["term"]))
        failed = [f"{k}: {v}" for k, v in [("humans only", regression["classical"].get(
            "not_estimable"))] + [(f"{p} {w}", e.get(f"{w}_not_estimable"))
                                  for p, e in regression["policies"].items()
                                  for w in ("naive", "ppi")] if v]
        for line in failed:
            console.print(f"[yellow]{escape(line)}[/]")
    if section["power"]:
        power = Table(title=escape(f"Humans needed for a {level} interval of width "
                                   f"{section['power'][0]['target_width']:g}"), title_justify="left")
        for column in ("estimand", "policy", "PPI corr.", "humans only", "with simulation (N)",
                       "unlimited simulation"):
            power.add_column(column, overflow="fold")
        for row in section["power"]:
            rho = row["correlation"]
            power.add_row(escape(_item(row)), escape(row["policy"]),
                          "-" if rho is None else f"{rho:.2f}", str(row["humans_only"] or "-"),
                          f"{row['with_simulation'] or '-'} ({row['unlabelled']})",
                          str(row["with_unlimited_simulation"] or "-"))
        console.print(power)
