"""Option ids and the one rule for which option a recorded value names (spec A of issue 14).

An option id is 1-64 printable characters without whitespace ("yes", "7", "-2", "7.0"). A
recorded value (a CSV cell, a simulated answer, a literal in a coherence rule) names the option
whose id has the same text, or, when both parse as finite numbers, the option whose id is
numerically equal ("1.0" names the option "1"). `scenarios.questions.base.Question` (validation,
`show`) and `analysis.samples.option_indices` (scoring) both read values through `option_index`.
Standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

MAX_LENGTH = 64
OPTION_ID = re.compile(r"^\S{1,64}$")


def option_id_problem(value: str) -> str | None:
    """Why a text is not an option id (None: it is one)."""
    if not value or len(value) > MAX_LENGTH:
        return f"an option id has 1 to {MAX_LENGTH} characters, got {len(value)}"
    if not OPTION_ID.match(value) or not value.isprintable():
        return f"option id {value!r} has whitespace or unprintable characters"
    return None


def as_number(value: Any) -> float | None:
    """A value as a finite number ("1.0", 1, " 2 " -> float); None when it is not one."""
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if not isinstance(value, int | float) else float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def option_index(value: Any, ids: Sequence[str]) -> int | None:
    """The index of the option `value` names among `ids` (None: none does)."""
    text = str(value)
    if text in ids:
        return ids.index(text)
    number = as_number(value)
    if number is None:
        return None
    for i, option in enumerate(ids):
        if as_number(option) == number:
            return i
    return None


def numerically_equal(ids: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of distinct ids that name the same number ("1" and "1.0"): a value would be ambiguous."""
    seen: dict[float, str] = {}
    pairs = []
    for option in ids:
        number = as_number(option)
        if number is None:
            continue
        if number in seen and seen[number] != option:
            pairs.append((seen[number], option))
        seen.setdefault(number, option)
    return pairs

