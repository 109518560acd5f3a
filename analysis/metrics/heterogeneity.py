"""Heterogeneity: how varied the answers are, simulated beside human.

- unique response structures: a participant's structure is the tuple of their belief answers
  (every question of a 'belief' stage, every round); participants with a missing belief answer
  are left out and the n used is reported;
- entropy (bits) of each question's answer distribution, pooled over rounds;
- spread of each question: for ordered questions the standard deviation of the option index
  (of the options' values on a numeric scale); for unordered ones sqrt(Gini-Simpson) =
  sqrt(1 - sum p^2), which is the standard deviation of the one-hot answer vector (the square
  root of its total variance), so both read as "std".
Simulated/human ratios carry cluster-bootstrap intervals and the human split-half ceiling.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from analysis.cells import Cell, Row, ceiling, estimate, not_estimable
from analysis.comparison import Comparison, Measured, Scope, corrected_ceiling, scaled_ratio
from analysis.experiment import Experiment
from analysis.metrics import Metric, Scored, Section
from analysis.metrics.divergence import pick
from analysis.samples import Sample


def entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of count vectors along the last axis; NaN if empty."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / counts.sum(axis=-1, keepdims=True)
        return -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0).sum(axis=-1)


def spread(counts: np.ndarray, ordered: bool, values: tuple[float, ...] | None = None
           ) -> np.ndarray:
    """Std of the option index, or of the option values when given (ordered), or
    sqrt(Gini-Simpson) (unordered), along the last axis."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / counts.sum(axis=-1, keepdims=True)
    if not ordered:
        return np.sqrt(np.clip(1 - (p**2).sum(axis=-1), 0, None))
    index = np.arange(p.shape[-1]) if values is None else np.asarray(values, float)
    mean = (p * index).sum(axis=-1)
    return np.sqrt(np.clip((p * index**2).sum(axis=-1) - mean**2, 0, None))


def structure_ids(sample: Sample, experiment: Experiment) -> np.ndarray:
    """Per participant an id of their belief-answer tuple (-1 if any belief answer is missing)."""
    beliefs = [experiment.question_index(q.id) for q in experiment.belief_questions]
    ids = np.full(sample.n, -1)
    if not beliefs or sample.n == 0:
        return ids
    tuples = sample.answers[:, :, beliefs].reshape(sample.n, -1)
    complete = (tuples >= 0).all(axis=1)
    if complete.any():
        ids[complete] = np.unique(tuples[complete], axis=0, return_inverse=True)[1].ravel()
    return ids


def _unique(ids: np.ndarray) -> int:
    return int(np.unique(ids[ids >= 0]).size)


def _half_unique(ids: np.ndarray, halves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique structures in halves A and B of every split (one matrix product per half)."""
    valid = ids >= 0
    codes = np.unique(ids[valid], return_inverse=True)[1]
    one_hot = np.zeros((valid.sum(), codes.max() + 1 if codes.size else 0))
    one_hot[np.arange(codes.size), codes] = 1
    in_a = halves[:, valid].astype(float)
    return ((in_a @ one_hot) > 0).sum(1), (((1 - in_a) @ one_hot) > 0).sum(1)


def _structure_rows(comparison: Comparison, scope: Scope, ids: dict[str, np.ndarray]) -> list[Row]:
    human_ids = ids["human"][scope.human]
    human = Cell(float(_unique(human_ids)), n=int((human_ids >= 0).sum()))

    def measure(sample: Sample) -> Measured:
        sim_ids = ids[sample.name][scope.policies[sample.name]]
        ratio = estimate(_unique(sim_ids) / _unique(human_ids) if _unique(human_ids) else np.nan,
                         n=int((sim_ids >= 0).sum()), n_human=int((human_ids >= 0).sum()),
                         reason="no complete human belief structures")
        return (Cell(float(_unique(sim_ids)), n=int((sim_ids >= 0).sum())), ratio), 0.0

    (counts, ratios), _ = comparison.per_policy(scope, measure, tables=2)
    half_a, half_b = _half_unique(human_ids, comparison.halves[:, scope.human])
    with np.errstate(invalid="ignore", divide="ignore"):
        split_ratio = np.where(half_b > 0, half_a / np.maximum(half_b, 1), np.nan)
    return [
        Row("unique_structures", "belief answers x rounds", None, scope.subgroup, scope.group,
            human, counts, None),
        Row("unique_structures_ratio", "belief answers x rounds", None, scope.subgroup,
            scope.group, None, ratios, ceiling(split_ratio, None, float(half_a.mean()))),
    ]


def _question_rows(comparison: Comparison, scope: Scope, q: int) -> list[Row]:
    question = comparison.experiment.questions[q]
    columns = comparison.slices[q]
    human = comparison.counts(scope, comparison.human)
    h_obs, h_draws = pick(human.observed, columns, None), pick(human.draws, columns, None)
    half_a, half_b = (pick(h, columns, None) for h in comparison.half_counts(scope))
    rows = []
    for metric, level in (("entropy_bits", entropy_bits),
                          ("spread", lambda c: spread(c, question.ordered, question.values))):

        def measure(sample: Sample, level: Callable[[np.ndarray], np.ndarray] = level
                    ) -> Measured:
            sim = comparison.counts(scope, sample)
            s_obs, s_draws = pick(sim.observed, columns, None), pick(sim.draws, columns, None)
            n, n_human = int(s_obs.sum()), int(h_obs.sum())
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = estimate(
                    float(level(s_obs) / level(h_obs)), level(s_draws) / level(h_draws),
                    n, n_human, reason="the human answers do not vary (ratio undefined)")
            return (estimate(float(level(s_obs)), level(s_draws), n), ratio), s_obs.sum()

        (levels, ratios), sizes = comparison.per_policy(scope, measure, tables=2)
        human_cell = (estimate(float(level(h_obs)), level(h_draws), int(h_obs.sum()))
                      if len(scope.human) >= 2 else not_estimable("fewer than 2 participants"))
        with np.errstate(invalid="ignore", divide="ignore"):
            split_ratio = level(half_a) / level(half_b)
        rows += [Row(metric, question.id, None, scope.subgroup, scope.group, human_cell, levels),
                 Row(f"{metric}_ratio", question.id, None, scope.subgroup, scope.group, None,
                     ratios, corrected_ceiling(split_ratio, half_a.sum(-1), half_b.sum(-1), sizes,
                                               float(half_a.sum(-1).mean()), scaled_ratio))]
    return rows


def heterogeneity_rows(comparison: Comparison) -> list[Row]:
    """Unique structures, then entropy and spread per question, for every scope."""
    samples = [comparison.human, *comparison.policies]
    ids = {s.name: structure_ids(s, comparison.experiment) for s in samples}
    rows: list[Row] = []
    for scope in comparison.scopes:
        rows += _structure_rows(comparison, scope, ids)
        for q in range(len(comparison.experiment.questions)):
            rows += _question_rows(comparison, scope, q)
    return rows


SECTION = Section(
    key="heterogeneity",
    title="Heterogeneity (simulated beside human)",
    position=10,
    metrics=(Metric("unique_structures", by_subgroup=True, count=True),
             Metric("unique_structures_ratio", by_subgroup=True), Metric("entropy_bits"),
             Metric("entropy_bits_ratio"), Metric("spread"), Metric("spread_ratio", by_subgroup=True)),
    score=lambda comparison: Scored(heterogeneity_rows(comparison)),
)
