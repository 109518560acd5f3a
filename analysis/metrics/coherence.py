"""Belief-action coherence: the belief-action gap, the share of participant-rounds whose action
answer contradicts their belief answer under the scenario's coherence rules.

A participant-round counts when both answers of a rule are present (for a rule over several
answers, `when`, every answer it names); with several rules it contradicts when any rule is
broken. Also reported: the share of participants who contradict
themselves in at least one round. Differences (simulated - human) carry cluster-bootstrap
intervals; their ceiling is |gap(half A) - gap(half B)| over human split halves.
"""

from __future__ import annotations

import numpy as np

from analysis.cells import Row, estimate, not_estimable
from analysis.comparison import Comparison, Measured, Scope, corrected_ceiling
from analysis.experiment import CoherenceRule, Experiment
from analysis.metrics import Metric, Scored, Section
from analysis.samples import Sample
from contracts.answer_rules import Answers, evaluate
from contracts.option_ids import option_index


def contradictions(sample: Sample, experiment: Experiment,
                   rules: list[CoherenceRule]) -> tuple[np.ndarray, np.ndarray]:
    """(participant, round) booleans: action contradicts belief, and both answers present."""
    contra = np.zeros(sample.answers.shape[:2], dtype=bool)
    valid = np.zeros_like(contra)
    for rule in rules:
        if rule.when is not None:
            present, broken = _expression(sample, experiment, rule)
            valid |= present
            contra |= broken
            continue
        belief_q = experiment.questions[experiment.question_index(rule.belief)]
        action_q = experiment.questions[experiment.question_index(rule.action)]
        table = np.zeros((len(belief_q.options), len(action_q.options)), dtype=bool)
        for belief, action in rule.contradicts:
            table[option_index(belief, belief_q.options), option_index(action, action_q.options)] \
                = True
        belief = sample.answers[:, :, experiment.question_index(rule.belief)]
        action = sample.answers[:, :, experiment.question_index(rule.action)]
        present = (belief >= 0) & (action >= 0)
        valid |= present
        contra |= present & table[belief.clip(0), action.clip(0)]
    return contra, valid


def _expression(sample: Sample, experiment: Experiment,
                rule: CoherenceRule) -> tuple[np.ndarray, np.ndarray]:
    """(present, contradicts) of a rule over several answers: present where every question it
    names has an answer."""
    checked = rule.checked(experiment)
    ids, options, values = {}, {}, {}
    present = np.ones(sample.answers.shape[:2], dtype=bool)
    for name in checked.names:
        question = experiment.questions[experiment.question_index(name)]
        codes = sample.answers[:, :, experiment.question_index(name)]
        present &= codes >= 0
        lookup = np.array([*question.options, None], dtype=object)
        ids[name] = lookup[np.where(codes < 0, len(question.options), codes)]
        options[name] = question.options
        numbers = np.array([*(question.values or [np.nan] * len(question.options)), np.nan])
        values[name] = numbers[np.where(codes < 0, len(question.options), codes)]
    return present, present & evaluate(checked, Answers(ids, options, values))


def _shares(numerator: np.ndarray, denominator: np.ndarray, weights: np.ndarray,
            survey: np.ndarray | None = None) -> tuple[float, np.ndarray, int]:
    """Observed share, per-draw shares and n (the denominator) of per-participant totals;
    `survey`: the participants' survey weights (the human reference's), n stays unweighted."""
    n = int(denominator.sum())
    if survey is not None:
        numerator, denominator = numerator * survey, denominator * survey
    with np.errstate(invalid="ignore", divide="ignore"):
        value = numerator.sum() / denominator.sum() if denominator.sum() else np.nan
        return float(value), (weights @ numerator) / (weights @ denominator), n


def _per_participant(contra: np.ndarray, valid: np.ndarray, level: str) -> tuple[np.ndarray, ...]:
    if level == "gap":
        return contra.sum(1).astype(float), valid.sum(1).astype(float)
    return (contra.any(1)).astype(float), (valid.any(1)).astype(float)


def _rows(comparison: Comparison, scope: Scope, item: str, flags: dict[str, tuple],
          level: str) -> list[Row]:
    human_num, human_den = _per_participant(*flags["human"], level)
    human_num, human_den = human_num[scope.human], human_den[scope.human]
    weights = comparison.resampling.weights(f"human|{scope.key}", len(scope.human))
    survey = None if comparison.human.weights is None else comparison.human.weights[scope.human]
    h_value, h_draws, h_n = _shares(human_num, human_den, weights, survey)
    if survey is not None:  # the split halves' shares are weighted too
        human_num, human_den = human_num * survey, human_den * survey
    human = (estimate(h_value, h_draws, h_n, reason="no participant-round answers both")
             if len(scope.human) >= 2 else not_estimable("fewer than 2 participants", h_n))

    def measure(sample: Sample) -> Measured:
        members = scope.policies[sample.name]
        num, den = (a[members] for a in _per_participant(*flags[sample.name], level))
        weights = comparison.resampling.weights(f"{sample.name}|{scope.key}", len(members))
        value, draws, n = _shares(num, den, weights)
        return (estimate(value, draws, n), estimate(value - h_value, draws - h_draws, n, h_n)), n

    (levels, differences), sizes = comparison.per_policy(scope, measure, tables=2)
    in_a = comparison.halves[:, scope.human].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        split = np.abs(in_a @ human_num / (in_a @ human_den)
                       - (1 - in_a) @ human_num / ((1 - in_a) @ human_den))
    metric = "gap" if level == "gap" else "participants_contradicting"
    return [Row(metric, item, None, scope.subgroup, scope.group, human, levels),
            Row(f"{metric}_difference", item, None, scope.subgroup, scope.group, None,
                differences, corrected_ceiling(split, in_a @ human_den, (1 - in_a) @ human_den,
                                               sizes, float((in_a @ human_den).mean())))]


def coherence_rows(comparison: Comparison) -> list[Row]:
    """Gap and participant-level contradiction rows for all rules together (and each rule)."""
    rules = list(comparison.experiment.coherence)
    if not rules:
        return []
    items = [("all rules" if len(rules) > 1 else rules[0].label, rules)]
    items += [(rule.label, [rule]) for rule in rules] if len(rules) > 1 else []
    samples = [comparison.human, *comparison.policies]
    rows: list[Row] = []
    for item, chosen in items:
        flags = {s.name: contradictions(s, comparison.experiment, chosen) for s in samples}
        for scope in comparison.scopes:
            for level in ("gap", "participants"):
                rows += _rows(comparison, scope, item, flags, level)
    return rows


SECTION = Section(
    key="coherence",
    title="Belief-action coherence",
    position=30,
    metrics=(Metric("gap", by_subgroup=True), Metric("gap_difference", by_subgroup=True),
             Metric("participants_contradicting"),
             Metric("participants_contradicting_difference")),
    score=lambda comparison: Scored(coherence_rows(comparison)),
)
