"""Policies — the ways a twin can answer: the scenario's model (`base`) or it with a LoRA adapter.

A run names its policies (`--policies base,ft10` from the scenario's `policies:` block, or
`ft10=ADAPTER_DIR` straight from the command line). Each adapter is checked here: it must be a
peft adapter directory with whole files, and its `training.json` (written by `finetune`) must
name the very weights the scenario's model has (an adapter without one is refused: peft would
load it onto any model of the same shape). The record also says which twins were its pilot and
holdout.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.manifest import PolicyEntry, TrainingSummary
from contracts.run_format import TRAINING_RECORD
from scenarios.checks import ADAPTER_CONFIG, ADAPTER_WEIGHTS, demographics_in_persona
from scenarios.errors import InputError, Problem, shown
from scenarios.loader import LoadedScenario

BASE = "base"


@dataclass(frozen=True)
class PolicyItem:
    """One `--policies` item as typed: NAME, or NAME=ADAPTER_DIR (the directory made absolute)."""

    text: str  # the item as given, stripped (problems quote it)
    name: str
    directory: Path | None  # None: a name from the scenario's block, or 'base'
    has_equals: bool

    @property
    def recorded(self) -> str:
        """The item as the run's request records it: its directory absolute."""
        return f"{self.name}={self.directory}" if self.directory is not None else self.text


def policy_items(spec: str) -> list[PolicyItem]:
    """Every comma-separated item of a `--policies` value, empty ones included (the one parser
    of the NAME=DIR syntax: resolving policies and recording the request both read it)."""
    items = []
    for piece in spec.split(","):
        text = piece.strip()
        name, sep, directory = text.partition("=")
        path = Path(directory).expanduser().resolve() if sep and directory else None
        items.append(PolicyItem(text, name, path, bool(sep)))
    return items


def policies_record(spec: str | None) -> str | None:
    """`--policies` with every NAME=DIR's directory made absolute, for the run's request."""
    return None if spec is None else ",".join(item.recorded for item in policy_items(spec))


@dataclass(frozen=True)
class TwinsSpec:
    """A `--twins` value: `holdout:PATH` or `pilot:PATH` of a training record."""

    text: str
    which: str
    path: str  # as typed (problems quote it)

    @classmethod
    def parse(cls, text: str) -> TwinsSpec:
        """Split WHICH:PATH (the one parser of this syntax)."""
        which, _, path = text.partition(":")
        return cls(text, which, path)

    @property
    def recorded(self) -> str:
        """The value as the run's request records it: the record's path absolute."""
        if ":" not in self.text or not self.path:
            return self.text
        return f"{self.which}:{Path(self.path).expanduser().resolve()}"


def twins_record(spec: str | None) -> str | None:
    """`--twins` with its training record's path made absolute, for the run's request."""
    return None if spec is None else TwinsSpec.parse(spec).recorded


@dataclass(frozen=True)
class Policy:
    """A named policy: the base model, or it with a LoRA adapter; with or without demographics."""

    name: str
    adapter: Path | None = None
    demographics: bool = True
    adapter_sha256: str | None = None
    training: dict[str, Any] | None = None

    def manifest_entry(self) -> PolicyEntry:
        """What the run manifest records about this policy."""
        summary: TrainingSummary | None = None
        if self.training is not None:
            keys = ("created", "seed", "sampling", "pilot_size", "no_demographics", "base_model",
                    "hyperparameters", "final_loss", "seconds")
            summary = {k: self.training.get(k) for k in keys} | {
                "pilot": len(self.training.get("pilot_ids", [])),
                "holdout": len(self.training.get("holdout_ids", []))}
        return {"name": self.name, "adapter": None if self.adapter is None else str(self.adapter),
                "adapter_sha256": self.adapter_sha256, "demographics": self.demographics,
                "training": summary}


@dataclass(frozen=True)
class TwinChoice:
    """Which twins a run simulates (e.g. a training record's holdout) and where that came from."""

    ids: list[str]
    source: dict[str, Any]


def scenario_policies(loaded: LoadedScenario, names: str | None) -> list[Policy]:
    """The policies `--policies` names ('base' when none), adapters checked against the model."""
    if (names is None or names.strip() == BASE) and BASE not in loaded.scenario.policies:
        return [Policy(BASE)]  # no adapter to check: skip hashing the weights here
    from engine.model_source import model_directory
    from engine.weights import weights_digest

    return resolve_policies(loaded, names, weights_digest(model_directory(loaded)))


def resolve_policies(loaded: LoadedScenario, names: str | None,
                     weights_sha256: str) -> list[Policy]:
    """The policies a run asks for ('base' when none): checked adapters, in the order given."""
    items = [item for item in policy_items(names or BASE) if item.text]
    where = str(loaded.path)
    if not items:
        raise InputError([Problem(where, None, "--policies", "name at least one policy")])
    policies: list[Policy] = []
    for item in items:
        policy = _policy(loaded, item, weights_sha256)
        if any(p.name == policy.name for p in policies):
            raise InputError([Problem(where, None, "--policies", f"policy '{policy.name}' is "
                                      "named twice")])
        if not policy.demographics:
            require_persona_without_demographics(loaded)
        policies.append(policy)
    return policies


def _policy(loaded: LoadedScenario, item: PolicyItem, weights_sha256: str) -> Policy:
    """One --policies item: a name from the scenario's block, 'base', or NAME=ADAPTER_DIR."""
    where, block, name = str(loaded.path), loaded.scenario.policies, item.name
    if not name.isidentifier() or (item.has_equals and item.directory is None):
        raise InputError([Problem(where, None, "--policies", f"'{item.text}' is not NAME or "
                                  "NAME=ADAPTER_DIR (a name is letters, digits and _)")])
    if item.directory is not None:
        if name == BASE:
            raise InputError([Problem(where, None, "--policies", "'base' is the scenario's model "
                                      "without an adapter; give the adapter policy another name")])
        return adapter_policy(name, item.directory, None, weights_sha256)
    entry = block.get(name)
    if entry is None and name != BASE:
        known = ", ".join(dict.fromkeys([BASE, *block]))
        raise InputError([Problem(where, None, "--policies", f"unknown policy '{name}'; the "
                                  f"scenario defines: {known}; or give NAME=ADAPTER_DIR")])
    if entry is None or entry.adapter is None:
        return Policy(name, demographics=True if entry is None else entry.demographics is not False)
    path = Path(entry.adapter).expanduser()
    path = path if path.is_absolute() else loaded.resolve(entry.adapter)
    return adapter_policy(name, path, entry.demographics, weights_sha256)


def adapter_policy(name: str, directory: Path, demographics: bool | None,
                   weights_sha256: str) -> Policy:
    """A policy served by a peft adapter; refuses adapters trained on other base weights."""
    if not (directory / ADAPTER_CONFIG).is_file() or not any(
            (directory / w).is_file() for w in ADAPTER_WEIGHTS):
        raise InputError([Problem(str(directory), None, f"policy {name}", "not a peft adapter "
                                  f"directory (expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS[0]}; "
                                  "make one with `run.py finetune`)")])
    check_adapter_files(name, directory)
    if not (directory / TRAINING_RECORD).is_file():
        # Without the record nothing says which base weights the adapter was trained on, and
        # peft loads an adapter onto any model of the same shape (another checkpoint, another
        # builtin version) without a word: refused, unless the user vouches for it in a record.
        raise InputError([Problem(str(directory), None, f"policy {name}", f"no {TRAINING_RECORD}: "
                                  "nothing records which base weights this adapter was trained on "
                                  "(`run.py finetune` writes it). To vouch for an adapter trained "
                                  f"elsewhere on this scenario's very model, write {{\"base_model\": "
                                  f"{{\"weights_sha256\": \"{weights_sha256}\"}}, \"holdout_ids\": []}} "
                                  f"to {directory / TRAINING_RECORD}")])
    training = read_training_record(directory / TRAINING_RECORD)
    base_model = training.get("base_model")
    trained_on = base_model.get("weights_sha256") if isinstance(base_model, dict) else None
    if trained_on != weights_sha256:
        named = base_model.get("name") if isinstance(base_model, dict) else None
        raise InputError([Problem(str(directory / TRAINING_RECORD), None, "base_model",
                                  f"policy {name}: the adapter was trained on other base "
                                  f"weights ({_short(trained_on)}, {shown(named)}) than this "
                                  f"scenario's model has ({_short(weights_sha256)})")])
    if demographics is None:
        demographics = not training.get("no_demographics", False)
    return Policy(name, directory, demographics is not False, adapter_digest(directory), training)


def check_adapter_files(name: str, directory: Path) -> None:
    """The adapter's config is a JSON object and its safetensors weights are whole (a truncated
    or damaged file is refused here, naming it, not deep inside peft when the model loads)."""
    config = directory / ADAPTER_CONFIG
    try:
        loaded = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError([Problem(str(config), None, f"policy {name}",
                                  f"not valid JSON ({exc})")]) from None
    if not isinstance(loaded, dict):
        raise InputError([Problem(str(config), None, f"policy {name}", "expected a JSON object")])
    weights = directory / ADAPTER_WEIGHTS[0]
    if weights.is_file():
        from safetensors import SafetensorError, safe_open

        try:  # reads the header and checks it covers the whole file; loads no tensor
            with safe_open(str(weights), framework="numpy") as handle:
                handle.keys()
        except (SafetensorError, OSError) as exc:
            raise InputError([Problem(str(weights), None, f"policy {name}", "not a whole "
                                      f"safetensors file ({exc}); was it truncated? copy the "
                                      "adapter again or train it again")]) from None


def require_persona_without_demographics(loaded: LoadedScenario) -> None:
    """A persona without demographics needs `persona_without_demographics` unless the persona
    names no demographic."""
    used = demographics_in_persona(loaded.scenario)
    if loaded.scenario.persona_without_demographics is None and used:
        raise InputError([Problem(str(loaded.path), None, "persona_without_demographics",
                                  "needed to leave demographics out of the prompt: the persona "
                                  f"or instructions use {', '.join(used)}; add a persona template "
                                  "that does not")])


def read_training_record(path: Path) -> dict[str, Any]:
    """An adapter's training.json (`path` may be the adapter directory)."""
    path = path / TRAINING_RECORD if path.is_dir() else path
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError([Problem(str(path), None, "", "no training record here (expected the "
                                  f"{TRAINING_RECORD} that `run.py finetune` writes)")]) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError([Problem(str(path), None, "", f"not valid JSON: {exc}")]) from None
    if not isinstance(record, dict) or "holdout_ids" not in record:
        raise InputError([Problem(str(path), None, "", "not a training record (no holdout_ids)")])
    return record


def twins_from_record(loaded: LoadedScenario, spec: str) -> TwinChoice:
    """`holdout:PATH` or `pilot:PATH`: those twins of a training record, and what to record."""
    parsed = TwinsSpec.parse(spec)
    which, path = parsed.which, parsed.path
    if which not in ("holdout", "pilot") or not path:
        raise InputError([Problem(str(loaded.path), None, "--twins", f"'{spec}' should be "
                                  "holdout:ADAPTER_DIR/training.json (or pilot:...)")])
    record = read_training_record(Path(path))
    human = loaded.human
    if human is None:
        raise InputError([Problem(str(loaded.path), None, "--twins", "a marginal population has "
                                  "no human rows to choose twins from")])
    data_sha = hashlib.sha256(human.path.read_bytes()).hexdigest()
    if (record.get("data") or {}).get("sha256") != data_sha:
        raise InputError([Problem(path, None, "data.sha256", f"the {which} was drawn from another "
                                  f"data file than this scenario's ({human.path})")])
    ids = [str(i) for i in record[f"{which}_ids"]]
    if not ids:
        raise InputError([Problem(path, None, f"{which}_ids", f"the {which} is empty")])
    return TwinChoice(ids, {"source": which, "training_record": str(Path(path).resolve()),
                            "sampling": record.get("sampling"), "count": len(ids)})


def adapter_digest(directory: Path) -> str:
    """SHA-256 over an adapter's config and weights: pins the exact adapter in a manifest."""
    digest = hashlib.sha256()
    for name in (ADAPTER_CONFIG, *ADAPTER_WEIGHTS):
        if (directory / name).is_file():
            digest.update((directory / name).read_bytes())
    return digest.hexdigest()


def _short(digest: str | None) -> str:
    return f"weights sha256 {digest[:12]}..." if digest else "no weights hash recorded"
