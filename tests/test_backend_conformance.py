"""Every backend keeps the one contract: the three real ones, and a test-only one that a single
`register(...)` line adds, pass the same checks; the test-only one runs a whole scenario."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

from agents.conversation import Message
from engine.backends import REGISTRY, Backend, create_backend, register
from engine.backends.base import (
    Adapters,
    ChoiceQuery,
    Distribution,
    TextQuery,
    options_from_logprobs,
)
from engine.backends.chat_template import ChatPrompt
from engine.cache import CACHE_FILE, CachedBackend, ResponseCache
from engine.weights import adapter_identity
from tests.backend_queries import choice_queries, text_queries
from tests.scripted_server import CLIENT_TIMEOUT, ScriptedServer

QUICK = {"max_retries": 2, "backoff_base": 0.01, "backoff_max": 0.05, "timeout": CLIENT_TIMEOUT}
VLLM_CPU = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024,
            "gpu_memory_utilization": 0.3}


class EchoBackend:
    """A test-only backend: answers are a hash of the prompt and of the policy's adapter."""

    kind = "echo"
    chat = None  # renders no chat template: the prompt is the conversation as plain text

    class Options(BaseModel):
        """`backend: echo`: how far apart the options' log-probabilities may lie."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        spread: float = Field(default=3.0, gt=0)

    @classmethod
    def build(cls, model_dir: Path, adapters: Adapters, seed: int, options: Options) -> EchoBackend:
        """The registry's builder."""
        return cls(model_dir, adapters, options.spread)

    def __init__(self, model_dir: Path, adapters: Adapters, spread: float) -> None:
        self.model_dir, self.spread = Path(model_dir), spread
        self.policies: dict[str, Path | None] = {"base": None, **adapters}
        self.queries, self.closed = 0, False

    def identity(self) -> dict[str, Any]:
        adapters = {name: str(path) for name, path in self.policies.items() if path is not None}
        return {"backend": self.kind, "spread": self.spread, "adapters": adapters}

    def answer_identity(self, policy: str) -> dict[str, Any]:
        return {"model": {"backend": self.kind, "spread": self.spread},
                "adapter": {"adapter": adapter_identity(self.policies[policy])}}

    def prompt(self, messages: Sequence[Message]) -> str:
        return "".join(f"<{m.role}>{m.content}\n" for m in messages) + "<assistant>"

    def _draws(self, query: ChoiceQuery | TextQuery, count: int) -> np.ndarray:
        text = self.prompt(query.messages) + json.dumps(self.answer_identity(query.policy))
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).uniform(-self.spread, 0.0, size=count)

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        self.queries += len(queries)
        return [options_from_logprobs(self._draws(q, len(q.labels))) for q in queries]

    def generate(self, queries: Sequence[TextQuery]) -> list[str]:
        self.queries += len(queries)
        return [" ".join(f"{x:.2f}" for x in self._draws(q, 3)) for q in queries]

    def usage(self) -> dict[str, dict[str, Any]]:
        return {"echo": {"queries": self.queries}}

    def close(self) -> None:
        self.closed = True  # nothing is held: closing twice is as good as once

    def __enter__(self) -> EchoBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module", autouse=True)
def echo_registered() -> Iterator[None]:
    register("echo", EchoBackend)  # the one line a new backend adds (here, for these tests only)
    yield
    REGISTRY.pop("echo")


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


def _factory(kind: str, request: pytest.FixtureRequest) -> Callable[[str], Backend]:
    """Builds the backend of `kind` over builtin:tiny with two adapter policies, reached at the
    address given (only the openai backend is reached anywhere)."""
    tiny_dir = request.getfixturevalue("tiny_dir")
    adapters = request.getfixturevalue("tiny_adapters")
    options: dict[str, Any] = {}
    if kind == "vllm":
        pytest.importorskip("vllm")
        options = VLLM_CPU
    served = request.getfixturevalue("server").base_url if kind == "openai" else ""

    def build(where: str = served) -> Backend:
        extra = {"base_url": where, **QUICK} if kind == "openai" else {}
        return create_backend(kind, tiny_dir, adapters=adapters, seed=3, options={**options, **extra})

    return build


KINDS = ["transformers", pytest.param("vllm", marks=pytest.mark.vllm), "openai", "echo"]


@pytest.fixture(scope="module", params=KINDS)
def built(request: pytest.FixtureRequest) -> Iterator[tuple[Backend, Callable[[str], Backend]]]:
    """One backend of each kind (built through the registry) and how to build another."""
    factory = _factory(request.param, request)
    backend = factory()
    yield backend, factory
    backend.close()


def test_the_backend_has_every_member_of_the_contract(built, tiny_dir):
    backend, _ = built
    assert isinstance(backend, Backend)
    assert backend.kind in REGISTRY and backend.model_dir == tiny_dir
    assert backend.chat is None or isinstance(backend.chat, ChatPrompt)
    assert json.loads(json.dumps(backend.identity()))["backend"] == backend.kind


def test_distributions_sum_to_one_for_every_query(built):
    backend, _ = built
    queries = choice_queries(("base", "tuned"), count=4)
    answers = backend.option_distributions(queries)
    assert len(answers) == len(queries)
    for query, answer in zip(queries, answers, strict=True):
        assert answer.invalid is None and answer.probs.shape == (len(query.labels),)
        assert (answer.probs >= 0).all() and abs(answer.probs.sum() - 1.0) < 1e-9


def test_text_comes_back_for_every_query(built):
    backend, _ = built
    texts = backend.generate(text_queries(("base", "tuned"), count=2))
    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)


def test_answer_identity_differs_by_adapter_and_not_by_where_the_backend_is(built):
    backend, factory = built
    base, tuned, other = (backend.answer_identity(p) for p in ("base", "tuned", "other"))
    assert set(base) == {"model", "adapter"} and base["model"] == tuned["model"]
    assert len({json.dumps(part, sort_keys=True) for part in (base, tuned, other)}) == 3
    elsewhere = factory("http://127.0.0.1:9/v1")  # the openai backend's server moved; never asked
    try:
        assert [elsewhere.answer_identity(p) for p in ("base", "tuned")] == [base, tuned]
    finally:
        elsewhere.close()


def test_the_prompt_is_the_text_the_model_reads(built):
    backend, _ = built
    messages = choice_queries(("base",), count=1)[0].messages
    text = backend.prompt(messages)
    assert isinstance(text, str) and messages[-1].content in text


def test_usage_is_counters_by_name(built):
    backend, _ = built
    usage = backend.usage()
    assert isinstance(usage, dict) and all(isinstance(v, dict) for v in usage.values())
    json.dumps(usage)


def test_close_is_idempotent_and_the_backend_is_a_context_manager(built):
    _, factory = built
    with factory() as fresh:
        assert isinstance(fresh, Backend)
    fresh.close()
    fresh.close()


def test_the_response_cache_keeps_the_contract_and_the_answers(built, tmp_path):
    backend, _ = built
    queries = choice_queries(("base", "other"), count=3)
    with ResponseCache(tmp_path / CACHE_FILE) as cache:
        cached = CachedBackend(backend, cache)
        assert isinstance(cached, Backend) and cached.kind == backend.kind
        assert cached.model_dir == backend.model_dir and cached.chat is backend.chat
        first = cached.option_distributions(queries)
        again = cached.option_distributions(queries)
        assert (cached.hits, cached.misses) == (3, 3)
        assert [a.probs.tobytes() for a in again] == [a.probs.tobytes() for a in first]
        assert cached.usage() == backend.usage()


def test_a_scenario_runs_on_the_test_only_backend(flagship, tmp_path):
    import pandas as pd

    from engine.runner import run_scenario
    from engine.store import MANIFEST, RESPONSES

    result = run_scenario(flagship, participants=3, out=tmp_path / "run", backend_kind="echo",
                          backend_options={"spread": 2.0})
    table = pd.read_parquet(result.run_dir / RESPONSES)
    s = flagship.scenario
    assert len(table) == 3 * len(s.rounds) * len(s.questions)
    assert np.allclose(table["probs"].map(np.sum).to_numpy(), 1.0)
    manifest = json.loads((result.run_dir / MANIFEST).read_text())
    assert manifest["model"]["backend"] == "echo"
