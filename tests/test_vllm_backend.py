"""In-process vLLM answers exactly as the transformers backend does, with and without LoRA adapters."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
pytest.importorskip("vllm")

from engine.backends.base import ChoiceQuery
from scenarios.errors import InputError
from tests.backend_queries import choice_queries, conversation, max_abs_diff, text_queries

pytestmark = pytest.mark.vllm
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def vllm_backend(tiny_dir, tiny_adapters):
    """One vLLM engine over builtin:tiny with two adapters, shared by this module's tests."""
    from engine.backends.vllm_backend import VllmBackend

    backend = VllmBackend(tiny_dir, adapters=tiny_adapters, dtype="float32", enforce_eager=True,
                          max_model_len=1024, gpu_memory_utilization=0.3)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def peft_reference(tiny_dir, tiny_adapters):
    """The transformers backend over the same base weights and adapters (peft)."""
    from engine.backends.transformers_backend import TransformersBackend

    return TransformersBackend(tiny_dir, adapters=tiny_adapters)


def test_option_distributions_agree_with_transformers_on_the_base_model(vllm_backend, tiny_backend):
    queries = choice_queries(("base",))
    assert max(len(vllm_backend.chat.ids(q.messages)) for q in queries) > 600  # flagship-sized
    assert max_abs_diff(vllm_backend.option_distributions(queries),
                        tiny_backend.option_distributions(queries)) <= TOLERANCE


def test_option_mass_agrees_with_transformers(vllm_backend, tiny_backend):
    queries = choice_queries(("base",), count=6)
    for got, want in zip(vllm_backend.option_distributions(queries),
                         tiny_backend.option_distributions(queries), strict=True):
        assert got.option_mass == pytest.approx(want.option_mass, rel=1e-3)


def test_adapters_mixed_in_one_batch_agree_with_peft(vllm_backend, peft_reference):
    queries = choice_queries(("base", "tuned", "other"), count=30)
    got = vllm_backend.option_distributions(queries)
    want = peft_reference.option_distributions(queries)
    for policy in ("base", "tuned", "other"):  # base queries too: they sit beside adapter queries
        mine = [i for i, q in enumerate(queries) if q.policy == policy]
        assert max_abs_diff([got[i] for i in mine], [want[i] for i in mine]) <= TOLERANCE


def test_too_few_lora_slots_on_cpu_are_refused_before_the_engine_starts(tiny_dir, tiny_adapters):
    from vllm.platforms import current_platform

    from engine.backends.vllm_backend import VllmBackend

    if not current_platform.is_cpu():
        pytest.skip("the spare slot is needed by vLLM's CPU LoRA ops only")
    with pytest.raises(InputError, match="one spare"):
        VllmBackend(tiny_dir, adapters=tiny_adapters, max_loras=2)


def test_the_adapter_changes_the_answers(vllm_backend):
    queries = choice_queries(("base",), count=8)
    tuned = [ChoiceQuery(q.messages, q.labels, "tuned") for q in queries]
    assert max_abs_diff(vllm_backend.option_distributions(queries),
                        vllm_backend.option_distributions(tuned)) > 0.05


def test_a_query_gets_the_same_answer_alone_as_in_a_batch(vllm_backend):
    queries = choice_queries(("base", "tuned"), count=10, seed=3)
    alone = [vllm_backend.option_distributions([q])[0] for q in queries]
    assert max_abs_diff(vllm_backend.option_distributions(queries), alone) <= 1e-5


def test_greedy_text_matches_transformers(vllm_backend, tiny_backend):
    queries = text_queries(("base",))
    assert vllm_backend.generate(queries) == tiny_backend.generate(queries)


def test_identity_pins_weights_adapters_and_sampling_but_not_memory_settings(vllm_backend, tiny_backend):
    identity = vllm_backend.identity()
    assert identity["backend"] == "vllm"
    assert identity["weights_sha256"] == tiny_backend.identity()["weights_sha256"]
    assert set(identity["adapters"]) == {"tuned", "other"}
    assert identity["seed"] == 0 and identity["dtype"] == "float32"
    assert "gpu_memory_utilization" not in identity["engine"]


def test_unknown_policy_and_multi_token_labels_are_clear_errors(vllm_backend):
    messages = conversation(np.random.default_rng(0), 5)
    with pytest.raises(ValueError, match="not registered"):
        vllm_backend.option_distributions([ChoiceQuery(messages, ("A", "B"), "nobody")])
    with pytest.raises(InputError, match="single tokens"):
        vllm_backend.option_distributions([ChoiceQuery(messages, ("A", "North Beach"))])


def test_a_prompt_longer_than_the_engine_allows_is_a_clear_error(vllm_backend):
    messages = conversation(np.random.default_rng(0), 1200)
    with pytest.raises(InputError, match="max_model_len"):
        vllm_backend.option_distributions([ChoiceQuery(messages, ("A", "B"))])
