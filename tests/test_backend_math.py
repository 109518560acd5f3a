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


QUERIES = [ChoiceQuery(ask("Which beach do you raid?"), ("A", "B", "C")),
           ChoiceQuery(ask("A much longer question about which of the two beaches you raid "
                           "this round, given everything the queen said?"), ("A", "B")),
           ChoiceQuery(ask("Raid?"), ("C", "A", "B"))]
# A left-padded batch is float32 arithmetic in another order: measured 1.2e-6 on AVX-512 kernels
# (4e-8 on AVX2) against the same prompt alone. Ten times that bounds it; the math itself is
# checked on each prompt alone, where only the chat template and the renormalisation remain.
PADDING_NOISE = 1e-5


def hand_distribution(backend, query):
    """p(label token) at the answer position, by hand from the model's logits, renormalised."""
    tok, model = backend.tokenizer, backend.model
    text = tok.apply_chat_template([m.as_dict() for m in query.messages], tokenize=False,
                                   add_generation_prompt=True)
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].double()
    vocab_probs = torch.softmax(logits, dim=-1).numpy()
    label_ids = [tok.convert_tokens_to_ids(label) for label in query.labels]
    return vocab_probs[label_ids] / vocab_probs[label_ids].sum(), vocab_probs[label_ids].sum()


def test_distribution_matches_a_hand_computation_on_the_tiny_model(tiny_backend):
    for query in QUERIES:
        got = tiny_backend.option_distributions([query])[0]
        expected, mass = hand_distribution(tiny_backend, query)
        np.testing.assert_allclose(got.probs, expected, atol=1e-6)
        assert got.option_mass == pytest.approx(mass, rel=1e-4)


def test_a_batch_answers_each_query_as_it_would_be_answered_alone(tiny_backend):
    batched = tiny_backend.option_distributions(QUERIES)
    for query, got in zip(QUERIES, batched, strict=True):
        alone = tiny_backend.option_distributions([query])[0]
        np.testing.assert_allclose(got.probs, alone.probs, atol=PADDING_NOISE)
        assert got.option_mass == pytest.approx(alone.option_mass, rel=1e-4)


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
