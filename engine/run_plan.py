"""What one run will do, resolved from its request: the participants, policies, backend and seed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.population import ParticipantSpec
from contracts.manifest import Fingerprint, RequestRecord
from engine.policies import Policy, TwinChoice
from scenarios.loader import LoadedScenario


@dataclass(frozen=True)
class RunPlan:
    """A run, settled before anything is written: who takes part, under which policies, answered
    by which backend with which (validated) options."""

    loaded: LoadedScenario
    specs: list[ParticipantSpec]
    seed: int
    policies: list[Policy]
    twins: TwinChoice | None
    kind: str  # the backend's registry name
    options: dict[str, Any]
    fresh: bool = False  # read nothing from the response cache
    request: RequestRecord | dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> Fingerprint:
        """What makes two runs the same run: a resumed run must match it field by field."""
        ids = "\n".join(s.participant_id for s in self.specs).encode()
        return {"scenario_sha256": self.loaded.sha256, "model": self.loaded.scenario.model,
                "seed": self.seed, "participants": len(self.specs),
                "participant_ids_sha256": hashlib.sha256(ids).hexdigest(),
                "policies": [{"name": p.name, "adapter_sha256": p.adapter_sha256,
                              "demographics": p.demographics} for p in self.policies],
                "twins": None if self.twins is None else self.twins.source.get("source")}


def default_run_dir(loaded: LoadedScenario, seed: int) -> Path:
    """runs/<scenario>-<UTC time>-s<seed> under the working directory."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{loaded.scenario.name}-{stamp}-s{seed}"
