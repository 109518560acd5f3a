"""The network section as table rows (one per sample and question), printed by `score` (rich)
and shown by report.html; both read these rows, so the two cannot disagree.

Columns: mean assortativity over the rounds (its range), the share who switch to their
neighbours' majority in the shown condition and in the others (k/n, share, Wilson interval),
shown minus the others (two-proportion z test), and the conformity slope when not shown (the
placebo) beside the influence (shown minus not shown; OLS clustered by participant, and a
randomisation p-value from permuting who was shown).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from analysis.network import share_entry

COLUMNS = ("sample", "question", "assortativity: mean [min, max] over rounds",
           "switch to majority: shown", "switch to majority: not shown",
           "shown - not shown (p)", "conformity slope: not shown", "influence: shown - not shown")


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(entry: dict[str, Any] | None) -> str:
    if not entry or not entry.get("n"):
        return "-"
    low, high = entry["ci"]
    return f"{entry['k']}/{entry['n']} = {entry['share']:.2f} [{low:.2f}, {high:.2f}]"


def _term(term: dict[str, Any] | None, with_p: bool = False) -> str:
    if not term or term.get("estimate") is None:
        return "-"
    low, high = term["ci"]
    text = f"{term['estimate']:.3f} [{_num(low)}, {_num(high)}]"
    if with_p and term.get("p") is not None:
        text += f" p={_num(term['p'])}"
    if with_p and term.get("permutation_p") is not None:
        text += f" (permutation p={_num(term['permutation_p'])})"
    return text


def _assortativity(rounds: list[dict[str, Any]], question: str) -> str:
    values = [r["assortativity"] for r in rounds
              if r["question"] == question and r["assortativity"] is not None]
    if not values:
        return "-"
    return f"{sum(values) / len(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def _switching(switching: dict[str, Any], shown: str | None) -> tuple[str, str, str]:
    levels = switching.get("levels") or {}
    if shown is None:  # everyone is shown: one pooled share
        return _share(levels.get("all")), "-", "-"
    others = [v for k, v in levels.items() if k != shown]
    other = share_entry(sum(v["k"] for v in others), sum(v["n"] for v in others))
    test = switching.get("shown_vs_other") or {}
    diff = "-"
    if test.get("difference") is not None:
        diff = f"{test['difference']:+.3f}"
        diff += f" (p={test['p']:.3f})" if test.get("p") is not None else ""
        if test.get("permutation_p") is not None:
            diff += f" (permutation p={test['permutation_p']:.3f})"
    return _share(levels.get(shown)), _share(other), diff


def _conformity(fit: dict[str, Any] | None) -> tuple[str, str]:
    if not fit:
        return "-", "-"
    if "influence" in fit:
        return _term(fit.get("slope_not_shown")), _term(fit.get("influence"), with_p=True)
    return "-", _term(fit.get("slope"), with_p=True)


def network_rows(section: dict[str, Any]) -> list[list[str]]:
    """One row of COLUMNS per sample (each policy, then the humans on their own network)."""
    shown = (section.get("show") or {}).get("level")
    samples = dict(section.get("policies") or {})
    if section.get("human"):
        samples["human (own network)"] = section["human"]
    rows = []
    for name, measures in samples.items():
        level = shown if name in (section.get("policies") or {}) else None
        for question in section["questions"]:
            switch = _switching(measures["switching"].get(question) or {}, level)
            slope, influence = _conformity(measures["conformity"].get(question))
            rows.append([name, question, _assortativity(measures["rounds"], question), *switch,
                         slope, influence])
    return rows


def graph_line(section: dict[str, Any]) -> str:
    """What the graph is, in one line."""
    g = section["graph"]
    show = section.get("show")
    who = (f"participants with {show['factor']}={show['level']} are shown their neighbours' "
           "previous answers; the others are not" if show else "everyone is shown")
    return (f"{g['generator']} graph ({g['file']}): {g['nodes']} participants, {g['edges']} "
            f"edges, mean degree {g['mean_degree']:.2f}, clustering {g['clustering']:.3f}, "
            f"{g['components']} component(s); {who}.")


def print_network(section: dict[str, Any], console: Console) -> None:
    """The network measures under a line that says what the graph is: one narrow table per
    sample, a row per measure and a column per question (the same rows as report.html)."""
    console.rule("Network: neighbours' answers and influence", align="left", style="bold")
    console.print(escape(graph_line(section)))
    rows = network_rows(section)
    for sample in dict.fromkeys(row[0] for row in rows):
        mine = [row for row in rows if row[0] == sample]
        table = Table(title=escape(sample), title_justify="left")
        table.add_column("measure", overflow="fold")
        for row in mine:
            table.add_column(escape(row[1]), overflow="fold")
        for i, name in enumerate(COLUMNS[2:], start=2):
            table.add_row(escape(name), *(escape(row[i]) for row in mine))
        console.print(table)
    console.print(escape("switching: of those whose previous answer differed from their "
                         "neighbours' strict majority, the share who now give it [95% Wilson]; "
                         f"outcome: {section['outcome']}"), style="dim")
