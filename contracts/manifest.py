"""The run manifest's fields: what `manifest.json` holds at the top level and in each record.

The engine builds the manifest as these types and `analysis` reads through them. Standard
library only. Keys are listed in the order the engine writes them (JSON keeps that order).
`scenario.resolved` is described in contracts.run_format (`ResolvedScenario`).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from contracts.run_format import ResolvedScenario

# What a manifest says about its run: recorded before the backend starts, while steps are being
# written, and once the tables are joined and checked.
Status = Literal["starting", "running", "complete"]


class TrainingSummary(TypedDict):
    """A finetuned policy's training record, in brief (`training.json` holds the whole)."""

    created: Any
    seed: Any
    sampling: Any
    pilot_size: Any
    no_demographics: Any
    base_model: Any
    hyperparameters: Any
    final_loss: Any
    seconds: Any
    pilot: int  # twins in the pilot
    holdout: int  # twins in its holdout


class PolicyEntry(TypedDict):
    """One policy of the run: the base model, or it with a LoRA adapter."""

    name: str
    adapter: str | None
    adapter_sha256: str | None
    demographics: bool
    training: TrainingSummary | None


class ScenarioRecord(TypedDict):
    """The scenario file the run read; `resolved` is the validated scenario (defaults filled)."""

    path: str
    sha256: str
    name: str
    resolved: NotRequired[ResolvedScenario]  # absent from a 'starting' manifest


class HumanData(TypedDict):
    """The human (or reference) data file the scenario names."""

    path: str
    rows: int
    note: str
    sha256: str


class ModelRecord(TypedDict):
    """The model: its name, whether it is pretrained, then the backend's `identity()` (backend,
    model_dir, weights_sha256, dtype, adapters, ...: each backend's own keys), and for a
    converted built-in model its provenance."""

    name: str
    builtin_not_pretrained: bool
    backend: NotRequired[str]
    model_dir: NotRequired[str]
    weights_sha256: NotRequired[str]
    adapters: NotRequired[dict[str, Any]]
    provenance: NotRequired[dict[str, Any]]


class Prompts(TypedDict):
    """The prompt templates and fixed texts every conversation is built from."""

    persona: str
    persona_without_demographics: str | None
    instructions: str
    stimulus: str
    questions: dict[str, str]  # question id -> text
    answer_instruction: str
    chat_template: str | None


class TwinsRecord(TypedDict):
    """Which twins were simulated (e.g. a training record's holdout) and where that came from."""

    source: str  # "holdout" or "pilot"
    training_record: NotRequired[str]
    sampling: NotRequired[Any]
    count: NotRequired[int]
    ids: list[str]


class TwinRows(TypedDict):
    """For each twin, the 1-based human data row it is the twin of (scoring pairs them)."""

    id_column: str | None
    data_row: str  # what the row numbers mean
    rows: dict[str, int]


class BackendRecord(TypedDict):
    """The backend that answered and its options; transformers adds its prompt tokens."""

    kind: str
    options: dict[str, Any]
    tokens: NotRequired[dict[str, int]]  # submitted and computed, over every session


class RequestRecord(TypedDict):
    """What the command line asked (paths absolute), so `--resume RUN_DIR` needs nothing else."""

    participants: int | None
    seed: int | None
    policies: str | None
    twins: str | None
    backend: str | None
    backend_options: dict[str, Any]
    model: str | None


class FingerprintPolicy(TypedDict):
    """A policy as far as it makes the run this run."""

    name: str
    adapter_sha256: str | None
    demographics: bool


class Fingerprint(TypedDict):
    """What makes two runs the same run: a resumed run must match it field by field."""

    scenario_sha256: str
    model: str
    seed: int
    participants: int
    participant_ids_sha256: str
    policies: list[FingerprintPolicy]
    twins: str | None


class CacheStats(TypedDict):
    """The response cache's counters."""

    read: bool
    hits: int
    misses: int
    inner_calls: int
    invalid_not_stored: int


class CacheRecord(TypedDict):
    """The run's response cache file and its counters (the `CacheStats` keys follow `file`)."""

    file: str
    read: bool
    hits: int
    misses: int
    inner_calls: int
    invalid_not_stored: int


class Session(TypedDict):
    """One invocation that worked on the run (a resumed run has several)."""

    started: str
    resumed: bool
    cache_read: bool
    seconds: NotRequired[float]
    backend_calls: NotRequired[int]
    cache: NotRequired[CacheStats]
    invalid_answers: NotRequired[int]
    endpoint: NotRequired[dict[str, Any]]  # openai: requests, retries, invalid, failed, reasons
    tokens: NotRequired[dict[str, int]]  # transformers: this session's prompt tokens


class Timing(TypedDict):
    """The finishing session's time and calls."""

    seconds: float
    backend_calls: int
    participants_per_second: float


class TableRecord(TypedDict):
    """What a complete run's table was when its finish wrote it."""

    rows: NotRequired[int]  # responses.parquet
    lines: NotRequired[int]  # transcripts.jsonl
    sha256: str


class StartingManifest(TypedDict):
    """The first manifest, written before the backend starts."""

    run_id: str
    created: str
    seed: int
    participants: int
    scenario: ScenarioRecord
    request: RequestRecord
    fingerprint: Fingerprint
    status: NotRequired[Status]


class NetworkRecord(TypedDict):
    """A networked run's graph: its file in the run directory and what it holds."""

    file: str
    generator: str
    nodes: int
    edges: int
    sha256: str  # of the GraphML file
    networkx: str  # the generators' version: another version may draw another graph


class Manifest(TypedDict):
    """Everything needed to reproduce and interpret a run (no secrets)."""

    run_id: str
    created: str
    seed: int
    participants: int
    policies: list[PolicyEntry]
    scenario: ScenarioRecord
    reference_note: str
    human_data: HumanData | None
    model: ModelRecord
    prompts: Prompts
    answer_distribution: str
    packages: dict[str, str]
    twins: NotRequired[TwinsRecord]
    twin_rows: NotRequired[TwinRows]
    network: NotRequired[NetworkRecord]
    backend: BackendRecord
    request: RequestRecord
    fingerprint: Fingerprint
    cache: NotRequired[CacheRecord]
    invalid_answers: NotRequired[int]
    sessions: list[Session]
    endpoint: NotRequired[dict[str, Any]]  # openai: the counters of the latest session
    timing: NotRequired[Timing]
    tables: NotRequired[dict[str, TableRecord]]  # file name -> what finish wrote
    status: NotRequired[Status]
