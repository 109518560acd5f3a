"""What the `run` and `finetune` commands do, once run.py has parsed their arguments: every
check that needs no model first (in about a second), then the work. run.py prints the results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.manifest import RequestRecord
from engine.finetune_settings import TrainingSettings
from engine.paths import check_output_path
from scenarios.errors import InputError, Problem

# Nothing heavy at the top (torch, transformers, mesa; not even pandas): each step imports what
# it uses, so a refused command line never waits for them (tests/test_hostile_cli.py holds this).
if TYPE_CHECKING:
    from agents.pilot import Sampling
    from engine.finetune import FinetuneResult
    from engine.policies import Policy, TwinChoice
    from engine.run_request import RunRequest
    from engine.runner import Progress, RunResult
    from scenarios.loader import LoadedScenario


def check_run_paths(out: Path | None, resume: Path | None) -> None:
    """The command line's paths, checked first, in milliseconds (argparse checked the numbers)."""
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise InputError([Problem("command line", None, "--out", "--resume RUN_DIR continues "
                                      "that directory; leave --out out")])
        check_output_path(resume, "--resume", must_exist=True)
    else:
        check_output_path(out or Path("runs"), "--out" if out else "--out (default runs/)")


@dataclass(frozen=True)
class PreparedRun:
    """A run whose request, scenario and twins passed every check that needs no model."""

    request: RunRequest  # a resumed run's: its record with the command line over it
    loaded: LoadedScenario  # with --model applied
    twins: TwinChoice | None
    record: RequestRecord  # what the manifest records as asked

    def policies(self) -> list[Policy]:
        """The policies the request names, their adapters checked against the model."""
        from engine.policies import scenario_policies

        return scenario_policies(self.loaded, self.request.policies)

    def run(self, policies: list[Policy], progress: Progress | None = None) -> RunResult:
        """Simulate (or continue) the run."""
        from engine.runner import run_scenario

        r = self.request
        return run_scenario(self.loaded, participants=r.participants, seed=r.seed, out=r.out,
                            progress=progress, policies=policies, twins=self.twins,
                            backend_kind=r.backend, backend_options=r.backend_options,
                            fresh=r.fresh, request=dict(self.record))

    def whole_population(self) -> int | None:
        """How many twins the data hold (None for a marginal population)."""
        human = self.loaded.human
        return (len(human.table) if human is not None
                and self.loaded.scenario.population.source == "twins" else None)


def prepare_run(request: RunRequest) -> PreparedRun:
    """Check a `run` request before any model loads (its paths passed check_run_paths): the
    scenario, a resumed run's record, twins, participants, model and backend options."""
    from engine.model_source import with_model
    from engine.policies import twins_from_record
    from engine.run_request import check_run, recorded_request
    from engine.scenario_check import load_checked

    loaded = load_checked(request.scenario)
    if request.resume is not None:
        request = request.resumed(recorded_request(request.resume))
    loaded = with_model(loaded, request.model)  # --model: part of the run's fingerprint
    twins = twins_from_record(loaded, request.twins) if request.twins else None
    check_run(loaded, participants=request.participants, seed=request.seed, twins=twins,
              backend_kind=request.backend, backend_options=request.backend_options)
    return PreparedRun(request, loaded, twins, request.record(loaded.scenario.model))


@dataclass(frozen=True)
class FinetuneRequest:
    """What the user asked of `finetune`."""

    scenario: Path
    out: Path
    pilot: str  # a fraction in (0, 1) or a number of participants
    sample: str  # random | balanced:COLUMN | condition:NAME=VALUE
    seed: int | None
    model: str | None
    no_demographics: bool
    settings: TrainingSettings


@dataclass(frozen=True)
class PreparedFinetune:
    """A finetune whose scenario, model, pilot size and sampling passed their checks."""

    request: FinetuneRequest
    loaded: LoadedScenario
    size: float | int
    sampling: Sampling

    def run(self, progress: Progress | None = None) -> FinetuneResult:
        """Split the pilot, train the adapter and write it with its training.json."""
        from engine.finetune import finetune

        r = self.request
        return finetune(self.loaded, pilot=self.size, sampling=self.sampling, out=r.out,
                        seed=r.seed, no_demographics=r.no_demographics, settings=r.settings,
                        progress=progress)


def prepare_finetune(request: FinetuneRequest) -> PreparedFinetune:
    """Check a `finetune` request before torch and the model load."""
    check_output_path(request.out, "--out")
    from agents.pilot import parse_pilot_size, parse_sampling
    from engine.model_source import with_model
    from engine.run_request import check_run
    from engine.scenario_check import load_checked

    loaded = with_model(load_checked(request.scenario), request.model)
    if request.model is not None:  # unknown name, missing package or directory: before torch
        check_run(loaded, participants=None, seed=request.seed, twins=None, backend_kind=None,
                  backend_options=None)
    size = parse_pilot_size(request.pilot, str(request.scenario))
    sampling = parse_sampling(request.sample, str(request.scenario))
    return PreparedFinetune(request, loaded, size, sampling)


def first_participant(run_dir: Path) -> str | None:
    """The first participant id in a run's transcripts (None when there is none to read)."""
    import json

    from contracts.run_format import TRANSCRIPTS

    try:
        with (run_dir / TRANSCRIPTS).open(encoding="utf-8") as handle:
            record = json.loads(handle.readline())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    found = record.get("participant_id") if isinstance(record, dict) else None
    return found if isinstance(found, str) else None


def next_commands(run_dir: Path, scored: bool = False) -> list[str]:
    """The commands that read a run just made: one real participant's transcript, the score,
    the browser report and the CSV export (`scored`: report.json is already written)."""
    import shlex

    where = shlex.quote(str(run_dir))
    participant = first_participant(run_dir)
    commands = ([f"python run.py show {where} --participant {shlex.quote(participant)}"]
                if participant else [])
    if not scored:
        commands.append(f"python run.py score {where}")
    return [*commands, f"python run.py report {where}", f"python run.py export {where} --csv"]
