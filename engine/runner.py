"""One run from start to finish: population → model → backend → run store, with a manifest."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.conversation import ANSWER_INSTRUCTION
from agents.population import build_population, twin_rows_record
from engine.backends import Backend, create_backend
from engine.backends.base import BackendError
from engine.batcher import Batcher
from engine.cache import CACHE_FILE, CACHE_FILES, CachedBackend, ResponseCache
from engine.lock import LOCK_FILE, hold_directory, read_holder
from engine.policies import BASE, Policy, TwinChoice, resolve_policies
from engine.store import MANIFEST, PARTS, STARTING, TRANSCRIPTS, RunStore, read_manifest, table_damage
from scenarios.checks import backend_option_problems, builtin_model_problem
from scenarios.errors import InputError, Problem, shown
from scenarios.loader import LoadedScenario
from scenarios.schema import (
    BACKEND_OPTIONS,
    BUILTIN_MODELS,
    BUILTIN_PREFIX,
    PRETRAINED_BUILTIN_MODELS,
    SEED_LIMIT,
)

# torch, transformers (engine.backends.transformers_backend, engine.tiny_model) and mesa
# (engine.model, engine.context_check) are imported where they are used, not here: `run` checks
# its whole command line, the scenario and the data in about a second, before any of them loads.

PACKAGES = ("survey-twins", "torch", "transformers", "tokenizers", "peft", "mesa", "numpy",
            "pandas", "pyarrow", "scipy", "statsmodels", "pydantic", "jinja2", "pyyaml")

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


def model_directory(loaded: LoadedScenario) -> Path:
    """The local model directory a scenario's `model:` names (embedded models are built)."""
    model = loaded.scenario.model
    if model.startswith(BUILTIN_PREFIX):
        from engine.tiny_model import ensure_builtin

        try:
            return ensure_builtin(model)
        except ValueError as exc:
            raise InputError([Problem(str(loaded.path), None, "model", str(exc))]) from None
    path = Path(model).expanduser()
    path = path if path.is_absolute() else loaded.resolve(model)
    if not (path / "config.json").is_file():
        raise InputError([Problem(str(loaded.path), None, "model",
                                  f"'{model}' is neither a built-in model ({', '.join(BUILTIN_MODELS)}) "
                                  f"nor a local Hugging Face model directory (no config.json in {path})")])
    return path


def with_model(loaded: LoadedScenario, model: str | None) -> LoadedScenario:
    """The scenario with its `model:` replaced by `--model` (None: unchanged). A local directory
    is made absolute against the working directory, where the command line was typed; the run's
    fingerprint and request record the model, so a run directory never mixes two models."""
    if model is None:
        return loaded
    if not model.startswith(BUILTIN_PREFIX):
        model = str(Path(model).expanduser().resolve())
    return replace(loaded, scenario=loaded.scenario.model_copy(update={"model": model}))


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def default_run_dir(loaded: LoadedScenario, seed: int) -> Path:
    """runs/<scenario>-<UTC time>-s<seed> under the working directory."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{loaded.scenario.name}-{stamp}-s{seed}"


def scenario_policies(loaded: LoadedScenario, names: str | None) -> list[Policy]:
    """The policies `--policies` names ('base' when none), adapters checked against the model."""
    if (names is None or names.strip() == BASE) and BASE not in loaded.scenario.policies:
        return [Policy(BASE)]  # no adapter to check: skip hashing the weights here
    from engine.backends.transformers_backend import weights_digest

    return resolve_policies(loaded, names, weights_digest(model_directory(loaded)))


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
    policies = policies or [Policy(BASE)]
    run_dir = out or default_run_dir(loaded, seed)
    specs = build_population(loaded, participants, seed, None if twins is None else twins.ids)
    kind = backend_kind or loaded.scenario.backend
    options = resolved_backend_options(loaded, kind, backend_options)
    fingerprint = run_fingerprint(loaded, seed, specs, policies, twins)
    # Every prompt must fit the model's context: refused here, before anything is written.
    from engine.context_check import check_context  # mesa: imported once the command line passed

    check_context(loaded, specs, policies, seed,
                  model_directory(loaded) if backend is None else getattr(backend, "model_dir", None),
                  options, getattr(backend, "chat", None))
    # One writer per run directory, from its first read to its finish (engine/lock.py).
    with hold_directory(run_dir, purpose="run", field="--out",
                        advice="wait for it or choose another --out"):
        previous = previous_run(run_dir, fingerprint)
        damage = None
        if (previous is not None and previous.get("status") == "complete" and not fresh
                and not previous.get("invalid_answers")):  # invalid answers are asked again
            damage = table_damage(run_dir, previous)
            if damage is None:
                return RunResult(run_dir, len(specs), 0.0, 0, already_complete=True)
        store = RunStore(run_dir)
        if previous is None:  # recorded before the model loads: --resume continues a kill there
            store.begin(starting_manifest(loaded, seed, len(specs), run_dir, request or {},
                                          fingerprint))
        try:
            result = _run_locked(loaded, specs, seed, run_dir, backend, progress, policies,
                                 twins, kind, options, fingerprint, previous, fresh, request)
        except BaseException:
            if previous is None:
                store.abandon()  # a run that failed to start leaves nothing behind
            raise
        return replace(result, rebuilt=damage)


def _run_locked(loaded: LoadedScenario, specs: list[Any], seed: int, run_dir: Path,
                backend: Backend | None, progress: Progress | None, policies: list[Policy],
                twins: TwinChoice | None, kind: str, options: dict[str, Any],
                fingerprint: dict[str, Any], previous: dict[str, Any] | None, fresh: bool,
                request: dict[str, Any] | None) -> RunResult:
    """The run with its directory's lock held: backend, response cache, simulation, finish."""
    owned = backend is None
    if backend is None:
        adapters = {p.name: p.adapter for p in policies}
        backend = create_backend(kind, model_directory(loaded), adapters=adapters, seed=seed,
                                 options=options)
    try:
        cache = ResponseCache(run_dir / CACHE_FILE)
        cached = CachedBackend(backend, cache, read=not fresh)
        try:
            return _simulate(loaded, specs, seed, run_dir, cached, progress, policies, twins,
                             {"kind": backend.kind, "options": options}, fingerprint, previous,
                             request or {})
        except BackendError as exc:
            raise InputError([Problem(f"backend {backend.kind}", None, "", f"{exc}"),
                              Problem(str(run_dir), None, "", f"the run stopped; every finished "
                                      f"stage and {exc.saved} answers of the stage in progress "
                                      "are saved; once the backend answers, continue with "
                                      f"--resume {run_dir}")]) from None
        finally:
            cache.close()
    finally:
        close = getattr(backend, "close", None)
        if owned and close is not None:
            close()


def _simulate(loaded: LoadedScenario, specs: list[Any], seed: int, run_dir: Path,
              backend: CachedBackend, progress: Progress | None, policies: list[Policy],
              twins: TwinChoice | None, backend_record: dict[str, Any],
              fingerprint: dict[str, Any], previous: dict[str, Any] | None,
              request: dict[str, Any]) -> RunResult:
    batcher = Batcher(backend)
    from engine.model import SurveyModel

    model = SurveyModel(loaded.scenario, specs, batcher, seed, policies)
    store = RunStore(run_dir)
    manifest = build_manifest(loaded, backend, seed, len(specs), run_dir)
    manifest["policies"] = [p.manifest_entry() for p in policies]
    if twins is not None:
        manifest["twins"] = {**twins.source, "ids": [s.participant_id for s in specs]}
    if (rows := twin_rows_record(loaded, specs)) is not None:  # scoring ties twins to these rows
        manifest["twin_rows"] = rows
    manifest |= {"backend": backend_record, "request": request, "fingerprint": fingerprint}
    sessions = list((previous or {}).get("sessions", []))
    session: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                               "resumed": previous is not None, "cache_read": backend.read}
    if previous is not None:
        manifest["run_id"], manifest["created"] = previous["run_id"], previous["created"]
        store.restart({**manifest, "sessions": [*sessions, session]})
    else:
        store.start({**manifest, "sessions": [session]})
    started = time.perf_counter()
    total = len(model.schedule)
    invalid = 0
    counters = getattr(backend.inner, "counters", None)
    # transformers: prompt tokens submitted vs computed (prefix reuse), this session's and in all
    tokens = getattr(backend.inner, "prompt_tokens", None)
    tokens_before = tokens.as_dict() if tokens is not None else {}
    tokens_earlier = [s["tokens"] for s in sessions if isinstance(s.get("tokens"), dict)]

    def account() -> float:
        """This session's counters so far, in the manifest (a killed session keeps them)."""
        seconds = time.perf_counter() - started
        session.update({"seconds": round(seconds, 3), "backend_calls": batcher.calls,
                        "cache": backend.stats(), "invalid_answers": invalid,
                        **({"endpoint": counters.as_dict()} if counters is not None else {})})
        manifest.update({"cache": {"file": CACHE_FILE, **backend.stats()},
                         "invalid_answers": invalid, "sessions": [*sessions, session]})
        if counters is not None:
            manifest["endpoint"] = counters.as_dict()
        if tokens is not None:
            mine = {k: v - tokens_before[k] for k, v in tokens.as_dict().items()}
            session["tokens"] = mine
            manifest["backend"]["tokens"] = {k: v + sum(t.get(k, 0) for t in tokens_earlier)
                                             for k, v in mine.items()}
        return seconds

    while model.running:
        round_id, stage = model.schedule[model.position]
        if progress:
            progress(model.position, total, f"round {round_id} · {stage.id}")
        model.step()
        rows = model.answer_rows()
        invalid += sum(row["invalid"] is not None for row in rows)
        lines = [line for p in model.participants for line in p.take_unsaved()]
        store.append_step(model.position, rows, lines)
        account()
        store.write_manifest({**manifest, "status": "running"})
    seconds = account()
    if progress:
        progress(total, total, "done")
    manifest["timing"] = {"seconds": round(seconds, 3), "backend_calls": batcher.calls,
                          "participants_per_second": round(len(specs) / seconds, 2)}
    store.finish(manifest)
    return RunResult(run_dir, len(specs), seconds, batcher.calls, invalid_answers=invalid,
                     cache_hits=backend.hits, cache_misses=backend.misses,
                     resumed=previous is not None)


def resolved_backend_options(loaded: LoadedScenario, kind: str,
                             overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The backend's options: the scenario's (when it names this backend) updated by overrides,
    checked against the backend's schema; problems name the scenario or the command line."""
    if kind not in BACKEND_OPTIONS:
        raise InputError([Problem("command line", None, "--backend", f"unknown backend '{kind}'; "
                                  f"available: {', '.join(BACKEND_OPTIONS)}")])
    base = dict(loaded.scenario.backend_options) if kind == loaded.scenario.backend else {}
    options = {**base, **(overrides or {})}
    problems = []
    for loc, message in backend_option_problems(kind, options):
        dotted = ".".join(map(str, loc))
        if kind != loaded.scenario.backend or (loc and loc[0] in (overrides or {})):
            problems.append(Problem("command line", None, f"--backend-option {dotted}", message))
        else:
            problems.append(Problem(str(loaded.path), None, f"backend_options.{dotted}", message))
    if problems:
        raise InputError(problems)
    return options


def resume_request(run_dir: Path) -> dict[str, Any]:
    """What the command that started a run asked for (participants, seed, policies, twins,
    backend and its options), so `--resume RUN_DIR` needs no other argument."""
    manifest = read_manifest(run_dir)
    if manifest is None and run_dir.is_dir() and any(run_dir.iterdir()) and holds_no_run(run_dir):
        # Killed before its first manifest: what it was asked is not recorded, so say how to
        # start it again (its cached answers are kept).
        holder = read_holder(run_dir)
        command = f" ({shown(holder.command, 300)})" if holder and holder.command else ""
        raise InputError([Problem(str(run_dir), None, "--resume", f"this run stopped before it "
                                  f"recorded what it was asked (no {MANIFEST}); start it again "
                                  f"with the command that started it{command}, keeping --out "
                                  f"{run_dir}: the answers it cached are kept")])
    if manifest is None:
        raise InputError([Problem(str(run_dir), None, "--resume", "not a run directory "
                                  f"(no {MANIFEST}); give the directory a run printed")])
    request = manifest.get("request")
    if not isinstance(request, dict):
        raise InputError([Problem(str(run_dir / MANIFEST), None, "request", "this run was made "
                                  "by an older version and cannot be continued")])
    try:  # a shared run directory is input: every recorded value is checked before it is used
        return RunRequest.model_validate(request).model_dump()
    except ValidationError as exc:
        raise InputError([Problem(str(run_dir / MANIFEST), None,
                                  ".".join(["request", *map(str, e["loc"])]),
                                  f"{e['msg']} (got {_brief(e.get('input'))}); the manifest was "
                                  "edited or damaged")
                          for e in exc.errors()]) from None


class RunRequest(BaseModel):
    """What a run's command line asked for, as its manifest records it (`request`)."""

    model_config = ConfigDict(extra="allow", strict=True)  # fields of newer versions pass

    participants: int | None = Field(default=None, ge=1)
    seed: int | None = Field(default=None, ge=0, lt=SEED_LIMIT)
    policies: str | None = None
    twins: str | None = None
    model: str | None = None
    backend: Literal["transformers", "vllm", "openai"] | None = None
    backend_options: dict[str, Any] = Field(default_factory=dict)


def check_run(loaded: LoadedScenario, *, participants: int | None, seed: int | None,
              twins: TwinChoice | None, backend_kind: str | None,
              backend_options: dict[str, Any] | None) -> None:
    """Every check of a run that needs no model, so a bad command line, model path or backend
    option is refused in about a second, before torch or the model loads."""
    model = loaded.scenario.model
    if model.startswith(BUILTIN_PREFIX):
        if (message := builtin_model_problem(model)) is not None:  # unknown, or its package missing
            raise InputError([Problem(str(loaded.path), None, "model", message)])
    else:
        model_directory(loaded)  # a local directory: checked for config.json, nothing loaded
    build_population(loaded, participants, loaded.scenario.seed if seed is None else seed,
                     None if twins is None else twins.ids)
    resolved_backend_options(loaded, backend_kind or loaded.scenario.backend, backend_options)


def run_fingerprint(loaded: LoadedScenario, seed: int, specs: list[Any], policies: list[Policy],
                    twins: TwinChoice | None) -> dict[str, Any]:
    """What makes two runs the same run: a resumed run must match it field by field."""
    ids = "\n".join(s.participant_id for s in specs).encode()
    return {"scenario_sha256": loaded.sha256, "model": loaded.scenario.model, "seed": seed,
            "participants": len(specs),
            "participant_ids_sha256": hashlib.sha256(ids).hexdigest(),
            "policies": [{"name": p.name, "adapter_sha256": p.adapter_sha256,
                          "demographics": p.demographics} for p in policies],
            "twins": None if twins is None else twins.source.get("source")}


def previous_run(run_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of the run already in `run_dir` (None: a new run), checked to be this run."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError([Problem(str(run_dir), None, "--out", "is a file, not a directory")])
    if not run_dir.exists() or holds_no_run(run_dir):
        return None  # new, or stopped before its manifest: its cache answers are still good
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise InputError([Problem(str(run_dir), None, "--out", "the directory exists, is not "
                                  "empty and holds no run (no manifest.json); choose another")])
    if manifest.get("status") == STARTING:
        return None  # stopped while its backend started: nothing computed, its cache is still good
    where = str(run_dir / MANIFEST)
    recorded = manifest.get("fingerprint")
    if not isinstance(recorded, dict):
        raise InputError([Problem(where, None, "fingerprint", "this run was made by an older "
                                  "version and cannot be continued; choose another --out")])
    problems = [Problem(where, None, key, f"this run has {_brief(recorded.get(key))}; "
                        f"the command asks for {_brief(value)}")
                for key, value in fingerprint.items() if recorded.get(key) != value]
    if problems:
        problems.append(Problem(where, None, "--out", "a run directory continues only the same "
                                "run (scenario file, model, seed, participants, policies); choose another"))
        raise InputError(problems)
    sessions = manifest.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(x, dict) for x in sessions):
        # list() of a string would explode it into characters, each kept as a "session"
        raise InputError([Problem(where, None, "sessions", "expected a list of session records, "
                                  f"got {_brief(sessions)}; the manifest was edited or damaged")])
    return manifest


# What a directory may hold before its run's first manifest: the response cache, a lock file, an
# interrupted manifest write, and (from versions that made them first) empty tables.
BEFORE_MANIFEST = CACHE_FILES | {LOCK_FILE, PARTS, TRANSCRIPTS, f".{MANIFEST}.tmp"}


def holds_no_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds only what a run writes before its first manifest (no answer row,
    no transcript line): a new run may start there, keeping the answers its cache holds."""
    if not {p.name for p in run_dir.iterdir()} <= BEFORE_MANIFEST:
        return False
    parts, transcripts = run_dir / PARTS, run_dir / TRANSCRIPTS
    if parts.exists() and (not parts.is_dir() or any(parts.iterdir())):
        return False
    return not transcripts.exists() or (transcripts.is_file() and transcripts.stat().st_size == 0)


def starting_manifest(loaded: LoadedScenario, seed: int, n: int, run_dir: Path,
                      request: dict[str, Any], fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The first manifest, written before the backend starts: what was asked, so a run killed
    while its model loads can be continued with --resume."""
    return {"run_id": run_dir.name, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seed": seed, "participants": n,
            "scenario": {"path": str(loaded.path.resolve()), "sha256": loaded.sha256,
                         "name": loaded.scenario.name},
            "request": request, "fingerprint": fingerprint}


def model_record(model: str, backend: Backend) -> dict[str, Any]:
    """The manifest's `model` block: name, whether it is pretrained, the backend's identity and,
    for a converted built-in model, its provenance (package, licence, source digest)."""
    record = {"name": model, "builtin_not_pretrained": (model.startswith(BUILTIN_PREFIX)
                                                        and model not in PRETRAINED_BUILTIN_MODELS),
              **backend.identity()}
    model_dir = getattr(backend, "model_dir", None)
    if model in PRETRAINED_BUILTIN_MODELS and model_dir is not None:
        from engine.embedded_model import provenance

        record["provenance"] = provenance(Path(model_dir))
    return record


def _brief(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 90 else text[:87] + "..."


def build_manifest(loaded: LoadedScenario, backend: Backend, seed: int, n: int,
                   run_dir: Path) -> dict[str, Any]:
    """Everything needed to reproduce and interpret the run (no secrets)."""
    s, human = loaded.scenario, loaded.human
    tokenizer = getattr(backend, "tokenizer", None) or getattr(getattr(backend, "chat", None),
                                                               "tokenizer", None)
    return {
        "run_id": run_dir.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "participants": n,
        "policies": ["base"],
        "scenario": {"path": str(loaded.path.resolve()), "sha256": loaded.sha256, "name": s.name,
                     "resolved": s.model_dump(mode="json", by_alias=True)},
        "reference_note": s.reference_note.strip(),
        "human_data": None if human is None else {
            "path": str(human.path.resolve()), "rows": len(human.table), "note": human.note,
            "sha256": hashlib.sha256(human.path.read_bytes()).hexdigest()},
        "model": model_record(s.model, backend),
        "prompts": {"persona": s.persona, "persona_without_demographics": s.persona_without_demographics,
                    "instructions": s.instructions, "stimulus": s.stimulus,
                    "questions": {q.id: q.text for q in s.questions},
                    "answer_instruction": ANSWER_INSTRUCTION,
                    "chat_template": getattr(tokenizer, "chat_template", None)},
        "answer_distribution": "first answer token's probability of each option label, "
                               "renormalised over the options; the answer is drawn from it "
                               "with the participant's seeded generator",
        "packages": package_versions(),
    }
