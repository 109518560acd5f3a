"""The run manifest's records, built from a run's plan and its backend (contracts/manifest.py)."""

from __future__ import annotations

import hashlib
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from agents.conversation import ANSWER_INSTRUCTION
from agents.population import twin_rows_record
from contracts.manifest import HumanData, Manifest, ModelRecord, Prompts, StartingManifest
from engine.backends.base import Backend
from engine.run_plan import RunPlan
from scenarios.schema import BUILTIN_PREFIX, PRETRAINED_BUILTIN_MODELS

PACKAGES = ("survey-twins", "torch", "transformers", "tokenizers", "peft", "mesa", "numpy",
            "pandas", "pyarrow", "scipy", "statsmodels", "pydantic", "jinja2", "pyyaml")

ANSWER_DISTRIBUTION = ("first answer token's probability of each option label, renormalised "
                       "over the options; the answer is drawn from it with the participant's "
                       "seeded generator")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def starting_manifest(plan: RunPlan, run_dir: Path) -> StartingManifest:
    """The first manifest, written before the backend starts: what was asked, so a run killed
    while its model loads can be continued with --resume."""
    loaded = plan.loaded
    return {"run_id": run_dir.name, "created": _now(), "seed": plan.seed,
            "participants": len(plan.specs),
            "scenario": {"path": str(loaded.path.resolve()), "sha256": loaded.sha256,
                         "name": loaded.scenario.name},
            "request": plan.request,
            "fingerprint": plan.fingerprint()}


def model_record(model: str, backend: Backend) -> ModelRecord:
    """The manifest's `model` block: name, whether it is pretrained, the backend's identity and,
    for a converted built-in model, its provenance (package, licence, source digest)."""
    record: ModelRecord = {"name": model, "builtin_not_pretrained": (
        model.startswith(BUILTIN_PREFIX) and model not in PRETRAINED_BUILTIN_MODELS),
        **backend.identity()}  # each backend's own keys
    if model in PRETRAINED_BUILTIN_MODELS and backend.model_dir is not None:
        from engine.embedded_model import provenance

        record["provenance"] = provenance(Path(backend.model_dir))
    return record


def build_manifest(plan: RunPlan, backend: Backend, run_dir: Path) -> Manifest:
    """Everything needed to reproduce and interpret the run (no secrets), up to its sessions."""
    loaded = plan.loaded
    s, human = loaded.scenario, loaded.human
    human_data: HumanData | None = None if human is None else {
        "path": str(human.path.resolve()), "rows": len(human.table), "note": human.note,
        "sha256": hashlib.sha256(human.path.read_bytes()).hexdigest()}
    prompts: Prompts = {
        "persona": s.persona, "persona_without_demographics": s.persona_without_demographics,
        "instructions": s.instructions, "stimulus": s.stimulus,
        "questions": {q.id: q.text for q in s.questions},
        "answer_instruction": ANSWER_INSTRUCTION,
        "chat_template": None if backend.chat is None else backend.chat.tokenizer.chat_template}
    manifest: Manifest = {  # sessions follow in RunDirectory
        "run_id": run_dir.name, "created": _now(), "seed": plan.seed,
        "participants": len(plan.specs),
        "policies": [p.manifest_entry() for p in plan.policies],
        "scenario": {"path": str(loaded.path.resolve()), "sha256": loaded.sha256, "name": s.name,
                     "resolved": s.model_dump(mode="json", by_alias=True)},
        "reference_note": s.reference_note.strip(), "human_data": human_data,
        "model": model_record(s.model, backend), "prompts": prompts,
        "answer_distribution": ANSWER_DISTRIBUTION, "packages": package_versions()}
    if plan.twins is not None:
        manifest["twins"] = {**plan.twins.source,
                             "ids": [spec.participant_id for spec in plan.specs]}
    if (rows := twin_rows_record(loaded, plan.specs)) is not None:  # scoring pairs twins by rows
        manifest["twin_rows"] = rows
    manifest["backend"] = {"kind": backend.kind, "options": plan.options}
    manifest["request"] = plan.request
    manifest["fingerprint"] = plan.fingerprint()
    return manifest
