"""Render the page: a sandboxed, autoescaping jinja2 template, CSS and JS inlined, data as JSON."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from jinja2 import BaseLoader
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from analysis.html_report import figures
from analysis.html_report.data import Gathered
from analysis.html_report.network_figure import network_figure
from analysis.metrics import count_metrics, sections
from analysis.network_render import COLUMNS, graph_line, network_rows
from analysis.study_table import study_table

TIME = "%Y-%m-%d %H:%M UTC"


def script_json(value: Any) -> Markup:
    """JSON safe inside <script type="application/json">: <, >, & (and U+2028/9) as \\u escapes,
    so no data can close the script element or open another."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return Markup(text)  # every character that could end the element is escaped


def _asset(name: str) -> Markup:
    """One of our own template assets (CSS/JS), inlined; they hold no data."""
    text = resources.files("analysis.html_report").joinpath("templates", name).read_text("utf-8")
    if "</" in text and name.endswith(".js"):
        raise ValueError(f"{name}: must not contain '</' (it is inlined in a <script>)")
    return Markup(text)  # our own file, no data in it


def _number(value: float | None, count: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if count else f"{value:.3f}"


def _empty_cell(entry: dict[str, Any] | None) -> dict[str, Any]:
    """The cell of an absent entry (blank) or a not-estimable one (n/e, with why)."""
    if entry is None:
        return {"text": "", "title": "", "ne": False}
    return {"text": "n/e", "title": str(entry["not_estimable"]), "ne": True}


def cell(entry: dict[str, Any] | None, count: bool = False) -> dict[str, Any]:
    """A table cell: text, a tooltip (why not estimable) and whether it is not estimable."""
    if entry is None or entry.get("not_estimable"):
        return _empty_cell(entry)
    text = _number(entry.get("value"), count)
    if entry.get("ci"):
        text += f" [{_number(entry['ci'][0], False)}, {_number(entry['ci'][1], False)}]"
    return {"text": text, "title": f"n = {entry.get('n')}" if entry.get("n") else "", "ne": False}


def ceiling_cell(entry: dict[str, Any] | None) -> dict[str, Any]:
    """The human split-half ceiling: value and range, then the size-corrected value."""
    if entry is None or entry.get("not_estimable"):
        return _empty_cell(entry)
    text = _number(entry.get("value"), False)
    if entry.get("range"):
        text += f" [{_number(entry['range'][0], False)}, {_number(entry['range'][1], False)}]"
    if entry.get("corrected") is not None:
        text += f" (corr. {_number(entry['corrected'], False)})"
    return {"text": text, "title": f"{entry.get('splits')} split halves", "ne": False}


def _row(row: dict[str, Any], policies: list[str]) -> dict[str, Any]:
    count = row["metric"] in count_metrics()
    return {"metric": row["metric"], "item": row.get("item") or "",
            "round": "pooled" if row.get("round") is None else str(row["round"]),
            "scope": "all" if row.get("subgroup") is None else f"{row['subgroup']}={row['group']}",
            "human": cell(row.get("human"), count),
            "policies": [cell(row["policies"].get(p), count) for p in policies],
            "ceiling": ceiling_cell(row.get("ceiling"))}


def tables(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every report section: everyone's rows, then the subgroups' rows (shown folded)."""
    policies = list(report["policies"])
    found = []
    for section in sections():
        rows = report["tables"].get(section.key) or []
        if rows:
            found.append({"title": section.title, "key": section.key,
                          "rows": [_row(r, policies) for r in rows if r.get("subgroup") is None],
                          "subgroup_rows": [_row(r, policies) for r in rows
                                            if r.get("subgroup") is not None]})
    return found


def coefficients(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The regressions' coefficients side by side (estimate [CI], * significant)."""
    policies = list(report["policies"])

    def entry(value: dict[str, Any] | None) -> str:
        if not value:
            return "-"
        star = "*" if value.get("significant") else ""
        low, high = value["ci"]
        return f"{value['estimate']:.3f}{star} [{low:.2f}, {high:.2f}]"

    found = []
    for regression in report.get("regressions") or []:
        fits = {"human": regression.get("human") or {}, **(regression.get("policies") or {})}
        found.append({"name": regression.get("name"), "family": regression.get("family"),
                      "formula": regression.get("formula"),
                      "failed": [f"{n}: {f['not_estimable']}" for n, f in fits.items()
                                 if f.get("not_estimable")],
                      "terms": [{"term": t["term"], "human": entry(t.get("human")),
                                 "policies": [entry(t["policies"].get(p)) for p in policies]}
                                for t in regression.get("terms") or []]})
    return found


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The paper-style table (analysis.study_table): each measure, human, ceiling, policies."""
    policies = list(report["policies"])
    table = study_table(report)
    rows = []
    for row in table["rows"]:
        count = row["measure"] in count_metrics()
        rows.append({"label": row["label"], "item": row["item"] or "", "scope": row["scope"],
                     "human": cell(row["human"], count), "ceiling": ceiling_cell(row["ceiling"]),
                     "policies": [cell(row["policies"].get(p), count) for p in policies]})
    return {"rows": rows, "table": table}


def plots(gathered: Gathered) -> list[figures.Plot]:
    """Every figure of the page, in order."""
    inputs, report = gathered.inputs, gathered.report
    found = [p for p in [figures.measures(summary(report)["table"])] if p]
    found += [figures.distributions(inputs)]
    found += [p for s in inputs.experiment.subgroups
              if (p := figures.subgroup_distributions(inputs, s)) is not None]
    found += [figures.forest(r, list(report["policies"])) for r in report.get("regressions") or []
              if r.get("terms")]
    found += [p for p in (figures.heterogeneity(report), figures.gaps(inputs, report)) if p]
    found += [p for p in [network_figure(inputs, report)] if p]
    return found


def network(report: dict[str, Any]) -> dict[str, Any] | None:
    """The network measures table (analysis.network_render's rows); None without a network."""
    section = report.get("network")
    if not section:
        return None
    return {"graph": graph_line(section), "columns": list(COLUMNS), "rows": network_rows(section),
            "outcome": section.get("outcome")}


def header(gathered: Gathered, headline: list[str]) -> dict[str, Any]:
    """The facts the page opens with: run, scenario, reference (synthetic?), model, sizes."""
    report, manifest = gathered.report, gathered.inputs.manifest
    model = manifest.get("model") or {}
    name = str(model.get("name") or "")
    reference = report.get("reference") or {}
    samples = report.get("samples") or {}
    return {"run_id": report.get("run_id"), "scenario": (report.get("scenario") or {}).get("name"),
            "synthetic": bool(reference.get("synthetic_standin")),
            "reference_path": reference.get("path"), "reference_note": reference.get("note"),
            "model": name, "random_weights": bool(model.get("builtin_not_pretrained"))
            or name == "builtin:tiny", "policies": list(report["policies"]),
            "human_n": (samples.get("human") or {}).get("participants"),
            "policy_n": {p: (samples.get("policies") or {}).get(p, {}).get("participants")
                         for p in report["policies"]},
            "settings": report.get("settings") or {}, "notes": report.get("notes") or [],
            "headline": headline}


def render(gathered: Gathered, headline: list[str]) -> str:
    """The whole page as one string."""
    env = SandboxedEnvironment(autoescape=True, loader=BaseLoader())
    source = resources.files("analysis.html_report").joinpath("templates", "report.html.j2")
    template = env.from_string(source.read_text("utf-8"))
    return template.render(
        head=header(gathered, headline), summary=summary(gathered.report)["rows"],
        tables=tables(gathered.report),
        coefficients=coefficients(gathered.report), plots=plots(gathered),
        network=network(gathered.report),
        style=_asset("report.css"), script=_asset("report.js"),
        data=script_json(gathered.browser))
