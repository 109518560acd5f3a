"""`type: numeric`: a bounded whole number (0-100 by 10, a 1-11 scale), one option per value.

The options are generated: id and text are the value's text ("7"), and each option's `value` is
the number, so analysis can score distances between values. With `labels: letters` (the
default) the model answers with a letter (A) 0 ... K) 100), which any tokenizer has as one
token; with `labels: numbers` it answers with the number itself, which the backend refuses
when a value is not a single token of the model's vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from scenarios.errors import shown
from scenarios.questions.base import LETTERS, Option, Question, whole_number

NUMBERS_INSTRUCTION = "Answer with one of these numbers."

if TYPE_CHECKING:  # pandas loads in ~0.3 s: only data checks need it, at run time
    import pandas as pd


class Numeric(Question):
    """The whole numbers from `min` to `max` by `step`: at least 2 values and at most 26."""

    type: Literal["numeric"]
    min: int
    max: int
    step: int = Field(default=1, ge=1)
    label_style: Literal["letters", "numbers"] = Field(default="letters", alias="labels")

    ORDERED: ClassVar[bool] = True
    LISTED_AT: ClassVar[int] = 5

    @property
    def values(self) -> list[int]:
        """The answers, smallest first."""
        return list(range(self.min, self.max + 1, self.step))

    def resolve_options(self) -> list[Option]:
        """One generated option per value; a range that is not a short even grid is refused."""
        if self.options is not None:
            raise ValueError("a numeric question's options are the numbers from 'min' to 'max' "
                             "by 'step'; remove 'options'")
        if self.min >= self.max:
            raise ValueError(f"'min' ({self.min}) must be less than 'max' ({self.max})")
        if (self.max - self.min) % self.step:
            raise ValueError(f"'max' - 'min' ({self.max - self.min}) is not a multiple of 'step' "
                             f"({self.step}): the values would not end at 'max'")
        count = len(self.values)
        if count > len(LETTERS):
            raise ValueError(f"{self.min} to {self.max} by {self.step} is {count} values; a "
                             f"numeric question has at most {len(LETTERS)} (one answer label "
                             "each): use a larger 'step'")
        numbers = self.label_style == "numbers"
        return [Option.of_value(v, str(v) if numbers else None) for v in self.values]

    def render(self, text: str) -> str:
        """Lettered values like any choice question; with number labels, the values alone."""
        if self.label_style == "letters":
            return super().render(text)
        return f"{text}\n{', '.join(map(str, self.values))}\n{NUMBERS_INSTRUCTION}"

    def recorded_id(self, value: Any) -> str:
        """7, "7" and "7.0" are the option "7"."""
        if self._refusal(value) is not None:
            raise ValueError(f"{value!r} is not an answer of {self.id}")
        return str(whole_number(value))

    def unreadable(self, values: pd.Series) -> pd.Series:
        """Recorded values that are not one of the numbers (missing ones are fine)."""
        return values.notna() & values.map(lambda v: self._refusal(v) is not None).astype(bool)

    def unreadable_message(self, value: Any) -> str:
        """Which number was expected."""
        return f"value '{shown(value)}' {self._refusal(value)}"

    def _refusal(self, value: Any) -> str | None:
        number = whole_number(value)
        if number is None:
            return f"is not a whole number; expected {self.min} to {self.max} by {self.step}"
        if not self.min <= number <= self.max:
            return f"is outside {self.min} to {self.max}"
        if (number - self.min) % self.step:
            return f"is not one of {self.min} to {self.max} by {self.step}"
        return None
