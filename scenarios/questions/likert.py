"""`type: likert`: an agreement (or frequency) scale whose options the file lists in order."""

from __future__ import annotations

from typing import ClassVar, Literal

from scenarios.questions.base import Question


class Likert(Question):
    """Ordered options given in the file; scored with distances along the scale."""

    type: Literal["likert"]
    ORDERED: ClassVar[bool] = True
    LISTED_AT: ClassVar[int] = 2
