"""Every prompt of a run must fit the model's context; checked before the model loads.

A prompt longer than the model's context is not an error any backend reports reliably: a local
transformers model reads past `max_position_embeddings` and answers nonsense, an endpoint
refuses the request mid-run. So before the first batch, the run is rehearsed without a model:
SurveyModel takes every participant (under every policy) through every round and stage, with an
answerer that always gives the option with the longest text, which gives the longest memory a
later round can hold. Each participant's first query, and its longest queries (in characters),
are then rendered and tokenized exactly as the backend will (`ChatPrompt`, the one rendering
path of all backends) and compared with the context, less one token for the answer.

Tokenizing every query of a run would double the tokenizer's share of the run; the queries of
one participant share persona, instructions and memory, so the longest in characters are the
longest in tokens. Every query within `NEAR_LONGEST` of the longest is tokenized to leave room
for the difference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
from jinja2 import TemplateError

from agents.conversation import Message
from agents.network import build_network
from agents.participant import Answer, Participant
from agents.population import ParticipantSpec
from engine.model import Asked, SurveyModel
from engine.policies import Policy
from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario
from scenarios.questions import Question
from scenarios.schema import Stage

if TYPE_CHECKING:
    from engine.backends.chat_template import ChatPrompt

NEAR_LONGEST = 0.9  # tokenize queries at least this fraction of a participant's longest
BYTE_MARGIN = 8  # tokens a tokenizer may add beyond one per byte (a leading space marker)
CONFIG_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


@dataclass(frozen=True)
class Prompt:
    """One query of the rehearsal: whose, where in the run, and its messages."""

    participant: str
    policy: str
    round_id: int
    stage: str
    question: str
    messages: tuple[Message, ...]

    @property
    def characters(self) -> int:
        """Length of the conversation's text (before the chat template)."""
        return sum(len(m.content) for m in self.messages)


def context_limit(model_dir: Path, options: Mapping[str, Any]) -> tuple[int, str] | None:
    """Tokens the model can read and where that number comes from: the backend's
    `max_model_len` when set (vLLM), else the model's config.json; None when neither says."""
    for source in (options, options.get("engine_args") or {}):
        if isinstance(source, Mapping) and isinstance(source.get("max_model_len"), int):
            return int(source["max_model_len"]), "the backend option max_model_len"
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for part in (config, config.get("text_config") or {}):
        for key in CONFIG_KEYS:
            if isinstance(part, dict) and isinstance(part.get(key), int) and part[key] > 0:
                return int(part[key]), f"{key} in {model_dir / 'config.json'}"
    return None


class LongestAnswers:
    """The rehearsal's answerer: every question answered with its longest option (the longest
    memory a later round can hold), and each participant's first query and longest ones kept."""

    def __init__(self) -> None:
        # By participant (creation order): (characters, prompt) of its first query, then of
        # those still within NEAR_LONGEST of its longest so far; and that longest.
        self.kept: dict[int, list[tuple[int, Prompt]]] = {}
        self.longest: dict[int, int] = {}
        self.answers: dict[int, tuple[int, np.ndarray]] = {}  # by question: longest option, probs

    def answer(self, round_id: int, stage: Stage, asked: Asked) -> list[tuple[Participant, Answer]]:
        """Each participant's questions of the stage, all asked before any is answered (as in a
        run); one participant at a time, so only the prompts kept outlive it."""
        by_participant: dict[Participant, list[Question]] = {}
        for p, q in asked:
            by_participant.setdefault(p, []).append(q)
        given: list[tuple[Participant, Answer]] = []
        for p, questions in by_participant.items():
            for q in questions:
                self._keep(p.unique_id, Prompt(p.participant_id, p.policy, round_id, stage.id, q.id,
                                               tuple(p.query(q))))
            given += [(p, p.give(stage.id, q, *self._longest_option(q), 1.0)) for q in questions]
        return given

    def _longest_option(self, question: Question) -> tuple[int, np.ndarray]:
        if id(question) not in self.answers:
            options = question.options or []
            index = max(range(len(options)), key=lambda i: len(options[i].text))
            self.answers[id(question)] = index, np.full(len(options), 1 / len(options))
        return self.answers[id(question)]

    def _keep(self, participant: int, prompt: Prompt) -> None:
        # Dropping what can no longer be near the longest bounds memory by participants, not queries.
        characters = prompt.characters
        kept = self.kept.get(participant)
        if kept is None:
            self.kept[participant], self.longest[participant] = [(characters, prompt)], characters
            return
        longest = self.longest[participant]
        if characters > longest:
            self.longest[participant] = longest = characters
            kept[1:] = [k for k in kept[1:] if k[0] >= NEAR_LONGEST * longest]
        if characters >= NEAR_LONGEST * longest:
            kept.append((characters, prompt))

    def prompts(self) -> list[Prompt]:
        """Participant by participant (policy by policy): its first query and those within
        `NEAR_LONGEST` of its longest, in the order asked."""
        chosen: list[Prompt] = []
        for participant in sorted(self.kept):
            (_, first), *rest = self.kept[participant]
            longest = self.longest[participant]
            chosen += [first, *(p for characters, p in rest if characters >= NEAR_LONGEST * longest)]
        return chosen


def rehearse(loaded: LoadedScenario, specs: Sequence[ParticipantSpec], policies: Sequence[Policy],
             seed: int) -> list[Prompt]:
    """Each participant's first query and its longest ones, from SurveyModel's own schedule with
    the longest option always answered (`LongestAnswers`).

    A template that fails on a participant's own values is an input error here, before the model.
    """
    try:
        return _rehearsal(loaded, specs, policies, seed, build_network(loaded, specs, seed))
    except TemplateError:
        # The participant named is the first (policy by policy, in creation order) whose own
        # rehearsal fails, whichever round each fails in; only this path rehearses one at a time.
        for policy in policies:
            for spec in specs:
                try:
                    _rehearsal(loaded, [spec], [policy], seed, _alone(loaded, spec))
                except TemplateError as exc:
                    raise InputError([Problem(
                        str(loaded.path), None, f"participant {spec.participant_id}",
                        f"a template fails on this participant's values: {exc}")]) from None
        raise


def _alone(loaded: LoadedScenario, spec: ParticipantSpec) -> nx.Graph | None:
    """A graph of one participant without neighbours (None: the scenario has no network)."""
    return None if loaded.scenario.network is None else nx.empty_graph([spec.participant_id])


def _rehearsal(loaded: LoadedScenario, specs: Sequence[ParticipantSpec],
               policies: Sequence[Policy], seed: int, network: nx.Graph | None) -> list[Prompt]:
    longest = LongestAnswers()
    model = SurveyModel(loaded.scenario, specs, None, seed, policies, answerer=longest,
                        network=network)
    while model.running:
        model.step()
    return longest.prompts()


def check_context(loaded: LoadedScenario, specs: Sequence[ParticipantSpec],
                  policies: Sequence[Policy], seed: int, model_dir: Path | None,
                  options: Mapping[str, Any], chat: ChatPrompt | None = None) -> None:
    """Raise InputError when any prompt of the run would not fit the model's context.

    `chat` is the backend's ChatPrompt (`Backend.chat`) when a backend exists already; otherwise
    the model directory's tokenizer is loaded (the weights are not). Nothing is checked for a
    model directory whose config names no context length.
    """
    if model_dir is None:
        return
    found = context_limit(model_dir, options)
    if found is None:
        return
    limit, source = found
    prompts = rehearse(loaded, specs, policies, seed)
    if chat is None:
        from engine.backends.chat_template import ChatPrompt

        chat = ChatPrompt(model_dir)
    # A token of these tokenizers (byte-level BPE, SentencePiece with byte fallback) covers at
    # least one byte, so a prompt of fewer bytes than the limit fits: only longer ones are counted.
    texts = [chat.text(p.messages) for p in prompts]
    near = [i for i, text in enumerate(texts) if len(text.encode("utf-8")) + BYTE_MARGIN >= limit]
    counted = chat.tokenizer([texts[i] for i in near], add_special_tokens=False)["input_ids"] \
        if near else []
    over = [(prompts[i], len(ids)) for i, ids in zip(near, counted, strict=True)
            if len(ids) > limit - 1]
    if not over:
        return
    prompt, tokens = max(over, key=lambda pair: pair[1])
    participants = len({(p.participant, p.policy) for p, _ in over})
    others = f"; {participants - 1} other participant(s) too" if participants > 1 else ""
    raise InputError([Problem(
        str(loaded.path), None, f"participant {prompt.participant}",
        f"the longest prompt (round {prompt.round_id}, stage {prompt.stage}, question "
        f"{prompt.question}, policy {prompt.policy}) is {tokens:,} tokens; the model reads at most {limit:,} "
        f"({source}), one of them for the answer{others}. Shorten the persona, instructions or "
        "stimulus, or use a model with a longer context; nothing was run")])
