"""What the user asked of a run (`RunRequest`), a resumed run's recorded request merged into it,
and every check of a request that needs no model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from agents.population import build_population
from contracts.manifest import RequestRecord
from contracts.run_format import MANIFEST
from engine.backends import backend_names, option_problems
from engine.lock import read_holder
from engine.model_source import check_model
from engine.policies import TwinChoice, policies_record, twins_record
from engine.run_directory import brief, holds_no_run
from engine.store import read_manifest
from scenarios.errors import InputError, Problem, shown
from scenarios.loader import LoadedScenario
from scenarios.schema import SEED_LIMIT

# The fields a resumed run takes from its record when the command line leaves them out.
RESUMED = ("participants", "seed", "policies", "twins", "backend", "model")


class RecordedRequest(BaseModel):
    """What a run's command line asked for, as its manifest records it (`request`)."""

    model_config = ConfigDict(extra="allow", strict=True)  # fields of newer versions pass

    participants: int | None = Field(default=None, ge=1)
    seed: int | None = Field(default=None, ge=0, lt=SEED_LIMIT)
    policies: str | None = None
    twins: str | None = None
    model: str | None = None
    backend: Any = None
    backend_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("backend")
    @classmethod
    def _registered(cls, value: Any) -> Any:
        """A registered backend's name (worded as pydantic words a choice of literals)."""
        names = backend_names()
        if value is None or (isinstance(value, str) and value in names):
            return value
        quoted = [f"'{name}'" for name in names]
        expected = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        raise PydanticCustomError("literal_error", "Input should be {expected}",
                                  {"expected": expected})


def recorded_request(run_dir: Path) -> RecordedRequest:
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
        return RecordedRequest.model_validate(request)
    except ValidationError as exc:
        raise InputError([Problem(str(run_dir / MANIFEST), None,
                                  ".".join(["request", *map(str, e["loc"])]),
                                  f"{e['msg']} (got {brief(e.get('input'))}); the manifest was "
                                  "edited or damaged")
                          for e in exc.errors()]) from None


class RunRequest(BaseModel):
    """What the user asked of `run`: the command line (paths as typed), or, with `--resume`,
    the run's recorded request with the command line's values over it."""

    model_config = ConfigDict(frozen=True)

    scenario: Path
    participants: int | None = None
    seed: int | None = None
    out: Path | None = None
    resume: Path | None = None
    fresh: bool = False
    policies: str | None = None  # NAME, NAME=ADAPTER_DIR, ... (engine/policies.py reads it)
    twins: str | None = None  # holdout:PATH or pilot:PATH
    backend: str | None = None
    backend_options: dict[str, Any] = Field(default_factory=dict)  # over the scenario's
    model: str | None = None  # --model

    def resumed(self, recorded: RecordedRequest) -> RunRequest:
        """This request continuing the run it resumes: what the command line leaves out comes
        from the record, and the recorded backend options stay unless the backend changes."""
        asked, given = recorded.model_dump(), self.model_dump()
        merged = {name: asked.get(name) if given[name] is None else given[name]
                  for name in RESUMED}
        same_backend = merged["backend"] == asked.get("backend")
        options = {**((asked.get("backend_options") or {}) if same_backend else {}),
                   **self.backend_options}
        return self.model_copy(update={**merged, "out": self.resume, "backend_options": options})

    def record(self, model: str) -> RequestRecord:
        """The manifest's `request` (paths absolute, so --resume works from any directory);
        `model` is the scenario's model after --model."""
        return {"participants": self.participants, "seed": self.seed,
                "policies": policies_record(self.policies), "twins": twins_record(self.twins),
                "backend": self.backend, "backend_options": dict(self.backend_options),
                "model": None if self.model is None else model}


def resolved_backend_options(loaded: LoadedScenario, kind: str,
                             overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The backend's options: the scenario's (when it names this backend) updated by overrides,
    checked against the backend's schema; problems name the scenario or the command line."""
    if kind not in backend_names():
        raise InputError([Problem("command line", None, "--backend", f"unknown backend '{kind}'; "
                                  f"available: {', '.join(backend_names())}")])
    base = dict(loaded.scenario.backend_options) if kind == loaded.scenario.backend else {}
    options = {**base, **(overrides or {})}
    problems = []
    for loc, message in option_problems(kind, options):
        dotted = ".".join(map(str, loc))
        if kind != loaded.scenario.backend or (loc and loc[0] in (overrides or {})):
            problems.append(Problem("command line", None, f"--backend-option {dotted}", message))
        else:
            problems.append(Problem(str(loaded.path), None, f"backend_options.{dotted}", message))
    if problems:
        raise InputError(problems)
    return options


def check_run(loaded: LoadedScenario, *, participants: int | None, seed: int | None,
              twins: TwinChoice | None, backend_kind: str | None,
              backend_options: dict[str, Any] | None) -> None:
    """Every check of a run that needs no model, so a bad command line, model path or backend
    option is refused in about a second, before torch or the model loads."""
    check_model(loaded)
    build_population(loaded, participants, loaded.scenario.seed if seed is None else seed,
                     None if twins is None else twins.ids)
    resolved_backend_options(loaded, backend_kind or loaded.scenario.backend, backend_options)
