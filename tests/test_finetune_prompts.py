"""Training sees exactly what inference sees: the same chat text, the same tokens, the same logits."""

from __future__ import annotations

import numpy as np
import torch

from agents.pilot import Sampling, split_pilot
from agents.population import build_population
from engine.backends.base import Distribution
from engine.batcher import Batcher
from engine.finetune import _readout_logits, training_sequences
from engine.model import SurveyModel
from engine.pilot_schedule import pilot_examples
from engine.policies import Policy


class HumanAnswers:
    """A backend that records the chat text of every query and answers as the human did.

    SurveyModel asks participants in creation order, each stage's questions in order, so the i-th
    query of a step belongs to a known (participant, question).
    """

    kind = "human-answers"

    def __init__(self, flagship, tiny_backend) -> None:
        self.flagship, self.tiny = flagship, tiny_backend
        self.model: SurveyModel | None = None
        self.prompts: dict[tuple[str, int, str], tuple[str, list[int]]] = {}

    def option_distributions(self, queries):
        assert self.model is not None
        round_id, stage = self.model.schedule[self.model.position]
        asked = [(p, q) for p in self.model.participants for q in stage.questions]
        table = self.flagship.human.table.set_index("participant_id")
        out = []
        for (p, q), query in zip(asked, queries, strict=True):
            key = (p.participant_id, round_id, q.id)
            self.prompts[key] = (self.tiny.prompt(query.messages), self.tiny.prompt_ids(query.messages))
            human = table.loc[p.participant_id, q.column_for(round_id)]
            out.append(Distribution(np.eye(len(q.option_ids))[q.option_ids.index(human)], 1.0))
        return out


def inference_prompts(flagship, tiny_backend, specs, policy: Policy):
    """Run twins through the whole scenario with their humans' answers; every prompt sent."""
    backend = HumanAnswers(flagship, tiny_backend)
    model = SurveyModel(flagship.scenario, specs, Batcher(backend), seed=1, policies=[policy])
    backend.model = model
    while model.running:
        model.step()
    return backend.prompts


def test_training_and_inference_render_byte_identical_prompts(flagship, tiny_backend):
    split = split_pilot(flagship, 6, Sampling("random"), seed=4)
    specs = build_population(flagship, None, 4, split.pilot)
    examples = pilot_examples(flagship, specs)
    sent = inference_prompts(flagship, tiny_backend, specs, Policy("base"))
    assert len(examples) == len(sent) == 6 * 4 * 3
    sequences = training_sequences(tiny_backend, examples)
    trained_ids = {i: s.prompt[:len(s.prompt) - back] for s in sequences for back, i in s.readouts}
    for i, example in enumerate(examples):
        text, ids = sent[(example.participant_id, example.round_id, example.question_id)]
        assert tiny_backend.prompt(example.messages) == text
        assert trained_ids[i] == ids  # the token ids the loss reads at, too
        human = flagship.human.table.set_index("participant_id").loc[
            example.participant_id, flagship.scenario.question(example.question_id)
            .column_for(example.round_id)]
        question = flagship.scenario.question(example.question_id)
        assert example.label == question.labels[question.option_ids.index(human)]


def test_without_demographics_both_sides_render_the_same_demographic_free_persona(
        flagship, tiny_backend):
    specs = build_population(flagship, None, 4, ["P001", "P002"])
    examples = pilot_examples(flagship, specs, show_demographics=False)
    sent = inference_prompts(flagship, tiny_backend, specs, Policy("nodemo", demographics=False))
    for example in examples:
        text, _ = sent[(example.participant_id, example.round_id, example.question_id)]
        assert tiny_backend.prompt(example.messages) == text
        assert "years old" not in text and "ethnicity" not in text
        assert "online decision-making study" in text


def test_a_prompt_read_inside_a_longer_one_gets_the_logits_it_would_get_alone(
        flagship, tiny_backend):
    specs = build_population(flagship, None, 4, ["P003"])
    examples = pilot_examples(flagship, specs)
    sequences = training_sequences(tiny_backend, examples)
    shared = [s for s in sequences if len(s.readouts) > 1]
    assert len(shared) == 4  # per round, the location belief is read inside the action's prompt
    assert len(sequences) == 8
    with torch.no_grad():
        logits, read = _readout_logits(tiny_backend, shared)
        for row, i in enumerate(read):
            alone = tiny_backend.answer_logits([tiny_backend.prompt_ids(examples[i].messages)])
            torch.testing.assert_close(logits[row], alone[0, -1].float(), atol=1e-4, rtol=1e-4)
