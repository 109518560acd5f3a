"""Distributional alignment: how far each question's simulated answer distribution is from the
human one — Jensen-Shannon distance (base 2, in [0, 1]) for every question and Wasserstein
distance for ordered questions (on the options' values for a numeric scale, else on option
indices) — pooled over rounds and per round, for everyone and per subgroup, with
cluster-bootstrap intervals and the human split-half ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from analysis.cells import Row, estimate
from analysis.comparison import Comparison, Measured, Scope, corrected_ceiling
from analysis.experiment import Question
from analysis.metrics import Metric, Scored, Section
from analysis.samples import Sample


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2) between count vectors along the last axis; NaN if empty."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(jensenshannon(p, q, base=2, axis=-1))


def wasserstein_ordered(p: np.ndarray, q: np.ndarray,
                        support: np.ndarray | None = None) -> np.ndarray:
    """Wasserstein-1 distance between count vectors over an ordered support (last axis).

    W1 is the summed absolute CDF difference times the gaps between support points; this equals
    scipy.stats.wasserstein_distance(support, support, p, q) and is vectorised over draws. The
    support defaults to the option indices 0..K-1 (unit gaps).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / p.sum(axis=-1, keepdims=True)
        q = q / q.sum(axis=-1, keepdims=True)
    steps = np.abs(np.cumsum(p - q, axis=-1)[..., :-1])
    if support is None:
        return steps.sum(axis=-1)
    return (steps * np.diff(support)).sum(axis=-1)


def wasserstein_point(p: np.ndarray, q: np.ndarray, support: np.ndarray | None = None) -> float:
    """scipy's Wasserstein distance for one pair of count vectors (support: option indices)."""
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    support = np.arange(len(p)) if support is None else support
    return float(wasserstein_distance(support, support, p, q))


@dataclass(frozen=True)
class Distance:
    """A distance between count vectors: for the observed pair, and vectorised over draws."""

    metric: str
    point: Callable[[np.ndarray, np.ndarray], float]
    draws: Callable[[np.ndarray, np.ndarray], np.ndarray]


JS = Distance("js_distance", lambda p, q: float(js_distance(p, q)), js_distance)


def wasserstein(question: Question) -> Distance:
    """Wasserstein distance on the question's option values, or on option indices."""
    support = None if question.values is None else np.asarray(question.values, float)
    return Distance("wasserstein", partial(wasserstein_point, support=support),
                    partial(wasserstein_ordered, support=support))


def pick(counts: np.ndarray, columns: slice, round_pos: int | None) -> np.ndarray:
    """One question's counts (..., round, option) pooled over rounds or for one round."""
    block = counts[..., columns]
    return block.sum(axis=-2) if round_pos is None else block[..., round_pos, :]


def _row(comparison: Comparison, scope: Scope, q: int, round_pos: int | None,
         distance: Distance) -> Row:
    columns = comparison.slices[q]
    human = comparison.counts(scope, comparison.human)
    human_obs = pick(human.observed, columns, round_pos)

    def measure(sample: Sample) -> Measured:
        sim = comparison.counts(scope, sample)
        sim_obs = pick(sim.observed, columns, round_pos)
        draws = distance.draws(pick(sim.draws, columns, round_pos),
                               pick(human.draws, columns, round_pos))
        return ((estimate(distance.point(sim_obs, human_obs), draws, int(sim_obs.sum()),
                          int(human_obs.sum())),), sim_obs.sum())

    (cells,), sizes = comparison.per_policy(scope, measure)
    half_a, half_b = (pick(h, columns, round_pos) for h in comparison.half_counts(scope))
    round_id = None if round_pos is None else comparison.experiment.rounds[round_pos]
    return Row(distance.metric, comparison.experiment.questions[q].id, round_id, scope.subgroup,
               scope.group, None, cells,
               corrected_ceiling(distance.draws(half_a, half_b), half_a.sum(-1), half_b.sum(-1),
                                 sizes, float(half_a.sum(-1).mean())))


def _belief_mean_row(comparison: Comparison, scope: Scope) -> Row | None:
    """Mean pooled JS distance over the belief questions (the paper's belief alignment)."""
    columns = [comparison.slices[comparison.experiment.question_index(q.id)]
               for q in comparison.experiment.belief_questions]
    if not columns:
        return None
    human = comparison.counts(scope, comparison.human)

    def measure(sample: Sample) -> Measured:
        sim = comparison.counts(scope, sample)
        value = np.mean([js_distance(pick(sim.observed, c, None), pick(human.observed, c, None))
                         for c in columns])
        draws = np.mean([js_distance(pick(sim.draws, c, None), pick(human.draws, c, None))
                         for c in columns], axis=0)
        return ((estimate(float(value), draws, len(scope.policies[sample.name]),
                          len(scope.human)),), pick(sim.observed, columns[0], None).sum())

    (cells,), sizes = comparison.per_policy(scope, measure)
    half_a, half_b = comparison.half_counts(scope)
    split_values = np.mean([js_distance(pick(half_a, c, None), pick(half_b, c, None))
                            for c in columns], axis=0)
    return Row("js_distance_belief_mean", "belief questions", None, scope.subgroup, scope.group,
               None, cells, corrected_ceiling(
                   split_values, pick(half_a, columns[0], None).sum(-1),
                   pick(half_b, columns[0], None).sum(-1), sizes,
                   float(comparison.halves[:, scope.human].sum(1).mean())))


def divergence_rows(comparison: Comparison) -> list[Row]:
    """JS (and, for ordered questions, Wasserstein) rows: per question, pooled then per round."""
    rows: list[Row] = []
    rounds: list[int | None] = [None, *range(len(comparison.experiment.rounds))]
    for scope in comparison.scopes:
        summary = _belief_mean_row(comparison, scope)
        rows += [summary] if summary else []
        for q, question in enumerate(comparison.experiment.questions):
            for round_pos in rounds:
                rows.append(_row(comparison, scope, q, round_pos, JS))
                if question.ordered:
                    rows.append(_row(comparison, scope, q, round_pos, wasserstein(question)))
    return rows


SECTION = Section(
    key="divergence",
    title="Distributional alignment (distance to the human answers; lower is closer)",
    position=20,
    metrics=(Metric("js_distance", by_subgroup=True), Metric("wasserstein", by_subgroup=True),
             Metric("js_distance_belief_mean", by_subgroup=True)),
    score=lambda comparison: Scored(divergence_rows(comparison)),
)
