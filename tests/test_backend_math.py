"""An answer's distribution is p(label token) at the answer position, renormalised over options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.conversation import Message
from engine.backends.base import ChoiceQuery, options_from_logprobs
from scenarios.errors import InputError

SYSTEM = Message("system", "You are a pirate. North Beach holds 150 gold coins.")


def ask(text: str) -> tuple[Message, ...]:
    return (SYSTEM, Message("user", f"{text}\nA) North Beach\nB) South Beach\nC) Neither\n"
                                    "Answer with the letter of one option."))


def test_distribution_matches_a_hand_computation_on_the_tiny_model(tiny_backend):
    queries = [ChoiceQuery(ask("Which beach do you raid?"), ("A", "B", "C")),
               ChoiceQuery(ask("A much longer question about which of the two beaches you raid "
                               "this round, given everything the queen said?"), ("A", "B")),
               ChoiceQuery(ask("Raid?"), ("C", "A", "B"))]
    batched = tiny_backend.option_distributions(queries)
    tok, model = tiny_backend.tokenizer, tiny_backend.model
    for query, got in zip(queries, batched, strict=True):
        text = tok.apply_chat_template([m.as_dict() for m in query.messages], tokenize=False,
                                       add_generation_prompt=True)
        ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1].double()
        vocab_probs = torch.softmax(logits, dim=-1).numpy()
        label_ids = [tok.convert_tokens_to_ids(label) for label in query.labels]
        expected = vocab_probs[label_ids] / vocab_probs[label_ids].sum()
        np.testing.assert_allclose(got.probs, expected, atol=1e-6)
        assert got.option_mass == pytest.approx(vocab_probs[label_ids].sum(), rel=1e-4)


def test_renormalisation_is_exact_and_keeps_the_mass():
    got = options_from_logprobs(np.log([0.1, 0.3, 0.05]))
    np.testing.assert_allclose(got.probs, [0.1 / 0.45, 0.3 / 0.45, 0.05 / 0.45], rtol=1e-12)
    assert got.option_mass == pytest.approx(0.45)
    assert got.probs.sum() == pytest.approx(1.0, abs=1e-12)


def test_a_label_that_is_not_one_token_is_a_clear_error(tiny_backend):
    with pytest.raises(InputError, match="single tokens"):
        tiny_backend.option_distributions([ChoiceQuery(ask("Raid?"), ("A", "North Beach"))])


def test_batched_prompt_ids_equal_one_by_one_ids(tiny_backend):
    from tests.backend_queries import choice_queries

    conversations = [q.messages for q in choice_queries(("base",), count=20)]
    assert tiny_backend.chat.ids_many(conversations) == [tiny_backend.chat.ids(c) for c in conversations]
    assert tiny_backend.chat.ids_many([]) == []
