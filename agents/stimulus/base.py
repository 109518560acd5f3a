"""What a stimulus source is: a provider of template variables for a participant's round.

A round's stimulus and question templates see the variables of every active source, merged in
order (the `round` source first). A source may learn from the answers given: SurveyModel calls
`observe` after every step, so a source can summarise earlier rounds (a neighbour's answers).
A source is a file of this package that registers a factory with `stimulus_source`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # participant.py imports this package: the types are for annotations only
    import networkx as nx

    from agents.participant import Answer, Participant
    from scenarios.schema import Scenario

ROUND = "round"  # the source always on, and first: today's condition and round variables


class StimulusSource(Protocol):
    """Variables one source adds to a participant's round, and what it learns from answers."""

    def variables(self, participant: Participant, round_id: int) -> dict[str, Any]:
        """What this source adds to the templates' variables for `participant` in `round_id`."""
        ...

    def observe(self, round_id: int, answers: Sequence[tuple[Participant, Answer]]) -> None:
        """The (participant, answer) pairs of one step of `round_id`, after it is answered."""
        ...


@dataclass(frozen=True)
class SourceContext:
    """What a source may know of the run besides the scenario: the participants' graph (None:
    the scenario has no network)."""

    network: nx.Graph | None = None


# A factory gets the scenario and the run's context (None outside a run: a participant built
# alone) and returns its source, or None when the scenario does not use it.
SourceFactory = Callable[["Scenario", "SourceContext | None"], "StimulusSource | None"]

STIMULUS_SOURCES: dict[str, SourceFactory] = {}


def stimulus_source(name: str) -> Callable[[SourceFactory], SourceFactory]:
    """Register a source's factory under `name` (a decorator for a class or a function)."""
    def register(factory: SourceFactory) -> SourceFactory:
        STIMULUS_SOURCES[name] = factory
        return factory

    return register


def active_sources(scenario: Scenario, context: SourceContext | None = None) -> list[StimulusSource]:
    """The sources `scenario` uses, `round` first and then in registration order."""
    names = sorted(STIMULUS_SOURCES, key=lambda name: name != ROUND)  # stable: keeps the rest
    built = ((name, STIMULUS_SOURCES[name](scenario, context)) for name in names)
    return [source for _, source in built if source is not None]


def stimulus_variables(sources: Sequence[StimulusSource], participant: Participant,
                       round_id: int) -> dict[str, Any]:
    """Every source's variables for `participant`'s round, merged in order.

    A name given by two sources is refused: one would silently hide the other in every template.
    """
    merged: dict[str, Any] = {}
    for source in sources:
        added = source.variables(participant, round_id)
        taken = sorted(merged.keys() & added.keys())
        if taken:
            raise ValueError(f"stimulus source {type(source).__name__} gives variable(s) "
                             f"{', '.join(taken)} that an earlier source already gives")
        merged |= added
    return merged
