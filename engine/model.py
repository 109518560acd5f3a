"""SurveyModel: a mesa Model whose step is one (round, stage) of the scenario for everyone.

Who answers is a seam (`Answerer`): a run draws each answer from the backend's distribution
(`DrawnAnswers`); a pilot replays its humans' recorded answers (engine/pilot_schedule.py). Both
go through the same schedule, so training sees what inference sees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import mesa
import numpy as np

from agents.participant import Answer, Participant
from agents.population import STREAM_ANSWERS, ParticipantSpec
from agents.stimulus import SourceContext, active_sources
from engine.backends.base import ChoiceQuery
from engine.batcher import Batcher
from engine.policies import BASE, Policy
from scenarios.questions import Question
from scenarios.schema import Scenario, Stage

if TYPE_CHECKING:
    import networkx as nx

# What a step asks: each participant taking part, with each question of the stage, in that order.
Asked = list[tuple[Participant, Question]]


class Answerer(Protocol):
    """How one step's questions are answered (and recorded in each participant's memory)."""

    def answer(self, round_id: int, stage: Stage, asked: Asked) -> list[tuple[Participant, Answer]]:
        """The answers given, in the order asked (a participant that stops gives none)."""
        ...


class DrawnAnswers:
    """One batched backend call for the step; each participant draws from its distributions."""

    def __init__(self, batcher: Batcher | None) -> None:
        self.batcher = batcher

    def answer(self, round_id: int, stage: Stage, asked: Asked) -> list[tuple[Participant, Answer]]:
        """Every question answered: a draw, or a failure when the model's answer is unreadable."""
        assert self.batcher is not None, "drawing answers needs a batcher"
        queries = [ChoiceQuery(tuple(p.query(q)), q.query_labels(), p.policy) for p, q in asked]
        distributions = self.batcher.distributions(queries)
        return [
            (p, p.receive(stage.id, q, d.probs, d.option_mass) if d.invalid is None
             else p.fail(stage.id, q, d.invalid))
            for (p, q), d in zip(asked, distributions, strict=True)
        ]


def answer_generator(seed: int, policy: str, index: int) -> np.random.Generator:
    """The answer draws of twin `index` under `policy`.

    `base` keeps the stream a single-policy run always had; any other policy's stream is keyed by
    its name, so adding, removing or reordering policies never changes another policy's draws.
    """
    if policy == BASE:
        return np.random.default_rng([seed, STREAM_ANSWERS, index])
    key = int.from_bytes(hashlib.sha256(policy.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, STREAM_ANSWERS, index, key])


class SurveyModel(mesa.Model):
    """Runs every participant through the scenario, one batched model call per policy and stage.

    Each twin takes part once per policy: one Participant per (twin, policy), policy by policy.
    `answerer` (default: drawn from `batcher`'s distributions) answers each step. The scenario's
    stimulus sources are built once and shared: each observes every step's answers. A scenario
    with a `network:` block needs its graph over `specs` (agents/network.py `build_network`).
    """

    def __init__(self, scenario: Scenario, specs: Sequence[ParticipantSpec], batcher: Batcher | None,
                 seed: int, policies: Sequence[Policy] = (Policy(BASE),),
                 answerer: Answerer | None = None, network: nx.Graph | None = None) -> None:
        super().__init__(seed=seed)
        self.scenario = scenario
        self.batcher = batcher
        self.answerer = answerer or DrawnAnswers(batcher)
        self.sources = active_sources(scenario, SourceContext(network))
        for policy in policies:
            for index, spec in enumerate(specs):
                Participant(self, spec, scenario, policy.name,
                            answer_generator(seed, policy.name, index), policy.demographics,
                            sources=self.sources)
        self.schedule: list[tuple[int, Stage]] = [
            (r.id, stage) for r in scenario.rounds for stage in scenario.stages
        ]
        self.position = 0
        self.last_answers: list[tuple[Participant, Answer]] = []

    @property
    def participants(self) -> list[Participant]:
        """Participants taking part, in creation order (the order of rows in the run store)."""
        return list(self.agents)

    def step(self) -> None:
        """Ask every participant taking part the current stage's questions; the answerer answers."""
        round_id, stage = self.schedule[self.position]
        participants = self.participants
        if stage.id == self.scenario.stages[0].id:
            for p in participants:
                p.begin_round(round_id)
        asked = [(p, q) for p in participants for q in stage.questions]
        self.last_answers = self.answerer.answer(round_id, stage, asked)
        for source in self.sources:
            source.observe(round_id, self.last_answers)
        self.position += 1
        self.running = self.position < len(self.schedule)

    def answer_rows(self) -> list[dict[str, Any]]:
        """The last step's answers as run-store rows (each question's type encodes its answer)."""
        rows = []
        for p, answer in self.last_answers:
            q = answer.question
            rows.append({
                "participant_id": p.participant_id, "policy": p.policy, **p.condition,
                **p.demographics, "round": answer.round_id, "stage": answer.stage_id,
                "question_id": q.id, "kind": self._kind(answer.stage_id),
                **q.record(answer.index, answer.probs, answer.option_mass, answer.invalid),
            })
        return rows

    def _kind(self, stage_id: str) -> str:
        return next(s.kind for s in self.scenario.stages if s.id == stage_id)
