"""A report in a few plain sentences: which policy is closer to the reference, and how often a
policy is as close as the reference's own sampling noise allows.

What counts as a *measure*: every row of report.json's tables that compares a policy with the
reference, for everyone (no subgroup) and pooled over rounds; level rows (entropy, spread, gap,
...) are not counted again beside the ratio or difference that compares them. A measure counts for
a policy only where its cell is estimable (and, for "within the noise ceiling", where the ceiling
is too).

"Closer" is a smaller *deviation* from what a perfect simulator would score:

- distances (`js_distance`, `wasserstein`, `js_distance_belief_mean`) and the false-positive
  rate: the value itself (lower is better, 0 is ideal);
- differences (`gap_difference`, `participants_contradicting_difference`): |value| (0 is ideal);
- ratios sim/human (`*_ratio`: unique structures, entropy, spread): |log ratio| (1 is ideal, and
  twice as varied is as far as half as varied);
- agreement scores (`sign_f1`, `ci_overlap`): 1 - value (1 is ideal);
- regression coefficients (a separate line): |estimate_sim - estimate_human| per slope term.

"Within the noise ceiling": the policy's deviation is no larger than the largest deviation in
the ceiling's corrected range (`ceiling.corrected_range`, else `ceiling.range`): the 2.5-97.5%
range of the same metric between two random halves of the reference, rescaled to the sizes of the
real comparison. A policy there cannot be told apart from a second sample of the same people.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DISTANCES = frozenset({"js_distance", "wasserstein", "js_distance_belief_mean",
                       "false_positive_rate"})
DIFFERENCES = frozenset({"gap_difference", "participants_contradicting_difference"})
AGREEMENTS = frozenset({"sign_f1", "ci_overlap"})


def _log_distance(value: float) -> float:
    return abs(math.log(value)) if value > 0 else math.inf


def deviation_of(metric: str) -> Callable[[float], float] | None:
    """How far a value of this metric is from ideal (None: the metric is not a comparison)."""
    if metric in DISTANCES:
        return lambda v: v
    if metric in DIFFERENCES:
        return abs
    if metric in AGREEMENTS:
        return lambda v: 1.0 - v
    if metric.endswith("_ratio"):
        return _log_distance
    return None


@dataclass(frozen=True)
class Measure:
    """One pooled, everyone comparison row: its table, deviation per policy, and noise bound."""

    table: str
    metric: str
    item: str | None
    deviation: dict[str, float]  # estimable policies only
    noise: float | None  # the largest deviation in the ceiling's range; None when not estimable


def _noise(ceiling: dict[str, Any] | None, deviation: Callable[[float], float]) -> float | None:
    if not ceiling or ceiling.get("not_estimable"):
        return None
    bounds = ceiling.get("corrected_range") or ceiling.get("range")
    if not bounds or any(b is None for b in bounds):
        return None
    return max(deviation(float(b)) for b in bounds)


def measures(report: dict[str, Any]) -> list[Measure]:
    """Every estimable comparison row for everyone, pooled over rounds, in report order."""
    found = []
    for table, rows in report.get("tables", {}).items():
        for row in rows:
            deviation = deviation_of(row["metric"])
            if deviation is None or row.get("subgroup") is not None or row.get("round") is not None:
                continue
            values = {p: deviation(float(c["value"])) for p, c in row["policies"].items()
                      if c and not c.get("not_estimable") and c.get("value") is not None}
            if values:
                found.append(Measure(table, row["metric"], row.get("item"), values,
                                     _noise(row.get("ceiling"), deviation)))
    return found


@dataclass(frozen=True)
class Tally:
    """How often `policy` beats `other` (smaller deviation) over the measures both have."""

    policy: str
    other: str
    closer: int
    farther: int
    ties: int

    @property
    def compared(self) -> int:
        return self.closer + self.farther + self.ties


def tally(found: list[Measure], policy: str, other: str) -> Tally:
    """Count the measures where `policy` deviates less than, more than, or as much as `other`."""
    closer = farther = ties = 0
    for m in found:
        if policy in m.deviation and other in m.deviation:
            a, b = m.deviation[policy], m.deviation[other]
            closer, farther, ties = (closer + (a < b), farther + (a > b), ties + (a == b))
    return Tally(policy, other, closer, farther, ties)


def within_noise(found: list[Measure], policy: str) -> tuple[int, int]:
    """(measures within the noise ceiling, measures with both the policy and a ceiling)."""
    pairs = [(m.deviation[policy], m.noise) for m in found
             if policy in m.deviation and m.noise is not None]
    return sum(d <= noise for d, noise in pairs), len(pairs)


def coefficient_tally(report: dict[str, Any], policy: str, other: str) -> Tally:
    """Slope terms (intercepts excluded) where `policy`'s estimate is nearer the human's."""
    closer = farther = ties = 0
    for regression in report.get("regressions", []):
        for term in regression.get("terms", []):
            human, cells = term.get("human"), term.get("policies", {})
            a, b = cells.get(policy), cells.get(other)
            if term["term"].startswith("Intercept") or not (human and a and b):
                continue
            da = abs(a["estimate"] - human["estimate"])
            db = abs(b["estimate"] - human["estimate"])
            closer, farther, ties = (closer + (da < db), farther + (da > db), ties + (da == db))
    return Tally(policy, other, closer, farther, ties)


def _pair_line(t: Tally, target: str, unit: str) -> str:
    rest = f", farther on {t.farther}" + (f", tied on {t.ties}" if t.ties else "")
    return (f"{t.policy} is closer to {target} than {t.other} on {t.closer} of {t.compared} "
            f"{unit}{rest}")


def headline_lines(report: dict[str, Any]) -> list[str]:
    """Plain-language summary lines of a report.json dict (see the module doc for the rules).

    The first policy is the reference column (usually `base`); every other policy is compared
    with it. Each policy also gets its count of measures within the noise ceiling."""
    policies = list(report.get("policies", []))
    standin = bool(report.get("reference", {}).get("synthetic_standin"))
    target = "the reference" if standin else "the humans"
    found = measures(report)
    lines = []
    if standin:
        lines.append("the reference is a SYNTHETIC STAND-IN, not human data")
    if not found:
        return [*lines, "no measure could be estimated for everyone (see the tables)"]
    first = policies[0] if policies else ""
    for policy in policies:
        inside, of = within_noise(found, policy)
        noise = f"within the noise ceiling on {inside} of {of}" if of else "no noise ceiling"
        if policy == first:
            total = sum(policy in m.deviation for m in found)
            lines.append(f"{policy}: {total} measures estimable; {noise}")
            continue
        lines.append(f"{_pair_line(tally(found, policy, first), target, 'measures')}; {noise}")
        coefficients = coefficient_tally(report, policy, first)
        if coefficients.compared:
            owner = "the reference's" if standin else "the humans'"
            lines.append(_pair_line(coefficients, f"{owner} estimates", "regression coefficients"))
    return lines
