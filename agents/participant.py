"""A simulated participant: a mesa Agent with demographics, a condition, a policy and a memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mesa
import numpy as np

from agents.conversation import (
    Message,
    RoundMemory,
    join_parts,
    options_message,
    persona_parts,
    query_messages,
    render_question,
    render_stimulus,
    round_system_message,
)
from agents.population import ParticipantSpec
from agents.stimulus import StimulusSource, active_sources, stimulus_variables
from scenarios.schema import Question, Scenario


@dataclass(frozen=True)
class Answer:
    """One answered question: the full option distribution and the drawn option."""

    round_id: int
    stage_id: str
    question: Question
    probs: np.ndarray
    option_mass: float
    index: int
    invalid: str | None = None

    @property
    def option_id(self) -> str | None:
        """The chosen option's id (None when the answer could not be read)."""
        return None if self.invalid is not None else self.question.option_ids[self.index]


class Participant(mesa.Agent):
    """One simulated participant; answers are drawn with its own seeded generator.

    `sources` give its templates' variables each round (SurveyModel shares its sources among
    all participants; by default the participant has the scenario's own, observing nothing).
    """

    def __init__(self, model: mesa.Model, spec: ParticipantSpec, scenario: Scenario,
                 policy: str, rng: np.random.Generator, show_demographics: bool = True,
                 sources: Sequence[StimulusSource] | None = None) -> None:
        super().__init__(model)
        self.participant_id = spec.participant_id
        self.demographics = dict(spec.demographics)
        self.condition = dict(spec.condition)
        self.policy = policy
        self.scenario = scenario
        self.answer_rng = rng
        self.show_demographics = show_demographics
        self.sources = list(active_sources(scenario) if sources is None else sources)
        self.variables: dict[str, Any] = {}  # this round's template variables, from the sources
        self._persona, self._instructions = persona_parts(scenario, self.demographics,
                                                          self.condition, show_demographics)
        self.persona = join_parts(self._persona, self._instructions)  # what persona_text gives
        self.memory: list[RoundMemory] = []
        self.transcript: list[dict[str, Any]] = []
        self.unsaved: list[dict[str, Any]] = []
        self._round_id = 0
        self._stimulus = ""
        self._system: Message | None = None
        self._answered: list[Message] = []
        self._round_answers: list[tuple[str, str]] = []
        self._asked: dict[str, tuple[str, Message]] = {}  # this round's questions, as rendered

    def begin_round(self, round_id: int) -> None:
        """Close the previous round into memory and show this round's stimulus."""
        if self._round_id:
            self.memory.append(RoundMemory(self._round_id, self._stimulus,
                                           tuple(self._round_answers)))
        self._round_id = round_id
        # Fixed for the round: every question of the round sees what its stimulus saw.
        self.variables = stimulus_variables(self.sources, self, round_id)
        self._stimulus = render_stimulus(self.scenario, self.variables)
        self._system = round_system_message(self.scenario.prompt_layout, self._persona,
                                            self._instructions, self.memory, self._stimulus)
        self._answered, self._round_answers, self._asked = [], [], {}
        self._record(self._system, stage=None, question=None)

    def query(self, question: Question) -> list[Message]:
        """The conversation the model sees for this question, in this round, now."""
        assert self._system is not None, "begin_round() first"
        return query_messages(self._system, self._answered, self._ask(question)[1])

    def _ask(self, question: Question) -> tuple[str, Message]:
        """The question's rendered text and message this round, rendered once: recording the
        answer reuses what the query showed."""
        if question.id not in self._asked:
            text = render_question(question, self.variables)
            self._asked[question.id] = (text, options_message(question, text))
        return self._asked[question.id]

    def receive(self, stage_id: str, question: Question, probs: np.ndarray,
                option_mass: float) -> Answer:
        """Draw an answer from the distribution, remember it and add it to the transcript."""
        index = question.draw(probs, self.answer_rng)
        return self.give(stage_id, question, index, probs, option_mass)

    def fail(self, stage_id: str, question: Question, reason: str) -> Answer:
        """Record that the model's answer could not be read (`reason`); nothing is drawn.

        The question is not added to what the participant said, so later questions and rounds
        see no answer to it rather than an invented one.
        """
        n = len(question.options or [])
        answer = Answer(self._round_id, stage_id, question, np.full(n, np.nan), float("nan"),
                        -1, reason)
        ask = self._ask(question)[1]
        self._record(ask, stage_id, question.id)
        self._record(Message("assistant", ""), stage_id, question.id, answer=answer)
        return answer

    def give(self, stage_id: str, question: Question, index: int, probs: np.ndarray,
             option_mass: float) -> Answer:
        """Answer with option `index` (drawn, or a pilot human's recorded answer) and remember it."""
        answer = Answer(self._round_id, stage_id, question, probs, option_mass, index)
        text, ask = self._ask(question)
        option = (question.options or [])[index]
        reply = Message("assistant", option.label or "")
        self._answered += [ask, reply]
        said = question.recall or text
        self._round_answers.append((said, option.text))
        self._record(ask, stage_id, question.id)
        self._record(reply, stage_id, question.id, answer=answer)
        return answer

    def _record(self, message: Message, stage: str | None, question: str | None,
                answer: Answer | None = None) -> None:
        line: dict[str, Any] = {
            "participant_id": self.participant_id, "policy": self.policy,
            "seq": len(self.transcript), "round": self._round_id, "stage": stage,
            "question_id": question, "role": message.role, "content": message.content,
        }
        if message.role == "system":
            line["parts"] = {"persona": self.persona, "stimulus": self._stimulus,
                             "memory_rounds": len(self.memory),
                             "demographics_shown": self.show_demographics}
        if answer is not None and answer.invalid is not None:  # strict JSON: null, not NaN
            line |= {"options": answer.question.option_ids, "probs": None, "answer": None,
                     "option_mass": None, "invalid": answer.invalid}
        elif answer is not None:
            line |= {"options": answer.question.option_ids, "probs": answer.probs.tolist(),
                     "answer": answer.option_id, "option_mass": answer.option_mass}
        self.transcript.append(line)
        self.unsaved.append(line)

    def take_unsaved(self) -> list[dict[str, Any]]:
        """Transcript lines not yet written to the run store."""
        lines, self.unsaved = self.unsaved, []
        return lines
