"""One run from start to finish: population → model → backend → run store, with a manifest."""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from agents.conversation import ANSWER_INSTRUCTION
from agents.population import build_population
from engine.backends import Backend, create_backend
from engine.backends.transformers_backend import weights_digest
from engine.batcher import Batcher
from engine.model import SurveyModel
from engine.policies import BASE, Policy, TwinChoice, resolve_policies
from engine.store import RunStore
from engine.tiny_model import ensure_builtin, is_builtin
from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario

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


def model_directory(loaded: LoadedScenario) -> Path:
    """The local model directory a scenario's `model:` names (embedded models are built)."""
    model = loaded.scenario.model
    if is_builtin(model):
        try:
            return ensure_builtin(model)
        except ValueError as exc:
            raise InputError([Problem(str(loaded.path), None, "model", str(exc))]) from None
    path = Path(model).expanduser()
    path = path if path.is_absolute() else loaded.resolve(model)
    if not (path / "config.json").is_file():
        raise InputError([Problem(str(loaded.path), None, "model",
                                  f"'{model}' is neither builtin:tiny nor a local Hugging Face "
                                  f"model directory (no config.json in {path})")])
    return path


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
    return resolve_policies(loaded, names, weights_digest(model_directory(loaded)))


def run_scenario(loaded: LoadedScenario, *, participants: int | None = None,
                 seed: int | None = None, out: Path | None = None,
                 backend: Backend | None = None, progress: Progress | None = None,
                 policies: list[Policy] | None = None, twins: TwinChoice | None = None) -> RunResult:
    """Simulate the scenario's participants (each under every policy) through every round and
    stage; return the run. A given backend must already serve every policy."""
    seed = loaded.scenario.seed if seed is None else seed
    policies = policies or [Policy(BASE)]
    run_dir = out or default_run_dir(loaded, seed)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise InputError([Problem(str(run_dir), None, "--out",
                                  "the run directory exists and is not empty; choose another")])
    specs = build_population(loaded, participants, seed, None if twins is None else twins.ids)
    if backend is None:
        adapters = {p.name: p.adapter for p in policies}
        backend = create_backend(loaded.scenario.backend, model_directory(loaded), adapters=adapters)
    batcher = Batcher(backend)
    model = SurveyModel(loaded.scenario, specs, batcher, seed, policies)
    store = RunStore(run_dir)
    manifest = build_manifest(loaded, backend, seed, len(specs), run_dir)
    manifest["policies"] = [p.manifest_entry() for p in policies]
    if twins is not None:
        manifest["twins"] = {**twins.source, "ids": [s.participant_id for s in specs]}
    store.start(manifest)
    started = time.perf_counter()
    total = len(model.schedule)
    while model.running:
        round_id, stage = model.schedule[model.position]
        if progress:
            progress(model.position, total, f"round {round_id} · {stage.id}")
        model.step()
        lines = [line for p in model.participants for line in p.take_unsaved()]
        store.append_step(model.position, model.answer_rows(), lines)
    seconds = time.perf_counter() - started
    if progress:
        progress(total, total, "done")
    manifest["timing"] = {"seconds": round(seconds, 3), "backend_calls": batcher.calls,
                          "participants_per_second": round(len(specs) / seconds, 2)}
    store.finish(manifest)
    return RunResult(run_dir, len(specs), seconds, batcher.calls)


def build_manifest(loaded: LoadedScenario, backend: Backend, seed: int, n: int,
                   run_dir: Path) -> dict[str, Any]:
    """Everything needed to reproduce and interpret the run (no secrets)."""
    s, human = loaded.scenario, loaded.human
    tokenizer = getattr(backend, "tokenizer", None)
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
        "model": {"name": s.model, "builtin_not_pretrained": is_builtin(s.model),
                  **backend.identity()},
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
