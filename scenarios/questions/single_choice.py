"""`type: single_choice`: one of a list of unordered options (a beach, a category)."""

from __future__ import annotations

from typing import ClassVar, Literal

from scenarios.questions.base import Question


class SingleChoice(Question):
    """Options given in the file, in no order; the answer is one option's label."""

    type: Literal["single_choice"]
    LISTED_AT: ClassVar[int] = 1
