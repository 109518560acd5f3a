"""The server path against a raw async client: the `openai` backend vs aiohttp, identical payloads.

    python benchmarks/server_path.py [--requests 2000] [--in-flight 64] [--rounds 3]
        [--model builtin:tiny] [--prompts-per-request K]

Starts vLLM's OpenAI-compatible server (CPU build) on 127.0.0.1 over the model, then, in this one
process, sends the same choice queries through two arms, interleaved (the order alternates by
round):

- backend: `OpenAIBackend.option_distributions(queries)`, prompt rendering included;
- raw: the payloads that backend sends (token-id prompts, the option labels' logprobs asked for),
  built before timing and posted with a bare aiohttp session at the same concurrency;
- packed (with --prompts-per-request K > 1): the backend again, sending up to K prompts per
  request (fewer, larger requests; not identical payloads, so it is compared with raw apart).

Each arm starts from an empty prefix cache (the server runs with VLLM_SERVER_DEV_MODE=1 for
`/reset_prefix_cache`) and its prefix-cache hit rate is read from `/metrics`, so both arms are
seen to share prefixes equally. Printed per arm and round: wall seconds, this process's CPU
milliseconds per request, the hit rate and the 1-minute load average; then the median ratio
backend / raw (goal: at most 1.2). The server is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SERVED = "bench"
START_SECONDS = 300
# Shared by every participant (as a scenario's instructions are), so the server's prefix cache has
# something to reuse across requests; the persona and question follow it.
INSTRUCTIONS = (
    "You take part in an online decision making study about security information. In each round a "
    "pirate queen chooses to raid the north beach or the south beach of an island, and an official "
    "deploys security measures to defend one beach. You are told a statement about where the "
    "measures are deployed. Some statements are true and some are not. Answer every question as "
    "yourself, with the letter of one option. ") * 3
TRAITS = {"age": range(18, 80), "gender": ("female", "male", "non binary"),
          "education": ("high school", "some college", "a bachelor degree", "a graduate degree")}
QUESTIONS = (
    ("Which beach do you believe is defended?\nA) North\nB) South\nC) Neither", ("A", "B", "C")),
    ("How likely is the statement true?\nA) Likely\nB) Unlikely", ("A", "B")),
    ("Which beach do you raid?\nA) North\nB) South\nC) Neither", ("A", "B", "C")),
    ("How sure are you?\nA) Very\nB) Somewhat\nC) Not\nD) Guessing", ("A", "B", "C", "D")),
)


def queries(count: int) -> list[Any]:
    """`count` choice queries: participants of three traits, four questions each."""
    from agents.conversation import Message
    from engine.backends.base import ChoiceQuery

    made = []
    for person in range((count + len(QUESTIONS) - 1) // len(QUESTIONS)):
        persona = (f"You are {TRAITS['age'][person * 7 % 62]} years old, "
                   f"{TRAITS['gender'][person % 3]}, with {TRAITS['education'][person % 4]}.")
        system = Message("system", f"{INSTRUCTIONS}\n{persona} You are participant {person}.")
        for text, labels in QUESTIONS:
            made.append(ChoiceQuery((system, Message("user", text)), labels))
    return made[:count]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def vllm_server(model_dir: Path, log: Path) -> Iterator[str]:
    """vLLM's OpenAI server on a free local port; its process group is stopped on exit."""
    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "float32", "--enforce-eager", "--max-model-len", "1024",
               "--gpu-memory-utilization", "0.3", "--disable-uvicorn-access-log"]
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_SERVER_DEV_MODE": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # engine workers share its group
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        while not healthy(base):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"vLLM server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def healthy(base: str) -> bool:
    try:
        with urlopen(f"{base}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def prefix_counters(base: str) -> tuple[float, float]:
    """(prefix-cache queries, hits) in tokens, summed over engines, from /metrics."""
    with urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals = {"vllm:prefix_cache_queries": 0.0, "vllm:prefix_cache_hits": 0.0}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0].removesuffix("_total")
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals["vllm:prefix_cache_queries"], totals["vllm:prefix_cache_hits"]


def reset_prefix_cache(base: str) -> None:
    with urlopen(Request(f"{base}/reset_prefix_cache", method="POST"), timeout=30) as response:
        assert response.status == 200, response.status


async def raw_client(url: str, payloads: list[dict[str, Any]], in_flight: int) -> list[Any]:
    """What a user would write: one aiohttp session, a semaphore, one POST per payload."""
    import aiohttp

    gate = asyncio.Semaphore(in_flight)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def one(payload: dict[str, Any]) -> Any:
            async with gate, session.post(url, json=payload) as response:
                response.raise_for_status()
                return (await response.json())["choices"][0]["logprobs"]["top_logprobs"][0]

        return await asyncio.gather(*(one(p) for p in payloads))


def agree(backend: Any, asked: list[Any], answers: list[Any], raw: list[Any]) -> None:
    """Stop unless the backend's distributions are the raw answers' label logprobs, renormalised."""
    import numpy as np

    from engine.backends.base import options_from_logprobs

    for query, answer, top in zip(asked, answers, raw, strict=True):
        ids = backend.chat.label_ids(query.labels)
        want = options_from_logprobs(np.array([top[f"token_id:{i}"] for i in ids])).probs
        if answer.invalid or np.abs(answer.probs - want).max() > 1e-4:
            raise SystemExit(f"the arms disagree: {answer} vs {want}")


def timed(base: str, work: Any) -> dict[str, float]:
    """Run `work()` from an empty prefix cache: wall s, this process's CPU s, hit rate, load."""
    reset_prefix_cache(base)
    asked, hits = prefix_counters(base)
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    asked_after, hits_after = prefix_counters(base)
    rate = (hits_after - hits) / max(1.0, asked_after - asked)
    return {"wall": wall, "cpu": cpu, "hit_rate": rate, "load": (load + os.getloadavg()[0]) / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="builtin:tiny", help="builtin:NAME or a model directory")
    parser.add_argument("--prompts-per-request", type=int, default=1)
    args = parser.parse_args()

    from engine.backends.openai_backend import OpenAIBackend
    from engine.tiny_model import ensure_builtin, is_builtin

    model_dir = ensure_builtin(args.model) if is_builtin(args.model) else Path(args.model)
    asked = queries(args.requests)
    with tempfile.TemporaryDirectory() as scratch, \
            vllm_server(model_dir, Path(scratch) / "server.log") as base:
        def client(per_request: int = 1) -> OpenAIBackend:
            """A fresh backend: nothing remembered from an earlier arm (tokenized prefixes)."""
            return OpenAIBackend(model_dir, base_url=f"{base}/v1", served_model=SERVED,
                                 max_in_flight=max(1, args.in_flight // per_request),
                                 prompts_per_request=per_request)

        backend = client()
        payloads = [backend._choice_job(q).payload for q in asked]  # exactly what the backend sends
        names = ["backend", "raw", *(["packed"] if args.prompts_per_request > 1 else [])]

        def prepare(name: str) -> Callable[[], Any]:
            """The arm's work; a backend arm gets a fresh backend, built here outside the timing,
            so it reuses nothing (such as tokenized prefixes) from an earlier arm."""
            if name == "raw":
                return lambda: asyncio.run(raw_client(backend.url, payloads, args.in_flight))
            fresh = client(args.prompts_per_request if name == "packed" else 1)
            return lambda: fresh.option_distributions(asked)

        # Warm every path (server, tokenizer, connections) outside the timing, and check that
        # they read the same answers from the same payloads.
        raw = prepare("raw")()
        for name in names:
            if name != "raw":
                agree(backend, asked, prepare(name)(), raw)
        fresh = client()
        render = time.process_time()
        for q in asked:
            fresh.chat.ids(q.messages)
        render = time.process_time() - render
        print(f"{args.requests} requests at {args.in_flight} in flight, model {args.model}; "
              f"tokenizing the prompts alone (fresh backend): {render:.2f} s CPU")
        results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            for name in (names if round_ % 2 == 0 else names[::-1]):
                got = timed(base, prepare(name))
                results[name].append(got)
                print(f"round {round_ + 1} {name:8s} {got['wall']:7.2f} s wall  "
                      f"{1e3 * got['cpu'] / args.requests:6.3f} ms CPU/answer  "
                      f"prefix hits {got['hit_rate']:.1%}  load {got['load']:.2f}", flush=True)
    summarize(results, args)


def summarize(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    """The medians' ratios to the raw client over the rounds, and client CPU per answer."""
    ratios = [b["wall"] / r["wall"] for b, r in zip(results["backend"], results["raw"], strict=True)]
    print(f"backend / raw wall: median {statistics.median(ratios):.3f} "
          f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)}); goal <= 1.2")
    if "packed" in results:
        packed_ratios = [b["wall"] / r["wall"] for b, r in zip(results["packed"], results["raw"],
                                                                strict=True)]
        print(f"packed ({args.prompts_per_request} per request) / raw wall: median "
              f"{statistics.median(packed_ratios):.3f}")
    cpu = {name: statistics.median(x["cpu"] for x in runs) / args.requests * 1e3
           for name, runs in results.items()}
    print("client CPU per answer: " + ", ".join(f"{k} {v:.3f} ms" for k, v in cpu.items())
          + f"; load average (1 min) {os.getloadavg()[0]:.2f}")

if __name__ == "__main__":
    main()
