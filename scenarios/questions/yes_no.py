"""`type: yes_no`: Yes or No unless the file lists its own two options."""

from __future__ import annotations

from typing import ClassVar, Literal

from scenarios.questions.base import Option, Question


class YesNo(Question):
    """Two unordered options, Yes and No by default."""

    type: Literal["yes_no"]
    LISTED_AT: ClassVar[int] = 3
    DEFAULT_OPTIONS: ClassVar[tuple[Option, ...]] = (
        Option(id="yes", text="Yes"), Option(id="no", text="No"))
