"""The paper's table from a study's report.json: per policy, the four fidelity measures beside the
human reference and the human split-half noise ceiling.

Pure functions of report.json (docs/report-schema.md) and the study's record; `write_study`
writes study.json (deterministic: no time, no absolute path) and study.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from analysis.metrics import count_metrics

STUDY_SCHEMA_VERSION = 1
# (report table, metric, label): the paper's measures, in its order.
MEASURES = (
    ("heterogeneity", "unique_structures", "unique belief structures"),
    ("heterogeneity", "unique_structures_ratio", "unique structures / human"),
    ("divergence", "js_distance_belief_mean", "JS distance, belief questions"),
    ("coherence", "gap", "belief-action gap"),
    ("coherence", "gap_difference", "gap - human gap"),
    ("regression_recovery", "sign_f1", "regression sign-F1"),
    ("regression_recovery", "false_positive_rate", "regression FPR"),
)
PER_SUBGROUP = frozenset({"js_distance_belief_mean"})  # the paper's per-ethnic-group measure
PER_ITEM = frozenset({"sign_f1", "false_positive_rate"})


def _cell(cell: dict[str, Any] | None) -> dict[str, Any] | None:
    if cell is None:
        return None
    return {k: cell.get(k) for k in ("value", "ci", "n", "not_estimable")}


def _ceiling(ceiling: dict[str, Any] | None) -> dict[str, Any] | None:
    if ceiling is None:
        return None
    return {k: ceiling.get(k) for k in ("value", "range", "corrected", "corrected_range",
                                        "not_estimable")}


def study_table(report: dict[str, Any]) -> dict[str, Any]:
    """The table's rows: each measure for everyone (and, for JS distance, every group of every
    analysis subgroup), with the human value, the ceiling and one cell per policy."""
    policies = list(report["policies"])
    rows: list[dict[str, Any]] = []
    for table, metric, label in MEASURES:
        found = [r for r in report["tables"][table] if r["metric"] == metric and r["round"] is None]
        everyone = [r for r in found if r["subgroup"] is None]
        if metric in ("gap", "gap_difference"):
            everyone = everyone[:1]  # the first gap row is every rule together
        chosen = everyone
        if metric in PER_SUBGROUP:
            chosen += [r for subgroup, groups in report.get("subgroups", {}).items()
                       for group in groups for r in found
                       if r["subgroup"] == subgroup and r["group"] == group]
        for row in chosen:
            scope = "all" if row["subgroup"] is None else f"{row['subgroup']}={row['group']}"
            rows.append({"measure": metric, "label": label, "item": row["item"], "scope": scope,
                         "subgroup": row["subgroup"], "group": row["group"],
                         "human": _cell(row.get("human")), "ceiling": _ceiling(row.get("ceiling")),
                         "policies": {p: _cell(row["policies"].get(p)) for p in policies}})
    return {"policies": policies, "rows": rows}


def study_document(record: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """study.json: the study's record (plan, variants), the reference and the table."""
    reference = report.get("reference", {})
    return {"schema_version": STUDY_SCHEMA_VERSION, **record,
            "reference": {"synthetic_standin": bool(reference.get("synthetic_standin")),
                          "sha256": reference.get("sha256"),
                          "participants": report["samples"]["human"]["participants"]},
            "score": {k: report["settings"][k] for k in ("bootstrap", "seed", "splits")},
            "table": study_table(report)}


def _number(value: float | None, count: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if count else f"{value:.3f}"


def _value(cell: dict[str, Any] | None, count: bool) -> str:
    if cell is None:
        return ""
    if cell.get("not_estimable"):
        return "n/e"
    return _number(cell.get("value"), count)


def _ceiling_text(ceiling: dict[str, Any] | None) -> str:
    """The corrected split-half ceiling (the raw one where no correction applies)."""
    if ceiling is None:
        return ""
    if ceiling.get("not_estimable"):
        return "n/e"
    value = ceiling.get("corrected")
    return _number(ceiling.get("value") if value is None else value, False)


def _rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    policies = document["table"]["policies"]
    header = ["measure", "scope", "human", "ceiling", *policies]
    lines = []
    for row in document["table"]["rows"]:
        count = row["measure"] in count_metrics()
        # A regression's name tells its rows apart; other items are what the label says.
        label = row["label"] + (f" · {row['item']}" if row["measure"] in PER_ITEM else "")
        lines.append([label, row["scope"], _value(row["human"], count),
                      _ceiling_text(row["ceiling"]),
                      *(_value(row["policies"].get(p), count) for p in policies)])
    return header, lines


def _caveats(document: dict[str, Any]) -> list[str]:
    found = []
    if document["reference"]["synthetic_standin"]:
        found.append("The reference is a SYNTHETIC STAND-IN, not human data.")
    if document["model"].get("builtin_not_pretrained"):
        found.append(f"{document['model']['name']} is NOT a pretrained model (random weights): "
                     "its figures test the machinery, not the method.")
    return found


def study_markdown(document: dict[str, Any]) -> str:
    """study.md: the variants, then the paper's table, with the ceiling beside the human value."""
    holdout = document["holdout"]
    out = [f"# Study: {document['scenario']['name']}, grid {document['grid']}, seed "
           f"{document['seed']}", "",
           f"Base model: {document['model']['name']}. Evaluation holdout: {holdout['twins']} twins "
           f"({holdout['simulated']} simulated), disjoint from every pilot.", ""]
    out += [f"> {line}" for line in _caveats(document)] + [""] if _caveats(document) else []
    out += ["| variant | pilot | sample | demographics | pilot twins | final loss |",
            "|---|---|---|---|---|---|"]
    out += [f"| {v['name']} | {v['pilot']} | {v['sample']} | {'yes' if v['demographics'] else 'no'} "
            f"| {v['pilot_twins']} | {v['final_loss']} |" for v in document["variants"]]
    header, lines = _rows(document)
    out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    out += ["", "ceiling: the measure between two random halves of the human holdout rows, "
            "corrected to the real comparison's sizes (docs/report-schema.md); n/e: not "
            "estimable (see run/report.json for why)."]
    return "\n".join(out) + "\n"


def print_study(document: dict[str, Any], console: Console) -> None:
    """The paper's table as a rich table."""
    header, lines = _rows(document)
    table = Table(title=escape(f"{document['scenario']['name']} · grid {document['grid']} · seed "
                               f"{document['seed']} · {document['model']['name']}"))
    for name in header:
        table.add_column(escape(name), justify="left" if name in ("measure", "scope")
                         else "right")
    for line in lines:
        table.add_row(*(escape(cell) for cell in line))
    console.print(table)
    for caveat in _caveats(document):
        console.print(escape(caveat), style="yellow")


def write_study(out: Path, document: dict[str, Any]) -> tuple[Path, Path]:
    """Write study.json and study.md into the study directory, each atomically."""
    written = []
    for name, text in (("study.json", json.dumps(document, indent=2, allow_nan=False) + "\n"),
                       ("study.md", study_markdown(document))):
        path = Path(out) / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written[0], written[1]
