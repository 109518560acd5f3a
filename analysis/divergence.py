"""Distributional alignment: how far each question's simulated answer distribution is from the
human one — Jensen-Shannon distance (base 2, in [0, 1]) for every question and Wasserstein
distance on option indices for ordered questions — pooled over rounds and per round, for
everyone and per subgroup, with cluster-bootstrap intervals and the human split-half ceiling.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from analysis.cells import Row, ceiling, estimate
from analysis.comparison import Comparison, Scope
from analysis.resampling import ceiling_factor, mean_size

Distance = Callable[[np.ndarray, np.ndarray], np.ndarray]


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2) between count vectors along the last axis; NaN if empty."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(jensenshannon(p, q, base=2, axis=-1))


def wasserstein_ordered(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between count vectors over option indices 0..K-1 (last axis).

    On a unit-spaced support W1 is the summed absolute CDF difference; this equals
    scipy.stats.wasserstein_distance(range(K), range(K), p, q) and is vectorised over draws.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / p.sum(axis=-1, keepdims=True)
        q = q / q.sum(axis=-1, keepdims=True)
    return np.abs(np.cumsum(p - q, axis=-1)[..., :-1]).sum(axis=-1)


def wasserstein_point(p: np.ndarray, q: np.ndarray) -> float:
    """scipy's Wasserstein distance on option indices for one pair of count vectors."""
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    support = np.arange(len(p))
    return float(wasserstein_distance(support, support, p, q))


def pick(counts: np.ndarray, columns: slice, round_pos: int | None) -> np.ndarray:
    """One question's counts (..., round, option) pooled over rounds or for one round."""
    block = counts[..., columns]
    return block.sum(axis=-2) if round_pos is None else block[..., round_pos, :]


def _row(comparison: Comparison, scope: Scope, metric: str, q: int, round_pos: int | None,
         distance: Distance) -> Row:
    columns = comparison.slices[q]
    human = comparison.counts(scope, comparison.human)
    human_obs = pick(human.observed, columns, round_pos)
    cells, sizes = {}, []
    for sample in comparison.policies:
        blocked = comparison.blocked(scope, sample)
        if blocked is not None:
            cells[sample.name] = blocked
            continue
        sim = comparison.counts(scope, sample)
        sim_obs = pick(sim.observed, columns, round_pos)
        value = (wasserstein_point(sim_obs, human_obs) if distance is wasserstein_ordered
                 else float(distance(sim_obs, human_obs)))
        draws = distance(pick(sim.draws, columns, round_pos), pick(human.draws, columns, round_pos))
        cells[sample.name] = estimate(value, draws, int(sim_obs.sum()), int(human_obs.sum()))
        sizes.append(sim_obs.sum())
    half_a, half_b = (pick(h, columns, round_pos) for h in comparison.half_counts(scope))
    split_values = distance(half_a, half_b)
    factor = ceiling_factor(half_a.sum(-1), half_b.sum(-1), mean_size(sizes))
    round_id = None if round_pos is None else comparison.experiment.rounds[round_pos]
    return Row(metric, comparison.experiment.questions[q].id, round_id, scope.subgroup,
               scope.group, None, cells,
               ceiling(split_values, split_values * factor, float(half_a.sum(-1).mean())))


def _belief_mean_row(comparison: Comparison, scope: Scope) -> Row | None:
    """Mean pooled JS distance over the belief questions (the paper's belief alignment)."""
    columns = [comparison.slices[comparison.experiment.question_index(q.id)]
               for q in comparison.experiment.belief_questions]
    if not columns:
        return None
    human = comparison.counts(scope, comparison.human)
    cells, sizes = {}, []
    for sample in comparison.policies:
        blocked = comparison.blocked(scope, sample)
        if blocked is not None:
            cells[sample.name] = blocked
            continue
        sim = comparison.counts(scope, sample)
        value = np.mean([js_distance(pick(sim.observed, c, None), pick(human.observed, c, None))
                         for c in columns])
        draws = np.mean([js_distance(pick(sim.draws, c, None), pick(human.draws, c, None))
                         for c in columns], axis=0)
        cells[sample.name] = estimate(float(value), draws, len(scope.policies[sample.name]),
                                      len(scope.human))
        sizes.append(pick(sim.observed, columns[0], None).sum())
    half_a, half_b = comparison.half_counts(scope)
    split_values = np.mean([js_distance(pick(half_a, c, None), pick(half_b, c, None))
                            for c in columns], axis=0)
    factor = ceiling_factor(pick(half_a, columns[0], None).sum(-1),
                            pick(half_b, columns[0], None).sum(-1), mean_size(sizes))
    return Row("js_distance_belief_mean", "belief questions", None, scope.subgroup, scope.group,
               None, cells, ceiling(split_values, split_values * factor,
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
                rows.append(_row(comparison, scope, "js_distance", q, round_pos, js_distance))
                if question.ordered:
                    rows.append(_row(comparison, scope, "wasserstein", q, round_pos,
                                     wasserstein_ordered))
    return rows
