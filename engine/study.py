"""The paper's study as one command: train every variant's policy, simulate the evaluation holdout
under base and every variant in one run, and hand the run to scoring (run.py wires analysis in).

One seeded evaluation holdout is drawn first; each variant's pilot is drawn from the rows left,
so every policy is judged on the same twins and no twin is in any pilot. A study directory holds:

    DIR/adapters/NAME/      one peft adapter and its training.json per variant
    DIR/run/                the run (every policy on the holdout twins) and its report.json
    DIR/study.json, .md     the paper's table (deterministic: a resumed study writes the same)
    DIR/study-manifest.json what ran when, how long, with which command (not deterministic)

Every step is resumable: an adapter with a complete training.json that matches the plan is
reused (one that does not match is an error), an adapter without one is trained again from
scratch, and the run continues from its response cache. This file plans the study (everything
checked before a model loads); engine/study_session.py carries it out in its directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.pilot import PilotSplit, draw_holdout, parse_sampling, split_pilot_from_pool
from engine.finetune_settings import TrainingSettings
from engine.model_source import with_model
from engine.policies import TwinChoice
from engine.run_request import check_run
from scenarios.errors import InputError, Problem, shown
from scenarios.loader import LoadedScenario, YamlLocator, field_name
from scenarios.schema import BUILTIN_PREFIX, DEFAULT_GRID, Study
from scenarios.study_checks import study_model_problem

STUDY_JSON, STUDY_MD, STUDY_MANIFEST = "study.json", "study.md", "study-manifest.json"
ADAPTERS, RUN = "adapters", "run"


@dataclass(frozen=True)
class VariantPlan:
    """One variant: its pilot (drawn outside the holdout), settings and where it is written."""

    name: str
    split: PilotSplit
    demographics: bool
    settings: TrainingSettings


@dataclass(frozen=True)
class StudyPlan:
    """Everything a study will do, checked before any model loads."""

    loaded: LoadedScenario  # with the study's model in `model:`
    grid: str
    seed: int
    study: Study  # the grid's settings
    holdout: list[str]
    participants: int | None
    backend: str | None
    variants: list[VariantPlan] = field(default_factory=list)

    def fingerprint(self) -> dict[str, Any]:
        """What makes a study directory this study: a resumed study must match it."""
        return {"scenario_sha256": self.loaded.sha256, "grid": self.grid, "seed": self.seed,
                "model": self.loaded.scenario.model, "participants": self.participants,
                "holdout_sha256": ids_digest(self.holdout), "backend": self.backend,
                "backend_options": self.study.backend_options,
                "variants": [v.name for v in self.variants]}


def plan_study(loaded: LoadedScenario, *, grid: str | None, seed: int | None, model: str | None,
               participants: int | None, backend: str | None) -> StudyPlan:
    """Draw the holdout and every pilot and check everything a study needs but a model; problems
    name the scenario file, line and field (or the command line's flag)."""
    where = str(loaded.path)
    if loaded.scenario.study is None:
        raise InputError([Problem(where, None, "study", "the scenario has no study: block (see "
                                  "README, 'The paper's study')")])
    grids = loaded.scenario.study.grids
    name = grid or DEFAULT_GRID
    if name != DEFAULT_GRID and name not in grids:
        raise InputError([Problem("command line", None, "--grid", f"unknown grid '{shown(name)}'; "
                                  "the study defines: " + ", ".join([DEFAULT_GRID, *grids]))])
    study = loaded.scenario.study.grid(name)
    locate = _Locations(loaded, name)
    loaded = _with_study_model(loaded, study, model, locate)
    seed = loaded.scenario.seed if seed is None else seed
    with locate.remapped("holdout"):
        holdout = draw_holdout(loaded, study.holdout, seed)
    participants = participants if participants is not None else study.participants
    if participants is not None and participants > len(holdout):
        raise InputError([Problem("command line", None, "--participants", f"{participants} "
                                  f"twins asked of a holdout of {len(holdout)}")])
    variants = []
    for i, variant in enumerate(study.variants):
        sampling = parse_sampling(variant.sample, where)  # the schema checked its syntax
        key = int.from_bytes(hashlib.sha256(f"{sampling}|{variant.pilot!r}".encode()).digest()[:8])
        with locate.remapped(f"variants[{i}].pilot"):
            split = split_pilot_from_pool(loaded, variant.pilot, sampling, seed, holdout, key)
        overrides = study.training.merged(variant.training).model_dump(exclude_none=True)
        if "target_modules" in overrides:
            overrides["target_modules"] = tuple(overrides["target_modules"])
        settings = TrainingSettings(**overrides)
        variants.append(VariantPlan(variant.name, split, variant.demographics, settings))
    twins = TwinChoice(holdout, {"source": "holdout"})
    check_run(loaded, participants=participants, seed=seed, twins=twins, backend_kind=backend,
              backend_options=study.backend_options)
    return StudyPlan(loaded, name, seed, study, holdout, participants, backend, variants)


def default_study_dir(plan: StudyPlan) -> Path:
    """runs/study-NAME-GRID-SEED: the same command continues the same study."""
    return Path("runs") / f"study-{plan.loaded.scenario.name}-{plan.grid}-{plan.seed}"


def prepare_study(scenario: Path, *, out: Path | None, grid: str | None, seed: int | None,
                  model: str | None, participants: int | None,
                  backend: str | None) -> tuple[StudyPlan, Path]:
    """The study's plan and directory, checked before any model loads (`out` None: the default
    directory, which the same command finds again)."""
    from engine.paths import check_output_path
    from engine.scenario_check import load_checked

    if out is not None:
        check_output_path(out, "--out")
    plan = plan_study(load_checked(scenario), grid=grid, seed=seed, model=model,
                      participants=participants, backend=backend)
    directory = out or default_study_dir(plan)
    check_output_path(directory, "--out" if out else "--out (default runs/...)")
    return plan, directory


class _Locations:
    """Lines of the study block's fields, for problems found once the holdout is drawn."""

    def __init__(self, loaded: LoadedScenario, grid: str) -> None:
        self.file = str(loaded.path)
        self.locator = YamlLocator(yaml.compose(loaded.path.read_text(encoding="utf-8"),
                                                Loader=yaml.SafeLoader))
        study = loaded.scenario.study
        self.grid = None if grid == DEFAULT_GRID or study is None else study.grids[grid]
        self.grid_name = grid

    def loc(self, name: str) -> tuple[Any, ...]:
        """('study', ...) or ('study', 'grids', GRID, ...): wherever this grid's value is written."""
        head = name.split("[")[0].split(".")[0]
        grid_sets = self.grid is not None and getattr(self.grid, head) is not None
        parts: list[Any] = []
        for piece in name.replace("]", "").replace("[", ".").split("."):
            parts.append(int(piece) if piece.isdigit() else piece)
        prefix = ("study", "grids", self.grid_name) if grid_sets else ("study",)
        return (*prefix, *parts)

    def problem(self, name: str, message: str) -> Problem:
        loc = self.loc(name)
        return Problem(self.file, self.locator.line(loc), field_name(loc), message)

    @contextmanager
    def remapped(self, name: str) -> Iterator[None]:
        """Problems raised inside are placed at this field of the study block."""
        try:
            yield
        except InputError as exc:
            raise InputError([self.problem(name, p.message) for p in exc.problems]) from None


def _with_study_model(loaded: LoadedScenario, study: Study, model: str | None,
                      locate: _Locations) -> LoadedScenario:
    """The scenario with the study's base model: --model, else the study's, else the scenario's."""
    if model is not None:
        problem = study_model_problem(loaded, model if model.startswith(BUILTIN_PREFIX)
                                 else str(Path(model).expanduser().resolve()))
        if problem:
            raise InputError([Problem("command line", None, "--model", problem)])
        return with_model(loaded, model)
    if study.model is None:
        return loaded
    problem = study_model_problem(loaded, study.model)
    if problem:
        raise InputError([locate.problem("model", problem)])
    if study.model.startswith(BUILTIN_PREFIX):
        return with_model(loaded, study.model)
    return with_model(loaded, str(loaded.resolve(str(Path(study.model).expanduser()))))


def ids_digest(ids: list[str]) -> str:
    """SHA-256 of a list of twin ids, one a line."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def brief(value: Any) -> str:
    """A value as JSON of at most 90 characters (for problems)."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 90 else text[:87] + "..."
