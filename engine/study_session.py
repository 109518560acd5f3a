"""A study's directory, one invocation at a time: train every variant (or reuse its adapter),
simulate the holdout under base and every variant in one run, and record each step with its
time in study-manifest.json (the plan is engine/study.py's)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.run_format import REPORT, TRAINING_RECORD
from engine.finetune_settings import TrainingSettings
from engine.lock import hold_directory
from engine.policies import ADAPTER_WEIGHTS, BASE, Policy, adapter_policy
from engine.runner import Progress
from engine.study import ADAPTERS, RUN, STUDY_MANIFEST, StudyPlan, VariantPlan, brief, ids_digest
from scenarios.errors import InputError, Problem
from scenarios.schema import BUILTIN_PREFIX


@contextmanager
def study_directory(plan: StudyPlan, out: Path) -> Iterator[StudySession]:
    """Hold the study directory's lock for the body; the session trains, runs and finishes."""
    with hold_directory(out, purpose="study", field="--out",
                        advice="wait for it or choose another --out"):
        session = StudySession(plan, Path(out))
        session.begin()
        yield session


class StudySession:
    """One invocation of a study in its (locked) directory."""

    def __init__(self, plan: StudyPlan, out: Path) -> None:
        self.plan, self.out = plan, out
        self.manifest: dict[str, Any] = {}
        self.session: dict[str, Any] = {}
        self.records: list[dict[str, Any]] = []
        self.policies: list[Policy] = []
        self._weights: str | None = None

    def begin(self) -> None:
        """Check that the directory is new or holds this very study; record this session."""
        path = self.out / STUDY_MANIFEST
        fingerprint = self.plan.fingerprint()
        if path.is_file():
            try:
                self.manifest = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError([Problem(str(path), None, "", f"not valid JSON ({exc}); the "
                                          "manifest was damaged: choose another --out")]) from None
            recorded = self.manifest.get("plan") if isinstance(self.manifest, dict) else None
            recorded = recorded if isinstance(recorded, dict) else {}
            problems = [Problem(str(path), None, f"plan.{key}", f"this study directory holds "
                                f"{brief(recorded.get(key))}; the command asks for {brief(value)}")
                        for key, value in fingerprint.items() if recorded.get(key) != value]
            if problems:
                raise InputError([*problems, Problem(str(self.out), None, "--out", "a study "
                                 "directory continues only the same study; choose another")])
        elif any(p.name != ".lock" for p in self.out.iterdir()):
            raise InputError([Problem(str(self.out), None, "--out", "the directory exists, is not "
                                      f"empty and holds no study (no {STUDY_MANIFEST}); choose "
                                      "another")])
        sessions = list(self.manifest.get("sessions", [])) if self.manifest else []
        self.session = {"started": _now(), "steps": {}}
        self.manifest = {"status": "running", "plan": fingerprint, "sessions": [*sessions,
                                                                                self.session]}
        self._write_manifest()

    def weights_sha256(self) -> str:
        """The base model's weights digest (adapters must have been trained on these weights)."""
        if self._weights is None:
            from engine.model_source import model_directory
            from engine.weights import weights_digest

            self._weights = weights_digest(model_directory(self.plan.loaded))
        return self._weights

    def train(self, progress: Progress | None = None) -> list[dict[str, Any]]:
        """Each variant's adapter: reused when its training.json matches, else trained."""
        from engine.finetune import finetune

        loaded, human = self.plan.loaded, self.plan.loaded.human
        assert human is not None
        data_sha = hashlib.sha256(human.path.read_bytes()).hexdigest()
        self.records, self.policies = [], [Policy(BASE)]
        for variant in self.plan.variants:
            directory = self.out / ADAPTERS / variant.name
            started = time.perf_counter()
            record = _complete_record(directory)
            reused = record is not None
            if record is None:
                if directory.exists():  # a training killed before its training.json: start over
                    shutil.rmtree(directory)
                label = _labelled(progress, f"train {variant.name}")
                finetune(loaded, pilot=variant.split.size, sampling=variant.split.sampling,
                         out=directory, seed=self.plan.seed, no_demographics=not variant.demographics,
                         settings=variant.settings, progress=label, split=variant.split)
                record = _complete_record(directory)
                assert record is not None, "finetune writes training.json last"
            else:
                _check_reused(directory, record, variant, self.plan.seed, self.weights_sha256(),
                              data_sha)
            policy = adapter_policy(variant.name, directory, variant.demographics,
                                    self.weights_sha256())
            self.policies.append(policy)
            self.records.append(_variant_record(variant, record, policy))
            self._step(f"train {variant.name}", started, reused=reused)
        return self.records

    def simulate(self, progress: Progress | None = None) -> Path:
        """One run: the holdout twins under base and every variant (continued from its cache)."""
        from engine.policies import twins_from_record
        from engine.runner import run_scenario

        first = self.out / ADAPTERS / self.plan.variants[0].name / TRAINING_RECORD
        spec = f"holdout:{first.resolve()}"
        twins = twins_from_record(self.plan.loaded, spec)
        assert twins.ids == self.plan.holdout, "every adapter's record holds the study's holdout"
        scenario_model = self.plan.loaded.scenario.model
        request = {"participants": self.plan.participants, "seed": self.plan.seed,
                   "policies": ",".join([BASE, *(f"{p.name}={p.adapter}" for p in self.policies[1:])]),
                   "twins": spec, "model": scenario_model, "backend": self.plan.backend,
                   "backend_options": self.plan.study.backend_options}
        started = time.perf_counter()
        result = run_scenario(self.plan.loaded, participants=self.plan.participants,
                              seed=self.plan.seed, out=self.out / RUN, progress=progress,
                              policies=self.policies, twins=twins, backend_kind=self.plan.backend,
                              backend_options=self.plan.study.backend_options, request=request)
        self._step("run", started, participants=result.participants,
                   cache_hits=result.cache_hits, cache_misses=result.cache_misses,
                   already_complete=result.already_complete,
                   invalid_answers=result.invalid_answers)
        return result.run_dir

    def record(self) -> dict[str, Any]:
        """The deterministic part of study.json (no time, no absolute path)."""
        plan, human = self.plan, self.plan.loaded.human
        assert human is not None
        model = plan.loaded.scenario.model
        return {
            "scenario": {"name": plan.loaded.scenario.name, "sha256": plan.loaded.sha256},
            "data": {"file": human.path.name, "rows": len(human.table),
                     "sha256": hashlib.sha256(human.path.read_bytes()).hexdigest()},
            "grid": plan.grid, "seed": plan.seed,
            "model": {"name": model if model.startswith(BUILTIN_PREFIX) else Path(model).name,
                      "weights_sha256": self.weights_sha256(),
                      "builtin_not_pretrained": model == "builtin:tiny"},
            "holdout": {"size": plan.study.holdout, "twins": len(plan.holdout),
                        "ids_sha256": ids_digest(plan.holdout),
                        "simulated": plan.participants or len(plan.holdout)},
            "variants": self.records,
            "run": RUN, "report": f"{RUN}/{REPORT}",
        }

    @contextmanager
    def scoring(self, run_dir: Path) -> Iterator[None]:
        """Hold the run directory for scoring (report.json has one writer, and a run still being
        written is not scored); the body's time is recorded as the step 'score'."""
        started = time.perf_counter()
        with hold_directory(run_dir, purpose="score", field=REPORT, create=False,
                            advice="wait for it, then run the study again"):
            yield
        self._step("score", started)

    def finish(self) -> None:
        """Mark the study complete."""
        self.session["finished"] = _now()
        self.manifest["status"] = "complete"
        self._write_manifest()

    def _step(self, name: str, started: float, **extra: Any) -> None:
        self.session["steps"][name] = {"seconds": round(time.perf_counter() - started, 3), **extra}
        self._write_manifest()

    def _write_manifest(self) -> None:
        from engine.lock import _command
        from engine.run_manifest import package_versions

        self.manifest.setdefault("command", _command())
        self.manifest.setdefault("packages", package_versions())
        write_json(self.out / STUDY_MANIFEST, self.manifest)


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write JSON atomically (a reader, or a kill, never leaves half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _complete_record(directory: Path) -> dict[str, Any] | None:
    """The adapter's training.json when it is whole (a kill while writing it leaves it broken)."""
    try:
        record = json.loads((directory / TRAINING_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "holdout_ids" in record else None


def _check_reused(directory: Path, record: dict[str, Any], variant: VariantPlan, seed: int,
                  weights: str, data_sha: str) -> None:
    """A reused adapter must have been trained exactly as this study would train it."""
    hyper = {k: v for k, v in (record.get("hyperparameters") or {}).items()
             if k in TrainingSettings.__dataclass_fields__}
    expected = {"seed": seed, "sampling": str(variant.split.sampling),
                "pilot_size": variant.split.size, "no_demographics": not variant.demographics,
                "hyperparameters": {**asdict(variant.settings),
                                    "target_modules": list(variant.settings.target_modules)},
                "pilot_ids": variant.split.pilot, "holdout_ids": variant.split.holdout,
                "base_model.weights_sha256": weights, "data.sha256": data_sha}
    found = {**record, "hyperparameters": hyper,
             "base_model.weights_sha256": (record.get("base_model") or {}).get("weights_sha256"),
             "data.sha256": (record.get("data") or {}).get("sha256")}
    path = directory / TRAINING_RECORD
    problems = [Problem(str(path), None, key, f"the adapter was trained with {brief(found.get(key))}; "
                        f"this study asks for {brief(value)}")
                for key, value in expected.items() if found.get(key) != value]
    if problems:
        raise InputError([*problems, Problem(str(directory), None, f"variant {variant.name}",
                                             "this adapter belongs to another study; choose "
                                             "another --out (or delete the adapter to retrain it)")])


def _variant_record(variant: VariantPlan, record: dict[str, Any], policy: Policy) -> dict[str, Any]:
    return {"name": variant.name, "pilot": variant.split.size,
            "sample": str(variant.split.sampling), "demographics": variant.demographics,
            "pilot_twins": len(variant.split.pilot),
            "pilot_ids_sha256": ids_digest(variant.split.pilot),
            "pilot_note": variant.split.note, "examples": record.get("examples"),
            "final_loss": record.get("final_loss"),
            # The weights alone: peft writes target_modules from a set, in an order that varies
            # with Python's hash seed, so the config's bytes differ between identical trainings.
            "adapter_weights_sha256": _file_digest(policy.adapter, ADAPTER_WEIGHTS[0]),
            "adapter": f"{ADAPTERS}/{variant.name}",
            "training": {**asdict(variant.settings),
                         "target_modules": list(variant.settings.target_modules)}}


def _file_digest(directory: Path | None, name: str) -> str | None:
    path = None if directory is None else directory / name
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.is_file() else None


def _labelled(progress: Progress | None, prefix: str) -> Progress | None:
    if progress is None:
        return None
    return lambda done, total, label: progress(done, total, f"{prefix} · {label}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
