"""A preview's neighbours: the run's graph, and the neighbours' recorded human answers.

`run.py preview` runs one participant, so no neighbour answers anything. For a networked
scenario the preview builds the graph `run` would build over the same population (seed and
participants), and tells the `social` source each neighbour's twin's recorded human answers of
the earlier rounds, so a round-2 preview shows a summary the way a run shows one (of the answers
the neighbours drew instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from agents.network import build_network
from agents.population import ParticipantSpec, build_population
from agents.stimulus.social import SocialSource
from scenarios.loader import LoadedScenario

RECORDED_NEIGHBOURS = ("the previous round's recorded human answers of its neighbours' twins (a "
                       "run summarises the answers they drew instead)")
NO_NEIGHBOUR_ANSWERS = "none: no neighbour has recorded human answers (a run shows what they drew)"


def preview_graph(loaded: LoadedScenario, spec: ParticipantSpec, participants: int | None,
                  seed: int) -> tuple[nx.Graph | None, list[ParticipantSpec]]:
    """The run's graph over the population `run` would build, and that population."""
    if loaded.scenario.network is None:
        return None, []
    specs = build_population(loaded, participants, seed)
    return build_network(loaded, specs, seed), specs


def tell_neighbours(loaded: LoadedScenario, sources: Sequence[object], spec: ParticipantSpec,
                    policy: str, specs: Sequence[ParticipantSpec], round_id: int) -> str:
    """Give the social source the neighbours' recorded answers of the rounds before `round_id`;
    the line the preview's header shows about them."""
    source = next((s for s in sources if isinstance(s, SocialSource)), None)
    if source is None:
        return ""
    table = loaded.human.table if loaded.human is not None else None
    by_id = {s.participant_id: s for s in specs}
    told = 0
    for near in source.graph.neighbors(spec.participant_id):
        row = by_id[near].data_row
        if table is None or row is None:
            continue
        for r in (r.id for r in loaded.scenario.rounds if r.id < round_id):
            for q in (q for q in loaded.scenario.questions if q.id in source.options):
                column = q.column_for(r)
                try:
                    index = q.read(table.iloc[row - 1].get(column)) if column else None
                except ValueError:  # a value `validate` refuses: no summary from it
                    index = None
                if index is not None:
                    chosen = source.chosen.setdefault((policy, r), {})
                    chosen.setdefault(near, {})[q.id] = q.option_ids[index]
                    told += 1
    return RECORDED_NEIGHBOURS if told else NO_NEIGHBOUR_ANSWERS
