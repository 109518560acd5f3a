"""Stimulus sources: a new source of template variables is one file and one registry line.

The `round` source (condition, round variables, round and n_rounds) is always on; a source
registered next to it adds variables that the stimulus and questions read, and it learns from
every step's answers (`observe`), so round 2 can show what round 1 answered.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from agents.participant import Answer, Participant
from agents.population import build_population
from agents.stimulus import (
    ROUND,
    STIMULUS_SOURCES,
    SourceContext,
    active_sources,
    stimulus_variables,
)
from agents.stimulus.round import RoundSource
from engine.batcher import Batcher
from engine.model import SurveyModel
from engine.runner import run_scenario
from engine.store import TRANSCRIPTS
from scenarios.loader import LoadedScenario
from scenarios.questions import Question
from scenarios.schema import Scenario
from scenarios.template_memo import MEMO, memo_disabled

COUNTED = " You have answered {{ previous_answers_count }} questions before."


class PreviousAnswers:
    """Test-only: how many questions the participant answered in earlier rounds, and how many
    of those with the first option (a value that differs between participants)."""

    def __init__(self, scenario: Scenario, context: SourceContext | None) -> None:
        self.counts: defaultdict[tuple[str, str, int], Counter[str]] = defaultdict(Counter)

    def variables(self, participant: Participant, round_id: int) -> dict[str, Any]:
        earlier = Counter[str]()
        for (pid, policy, seen_round), counts in self.counts.items():
            if (pid, policy) == (participant.participant_id, participant.policy) \
                    and seen_round < round_id:
                earlier += counts
        return {"previous_answers_count": earlier["answered"],
                "previous_first_options": earlier["first"]}

    def observe(self, round_id: int, answers: Sequence[tuple[Participant, Answer]]) -> None:
        for p, answer in answers:
            counts = self.counts[(p.participant_id, p.policy, round_id)]
            counts["answered"] += 1
            counts["first"] += answer.index == 0


@pytest.fixture
def previous_answers(monkeypatch) -> None:
    """The test-only source, registered in one line for the test."""
    monkeypatch.setitem(STIMULUS_SOURCES, "previous_answers", PreviousAnswers)


def with_stimulus(loaded: LoadedScenario, tail: str) -> LoadedScenario:
    """The scenario with `tail` (a template) appended to its stimulus."""
    scenario = loaded.scenario
    return dataclasses.replace(loaded, scenario=scenario.model_copy(
        update={"stimulus": scenario.stimulus.rstrip("\n") + tail}))


def test_the_round_source_is_always_on_and_first(flagship, previous_answers):
    sources = active_sources(flagship.scenario)
    assert ROUND in STIMULUS_SOURCES
    assert isinstance(sources[0], RoundSource)
    assert [type(s) for s in sources[1:]] == [PreviousAnswers]


def test_the_round_source_gives_exactly_the_variables_templates_always_saw(flagship):
    model = SurveyModel(flagship.scenario, build_population(flagship, 2, seed=2), None, seed=1)
    p = model.participants[0]
    variables = stimulus_variables(model.sources, p, 2)
    assert list(variables.items()) == [*p.condition.items(), ("announced", "South"),
                                       ("round", 2), ("n_rounds", len(flagship.scenario.rounds))]


def test_a_registered_source_shows_earlier_answers_in_the_transcripts(
        flagship, tiny_backend, tmp_path, previous_answers):
    loaded = with_stimulus(flagship, COUNTED)
    run_scenario(loaded, participants=3, seed=3, out=tmp_path / "run", backend=tiny_backend)
    lines = [json.loads(line) for line in (tmp_path / "run" / TRANSCRIPTS).read_text().splitlines()]
    per_round = len(flagship.scenario.questions)
    systems = [line for line in lines if line["role"] == "system"]
    assert len(systems) == 3 * len(flagship.scenario.rounds)
    for line in systems:
        said = f"You have answered {(line['round'] - 1) * per_round} questions before."
        assert line["content"].endswith(said)
        assert line["parts"]["stimulus"].endswith(said)
    assert any(line["round"] == 1 and line["content"].endswith("answered 0 questions before.")
               for line in systems)
    assert any(line["round"] == 2 and line["content"].endswith(
        f"answered {per_round} questions before.") for line in systems)


def test_per_participant_variables_render_as_they_would_without_the_memo(
        flagship, tiny_backend, previous_answers):
    loaded = with_stimulus(flagship, COUNTED + " First options: {{ previous_first_options }}.")
    specs = build_population(flagship, 6, seed=2)

    def transcripts() -> list[list[dict[str, Any]]]:
        model = SurveyModel(loaded.scenario, specs, Batcher(tiny_backend), seed=4)
        while model.running:
            model.step()
        return [p.transcript for p in model.participants]

    saved = dict(MEMO.texts)
    try:
        remembered = transcripts()
        with memo_disabled():
            fresh = transcripts()
    finally:
        MEMO.texts.clear()
        MEMO.texts.update(saved)
    assert remembered == fresh
    last = [t for p in remembered for t in p if t["role"] == "system" and t["round"] == 4]
    assert len({line["content"].rsplit(":", 1)[1] for line in last}) > 1  # values differ


def test_a_variable_given_by_two_sources_is_refused(flagship, monkeypatch):
    class Again(PreviousAnswers):
        def variables(self, participant: Participant, round_id: int) -> dict[str, Any]:
            return {"round": 0}

    monkeypatch.setitem(STIMULUS_SOURCES, "again", Again)
    model = SurveyModel(flagship.scenario, build_population(flagship, 1, seed=2), None, seed=1)
    with pytest.raises(ValueError, match=r"Again gives variable.*round"):
        model.participants[0].begin_round(1)


def test_a_question_type_encodes_its_own_run_store_fields(flagship):
    question: Question = flagship.scenario.questions[0]
    probs = np.full(len(question.option_ids), 1 / len(question.option_ids))
    drawn = question.record(1, probs, 0.9, None)
    assert list(drawn) == ["type", "options", "probs", "answer", "answer_index", "option_mass",
                           "invalid"]
    assert drawn == {"type": question.type, "options": question.option_ids,
                     "probs": probs.tolist(), "answer": question.option_ids[1], "answer_index": 1,
                     "option_mass": 0.9, "invalid": None}
    failed = question.record(-1, np.full(len(probs), np.nan), float("nan"), "no option")
    assert failed["answer"] is None and failed["answer_index"] == -1
    assert failed["invalid"] == "no option"
