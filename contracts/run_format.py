"""The run directory's format: file names, the responses table's columns, the manifest's fields.

The engine writes a run directory and `analysis` reads it; both take the names from here, so the
two cannot drift apart. Standard library only. `tests/test_run_format_contract.py` checks these
declarations against the real writers (scenarios.schema, a real run's tables).
"""

# No `from __future__ import annotations`: on Python 3.11 a TypedDict's __required_keys__ is
# right only when NotRequired is evaluated, not a string.
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NotRequired, TypedDict, get_type_hints

MANIFEST = "manifest.json"
RESPONSES = "responses.parquet"
TRANSCRIPTS = "transcripts.jsonl"
REPORT = "report.json"
HTML_REPORT = "report.html"  # `run.py report`: the report and transcripts in one page
INFERENCE = "inference.json"  # `run.py infer`'s section, carried into REPORT by `score`
PARTS = "parts"  # one parquet file per finished step, joined into RESPONSES at the end
NETWORK = "network.graphml"  # a networked scenario's graph over the participants (GraphML)
TRAINING_RECORD = "training.json"  # an adapter directory's record of its training

# Manifest status while the run has recorded what it was asked but answered nothing yet.
STARTING = "starting"

# Question types whose options are a scale, for manifests written before questions recorded
# `ordered` themselves (the one place this legacy list is named).
LEGACY_ORDERED_TYPES = frozenset({"likert", "probability_buckets"})

# A human data file's leading lines starting with this are its note, not CSV rows.
NOTE_PREFIX = "#"

# Twins of data without an id column are named ROW_ID_PREFIX + their data row ("row12"), and the
# manifest's `twin_rows.data_row` says what the numbers mean.
ROW_ID_PREFIX = "row"
DATA_ROW_MEANING = ("1-based number of the data row: the first row under the CSV header is 1; the "
                    "leading '#' note lines, the header and blank lines are not counted")


def row_of_id(participant_id: str) -> int | None:
    """The data row a twin id of ROW_ID_PREFIX form names ("row12" -> 12), else None."""
    digits = participant_id.removeprefix(ROW_ID_PREFIX)
    if digits == participant_id or not digits.isascii() or not digits.isdigit() \
            or digits.startswith("0"):
        return None
    return int(digits)


# --- responses.parquet: one row per participant x round x question ------------------------------

class ResponseWho(TypedDict):
    """The leading columns of a responses row; the participant's condition factors, then its
    demographics (one column each, named as in the scenario), follow them."""

    participant_id: str
    policy: str


class ResponseAnswer(TypedDict):
    """The columns after the participant's attributes: where the answer was given, what it was."""

    round: int
    stage: str
    question_id: str
    kind: str  # the stage's kind: "belief" or "action"
    type: str  # the question type
    options: list[str]  # option ids in presentation order
    probs: list[float]  # the backend's distribution over `options`
    answer: str | None  # the drawn option id; None when the reply could not be read
    answer_index: int
    option_mass: float
    invalid: str | None  # why the reply could not be read; None for a valid answer


def response_columns(attributes: Iterable[str] = ()) -> list[str]:
    """The responses table's columns in order, with a run's condition and demographic names."""
    return [*ResponseWho.__annotations__, *attributes, *ResponseAnswer.__annotations__]


def response_types() -> dict[str, Any]:
    """The fixed columns' Python types (str, int, float, list[str], str | None, ...) by name."""
    return {**get_type_hints(ResponseWho), **get_type_hints(ResponseAnswer)}


# Columns scoring cannot do without (the others are read when present).
SCORED_COLUMNS = ("participant_id", "round", "question_id", "answer")


# --- transcripts.jsonl: one line per message ----------------------------------------------------

class SystemParts(TypedDict):
    """What a system message was built from."""

    persona: str
    stimulus: str
    memory_rounds: int
    demographics_shown: bool


class TranscriptLine(TypedDict):
    """One message of a participant's conversation; a reply to a question adds the answer."""

    participant_id: str
    policy: str
    seq: int
    round: int
    stage: str | None
    question_id: str | None
    role: str
    content: str
    parts: NotRequired[SystemParts]  # system messages only
    options: NotRequired[list[str]]  # the rest: replies that answered a question
    probs: NotRequired[list[float] | None]
    answer: NotRequired[str | None]
    option_mass: NotRequired[float | None]
    invalid: NotRequired[str]  # only when the reply could not be read


# --- manifest.json: scenario.resolved, the part analysis reads ---------------------------------

class ResolvedOption(TypedDict):
    """An answer option; `value` is its number on a numeric scale (None for other types)."""

    id: str
    text: str
    label: str | None
    value: NotRequired[float | None]  # absent in manifests older than numeric questions


class ResolvedQuestion(TypedDict):
    """A question as resolved (default options filled in)."""

    id: str
    type: str
    text: str
    options: list[ResolvedOption]
    human_column: str | None
    ordered: NotRequired[bool]  # absent in old manifests: type in LEGACY_ORDERED_TYPES
    coding: NotRequired[str]  # "linear" when set; absent: "categorical" (unordered dummies)
    missing_codes: NotRequired[list[str]]  # absent: none beyond the population's


class ResolvedStage(TypedDict):
    """A page of a round: its kind and its questions."""

    id: str
    kind: str
    questions: list[ResolvedQuestion]


class ResolvedRound(TypedDict):
    """One round and its stimulus variables."""

    id: int
    variables: dict[str, Any]


class ResolvedFactor(TypedDict):
    """A between-subject condition factor; `column` is its human data column (None: its name)."""

    levels: list[str]
    column: str | None


class ResolvedDemographic(TypedDict):
    """A long-form demographic: its column and how its value is derived (contracts.demographics)."""

    column: str
    labels: dict[str, str] | list[str] | None
    bins: list[float] | None
    format: str | None
    missing: str | None


class ResolvedPopulation(TypedDict):
    """Who takes part: twins of data rows, or draws from marginals."""

    source: str
    data: str | None
    id_column: str | None
    # name -> data column (short form, as before) or the long form's record
    demographics: dict[str, str | ResolvedDemographic]
    marginals: dict[str, dict[str, float]]
    # Recorded only when set (older manifests and scenarios without them: absent).
    missing_codes: NotRequired[list[str]]
    exclude_missing: NotRequired[list[str]]
    weights: NotRequired[str | None]


class ResolvedContradiction(TypedDict):
    """A (belief answer, action answer) pair that contradicts."""

    belief: str
    action: str


class ResolvedCoherenceRule(TypedDict):
    """A belief question, an action question and the answer pairs that contradict; or, for a
    rule over several answers, its `name` and `when` expression (contracts/answer_rules.py)
    and none of the three."""

    belief: NotRequired[str]
    action: NotRequired[str]
    contradicts: NotRequired[list[ResolvedContradiction]]
    name: NotRequired[str]
    when: NotRequired[str]


# `in` is a keyword, so this record is spelled in the functional form.
ResolvedIndicator = TypedDict("ResolvedIndicator", {"question": str, "in": list[str],
                                                     "versus": NotRequired[list[str]]})


class ResolvedRegression(TypedDict):
    """A regression of the original study."""

    name: str
    family: str
    formula: str
    fit: NotRequired[dict[str, Any]]  # {se, maxiter, method}; absent: cluster, defaults


class ResolvedAnalysis(TypedDict):
    """The scenario's analysis block."""

    subgroups: list[str]
    indicators: dict[str, ResolvedIndicator]
    regressions: list[ResolvedRegression]


class ResolvedScenario(TypedDict):
    """The fields of `manifest.scenario.resolved` that analysis reads."""

    name: str
    reference_note: str
    population: ResolvedPopulation
    conditions: dict[str, ResolvedFactor]
    rounds: list[ResolvedRound]
    stages: list[ResolvedStage]
    coherence: list[ResolvedCoherenceRule]
    analysis: ResolvedAnalysis


def question_ordered(question: ResolvedQuestion) -> bool:
    """Whether a resolved question's options form a scale (old manifests: by its type)."""
    recorded = question.get("ordered")
    return question["type"] in LEGACY_ORDERED_TYPES if recorded is None else bool(recorded)


# --- reading --------------------------------------------------------------------------------------

class ManifestNotJSON(ValueError):
    """manifest.json is not valid JSON (the message is the parser's)."""


class ManifestNotObject(ValueError):
    """manifest.json is JSON but not an object."""


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's manifest (None when it has none); raises ManifestNotJSON or
    ManifestNotObject for a damaged one, so each room words the error its own way."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestNotJSON(f"not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ManifestNotObject("expected a JSON object")
    return manifest


def leading_note(lines: Iterable[str]) -> list[str]:
    """The note of a human data file: its leading '#' lines, without the '#' and blanks around."""
    note = []
    for line in lines:
        if not line.startswith(NOTE_PREFIX):
            break
        note.append(line[len(NOTE_PREFIX):].strip())
    return note
