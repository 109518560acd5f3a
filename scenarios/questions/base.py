"""What every question type shares: its schema fields, how it is rendered, asked, drawn and read.

A type is a subclass of `Question` in a file of this package whose `type` field is a one-value
`Literal`; defining it registers it (`QUESTION_TYPES`). `Question` itself validates a question
by its `type`, so a list of `Question` in a section holds instances of the right subclasses.
"""

from __future__ import annotations

import math
import re
import string
import typing
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts.option_ids import numerically_equal, option_id_problem, option_index
from scenarios.errors import shown

if TYPE_CHECKING:  # pandas loads in ~0.3 s: only data checks need it, at run time
    import pandas as pd

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
LETTERS = string.ascii_uppercase
# The last line of a choice question's message: the model answers with one option label.
ANSWER_INSTRUCTION = "Answer with the letter of one option."

QUESTION_TYPES: dict[str, type[Question]] = {}


def _as_text(value: Any) -> Any:
    """An option id or code written as a YAML number is its text (7 -> "7", 7.0 -> "7.0");
    a YAML boolean (an unquoted yes, no, on, off, true, false) is refused with a hint."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "boolean_id", "got the boolean {value}: YAML reads unquoted yes, no, on, off, true and "
            "false as booleans; quote it (\"yes\", \"no\") to use it as an answer", {"value": value})
    return str(value) if isinstance(value, int | float) else value


def _option_id(value: str) -> str:
    problem = option_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# What names an answer: 1-64 printable characters without whitespace ("yes", "7", "-2", "7.0").
OptionId = Annotated[str, BeforeValidator(_as_text), AfterValidator(_option_id)]
CodeText = Annotated[str, BeforeValidator(_as_text)]


class Strict(BaseModel):
    """Base for every section: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Option(Strict):
    """One answer option; `label` is the single token the model answers with (A, B, ...)."""

    id: OptionId
    text: str = Field(min_length=1)
    label: str | None = Field(default=None, min_length=1)
    # The number this option stands for (None: a category); numeric generates it, other types
    # may set it (`coding: linear` needs it on every option).
    value: float | None = None

    @classmethod
    def of_value(cls, number: int, label: str | None = None) -> Option:
        """A generated option for a number: id and text are its text."""
        return cls.model_construct(id=str(number), text=str(number), label=label,
                                   value=float(number))


class Question(Strict):
    """A belief or action question: its text template, options and the human answer column.

    `recall` is how a participant remembers its answer in later rounds ("You raided"); without
    it the question text is repeated in the memory.
    """

    id: Identifier
    type: Any
    text: str = Field(min_length=1)
    options: list[Option] | None = None
    human_column: str | None = None
    recall: str | None = Field(default=None, min_length=1)
    # None: the type's order (ORDERED); filled in by validation, so it is always a bool after.
    ordered: bool | None = None
    # How the answer enters a formula: unordered dummies, or its option's value (one number).
    coding: Literal["categorical", "linear"] = "categorical"
    # Cells of this question's human column that mean "no answer" (beside the population's).
    missing_codes: list[CodeText] = Field(default_factory=list)

    ORDERED: ClassVar[bool] = False  # whether the options form an ordered scale
    DEFAULT_OPTIONS: ClassVar[tuple[Option, ...]] = ()  # used when a file gives no `options`
    LISTED_AT: ClassVar[int] = 99  # where the type is listed among the types (error messages)
    INSTRUCTION: ClassVar[str] = ANSWER_INSTRUCTION

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Register a type: a subclass whose `type` is a one-value Literal."""
        super().__pydantic_init_subclass__(**kwargs)
        kinds = typing.get_args(cls.model_fields["type"].annotation)
        if len(kinds) == 1 and isinstance(kinds[0], str):
            QUESTION_TYPES[kinds[0]] = cls

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        if cls is Question:  # reached only when `value` names no registered type
            expected = [repr(name) for name in sorted(QUESTION_TYPES,
                                                      key=lambda n: QUESTION_TYPES[n].LISTED_AT)]
            listed = ", ".join(expected[:-1]) + f" or {expected[-1]}" if len(expected) > 1 \
                else "".join(expected)
            raise PydanticCustomError("literal_error", "Input should be {expected}",
                                      {"expected": listed})
        return value

    @field_validator("human_column")
    @classmethod
    def _only_the_round_placeholder(cls, value: str | None) -> str | None:
        if value is not None:
            problem = column_template_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _fill_options(self) -> Question:
        options = self.resolve_options()
        if not options:
            raise ValueError("'options' is empty: a question needs at least two options")
        if len(options) < 2:
            raise ValueError("'options' has one entry: a question needs at least two options")
        labelled = [o if o.label else o.model_copy(update={"label": LETTERS[i]})
                    for i, o in enumerate(options)]
        object.__setattr__(self, "options", labelled)
        if self.ordered is None:
            object.__setattr__(self, "ordered", self.ORDERED)
        if self.coding == "linear":
            unvalued = [o.id for o in labelled if o.value is None]
            if unvalued:
                raise ValueError(f"coding 'linear' enters the answer as its option's value: give "
                                 f"every option a 'value' (none for {', '.join(unvalued)})")
        same = numerically_equal([o.id for o in labelled])
        if same:
            raise ValueError(f"option ids '{same[0][0]}' and '{same[0][1]}' are the same number: "
                             "a recorded value would name both")
        return self

    @model_serializer(mode="wrap")
    def _resolved(self, handler: Any) -> Any:
        """The resolved record: `ordered` last (where it always was), new fields only when set,
        so the manifests of scenarios that do not use them stay byte-identical."""
        data = handler(self)
        if isinstance(data, dict):
            if data.get("coding") == "categorical":
                data.pop("coding")
            if not data.get("missing_codes"):
                data.pop("missing_codes", None)
            if "ordered" in data:
                data["ordered"] = data.pop("ordered")
        return data

    @model_validator(mode="wrap")
    @classmethod
    def _by_type(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Question:
        """`Question` validates an entry as the type it names (unknown: today's literal error).

        Defined after every other validator, so it runs outermost: the type's own validators
        run once, inside it."""
        if cls is Question and isinstance(data, dict):
            kind = data.get("type")
            if isinstance(kind, str) and kind in QUESTION_TYPES:
                return QUESTION_TYPES[kind].model_validate(data)
        return handler(data)

    def resolve_options(self) -> list[Option]:
        """The options as the file gives them, or the type's defaults (labels filled after)."""
        if self.options is not None:
            return list(self.options)
        if not self.DEFAULT_OPTIONS:
            raise ValueError(f"a {self.type} question needs an 'options' list")
        return list(self.DEFAULT_OPTIONS)

    @property
    def option_ids(self) -> list[str]:
        """Option ids in presentation order."""
        return [o.id for o in self.options or []]

    @property
    def labels(self) -> list[str]:
        """Option labels in presentation order."""
        return [o.label or "" for o in self.options or []]

    def column_for(self, round_id: int) -> str | None:
        """The human data column holding this question's answer in a given round."""
        return self.human_column.format(round=round_id) if self.human_column else None

    def render(self, text: str) -> str:
        """The user message asking this question, whose rendered text is `text`."""
        options = "\n".join(f"{o.label}) {o.text}" for o in self.options or [])
        return f"{text}\n{options}\n{self.INSTRUCTION}"

    def query_labels(self) -> tuple[str, ...]:
        """What the backend is asked to score: each option's answer label."""
        return tuple(self.labels)

    def draw(self, probs: np.ndarray, rng: np.random.Generator) -> int:
        """The index of the option drawn from `probs` with the participant's generator."""
        return int(rng.choice(len(probs), p=probs))

    def record(self, answer_index: int, probs: np.ndarray, option_mass: float,
               invalid: str | None) -> dict[str, Any]:
        """The run store's fields of one answer (option `answer_index`; -1 with `invalid`)."""
        return {"type": self.type, "options": self.option_ids, "probs": probs.tolist(),
                "answer": None if invalid is not None else self.option_ids[answer_index],
                "answer_index": answer_index, "option_mass": option_mass, "invalid": invalid}

    def read(self, value: Any) -> int | None:
        """The option index of a human's recorded value (None: the answer is missing)."""
        import pandas as pd

        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return None
        return self.option_ids.index(self.recorded_id(value))

    def option_index(self, value: Any) -> int | None:
        """The option a recorded value names: the same text, or the same number ("1.0" is the
        option "1"); None when none does. The one reader (contracts.option_ids)."""
        return option_index(value, self.option_ids)

    def recorded_id(self, value: Any) -> str:
        """The option id a recorded (non-missing) value stands for (checked by `unreadable`)."""
        index = self.option_index(value)
        if index is None:
            raise ValueError(f"{value!r} is not an answer of {self.id}")
        return self.option_ids[index]

    def unreadable(self, values: pd.Series) -> pd.Series:
        """Which recorded values of a data column are not an answer (missing ones are fine)."""
        text = values.astype(str)
        known = {v: self.option_index(v) is not None for v in text.unique()}
        return values.notna() & ~text.map(known).astype(bool)

    def unreadable_message(self, value: Any) -> str:
        """Why one recorded value is not an answer, for the data check's error."""
        return f"value '{shown(value)}' is not one of: " + ", ".join(sorted(self.option_ids))


def whole_number(value: Any) -> int | None:
    """A recorded value as a whole number (7, "7", "7.0" → 7); None when it is not one."""
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


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
