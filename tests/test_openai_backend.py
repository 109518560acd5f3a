"""The OpenAI-compatible backend: exact answers through vLLM's server, and no fault goes unnoticed."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp")

from engine.backends.base import ChoiceQuery, TextQuery, options_from_logprobs
from engine.backends.endpoint import BackendRequestError, BackendUnavailable, RetryPolicy
from engine.backends.openai_backend import OpenAIBackend, UnreadableAnswerError
from tests.backend_queries import choice_queries, max_abs_diff, text_queries
from tests.scripted_server import CLIENT_TIMEOUT, ScriptedServer, fake_logprob, prompts_of

FAST = {"max_retries": 5, "backoff_base": 0.01, "backoff_max": 0.05, "timeout": CLIENT_TIMEOUT,
        "max_invalid": 3}
SERVER_START_SECONDS = 240


def backend(tiny_dir: Path, server: ScriptedServer, **options) -> OpenAIBackend:
    return OpenAIBackend(tiny_dir, base_url=server.base_url, **{**FAST, **options})


def expected(backend: OpenAIBackend, query: ChoiceQuery) -> np.ndarray:
    ids = backend.chat.label_ids(query.labels)
    return options_from_logprobs(np.array([fake_logprob(i) for i in ids])).probs


def test_every_kind_of_fault_is_retried_until_the_answer_is_read(tiny_dir):
    faults = ["500", "429", "hang", "drop", "503", "garbage", "nologprobs"]
    queries = choice_queries(("base",), count=3)
    with ScriptedServer(faults) as server:
        client = backend(tiny_dir, server, max_in_flight=1)
        answers = client.option_distributions(queries)
    for query, answer in zip(queries, answers, strict=True):
        assert answer.invalid is None
        np.testing.assert_allclose(answer.probs, expected(client, query), atol=1e-12)
    counters = client.counters
    assert (counters.retries, counters.invalid, counters.failed) == (5, 2, 0)
    assert counters.requests == len(faults) + len(queries)
    assert sum(counters.reasons.values()) == 2


def test_an_answer_unreadable_every_time_is_marked_invalid_with_its_reason(tiny_dir):
    query = choice_queries(("base",), count=1)[0]
    with ScriptedServer(["garbage", "nologprobs", "garbage"]) as server:
        client = backend(tiny_dir, server)
        [answer] = client.option_distributions([query])
        [again] = client.option_distributions([query])  # the script has run out: now readable
    assert "unreadable after 3 attempts" in answer.invalid and "no logprobs" in answer.invalid
    assert np.isnan(answer.probs).all() and len(answer.probs) == len(query.labels)
    assert again.invalid is None
    assert (client.counters.invalid, client.counters.failed) == (3, 1)


def test_a_server_that_keeps_failing_raises_after_the_bounded_retries(tiny_dir):
    with ScriptedServer(["500"] * 20) as server:
        client = backend(tiny_dir, server, max_retries=3)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="HTTP 500, after 4 attempts"):
            client.option_distributions(choice_queries(("base",), count=1))
    assert client.counters.retries == 3 and client.counters.requests == 4
    assert time.monotonic() - started < 5


def test_a_rejected_request_is_not_retried(tiny_dir):
    with ScriptedServer(["400"]) as server:
        client = backend(tiny_dir, server)
        with pytest.raises(BackendRequestError, match="HTTP 400"):
            client.option_distributions(choice_queries(("base",), count=1))
    assert client.counters.retries == 0


def test_requests_in_flight_never_exceed_the_bound(tiny_dir):
    with ScriptedServer(delay=0.05) as server:
        client = backend(tiny_dir, server, max_in_flight=3)
        answers = client.option_distributions(choice_queries(("base",), count=20))
    assert len(answers) == 20 and len(server.requests) == 20
    assert 2 <= server.max_in_flight <= 3


def test_the_api_key_is_sent_as_a_header_and_never_recorded(tiny_dir, monkeypatch, caplog):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("SURVEY_TEST_KEY", secret)
    with caplog.at_level(logging.DEBUG), ScriptedServer(["500", "garbage"]) as server:
        client = backend(tiny_dir, server, api_key_env="SURVEY_TEST_KEY")
        client.option_distributions(choice_queries(("base",), count=2))
    assert set(server.authorization) == {f"Bearer {secret}"}
    assert secret not in repr(client.identity()) and secret not in caplog.text
    assert client.identity()["api_key_env"] == "SURVEY_TEST_KEY"


def test_policies_map_to_served_model_names(tiny_dir, tiny_lora_dir):
    queries = choice_queries(("base", "tuned", "other"), count=3)
    with ScriptedServer() as server:
        client = backend(tiny_dir, server, served_model="tiny", adapters={"tuned": tiny_lora_dir},
                         served={"other": "other-lora"})
        client.option_distributions(queries)
    assert sorted(r["model"] for r in server.requests) == ["other-lora", "tiny", "tuned"]
    assert all(isinstance(r["prompt"], list) and "logprob_token_ids" in r for r in server.requests)
    with pytest.raises(ValueError, match="not registered"):
        client.option_distributions([ChoiceQuery(queries[0].messages, ("A", "B"), "nobody")])


def test_the_openai_dialect_reads_top_logprobs_and_flags_a_label_outside_them(tiny_dir):
    both = ChoiceQuery(choice_queries(("base",), count=1)[0].messages, ("A", "B"))
    three = ChoiceQuery(both.messages, ("A", "B", "C"))
    with ScriptedServer() as server:
        client = backend(tiny_dir, server, dialect="openai", max_invalid=2)
        answers = client.option_distributions([both, three])
    assert isinstance(server.requests[0]["prompt"], str)
    np.testing.assert_allclose(answers[0].probs, options_from_logprobs(np.array([-1.0, -2.0])).probs)
    assert "no logprob for option label 'C'" in answers[1].invalid
    assert client.counters.failed == 1


def test_text_is_read_and_text_unreadable_every_time_raises(tiny_dir):
    queries = [TextQuery(choice_queries(("base",), count=1)[0].messages, max_tokens=4)]
    with ScriptedServer(["garbage"]) as server:
        client = backend(tiny_dir, server)
        assert client.generate(queries) == [client.chat.tokenizer.decode([72, 73])]
    with ScriptedServer(["garbage"] * 3) as server:
        client = backend(tiny_dir, server)
        with pytest.raises(UnreadableAnswerError, match="unreadable after 3 attempts"):
            client.generate(queries)


def test_prompts_that_share_their_fields_go_in_one_request_and_read_as_if_sent_alone(tiny_dir):
    queries = choice_queries(("base", "tuned"), count=15)
    per_request = 2
    with ScriptedServer(["500", "drop"]) as server:  # a shared request is retried whole
        client = backend(tiny_dir, server, prompts_per_request=per_request,
                         served={"tuned": "tuned"})
        answers = client.option_distributions(queries)
    for query, answer in zip(queries, answers, strict=True):
        assert answer.invalid is None
        np.testing.assert_allclose(answer.probs, expected(client, query), atol=1e-12)
    groups = Counter((q.policy, q.labels) for q in queries).values()
    sizes = [min(per_request, n - start) for n in groups for start in range(0, n, per_request)]
    assert client.counters.requests == len(server.requests) == len(sizes) + 2
    assert client.counters.retries == 2
    sent = [prompts_of(r) for r in server.requests[2:]]
    assert sorted(len(p) for p in sent) == sorted(sizes) and max(sizes) == per_request
    assert sorted(map(tuple, (p for ps in sent for p in ps))) == sorted(
        tuple(client.chat.ids(q.messages)) for q in queries)


def test_an_unreadable_prompt_in_a_shared_request_is_asked_again_without_the_others(tiny_dir):
    messages = [q.messages for q in choice_queries(("base",), count=4)]
    queries = [ChoiceQuery(m, ("A", "B")) for m in messages]
    with ScriptedServer() as server:
        client = backend(tiny_dir, server, prompts_per_request=4)
        victim = client.chat.ids(messages[2])
        server.unreadable = lambda prompt: prompt == victim
        answers = client.option_distributions(queries)
    assert [a.invalid is None for a in answers] == [True, True, False, True]
    assert "unreadable after 3 attempts" in answers[2].invalid
    assert "no logprobs" in answers[2].invalid
    assert [prompts_of(r) for r in server.requests[1:]] == [[victim], [victim]]
    assert len(prompts_of(server.requests[0])) == 4
    assert (client.counters.invalid, client.counters.failed) == (3, 1)


def test_backoff_grows_within_its_cap_and_honours_retry_after():
    policy = RetryPolicy(backoff_base=1.0, backoff_max=5.0)
    assert all(0 <= policy.delay(attempt, None) <= min(5.0, 2 ** attempt) for attempt in range(8))
    assert policy.delay(0, 3.0) == 3.0 and policy.delay(0, 60.0) == 5.0


# --- the real thing: vLLM's OpenAI-compatible server on 127.0.0.1 ---

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    from urllib.error import URLError
    from urllib.request import urlopen

    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (URLError, OSError):  # not listening yet
            pass
        time.sleep(1)
    pytest.fail(f"vLLM server not healthy after {SERVER_START_SECONDS} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def vllm_server(tiny_dir, tiny_adapters, tmp_path_factory):
    """vLLM's OpenAI-compatible server over builtin:tiny serving each adapter under its policy."""
    pytest.importorskip("vllm")
    port, log = free_port(), tmp_path_factory.mktemp("vllm-server") / "server.log"
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_dir),
               "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "float32", "--enforce-eager", "--max-model-len", "1024",
               "--gpu-memory-utilization", "0.3", "--enable-lora", "--max-lora-rank", "8",
               # one spare slot: see VllmBackend._lora_slots_needed (vLLM's CPU LoRA ops)
               "--max-loras", str(len(tiny_adapters) + 1), "--lora-modules",
               *(f"{name}={path}" for name, path in tiny_adapters.items())]
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # its engine workers share its group
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}/health", log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def peft_reference(tiny_dir, tiny_adapters):
    from engine.backends.transformers_backend import TransformersBackend

    return TransformersBackend(tiny_dir, adapters=tiny_adapters)


@pytest.mark.vllm
def test_the_vllm_server_agrees_with_transformers_with_and_without_adapters(
        vllm_server, tiny_dir, tiny_adapters, peft_reference):
    client = OpenAIBackend(tiny_dir, base_url=vllm_server, served_model="tiny", adapters=tiny_adapters)
    queries = choice_queries(("base", "tuned", "other"), count=30)
    got, want = client.option_distributions(queries), peft_reference.option_distributions(queries)
    for policy in ("base", "tuned", "other"):
        mine = [i for i, q in enumerate(queries) if q.policy == policy]
        assert max_abs_diff([got[i] for i in mine], [want[i] for i in mine]) <= 1e-3
    assert (client.counters.retries, client.counters.invalid) == (0, 0)


@pytest.mark.vllm
def test_several_prompts_per_request_read_the_same_answers_from_the_vllm_server(
        vllm_server, tiny_dir, tiny_adapters, peft_reference):
    queries = choice_queries(("base", "tuned"), count=24)
    alone, together = (OpenAIBackend(tiny_dir, base_url=vllm_server, served_model="tiny",
                                     adapters=tiny_adapters, prompts_per_request=n) for n in (1, 8))
    one, many = alone.option_distributions(queries), together.option_distributions(queries)
    assert together.counters.requests < alone.counters.requests == len(queries)
    assert max_abs_diff(many, one) <= 1e-4  # only the server's batching differs
    assert max_abs_diff(many, peft_reference.option_distributions(queries)) <= 1e-3
    assert (together.counters.retries, together.counters.invalid) == (0, 0)


@pytest.mark.vllm
def test_the_vllm_server_writes_the_same_greedy_text_as_transformers(vllm_server, tiny_dir,
                                                                     tiny_backend):
    client = OpenAIBackend(tiny_dir, base_url=vllm_server, served_model="tiny")
    queries = text_queries(("base",))
    assert client.generate(queries) == tiny_backend.generate(queries)


@pytest.mark.vllm
def test_the_flagship_through_the_vllm_server_with_a_lora_policy_matches_transformers(
        vllm_server, flagship, flagship_policies, flagship_reference_run, tmp_path):
    from engine.runner import run_scenario
    from tests.backend_queries import compare_runs
    from tests.conftest import FLAGSHIP_RUN_PARTICIPANTS

    run_dir = tmp_path / "served"
    result = run_scenario(flagship, participants=FLAGSHIP_RUN_PARTICIPANTS, out=run_dir,
                          policies=flagship_policies, backend_kind="openai",
                          backend_options={"base_url": vllm_server, "served_model": "tiny"})
    worst, diverged, twins = compare_runs(run_dir, flagship_reference_run)
    assert twins == FLAGSHIP_RUN_PARTICIPANTS * len(flagship_policies)
    assert worst <= 1e-3
    assert diverged <= 2  # a draw within ~1e-6 of an option boundary may fall the other way
    assert result.invalid_answers == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["endpoint"]["retries"] == 0 and manifest["endpoint"]["invalid"] == 0
    assert manifest["model"]["served"] == {"base": "tiny", "tuned": "tuned"}
