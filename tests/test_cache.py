"""The response cache: what it answers is what was stored, keyed by everything that matters."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest

from engine.backends.base import (
    BackendWrapper,
    ChoiceQuery,
    Distribution,
    TextQuery,
    invalid_distribution,
)
from engine.cache import CACHE_FILE, CachedBackend, ResponseCache
from engine.weights import adapter_identity
from tests.backend_queries import choice_queries, text_queries
from tests.conftest import ROOT

IDENTITY = {"backend": "vllm", "model_dir": "/m", "weights_sha256": "abc", "dtype": "float32",
            "seed": 0, "temperature": 0.0, "adapters": {"tuned": "/a"}}
KEY = {"identity": IDENTITY, "adapter": None, "prompt": "<s>hi", "labels": ("A", "B")}


class CountingBackend(BackendWrapper):
    """A real backend, with a record of the queries each call receives."""

    def __init__(self, inner, answers: list | None = None) -> None:
        super().__init__(inner)
        self.calls, self.answers = [], answers

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        self.calls.append(list(queries))
        return self.answers or self.inner.option_distributions(queries)

    def generate(self, queries: Sequence[TextQuery]) -> list[str]:
        self.calls.append(list(queries))
        return self.inner.generate(queries)


def test_a_hit_returns_exactly_the_answer_stored(tmp_path):
    answer = Distribution(np.array([0.1, 0.2, 0.7]) / 1.0000000001, 0.123456789012345)
    with ResponseCache(tmp_path / CACHE_FILE) as cache:
        cache.put_many([("k1", answer), ("k2", "free text, é")])
    with ResponseCache(tmp_path / CACHE_FILE) as cache:  # a new process would see the same
        found = cache.get_many(["k1", "k2", "missing"])
    assert set(found) == {"k1", "k2"}
    assert found["k1"].probs.tobytes() == answer.probs.tobytes()
    assert found["k1"].option_mass == answer.option_mass and found["k2"] == "free text, é"


@pytest.mark.parametrize("change", [
    {"identity": {**IDENTITY, "backend": "transformers"}},
    {"identity": {**IDENTITY, "weights_sha256": "abd"}},
    {"identity": {**IDENTITY, "dtype": "bfloat16"}},
    {"identity": {**IDENTITY, "seed": 1}},
    {"identity": {**IDENTITY, "temperature": 0.7}},
    {"adapter": {"path": "/a", "sha256": "1"}},
    {"prompt": "<s>hi "},
    {"labels": ("B", "A")},
    {"labels": ("A", "B", "C")},
    {"labels": None, "max_tokens": 8},
])
def test_the_key_changes_when_any_component_changes(change):
    assert ResponseCache.key(**{**KEY, **change}) != ResponseCache.key(**KEY)


def test_the_key_ignores_where_the_server_is_and_other_policies_adapters(tiny_dir, tiny_lora_dir):
    from engine.backends.openai_backend import OpenAIBackend

    # Leaving them out is the backend's answer_identity's job; the key hashes what it gives.
    here = OpenAIBackend(tiny_dir, base_url="http://127.0.0.1:8000/v1", adapters={"tuned": tiny_lora_dir})
    moved = OpenAIBackend(tiny_dir, base_url="http://127.0.0.1:9999/v1", api_key_env="OTHER_KEY",
                          adapters={"tuned": tiny_lora_dir, "new": "/b"})

    def key(backend, policy: str) -> str:
        answerer = backend.answer_identity(policy)
        return ResponseCache.key(**{**KEY, "identity": answerer["model"], "adapter": answerer["adapter"]})

    for policy in ("base", "tuned"):
        assert key(moved, policy) == key(here, policy)


def test_the_cached_backend_sends_only_misses_in_one_call(tiny_backend, tmp_path):
    counting = CountingBackend(tiny_backend)
    cached = CachedBackend(counting, ResponseCache(tmp_path / CACHE_FILE))
    first, later = choice_queries(("base",), count=6), choice_queries(("base",), count=3, seed=5)
    stored = cached.option_distributions(first)
    got = cached.option_distributions([*first, *later, later[0]])  # one repeated miss
    assert [len(call) for call in counting.calls] == [6, 3] and counting.calls[1] == later
    assert _same(got[:6], stored)
    direct = tiny_backend.option_distributions([*later, later[0]])
    assert max(np.abs(a.probs - b.probs).max() for a, b in zip(got[6:], direct, strict=True)) < 1e-6
    assert (cached.hits, cached.misses) == (6, 9)


def test_a_new_cache_over_the_run_directory_resumes_without_asking_again(tiny_backend, tmp_path):
    queries = choice_queries(("base",), count=5)
    answers = CachedBackend(tiny_backend, ResponseCache(tmp_path / CACHE_FILE)).option_distributions(
        queries)
    counting = CountingBackend(tiny_backend)
    resumed = CachedBackend(counting, ResponseCache(tmp_path / CACHE_FILE))
    assert _same(resumed.option_distributions(queries), answers) and counting.calls == []


def test_text_answers_are_cached_by_length_as_well(tiny_backend, tmp_path):
    counting = CountingBackend(tiny_backend)
    cached = CachedBackend(counting, ResponseCache(tmp_path / CACHE_FILE))
    queries = text_queries(("base",), count=2)
    texts = cached.generate(queries)
    longer = [TextQuery(q.messages, max_tokens=q.max_tokens + 1) for q in queries]
    assert cached.generate(queries) == texts
    cached.generate(longer)
    assert [len(call) for call in counting.calls] == [2, 2]


def test_invalid_answers_are_passed_on_but_never_stored(tiny_backend, tmp_path):
    query = choice_queries(("base",), count=1)[0]
    invalid = invalid_distribution(len(query.labels), "unreadable after 3 attempts: garbage")
    counting = CountingBackend(tiny_backend, answers=[invalid])
    cached = CachedBackend(counting, ResponseCache(tmp_path / CACHE_FILE))
    assert cached.option_distributions([query])[0].invalid is not None
    assert len(cached.cache) == 0
    cached.option_distributions([query])
    assert len(counting.calls) == 2
    with pytest.raises(ValueError, match="never cached"):
        cached.cache.put_many([("k", invalid)])


def test_an_adapter_retrained_in_place_gets_new_keys(tiny_lora_dir, tmp_path):
    copy = tmp_path / "adapter"
    copy.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (copy / name).write_bytes((tiny_lora_dir / name).read_bytes())
    before = adapter_identity(copy)
    weights = copy / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    assert adapter_identity(copy) != before and adapter_identity("served-name") == {"name": "served-name"}


WRITER = """
import sys
import numpy as np
from engine.backends.base import Distribution
from engine.cache import ResponseCache
cache = ResponseCache(sys.argv[1])
for batch in range(100_000):
    cache.put_many((f"{batch}-{i}", Distribution(np.full(4, 0.25), 0.5)) for i in range(50))
    print(batch, flush=True)
"""


def test_a_run_killed_mid_write_keeps_every_committed_batch_whole(tmp_path):
    path = tmp_path / CACHE_FILE
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        committed = [int(writer.stdout.readline()) for _ in range(20)][-1] + 1
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with ResponseCache(path) as cache:
        rows = len(cache)
        assert rows % 50 == 0 and rows >= committed * 50
        assert len(cache.get_many(f"{committed - 1}-{i}" for i in range(50))) == 50


def test_the_api_key_never_reaches_the_cache_file(tiny_dir, tmp_path, monkeypatch):
    pytest.importorskip("aiohttp")
    from engine.backends.openai_backend import OpenAIBackend
    from tests.scripted_server import ScriptedServer

    secret = "sk-cache-test-fedcba9876543210"
    monkeypatch.setenv("SURVEY_TEST_KEY", secret)
    with ScriptedServer() as server:
        remote = OpenAIBackend(tiny_dir, base_url=server.base_url, api_key_env="SURVEY_TEST_KEY")
        cache = ResponseCache(tmp_path / CACHE_FILE)
        CachedBackend(remote, cache).option_distributions(choice_queries(("base",), count=4))
        assert server.authorization == [f"Bearer {secret}"] * 4
    assert len(cache) == 4
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(CACHE_FILE))
    cache.close()
    stored += (tmp_path / CACHE_FILE).read_bytes()
    assert secret.encode() not in stored


def _same(left: list[Distribution], right: list[Distribution]) -> bool:
    return all(a.probs.tobytes() == b.probs.tobytes() and a.option_mass == b.option_mass
               for a, b in zip(left, right, strict=True)) and len(left) == len(right)
