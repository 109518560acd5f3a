"""The peer frameworks' workload through the engine and through raw baselines, in one process.

    python benchmarks/peers.py [--participants 200] [--model builtin:tiny] [--arms vllm,server,batching]
                               [--repeats 3] [--dtype float32] [--max-in-flight 64]

The workload is scenarios/peers_survey.yaml: N respondents, personas of three traits drawn from
marginals, four multiple-choice questions on one page, one answer each. Arms of a comparison
run interleaved (A B A B ...), each on a fresh run directory; the medians' ratio is printed
beside the 1-minute load average seen before each timed arm (min-max).

- vllm: the engine (`run_scenario`, the vllm backend) against raw `LLM.generate` on the
  requests the engine sent (token ids, max_tokens=1, the label tokens' logprobs at the first
  position; benchmarks/backends.py's replay), and on every query of the workload (what a client
  without the engine's per-batch de-duplication sends). One `LLM`, the backend's, serves all arms.
- server: a vLLM OpenAI server on 127.0.0.1 (benchmarks/server_path.py's, float32 whatever
  --dtype says); the engine's openai backend (built through the registry: whatever
  engine/backends/openai_backend.py does now) against server_path.py's aiohttp client posting
  one request per query the engine sent, the vllm dialect's payload, as many in flight.
- Both also time the backend alone (`option_distributions` on the recorded batches), so the
  engine's cost splits into the backend's and the run's (rendering, cache, run store).
- batching: transformers backend, `SurveyModel` stepped with one backend call per stage against
  one call per participant (no response cache in either arm: both compute every query).

Prompt tokens per answer are counted here (every query, tokenized) and read from vLLM's
prefix-cache counters and from any `*token*` counter the transformers backend keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import numpy as np

from agents.population import build_population
from benchmarks.backends import CPU_DEFAULTS, engine_seconds, raw_seconds
from benchmarks.token_counts import (
    counted,
    forget_kept_prefixes,
    report_tokens,
    token_counters,
    vllm_prefix_tokens,
)
from engine.backends import create_backend
from engine.backends.base import ChoiceQuery, Distribution, options_from_logprobs
from engine.batcher import Batcher
from engine.model import SurveyModel
from engine.model_source import model_directory, with_model
from engine.runner import run_scenario
from scenarios.loader import LoadedScenario, load_scenario

PEERS = Path(__file__).resolve().parent.parent / "scenarios" / "peers_survey.yaml"
ARMS = ("vllm", "server", "batching")


@dataclass
class Arm:
    """One side of a comparison: how to time it once, and what it measured."""

    name: str
    run: Callable[[int], float]
    seconds: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median of its timings."""
        return statistics.median(self.seconds)


def interleave(arms: Sequence[Arm], repeats: int) -> None:
    """Time every arm `repeats` times, A B A B ..., noting the load average before each."""
    for i in range(repeats):
        for arm in arms:
            arm.loads.append(os.getloadavg()[0])
            arm.seconds.append(arm.run(i))


def ratio(label: str, num: Arm, den: Arm, results: dict[str, Any]) -> None:
    """Print (and keep) the ratio of two arms' medians beside the load seen while timing them."""
    loads = num.loads + den.loads
    value = num.median / den.median
    print(f"{label:<48} {value:6.2f}x  ({num.name} {num.median:.3f} s / {den.name} "
          f"{den.median:.3f} s, median of {len(num.seconds)}; load {min(loads):.1f}-{max(loads):.1f})",
          flush=True)
    results[label] = {"ratio": value, num.name: num.seconds, den.name: den.seconds, "load": loads}


class Recording:
    """A backend that keeps every batch of choice queries it is asked, and its answers."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.kind = inner, inner.kind
        self.batches: list[list[ChoiceQuery]] = []
        self.answers: list[Distribution] = []

    def __getattr__(self, name: str) -> Any:  # chat, model_dir, identity, counters, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        self.batches.append(list(queries))
        answers = self.inner.option_distributions(queries)
        self.answers += answers
        return answers


class UniformAnswers:
    """A stand-in backend: every option equally likely, every query kept (no model)."""

    kind = "uniform"

    def __init__(self) -> None:
        self.queries: list[ChoiceQuery] = []

    def identity(self) -> dict[str, Any]:
        return {"backend": self.kind}

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        self.queries += queries
        return [options_from_logprobs(np.zeros(len(q.labels))) for q in queries]


class PerParticipantBatcher(Batcher):
    """One backend call per participant: SurveyModel.step lists a stage's queries participant by
    participant, `per_participant` of them each."""

    def __init__(self, backend: Any, per_participant: int) -> None:
        super().__init__(backend)
        self.per_participant = per_participant

    def distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        out: list[Distribution] = []
        for start in range(0, len(queries), self.per_participant):
            out += super().distributions(queries[start:start + self.per_participant])
        return out


def simulate(loaded: LoadedScenario, n: int, batcher: Batcher) -> float:
    """Seconds to step every participant through the scenario (no cache, no run store)."""
    specs = build_population(loaded, n, loaded.scenario.seed)
    model = SurveyModel(loaded.scenario, specs, batcher, loaded.scenario.seed)
    started = time.perf_counter()
    while model.running:
        model.step()
    return time.perf_counter() - started


def workload_queries(loaded: LoadedScenario, n: int) -> list[ChoiceQuery]:
    """Every query the workload asks (one per respondent and question), answered by no model."""
    stub = UniformAnswers()
    simulate(loaded, n, Batcher(stub))
    return stub.queries


def answers_of(loaded: LoadedScenario, n: int) -> int:
    """How many answers a run of n participants gives (every question of every round)."""
    return n * len(loaded.scenario.questions) * len(loaded.scenario.rounds)


def asked(backend: Any, batches: list[list[ChoiceQuery]]) -> float:
    """Seconds for the backend alone to answer the recorded batches (no cache, no run store)."""
    started = time.perf_counter()
    for batch in batches:
        backend.option_distributions(batch)
    return time.perf_counter() - started


def engine_run(loaded: LoadedScenario, backend: Any, n: int, out: Path) -> float:
    started = time.perf_counter()
    run_scenario(loaded, participants=n, out=out, backend=backend)
    return time.perf_counter() - started


def vllm_arms(loaded: LoadedScenario, model_dir: Path, args: argparse.Namespace, tmp: Path,
              results: dict[str, Any]) -> None:
    from engine.backends.vllm_backend import VllmBackend

    # disable_log_stats=False: the prefix-cache counters; it changes no answer (RESOURCE_ONLY).
    backend = VllmBackend(model_dir, dtype=args.dtype, seed=loaded.scenario.seed,
                          **CPU_DEFAULTS, disable_log_stats=False)
    try:
        started = time.perf_counter()
        backend.llm  # noqa: B018 - start the engine outside the timed arms
        print(f"vllm: engine started in {time.perf_counter() - started:.1f} s; one LLM shared by "
              "every arm", flush=True)
        recorder = Recording(backend)
        engine_seconds(loaded, recorder, args.participants, tmp / "vllm-warm")  # records the requests
        every = workload_queries(loaded, args.participants)
        print(f"vllm: {len(every)} queries, {sum(map(len, recorder.batches))} distinct sent in "
              f"{len(recorder.batches)} call(s)", flush=True)
        seen: dict[str, float] = {}
        engine = counted(lambda i: engine_seconds(loaded, backend, args.participants,
                                                  tmp / f"vllm-{i}"),
                         lambda: vllm_prefix_tokens(backend.llm), seen)

        def backend_only(i: int) -> float:
            backend.llm.reset_prefix_cache()
            return asked(backend, recorder.batches)

        arms = [Arm("raw", lambda i: raw_seconds(backend, recorder.batches)), Arm("engine", engine),
                Arm("backend", backend_only),
                Arm("raw_every_query", lambda i: raw_seconds(backend, [every]))]
        interleave(arms, args.repeats)
        ratio("engine / raw LLM.generate (identical requests)", arms[1], arms[0], results)
        ratio("vllm backend alone / raw LLM.generate (identical)", arms[2], arms[0], results)
        ratio("engine / raw LLM.generate (every query)", arms[1], arms[3], results)
        workload = sum(len(backend.chat.ids(q.messages)) for q in every)
        report_tokens("vllm", seen, len(every), results, workload)
    finally:
        backend.close()


def raw_payload(chat: Any, seed: int, query: ChoiceQuery) -> dict[str, Any]:
    """The vllm dialect's request for one query: token ids, one token, the labels' logprobs."""
    ids = chat.label_ids(query.labels)
    return {"prompt": chat.ids(query.messages), "seed": seed, "max_tokens": 1,
            "temperature": 0.0, "logprobs": len(set(ids)), "logprob_token_ids": ids,
            "return_tokens_as_token_ids": True}


def server_arms(loaded: LoadedScenario, model_dir: Path, args: argparse.Namespace, tmp: Path,
                results: dict[str, Any]) -> None:
    from benchmarks.server_path import SERVED, prefix_counters, raw_client, reset_prefix_cache, vllm_server

    with vllm_server(model_dir, tmp / "server.log") as root:  # float32, its dev routes on
        url = f"{root}/v1/completions"
        options = {"base_url": f"{root}/v1", "served_model": SERVED, "max_in_flight": args.max_in_flight}
        backend = create_backend("openai", model_dir, seed=loaded.scenario.seed, options=options)
        try:
            recorder = Recording(backend)
            engine_run(loaded, recorder, args.participants, tmp / "server-warm")
            payloads = [{**raw_payload(backend.chat, loaded.scenario.seed, q), "model": SERVED}
                        for batch in recorder.batches for q in batch]
            tops = asyncio.run(raw_client(url, payloads, args.max_in_flight))
            worst = max(float(np.abs(options_from_logprobs(np.array(
                [top[f"token_id:{i}"] for i in p["logprob_token_ids"]])).probs - a.probs).max())
                for top, p, a in zip(tops, payloads, recorder.answers, strict=True))
            print(f"server: {len(payloads)} requests per arm at {root}; raw answers differ from the "
                  f"engine's by at most {worst:.1e}", flush=True)

            def raw(i: int) -> float:
                started = time.perf_counter()
                asyncio.run(raw_client(url, payloads, args.max_in_flight))
                return time.perf_counter() - started

            def fresh(run: Callable[[int], float]) -> Callable[[int], float]:
                def reset_first(i: int) -> float:  # each arm starts from an empty prefix cache
                    reset_prefix_cache(root)
                    return run(i)
                return reset_first

            seen: dict[str, float] = {}
            engine = counted(lambda i: engine_run(loaded, backend, args.participants,
                                                  tmp / f"server-{i}"),
                             lambda: prefix_counters(root), seen)
            arms = [Arm("aiohttp", fresh(raw)), Arm("engine", fresh(engine)),
                    Arm("backend", fresh(lambda i: asked(backend, recorder.batches)))]
            interleave(arms, args.repeats)
        finally:
            if hasattr(backend, "close"):
                backend.close()
    flight = f"({args.max_in_flight} in flight)"
    ratio(f"engine (openai backend) / raw aiohttp {flight}", arms[1], arms[0], results)
    ratio(f"openai backend alone / raw aiohttp {flight}", arms[2], arms[0], results)
    report_tokens("server", seen, answers_of(loaded, args.participants), results)


def batching_arms(loaded: LoadedScenario, model_dir: Path, args: argparse.Namespace,
                  results: dict[str, Any]) -> None:
    per_participant = {len(stage.questions) for stage in loaded.scenario.stages}
    assert len(per_participant) == 1, "the loop's calls need one question count on every stage"
    backend = create_backend("transformers", model_dir, options={"dtype": args.dtype})
    answers = answers_of(loaded, args.participants)
    kept: dict[str, dict[str, float]] = {}

    def timed(name: str, make: Callable[[], Batcher]) -> Arm:
        def run(i: int) -> float:
            forget_kept_prefixes(backend)  # each arm starts cold, as vLLM's arms do
            before = token_counters(backend)
            seconds = simulate(loaded, args.participants, make())
            kept[name] = {k: (v - before.get(k, 0.0)) / answers for k, v in token_counters(backend).items()}
            return seconds
        return Arm(name, run)

    simulate(loaded, min(20, args.participants), Batcher(backend))  # warm-up
    arms = [timed("batched", lambda: Batcher(backend)),
            timed("loop", lambda: PerParticipantBatcher(backend, *per_participant))]
    interleave(arms, args.repeats)
    ratio("per-participant loop / batched (transformers)", arms[1], arms[0], results)
    chat = backend.chat  # type: ignore[attr-defined]
    submitted = sum(len(chat.ids(q.messages)) for q in workload_queries(loaded, args.participants))
    print(f"transformers prompt tokens per answer: submitted {submitted / answers:.1f} (counted here)",
          flush=True)
    for name, values in kept.items():
        shown = ", ".join(f"{k} {v:.1f}" for k, v in values.items()) or "none (no token counters)"
        fraction = [v for k, v in values.items() if "computed" in k] + [
            v for k, v in values.items() if "submitted" in k]
        if len(fraction) == 2 and fraction[1]:
            shown += f"; computed / submitted {fraction[0] / fraction[1]:.2f}"
        print(f"  backend counters per answer, {name}: {shown}", flush=True)
    results["transformers_tokens_per_answer"] = {"submitted": submitted / answers, **kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--model", default="builtin:tiny",
                        help="builtin:tiny (default), builtin:smollm2-135m or a model directory")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"a subset of {','.join(ARMS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-in-flight", type=int, default=64)
    args = parser.parse_args()
    chosen = [a.strip() for a in args.arms.split(",") if a.strip()]
    if unknown := sorted(set(chosen) - set(ARMS)):
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    loaded = with_model(load_scenario(PEERS), args.model)
    model_dir = model_directory(loaded)
    print(f"peers workload: {args.participants} respondents x {len(loaded.scenario.questions)} "
          f"questions, model {args.model} ({args.dtype}), {os.cpu_count()} CPUs", flush=True)
    results: dict[str, Any] = {"participants": args.participants, "model": args.model,
                               "dtype": args.dtype, "repeats": args.repeats}
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    try:
        for name in chosen:  # one vLLM at a time: each group stops its engine before the next
            if name in ("vllm", "server"):
                try:
                    import vllm  # noqa: F401
                except ImportError:
                    print(f"{name}: skipped, vLLM is not installed", flush=True)
                    continue
            if name == "vllm":
                vllm_arms(loaded, model_dir, args, tmp, results)
            elif name == "server":
                server_arms(loaded, model_dir, args, tmp, results)
            else:
                batching_arms(loaded, model_dir, args, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
