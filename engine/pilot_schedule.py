"""Pilot training examples from SurveyModel's own schedule, with the humans' recorded answers.

The pilot's participants go through the run's schedule (round by round, stage by stage, across
all of them), but each gives its human's recorded answer instead of drawing one, and every
question asked becomes a (conversation, labels, human's label) example. Training therefore sees
exactly the conversations inference sends.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from agents.network import build_network
from agents.participant import Answer, Participant
from agents.pilot import PilotExample
from agents.population import ParticipantSpec, twin_ids
from engine.model import Asked, SurveyModel
from engine.policies import Policy
from scenarios.loader import LoadedScenario
from scenarios.questions import Question
from scenarios.schema import Stage

PILOT = "pilot"  # the policy name pilot participants take part under (never written down)


class RecordedAnswers:
    """The replay answerer: each participant answers as its human did, and the questions asked
    are collected as training examples. A participant whose human has no answer to a question
    of a stage stops there: later rounds would remember an answer we do not have."""

    def __init__(self, loaded: LoadedScenario, specs: list[ParticipantSpec]) -> None:
        assert loaded.human is not None, "a pilot needs human rows"
        table = loaded.human.table
        row_of = {pid: i for i, pid in enumerate(twin_ids(loaded))}
        self.rows = {s.participant_id: table.iloc[row_of[s.participant_id]] for s in specs}
        self.found: list[tuple[int, PilotExample]] = []  # (participant's creation order, example)

    def answer(self, round_id: int, stage: Stage, asked: Asked) -> list[tuple[Participant, Answer]]:
        """Each participant's recorded answers to the stage, all its questions asked first."""
        by_participant: dict[Participant, list[Question]] = {}
        for p, q in asked:
            by_participant.setdefault(p, []).append(q)
        given: list[tuple[Participant, Answer]] = []
        for p, questions in by_participant.items():
            row: pd.Series = self.rows[p.participant_id]
            recorded = [(q, p.query(q), q.read(_cell(row, q.column_for(round_id))))
                        for q in questions]
            self.found += [(p.unique_id, PilotExample(p.participant_id, round_id, q.id,
                                                      tuple(messages), q.query_labels(),
                                                      q.query_labels()[index]))
                           for q, messages, index in recorded if index is not None]
            if any(index is None for _, _, index in recorded):
                p.remove()  # takes part in no later step
                continue
            given += [(p, p.give(stage.id, q, index, np.eye(len(q.option_ids))[index], 1.0))
                      for q, _, index in recorded]
        return given

    def examples(self) -> list[PilotExample]:
        """The examples participant by participant, each in round and question order: the order
        training has always seen them in (a stable sort of the schedule's round-major order)."""
        return [example for _, example in sorted(self.found, key=lambda found: found[0])]


def pilot_examples(loaded: LoadedScenario, specs: list[ParticipantSpec],
                   show_demographics: bool = True, seed: int = 0) -> list[PilotExample]:
    """(conversation, human answer) for every pilot participant, round and question, from
    SurveyModel's schedule with the humans' recorded answers (see `RecordedAnswers`).

    With a network, the pilot's graph is built over the pilot's humans from `seed` exactly as a
    run's is (an edge list: the humans' own edges among them), so each example carries the
    summaries of its neighbours' recorded answers, round by round.
    """
    replay = RecordedAnswers(loaded, specs)
    model = SurveyModel(loaded.scenario, specs, None, seed=0,
                        policies=[Policy(PILOT, demographics=show_demographics)], answerer=replay,
                        network=build_network(loaded, specs, seed))
    while model.running:
        model.step()
    return replay.examples()


def _cell(row: pd.Series, column: str | None) -> object:
    """A human's recorded value (None: the question has no data column)."""
    return row.get(column) if column else None
