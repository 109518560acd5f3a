"""How a participant's situation becomes chat messages.

This is the one code path that renders prompts: inference (the engine) and training
(finetuning on pilot answers) both call it, so the two cannot drift apart.

A query for question q in round r is:
    system: persona + game instructions + memory of earlier rounds + round r's stimulus
    user/assistant: the questions of round r already answered, with their answer labels
    user: q's text and options
Questions on the same stage are answered in parallel: none sees the others' answers.

The system message's order is the scenario's `prompt_layout`: `persona_first` (the default, as
above) or `shared_first`: instructions + round r's stimulus + persona + memory, so everything
before the persona is the same text for every participant of a condition (a prefix a backend
can compute once). The order can change answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# ANSWER_INSTRUCTION: the manifest records it (engine/runner.py) from here.
from scenarios.questions import ANSWER_INSTRUCTION as ANSWER_INSTRUCTION
from scenarios.questions import Question
from scenarios.schema import PERSONA_FIRST, SHARED_FIRST, Scenario
from scenarios.templates import render


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        """The {role, content} form chat templates and APIs take."""
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class RoundMemory:
    """What a participant was told in one round and what it answered."""

    round_id: int
    stimulus: str
    answers: tuple[tuple[str, str], ...]  # (recall phrase or question text, chosen option text)


def persona_text(scenario: Scenario, demographics: Mapping[str, Any],
                 condition: Mapping[str, str], show_demographics: bool = True) -> str:
    """The persona and game instructions: what stays the same in every round.

    Without demographics (the paper's ablation) the persona is `persona_without_demographics`,
    or the persona itself when it names no demographic; the instructions never see demographics.
    """
    return join_parts(*persona_parts(scenario, demographics, condition, show_demographics))


def persona_parts(scenario: Scenario, demographics: Mapping[str, Any],
                  condition: Mapping[str, str], show_demographics: bool = True) -> tuple[str, str]:
    """The rendered persona and the rendered instructions, apart (see `persona_text`)."""
    if show_demographics:
        persona, variables = scenario.persona, {**demographics, **condition}
    else:
        persona, variables = scenario.persona_without_demographics or scenario.persona, dict(condition)
    return render(persona, variables), render(scenario.instructions, variables)


def join_parts(*parts: str) -> str:
    """Non-empty parts of a message, a blank line apart."""
    return "\n\n".join(p for p in parts if p)


def round_variables(scenario: Scenario, round_id: int, condition: Mapping[str, str]) -> dict[str, Any]:
    """The `round` source's variables (agents/stimulus/round.py): a run's templates see these
    merged with every other active source's."""
    rnd = next(r for r in scenario.rounds if r.id == round_id)
    return {**condition, **rnd.variables, "round": round_id, "n_rounds": len(scenario.rounds)}


def stimulus_text(scenario: Scenario, round_id: int, condition: Mapping[str, str]) -> str:
    """The round's stimulus (the defender's statement in the flagship)."""
    return render_stimulus(scenario, round_variables(scenario, round_id, condition))


def render_stimulus(scenario: Scenario, variables: Mapping[str, Any]) -> str:
    """The stimulus rendered over a round's variables (every active stimulus source's)."""
    return render(scenario.stimulus, variables)


def memory_text(memory: Sequence[RoundMemory]) -> str:
    """Earlier rounds, as the participant remembers them."""
    if not memory:
        return ""
    lines = ["What happened in earlier rounds:"]
    for past in memory:
        said = " ".join(f"{recall}: {answer}." for recall, answer in past.answers)
        # a one-shot survey's empty stimulus adds nothing, not a blank
        stimulus = past.stimulus.replace(chr(10), " ")
        lines.append(f"- {stimulus} {said}" if stimulus else f"- {said}")
    return "\n".join(lines)


def system_message(persona: str, memory: Sequence[RoundMemory], stimulus: str) -> Message:
    """The system message of a round in the `persona_first` layout (`persona`: persona_text)."""
    return Message("system", join_parts(persona, memory_text(memory), stimulus))


def round_system_message(layout: str, persona: str, instructions: str,
                         memory: Sequence[RoundMemory], stimulus: str) -> Message:
    """The system message of a round in a scenario's `prompt_layout` (`persona`, `instructions`:
    persona_parts). `shared_first` puts the text shared by a condition's participants first."""
    if layout == SHARED_FIRST:
        return Message("system", join_parts(instructions, stimulus, persona, memory_text(memory)))
    if layout != PERSONA_FIRST:
        raise ValueError(f"unknown prompt layout {layout!r}")
    return system_message(join_parts(persona, instructions), memory, stimulus)


def question_text(scenario: Scenario, question: Question, round_id: int,
                  condition: Mapping[str, str]) -> str:
    """A question's rendered text, without its options."""
    return render_question(question, round_variables(scenario, round_id, condition))


def render_question(question: Question, variables: Mapping[str, Any]) -> str:
    """A question's text rendered over a round's variables, without its options."""
    return render(question.text, variables)


def question_message(scenario: Scenario, question: Question, round_id: int,
                     condition: Mapping[str, str]) -> Message:
    """A question with its options, as its type renders them."""
    return options_message(question, question_text(scenario, question, round_id, condition))


def options_message(question: Question, text: str) -> Message:
    """The user message asking `question` whose rendered text is `text` (its type renders it)."""
    return Message("user", question.render(text))


def query_messages(system: Message, answered: Sequence[Message], question: Message) -> list[Message]:
    """The conversation sent to the model for one question."""
    return [system, *answered, question]
