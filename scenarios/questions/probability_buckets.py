"""`type: probability_buckets`: a chance in five 20-point buckets (0-20% ... 81-100%)."""

from __future__ import annotations

from typing import ClassVar, Literal

from scenarios.questions.base import Option, Question


class ProbabilityBuckets(Question):
    """Ordered buckets of a probability, the paper's five by default."""

    type: Literal["probability_buckets"]
    ORDERED: ClassVar[bool] = True
    LISTED_AT: ClassVar[int] = 4
    DEFAULT_OPTIONS: ClassVar[tuple[Option, ...]] = (
        Option(id="p00_20", text="0-20%"),
        Option(id="p21_40", text="21-40%"),
        Option(id="p41_60", text="41-60%"),
        Option(id="p61_80", text="61-80%"),
        Option(id="p81_100", text="81-100%"),
    )
