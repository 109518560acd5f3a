"""The `round` source, always on: the participant's condition, the round's own variables, and
`round` / `n_rounds` (in that order of precedence)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agents.conversation import round_variables
from agents.stimulus.base import ROUND, stimulus_source

if TYPE_CHECKING:
    from agents.participant import Answer, Participant
    from agents.stimulus.base import SourceContext
    from scenarios.schema import Scenario


@stimulus_source(ROUND)
class RoundSource:
    """The variables every scenario's templates have always seen."""

    def __init__(self, scenario: Scenario, context: SourceContext | None = None) -> None:
        self.scenario = scenario

    def variables(self, participant: Participant, round_id: int) -> dict[str, Any]:
        """The condition, then the round's variables, then `round` and `n_rounds`."""
        return round_variables(self.scenario, round_id, participant.condition)

    def observe(self, round_id: int, answers: Sequence[tuple[Participant, Answer]]) -> None:
        """Nothing to learn: a round's variables are fixed by the scenario."""
