"""`run.py preview`: the exact messages, options and labels one participant-round is sent,
without a model.

The prompts come from the run's own code path: `SurveyModel` takes the one participant through
the scenario's schedule up to the round asked, with an answerer (`PreviewAnswers`) that builds
each stage's queries exactly as `DrawnAnswers` does (`Participant.query`, `query_labels`) and
keeps those of the round previewed. A run remembers the answers its twin drew; a preview has
drawn none, so earlier questions are answered, for the memory, with the twin's human's recorded
answers (where a cell is empty, or for a marginal population, with the first option), and the
preview says which. `answers` replaces them with given ones (tests pass a run's drawn answers
and compare the backend's input).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.conversation import Message
from agents.participant import Answer, Participant
from agents.population import ParticipantSpec, build_population
from engine.model import Asked, SurveyModel
from engine.policies import Policy, scenario_policies
from engine.preview_network import preview_graph, tell_neighbours
from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario
from scenarios.schema import Question, Stage

RECORDED, GIVEN, ASSUMED = "the twin's recorded human answer", "given", \
    "assumed: the first option (no recorded answer)"


@dataclass(frozen=True)
class PreviewQuery:
    """One query of the round previewed, as the backend would receive it."""

    round_id: int
    stage: Stage
    question: Question
    messages: tuple[Message, ...]
    labels: tuple[str, ...]
    policy: str


@dataclass(frozen=True)
class Remembered:
    """An answer the participant gave before a query (its memory, or an earlier stage's turn)."""

    round_id: int
    question_id: str
    option_id: str
    source: str  # RECORDED, GIVEN or ASSUMED


@dataclass
class Preview:
    """What `preview` prints: who, under which policy, the round's queries, and the answers the
    conversation holds (with where each came from)."""

    spec: ParticipantSpec
    policy: Policy
    round_id: int
    population: str = ""  # which population the participant is of (as `run` builds it)
    queries: list[PreviewQuery] = field(default_factory=list)
    remembered: list[Remembered] = field(default_factory=list)
    neighbours: str = ""  # a networked scenario's: whose answers a summary shows (preview_network)


class PreviewAnswers:
    """The preview's answerer: queries built as a run builds them (every question of a stage
    before any answer), kept for the round previewed; answers from `answer_of`."""

    def __init__(self, preview: Preview, last_stage: str, recorded: Mapping[str, Any] | None,
                 answers: Mapping[tuple[int, str], str] | None) -> None:
        self.preview = preview
        self.last_stage = last_stage  # its answers come after every query of the preview
        self.recorded = recorded  # the twin's human data row (None: no human row)
        self.answers = answers

    def answer(self, round_id: int, stage: Stage, asked: Asked) -> list[tuple[Participant, Answer]]:
        """Each query of the stage, then each answer (see `answer_of`)."""
        queries = [(p, q, tuple(p.query(q))) for p, q in asked]
        if round_id == self.preview.round_id:
            self.preview.queries += [PreviewQuery(round_id, stage, q, messages, q.query_labels(),
                                                  p.policy) for p, q, messages in queries]
        given = []
        for p, q, _ in queries:
            index, source = self.answer_of(q, round_id)
            if round_id < self.preview.round_id or stage.id != self.last_stage:
                self.preview.remembered.append(Remembered(round_id, q.id, q.option_ids[index],
                                                          source))
            given.append((p, p.give(stage.id, q, index, np.eye(len(q.option_ids))[index], 1.0)))
        return given

    def answer_of(self, question: Question, round_id: int) -> tuple[int, str]:
        """The option index the participant answers with, and where it comes from."""
        if self.answers is not None:
            chosen = self.answers.get((round_id, question.id))
            if chosen is not None and chosen in question.option_ids:
                return question.option_ids.index(chosen), GIVEN
        column = question.column_for(round_id)
        if self.recorded is not None and column:
            try:
                index = question.read(self.recorded.get(column))
            except ValueError:  # a value `validate` refuses: the memory assumes instead
                index = None
            if index is not None:
                return index, RECORDED
        return 0, ASSUMED


def find_participant(loaded: LoadedScenario, participant: str | None, participants: int | None,
                     seed: int) -> ParticipantSpec:
    """The participant `run` would simulate under that id (default: the population's first)."""
    specs = build_population(loaded, participants, seed)
    if participant is None:
        return specs[0]
    for spec in specs:
        if spec.participant_id == participant:
            return spec
    ids = [s.participant_id for s in specs]
    close = difflib.get_close_matches(participant, ids, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; e.g. {', '.join(ids[:3])}"
    raise InputError([Problem(str(loaded.path), None, "--participant", f"no participant "
                              f"'{participant}' among the {len(ids)} of this population{hint}")])


def _population(loaded: LoadedScenario, participants: int | None, seed: int) -> str:
    if loaded.scenario.population.source == "twins":
        return "a twin of its data row (as in any run)"
    size = participants or loaded.scenario.population.size
    return (f"drawn from the marginals in a population of {size} with seed {seed}: as "
            f"`run --participants {size} --seed {seed}` draws it")


def build_preview(loaded: LoadedScenario, *, participant: str | None = None,
                  round_id: int | None = None, policy: str | None = None,
                  participants: int | None = None, seed: int | None = None,
                  answers: Mapping[tuple[int, str], str] | None = None) -> Preview:
    """The queries of one participant-round (see the module's docstring)."""
    s = loaded.scenario
    seed = s.seed if seed is None else seed
    rounds = [r.id for r in s.rounds]
    round_id = rounds[0] if round_id is None else round_id
    if round_id not in rounds:
        raise InputError([Problem(str(loaded.path), None, "--round", f"no round {round_id}; the "
                                  f"scenario's rounds are {', '.join(map(str, rounds))}")])
    policies = scenario_policies(loaded, policy)
    if len(policies) != 1:
        raise InputError([Problem("command line", None, "--policy", "name one policy")])
    spec = find_participant(loaded, participant, participants, seed)
    preview = Preview(spec, policies[0], round_id, _population(loaded, participants, seed))
    recorded = None
    if loaded.human is not None and spec.data_row is not None:
        recorded = loaded.human.table.iloc[spec.data_row - 1]
    graph, population = preview_graph(loaded, spec, participants, seed)
    model = SurveyModel(s, [spec], None, seed, policies,
                        answerer=PreviewAnswers(preview, s.stages[-1].id, recorded, answers),
                        network=graph)
    if graph is not None:
        preview.neighbours = tell_neighbours(loaded, model.sources, spec, policies[0].name,
                                             population, round_id)
    while model.running and model.schedule[model.position][0] <= round_id:
        model.step()
    return preview


def memory_source(preview: Preview) -> str:
    """One line saying where the answers the conversation holds come from."""
    sources = sorted({r.source for r in preview.remembered})
    if not sources:
        return "no earlier answers: the conversation starts here"
    return (f"earlier answers in these prompts: {'; '.join(sources)} (a run holds the answers "
            "its twin drew instead)")


def token_counts(loaded: LoadedScenario, preview: Preview) -> tuple[str, list[int]]:
    """(model, each query's prompt tokens), from the model's tokenizer and chat template alone
    (`ChatPrompt`, as every backend renders); option labels are checked to be single tokens."""
    from engine.backends.chat_template import ChatPrompt
    from engine.model_source import model_directory

    chat = ChatPrompt(model_directory(loaded))
    for query in preview.queries:
        for label in query.labels:
            chat.label_id(label)
    return loaded.scenario.model, [len(chat.ids(q.messages)) for q in preview.queries]


def preview_scenario(path: str | Path, *, participant: str | None = None, round_id: int | None = None,
                     policy: str | None = None, model: str | None = None,
                     participants: int | None = None, seed: int | None = None
                     ) -> tuple[Preview, tuple[str, list[int]] | None]:
    """`run.py preview`: the checked scenario's preview, and token counts when `model` is given
    ('' : the scenario's own model; a name or directory: that one, as `run --model` takes it)."""
    from engine.model_source import check_model, with_model
    from engine.scenario_check import load_checked

    loaded = load_checked(path)
    if model:
        loaded = with_model(loaded, model)
    if model is not None:
        check_model(loaded)  # an unknown name or a missing package: said before anything builds
    preview = build_preview(loaded, participant=participant, round_id=round_id, policy=policy,
                            participants=participants, seed=seed)
    return preview, None if model is None else token_counts(loaded, preview)
