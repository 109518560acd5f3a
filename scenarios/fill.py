"""Unfilled places: what `run.py new` leaves for the author to write, and how they are found.

Any YAML string scalar that starts with `FILL_MARK` is an unfilled place. `new` writes each as
`"FILL IN: <what to write there>"`; `validate` reports every one still in a file, at its line,
as "unfilled place: <what to write there>", before any other check it would trip.
"""

from __future__ import annotations

FILL_MARK = "FILL IN"


def place(hint: str) -> str:
    """An unfilled place asking for `hint` (what the author should write there)."""
    return f"{FILL_MARK}: {hint}"


def is_unfilled(value: object) -> bool:
    """Whether a scalar read from a scenario file is an unfilled place."""
    return isinstance(value, str) and value.startswith(FILL_MARK)


def unfilled_hint(value: str) -> str:
    """What an unfilled place asks for: its text after the mark (and the colon `place` adds)."""
    rest = value[len(FILL_MARK):] if value.startswith(FILL_MARK) else value
    return rest.lstrip(" :").strip() or "(no hint given)"
