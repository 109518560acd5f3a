"""One run from start to finish: population → model → backend → run store.

What the run is (engine/run_plan.py), where it is written and whether it continues an earlier
run (engine/run_directory.py) and what its manifest says (engine/run_manifest.py) live beside
this file; here is the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents.population import build_population
from contracts.manifest import Manifest
from engine.backends import Backend, create_backend
from engine.backends.base import BackendError
from engine.batcher import Batcher
from engine.cache import CACHE_FILE, CachedBackend, ResponseCache
from engine.model_source import model_directory
from engine.policies import BASE, Policy, TwinChoice
from engine.run_directory import RunDirectory, SessionCounts
from engine.run_manifest import build_manifest, starting_manifest
from engine.run_plan import RunPlan, default_run_dir
from engine.run_request import resolved_backend_options
from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario

# torch, transformers (engine.backends.transformers_backend, engine.tiny_model) and mesa
# (engine.model, engine.context_check) are imported where they are used, not here: `run` checks
# its whole command line, the scenario and the data in about a second, before any of them loads.

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RunResult:
    """Where a run went and what it cost."""

    run_dir: Path
    participants: int
    seconds: float
    backend_calls: int
    invalid_answers: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    resumed: bool = False
    already_complete: bool = False
    rebuilt: str | None = None  # a complete run's damaged tables, rebuilt from its cache: why


def run_scenario(loaded: LoadedScenario, *, participants: int | None = None,
                 seed: int | None = None, out: Path | None = None,
                 backend: Backend | None = None, progress: Progress | None = None,
                 policies: list[Policy] | None = None, twins: TwinChoice | None = None,
                 backend_kind: str | None = None, backend_options: dict[str, Any] | None = None,
                 fresh: bool = False, request: dict[str, Any] | None = None) -> RunResult:
    """Simulate the scenario's participants (each under every policy) through every round and
    stage; return the run. A given backend must already serve every policy.

    Every answer goes through the run directory's response cache. An `out` that holds an
    unfinished run of the same scenario, seed, participants and policies is continued: answers
    the cache holds are read back, the rest computed, and the final tables equal those of an
    uninterrupted run. `fresh` reads nothing from the cache (and replaces what it holds).
    """
    seed = loaded.scenario.seed if seed is None else seed
    directory = RunDirectory(out or default_run_dir(loaded, seed))
    specs = build_population(loaded, participants, seed, None if twins is None else twins.ids)
    kind = backend_kind or loaded.scenario.backend
    plan = RunPlan(loaded, specs, seed, policies or [Policy(BASE)], twins, kind,
                   resolved_backend_options(loaded, kind, backend_options), fresh, request or {})
    # Every prompt must fit the model's context: refused here, before anything is written.
    from engine.context_check import check_context  # mesa: imported once the command line passed

    check_context(loaded, specs, plan.policies, seed,
                  model_directory(loaded) if backend is None else backend.model_dir,
                  plan.options, None if backend is None else backend.chat)
    with directory.held():
        found = directory.resumption(plan.fingerprint(), fresh)
        if found.complete:
            return RunResult(directory.path, len(specs), 0.0, 0, already_complete=True)
        if found.previous is None:  # recorded before the model loads: --resume continues a kill
            directory.begin(starting_manifest(plan, directory.path))
        try:
            result = _run_locked(plan, directory, found.previous, backend, progress)
        except BaseException:
            if found.previous is None:
                directory.abandon()  # a run that failed to start leaves nothing behind
            raise
        return replace(result, rebuilt=found.damage)


def _run_locked(plan: RunPlan, directory: RunDirectory, previous: Manifest | None,
                backend: Backend | None, progress: Progress | None) -> RunResult:
    """The run with its directory's lock held: backend, response cache, simulation, finish."""
    owned = backend is None
    if backend is None:
        backend = create_backend(plan.kind, model_directory(plan.loaded),
                                 adapters={p.name: p.adapter for p in plan.policies},
                                 seed=plan.seed, options=plan.options)
    try:
        cache = ResponseCache(directory.path / CACHE_FILE)
        cached = CachedBackend(backend, cache, read=not plan.fresh)
        try:
            return _simulate(plan, directory, previous, backend, cached, progress)
        except BackendError as exc:
            run_dir = directory.path
            raise InputError([Problem(f"backend {backend.kind}", None, "", f"{exc}"),
                              Problem(str(run_dir), None, "", f"the run stopped; every finished "
                                      f"stage and {exc.saved} answers of the stage in progress "
                                      "are saved; once the backend answers, continue with "
                                      f"--resume {run_dir}")]) from None
        finally:
            cache.close()
    finally:
        if owned:
            backend.close()


class _QueryCounter:
    """Progress in answered queries: told after every backend call, not only once a stage."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.done = 0
        self.total = 0
        self.label = ""

    def stage(self, label: str) -> None:
        self.label = label
        if self.progress:
            self.progress(self.done, self.total, label)

    def answered(self, count: int) -> None:
        self.done = min(self.done + count, self.total)
        if self.progress:
            self.progress(self.done, self.total, self.label)


def _simulate(plan: RunPlan, directory: RunDirectory, previous: Manifest | None,
              backend: Backend, cached: CachedBackend, progress: Progress | None) -> RunResult:
    """Step the model through every (round, stage); each step is on disk before the next."""
    counter = _QueryCounter(progress)
    batcher = Batcher(cached, counter.answered if progress else None)
    from agents.network import build_network, network_record
    from engine.model import SurveyModel

    network = build_network(plan.loaded, plan.specs, plan.seed)
    model = SurveyModel(plan.loaded.scenario, plan.specs, batcher, plan.seed, plan.policies,
                        network=network)
    manifest = build_manifest(plan, backend, directory.path)
    if network is not None:  # the same graph again on resume: the same seed and participants
        manifest["network"] = network_record(network, plan.loaded, directory.path)
    session = directory.open_session(manifest, previous, cached.read, backend.usage())
    invalid = 0
    counter.total = len(model.participants) * sum(len(s.questions) for _, s in model.schedule)

    def counts() -> SessionCounts:
        return SessionCounts(batcher.calls, cached.stats(), invalid, backend.usage())

    while model.running:
        round_id, stage = model.schedule[model.position]
        counter.stage(f"round {round_id} · {stage.id}")
        model.step()
        rows = model.answer_rows()
        invalid += sum(row["invalid"] is not None for row in rows)
        lines = [line for p in model.participants for line in p.take_unsaved()]
        session.step(model.position, rows, lines, counts())
    counter.stage("done")
    seconds = session.finish(counts(), len(plan.specs))
    return RunResult(directory.path, len(plan.specs), seconds, batcher.calls,
                     invalid_answers=invalid, cache_hits=cached.hits, cache_misses=cached.misses,
                     resumed=previous is not None)
