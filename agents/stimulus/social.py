"""The `social` source: what a participant's neighbours answered in the previous round.

On for a scenario with a `network:` block. Templates see `neighbours`: None unless the
participant is in the condition `network.show` names (or there is no `show`), the round has a
previous round, and at least one neighbour (the same twin graph, under the same policy) gave a
readable answer to a summarised question in it; otherwise

    {"round": previous round id, "count": neighbours who answered, "degree": neighbours,
     "share": {question: {option: share of the neighbours answering it}},
     "majority": {question: the option with the strictly largest share, None on a tie}}

A question no neighbour answered readably is left out of `share` and `majority`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agents.stimulus.base import stimulus_source
from scenarios.network_checks import summarised_questions

if TYPE_CHECKING:
    import networkx as nx

    from agents.participant import Answer, Participant
    from agents.stimulus.base import SourceContext
    from scenarios.schema import Scenario

SOCIAL = "social"
VARIABLE = "neighbours"


def sees_neighbours(scenario: Scenario, condition: dict[str, str]) -> bool:
    """Whether a participant of `condition` is shown its neighbours' answers."""
    show = scenario.network.show if scenario.network is not None else None
    return show is None or condition.get(show.factor) == show.level


def summarise(chosen: Sequence[dict[str, str]], degree: int, round_id: int,
              options: dict[str, list[str]]) -> dict[str, Any] | None:
    """The `neighbours` value from each answering neighbour's {question: option} of a round."""
    if not chosen:
        return None
    share: dict[str, dict[str, float]] = {}
    majority: dict[str, str | None] = {}
    for question, ids in options.items():
        given = [answers[question] for answers in chosen if question in answers]
        if not given:
            continue
        counts = Counter(given)
        share[question] = {option: counts[option] / len(given) for option in ids}
        ranked = counts.most_common(2)
        majority[question] = None if len(ranked) > 1 and ranked[0][1] == ranked[1][1] \
            else ranked[0][0]
    return {"round": round_id, "count": len(chosen), "degree": degree, "share": share,
            "majority": majority}


class SocialSource:
    """Remembers every readable answer to the summarised questions, by (policy, round)."""

    def __init__(self, scenario: Scenario, graph: nx.Graph) -> None:
        self.scenario = scenario
        self.graph = graph
        ids = summarised_questions(scenario)
        self.options = {q.id: list(q.option_ids) for q in scenario.questions if q.id in ids}
        rounds = [r.id for r in scenario.rounds]
        self.previous = dict(zip(rounds[1:], rounds, strict=False))
        self.chosen: dict[tuple[str, int], dict[str, dict[str, str]]] = {}

    def variables(self, participant: Participant, round_id: int) -> dict[str, Any]:
        """`neighbours`: the previous round's answers of the participant's neighbours."""
        previous = self.previous.get(round_id)
        if previous is None or not sees_neighbours(self.scenario, participant.condition):
            return {VARIABLE: None}
        pid = participant.participant_id
        near = list(self.graph.neighbors(pid)) if pid in self.graph else []
        answered = self.chosen.get((participant.policy, previous), {})
        chosen = [answered[n] for n in near if n in answered]
        return {VARIABLE: summarise(chosen, len(near), previous, self.options)}

    def observe(self, round_id: int, answers: Sequence[tuple[Participant, Answer]]) -> None:
        """Keep each readable answer to a summarised question."""
        for p, answer in answers:
            option = answer.option_id
            if option is not None and answer.question.id in self.options:
                by_pid = self.chosen.setdefault((p.policy, round_id), {})
                by_pid.setdefault(p.participant_id, {})[answer.question.id] = option


@stimulus_source(SOCIAL)
def social_source(scenario: Scenario, context: SourceContext | None) -> SocialSource | None:
    """The source of a scenario with a network; it needs the run's graph."""
    if scenario.network is None:
        return None
    if context is None or context.network is None:
        raise ValueError("a scenario with a network: block needs the run's graph "
                         "(SurveyModel(..., network=build_network(...)))")
    return SocialSource(scenario, context.network)
