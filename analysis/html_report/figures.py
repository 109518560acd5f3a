"""The page's plots, drawn with matplotlib (Agg) as SVG and inlined as data: URIs (<img>, so an
SVG can never run script, whatever text it holds)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from analysis.run_dir import RunInputs
from analysis.samples import Sample

MAX_GROUPS = 8  # subgroup figures show at most this many groups of one subgroup
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "survey-twins", "font.size": 8,
         "axes.spines.top": False, "axes.spines.right": False}


@dataclass(frozen=True)
class Plot:
    """One figure: its title, a caption and the SVG as a data: URI."""

    title: str
    caption: str
    uri: str


def plain(text: Any) -> str:
    """Text as matplotlib should show it literally (no mathtext from `$`)."""
    return str(text).replace("$", r"\$")


def svg_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _shares(sample: Sample, members: np.ndarray, r: int | None, q: int, k: int) -> np.ndarray:
    codes = sample.answers[members][:, :, q] if r is None else sample.answers[members, r, q]
    codes = np.asarray(codes).ravel()
    codes = codes[codes >= 0]
    return np.bincount(codes, minlength=k) / codes.size if codes.size else np.zeros(k)


def _bars(ax: Any, names: Sequence[str], samples: Sequence[Sample],
          members: Sequence[np.ndarray], r: int | None, q: int, options: Sequence[str]) -> None:
    width = 0.8 / len(samples)
    x = np.arange(len(options))
    for i, (sample, chosen) in enumerate(zip(samples, members, strict=True)):
        ax.bar(x + (i - (len(samples) - 1) / 2) * width, _shares(sample, chosen, r, q,
               len(options)), width, label=plain(names[i]), color=f"C{i}")
    ax.set_xticks(x, [plain(o) for o in options], rotation=35, ha="right", fontsize=7)
    ax.set_ylim(0, 1)


def _everyone(samples: Sequence[Sample]) -> list[np.ndarray]:
    return [np.arange(s.n) for s in samples]


def distributions(inputs: RunInputs) -> Plot:
    """Answer shares per question (rows) and round (columns): human vs each policy."""
    experiment, samples = inputs.experiment, [inputs.human, *inputs.policies]
    names = ["human reference", *(s.name for s in inputs.policies)]
    rows, cols = len(experiment.questions), len(experiment.rounds)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.0 * rows), squeeze=False,
                                    sharey=True, layout="constrained")
        for q, question in enumerate(experiment.questions):
            for r, round_id in enumerate(experiment.rounds):
                ax = axes[q][r]
                _bars(ax, names, samples, _everyone(samples), r, q, question.options)
                ax.set_title(plain(f"{question.id}, round {round_id}"), fontsize=8)
        axes[0][0].legend(fontsize=7, loc="upper left")
        return Plot("Answer distributions per question and round",
                    "Share of participants choosing each option.", svg_uri(figure))


def subgroup_distributions(inputs: RunInputs, subgroup: str) -> Plot | None:
    """Answer shares pooled over rounds, per group of one subgroup (rows) and question."""
    experiment = inputs.experiment
    samples = [inputs.human, *inputs.policies]
    if any(subgroup not in s.attributes.columns for s in samples):
        return None
    labels = [s.labels(subgroup) for s in samples]
    groups = sorted({g for column in labels for g in column if g is not None})[:MAX_GROUPS]
    if not groups:
        return None
    names = ["human reference", *(s.name for s in inputs.policies)]
    cols = len(experiment.questions)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(len(groups), cols, figsize=(2.6 * cols, 1.8 * len(groups)),
                                    squeeze=False, sharey=True, layout="constrained")
        for g, group in enumerate(groups):
            members = [np.flatnonzero(column == group) for column in labels]
            for q, question in enumerate(experiment.questions):
                _bars(axes[g][q], names, samples, members, None, q, question.options)
                sizes = "/".join(str(len(m)) for m in members)
                axes[g][q].set_title(plain(f"{subgroup}={group} (n {sizes}): {question.id}"),
                                     fontsize=7)
        axes[0][0].legend(fontsize=7, loc="upper left")
        return Plot(f"Answer distributions by {subgroup}",
                    "Pooled over rounds; n is human/each policy.", svg_uri(figure))


def forest(regression: dict[str, Any], policies: Sequence[str]) -> Plot:
    """Coefficients with 95% intervals: the human fit and each policy's, term by term."""
    terms = regression.get("terms") or []
    fits = ["human", *policies]
    with plt.rc_context(STYLE):
        figure, ax = plt.subplots(figsize=(6.5, 0.45 * max(len(terms), 1) + 1.2),
                                  layout="constrained")
        for i, name in enumerate(fits):
            offset = (i - (len(fits) - 1) / 2) * 0.8 / len(fits)
            for t, term in enumerate(terms):
                entry = term["human"] if name == "human" else term["policies"].get(name)
                if not entry:
                    continue
                low, high = entry["ci"]
                ax.errorbar(entry["estimate"], t + offset, xerr=[[entry["estimate"] - low],
                            [high - entry["estimate"]]], fmt="o", color=f"C{i}", ms=4,
                            capsize=2, label=plain(name) if t == 0 else None)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(terms)), [plain(term["term"]) for term in terms])
        ax.invert_yaxis()
        ax.set_xlabel("coefficient (95% interval)")
        ax.legend(fontsize=7)
        return Plot(f"Regression {regression.get('name')} ({regression.get('family')})",
                    str(regression.get("formula", "")), svg_uri(figure))


def _pooled(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["metric"] == metric and r.get("subgroup") is None
            and r.get("round") is None]


def _point(ax: Any, x: float, cell: dict[str, Any] | None, color: str, label: str | None) -> None:
    if not cell or cell.get("value") is None:
        return
    # The interval as a line of its own: a bootstrap percentile interval need not contain the
    # estimate (a count of unique structures is smaller on resamples), which errorbar refuses.
    if cell.get("ci") and None not in cell["ci"]:
        ax.vlines(x, cell["ci"][0], cell["ci"][1], color=color, linewidth=1)
    ax.plot([x], [cell["value"]], "o", color=color, ms=5, label=label)


def heterogeneity(report: dict[str, Any]) -> Plot | None:
    """Unique belief structures (human and each policy) and SD (spread) ratios per question."""
    rows = report["tables"].get("heterogeneity") or []
    policies = list(report["policies"])
    unique, spread = _pooled(rows, "unique_structures"), _pooled(rows, "spread_ratio")
    if not unique and not spread:
        return None
    with plt.rc_context(STYLE):
        figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained",
                                             width_ratios=[1, 2])
        for row in unique[:1]:
            names = ["human", *policies]
            values = [(row.get("human") or {}).get("value")]
            values += [(row["policies"].get(p) or {}).get("value") for p in policies]
            left.bar(range(len(names)), [v or 0 for v in values],
                     color=[f"C{i}" for i in range(len(names))])
            left.set_xticks(range(len(names)), [plain(n) for n in names], rotation=20)
            left.set_title(plain(f"unique structures ({row.get('item')})"))
        for j, row in enumerate(spread):
            ceiling = row.get("ceiling") or {}
            if ceiling.get("range"):
                right.fill_between([j - 0.4, j + 0.4], *ceiling["range"], color="0.85",
                                   label="human split-half range" if j == 0 else None)
            for i, policy in enumerate(policies):
                _point(right, j + (i - (len(policies) - 1) / 2) * 0.2, row["policies"].get(policy),
                       f"C{i + 1}", plain(policy) if j == 0 else None)
        right.axhline(1, color="grey", lw=0.8)
        right.set_xticks(range(len(spread)), [plain(r.get("item")) for r in spread], rotation=20)
        right.set_title("SD ratio, simulated / human (1 = as spread out as the humans)")
        right.legend(fontsize=7)
        return Plot("Heterogeneity", "Unique structures and spread (SD) ratios, pooled over "
                    "rounds, with 95% bootstrap intervals.", svg_uri(figure))


def _condition_gaps(inputs: RunInputs) -> list[tuple[str, list[float | None]]]:
    """(label, [human, *policies] gap) for each level of each condition factor (points only)."""
    from analysis.metrics.coherence import contradictions

    rules = list(inputs.experiment.coherence)
    samples = [inputs.human, *inputs.policies]
    flags = [contradictions(s, inputs.experiment, rules) for s in samples]
    found = []
    for factor in inputs.experiment.factors:
        if any(factor.name not in s.attributes.columns for s in samples):
            continue
        for level in factor.levels:
            values: list[float | None] = []
            for sample, (contra, valid) in zip(samples, flags, strict=True):
                members = sample.labels(factor.name) == level
                total = valid[members].sum()
                values.append(float(contra[members].sum() / total) if total else None)
            found.append((f"{factor.name}={level}", values))
    return found


def gaps(inputs: RunInputs, report: dict[str, Any]) -> Plot | None:
    """The belief-action gap for everyone, per subgroup (with intervals) and per condition."""
    if not inputs.experiment.coherence:
        return None
    policies = list(report["policies"])
    rows = [r for r in report["tables"].get("coherence") or []
            if r["metric"] == "gap" and r.get("round") is None]
    item = rows[0]["item"] if rows else None
    rows = [r for r in rows if r["item"] == item]
    scopes = [("everyone" if r.get("subgroup") is None else f"{r['subgroup']}={r['group']}",
               [r.get("human"), *(r["policies"].get(p) for p in policies)]) for r in rows]
    scopes += [(label, [None if v is None else {"value": v} for v in values])
               for label, values in _condition_gaps(inputs)]
    names = ["human", *policies]
    with plt.rc_context(STYLE):
        figure, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(scopes) + 2), 3.4),
                                  layout="constrained")
        for j, (_, cells) in enumerate(scopes):
            for i, cell in enumerate(cells):
                _point(ax, j + (i - (len(names) - 1) / 2) * 0.8 / len(names), cell, f"C{i}",
                       plain(names[i]) if j == 0 else None)
        ax.set_xticks(range(len(scopes)), [plain(label) for label, _ in scopes], rotation=35,
                      ha="right")
        conditions = len(scopes) - len(rows)
        if rows and conditions:
            ax.axvline(len(rows) - 0.5, color="0.7", lw=0.8, ls="--")
        ax.set_ylabel("share of participant-rounds contradicting")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return Plot("Belief-action gap by subgroup and condition",
                    plain(f"Rule {item}. Subgroups: 95% bootstrap intervals from report.json; "
                          "conditions: point values computed here."), svg_uri(figure))


def measures(summary: dict[str, Any]) -> Plot | None:
    """Small multiples of the paper's measures (everyone): human and each policy, with the
    human split-half ceiling's range as a band where the measure compares with the humans."""
    rows = [r for r in summary["rows"] if r["scope"] == "all"]
    if not rows:
        return None
    policies = list(summary["policies"])
    names = ["human", *policies]
    cols = min(4, len(rows))
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots((len(rows) + cols - 1) // cols, cols, squeeze=False,
                                    figsize=(2.6 * cols, 2.3 * ((len(rows) + cols - 1) // cols)),
                                    layout="constrained")
        for ax, row in zip(axes.ravel(), rows, strict=False):
            ceiling = row.get("ceiling") or {}
            if ceiling.get("range") and not ceiling.get("not_estimable"):
                ax.axhspan(*ceiling["range"], color="0.88")
            cells = [row.get("human"), *(row["policies"].get(p) for p in policies)]
            for i, cell in enumerate(cells):
                _point(ax, i, cell, f"C{i}", None)
            if all(not c or c.get("value") is None for c in cells):
                ax.text(0.5, 0.5, "not estimable", transform=ax.transAxes, ha="center",
                        color="#8a6d00")
            ax.set_xticks(range(len(names)), [plain(n) for n in names], rotation=30, ha="right")
            ax.set_xlim(-0.5, len(names) - 0.5)
            ax.set_title(plain(f"{row['label']} · {row['item']}" if row["item"] else row["label"]),
                         fontsize=7)
        for ax in axes.ravel()[len(rows):]:
            ax.set_visible(False)
        return Plot("The paper's measures across policies",
                    "Everyone; grey band: human split-half range (where the measure compares "
                    "with the humans); 95% bootstrap intervals.", svg_uri(figure))
