"""What every metric compares: scopes (everyone, then each group of each subgroup column) and
per-scope answer counts for the human sample, each policy, their bootstrap draws and the human
split halves. Counts are built once per (sample, scope) and shared by the metric modules, which
also share the comparison's two steps: a cell per policy (`Comparison.per_policy`) and a
split-half ceiling corrected to the real sizes (`corrected_ceiling`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from analysis.cells import Ceiling, Cell, ceiling, not_estimable
from analysis.experiment import Experiment
from analysis.resampling import Resampling, ceiling_factor, mean_size
from analysis.samples import Sample

# A policy's cells in one scope (one per table a metric fills) and its size in the metric's unit.
Measured = tuple[tuple[Cell, ...], float]
Measure = Callable[[Sample], Measured]

MIN_GROUP = 2  # fewer participants than this in a group and its cells are "not estimable"


@dataclass(frozen=True)
class Scope:
    """Everyone (subgroup None) or one group of a subgroup column, as member positions."""

    subgroup: str | None
    group: str | None
    human: np.ndarray
    policies: dict[str, np.ndarray]

    @property
    def key(self) -> str:
        """A stable name, used to seed this scope's bootstrap draws."""
        return "all" if self.subgroup is None else f"{self.subgroup}={self.group}"


@dataclass(frozen=True)
class Counts:
    """Answer counts (round x option, all questions side by side): observed and per draw."""

    observed: np.ndarray
    draws: np.ndarray


def one_hot(sample: Sample, experiment: Experiment) -> np.ndarray:
    """(participants, rounds, options of all questions) 0/1 answers; missing answers are 0s.
    A weighted human sample's rows count their survey weight (scaled to average 1) instead."""
    blocks = [(sample.answers[:, :, q, None] == np.arange(len(question.options)))
              for q, question in enumerate(experiment.questions)]
    answered = np.concatenate(blocks, axis=2).astype(float)
    return answered if sample.weights is None else answered * sample.weights[:, None, None]


def _group_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def build_scopes(experiment: Experiment, human: Sample, policies: list[Sample]) -> list[Scope]:
    """The overall scope, then one scope per group of each subgroup column."""
    scopes = [Scope(None, None, np.arange(human.n), {p.name: np.arange(p.n) for p in policies})]
    for column in experiment.subgroups:
        labels = {s.name: s.labels(column) for s in [human, *policies]}
        groups = {g for values in labels.values() for g in values if g is not None}
        for group in sorted(groups, key=_group_key):
            members = {name: np.flatnonzero(values == group) for name, values in labels.items()}
            scopes.append(Scope(column, group, members.pop("human"), members))
    return scopes


class Comparison:
    """The human sample, the policies, the scopes and the seeded resampling, with count caches."""

    def __init__(self, experiment: Experiment, human: Sample, policies: list[Sample],
                 resampling: Resampling) -> None:
        self.experiment, self.human, self.policies = experiment, human, policies
        self.resampling = resampling
        self.scopes = build_scopes(experiment, human, policies)
        self.halves = resampling.halves(human.n)
        self.slices = self._question_slices()
        self._one_hot = {s.name: one_hot(s, experiment) for s in [human, *policies]}
        self._counts: dict[tuple[str, str], Counts] = {}

    def _question_slices(self) -> list[slice]:
        edges = np.cumsum([0] + [len(q.options) for q in self.experiment.questions])
        return [slice(int(a), int(b)) for a, b in pairwise(edges)]

    def members(self, scope: Scope, sample: Sample) -> np.ndarray:
        """Positions of the scope's participants within a sample."""
        return scope.human if sample is self.human else scope.policies[sample.name]

    def counts(self, scope: Scope, sample: Sample) -> Counts:
        """Observed and bootstrap answer counts of a sample's participants in a scope."""
        key = (sample.name, scope.key)
        if key not in self._counts:
            per_participant = self._one_hot[sample.name][self.members(scope, sample)]
            n, rounds, options = per_participant.shape
            weights = self.resampling.weights(f"{sample.name}|{scope.key}", n)
            draws = weights @ per_participant.reshape(n, rounds * options)
            self._counts[key] = Counts(per_participant.sum(axis=0),
                                       draws.reshape(-1, rounds, options))
        return self._counts[key]

    def half_counts(self, scope: Scope) -> tuple[np.ndarray, np.ndarray]:
        """Answer counts (split, round, option) of human halves A and B within a scope."""
        per_participant = self._one_hot["human"][scope.human]
        n, rounds, options = per_participant.shape
        in_a = self.halves[:, scope.human].astype(float)
        flat = per_participant.reshape(n, rounds * options)
        shape = (-1, rounds, options)
        return (in_a @ flat).reshape(shape), ((1 - in_a) @ flat).reshape(shape)

    def problem(self, scope: Scope, sample: Sample) -> str | None:
        """Why a sample's cells in a scope are not estimable (too few members), else None."""
        n_human, n = len(scope.human), len(self.members(scope, sample))
        if min(n_human, n) >= MIN_GROUP:
            return None
        where = "everyone" if scope.subgroup is None else f"{scope.subgroup} = {scope.group!r}"
        return (f"{where} has {n} participant(s) in '{sample.name}' and {n_human} in the human "
                f"data (need at least {MIN_GROUP} in each)")

    def blocked(self, scope: Scope, sample: Sample) -> Cell | None:
        """A not-estimable cell when the scope is too small for this sample, else None."""
        reason = self.problem(scope, sample)
        return None if reason is None else not_estimable(
            reason, len(self.members(scope, sample)), len(scope.human))

    def per_policy(self, scope: Scope, measure: Measure, tables: int = 1,
                   ) -> tuple[list[dict[str, Cell]], list[float]]:
        """Each policy's cells in a scope, `tables` of them side by side: `measure`'s, or the
        not-estimable cell where the scope is too small; and the sizes of the measured ones."""
        filled: list[dict[str, Cell]] = [{} for _ in range(tables)]
        sizes: list[float] = []
        for sample in self.policies:
            blocked = self.blocked(scope, sample)
            cells, size = ((blocked,) * tables, None) if blocked is not None else measure(sample)
            for table, cell in zip(filled, cells, strict=True):
                table[sample.name] = cell
            if size is not None:
                sizes.append(size)
        return filled, sizes


def scaled(values: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """A distance or |difference| at the real sizes: times the ceiling factor."""
    return values * factor


def scaled_ratio(values: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """A ratio at the real sizes: its log times the factor (centred on 1, the spread shrinks)."""
    return np.exp(factor * np.log(values))


def corrected_ceiling(split: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, sizes: list[float],
                      n_half: float, correct: Callable[..., np.ndarray] = scaled) -> Ceiling:
    """The split-half ceiling of a metric, raw and corrected to the policies' mean size."""
    factor = ceiling_factor(n_a, n_b, mean_size(sizes))
    with np.errstate(invalid="ignore", divide="ignore"):
        return ceiling(split, correct(split, factor), n_half)
