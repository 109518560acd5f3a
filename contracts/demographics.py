"""A demographic's value as the study sees it, derived from one raw data cell.

The engine (personas, the run's rows) reads the data with pandas' type inference (an age is
36.0); analysis reads every cell as text ("36.0"). Both derive through `derive`, so a twin's
demographic and its human row's are the same value. Pure: only contracts.option_ids' number
rule (the one option ids use), no pandas.

A demographic is either a short form (the column as read, `spec` None) or a long form, a dict
with `column` and optional `labels`, `bins`, `format` (integer | text) and `missing`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from contracts.option_ids import as_number

INTEGER, TEXT = "integer", "text"


def is_blank(raw: Any) -> bool:
    """An empty cell: None, NaN (pandas' empty cell), pandas.NA or text of only spaces."""
    if raw is None:
        return True
    if isinstance(raw, float):
        return math.isnan(raw)
    if isinstance(raw, str):
        return not raw.strip()
    return type(raw).__name__ in ("NAType", "NaTType")


def number(raw: Any) -> float | None:
    """A cell as a finite number (36, 36.0, "36.0" -> 36.0); None when it is not one."""
    return None if is_blank(raw) else as_number(raw)


def same_value(a: Any, b: Any) -> bool:
    """Two cells name the same value: equal texts, or both numbers and numerically equal
    ("1.0" and "1"), as option ids match recorded answers."""
    if str(a).strip() == str(b).strip():
        return True
    x, y = number(a), number(b)
    return x is not None and y is not None and x == y


def is_missing(raw: Any, codes: Sequence[str] = ()) -> bool:
    """An empty cell, or one holding a missing-value code ("DK", "-99")."""
    return is_blank(raw) or any(same_value(raw, code) for code in codes)


def text(raw: Any) -> str:
    """A cell as text; a whole number read as a float loses its '.0' (36.0 -> "36")."""
    value = number(raw)
    if value is not None and value.is_integer() and (isinstance(raw, float) or "." in str(raw)):
        return str(int(value))
    return str(raw).strip()


def bin_labels(bins: Sequence[float]) -> list[str]:
    """Default labels of bins without `labels`: "[18, 30)" ..., the last "65+"."""
    edges = [text(float(e)) for e in bins]
    return [f"[{lo}, {hi})" for lo, hi in pairwise(edges)] + [f"{edges[-1]}+"]


def bin_index(value: float, bins: Sequence[float]) -> int | None:
    """The bin holding `value`: bin i is [edge i, edge i+1), the last [last edge, inf); None
    below the first edge."""
    found = None
    for i, edge in enumerate(bins):
        if value >= edge:
            found = i
    return found


def derive(raw: Any, spec: Mapping[str, Any] | None, codes: Sequence[str] = ()) -> Any:
    """The demographic's value from its raw cell: None (or the long form's `missing` text) when
    missing; a bin's label; a value's label; an integer; text; else the cell as read.

    Raises ValueError for a cell the spec cannot read (a non-number with bins or format
    integer); `validate` reports those cells first."""
    missing = None if spec is None else spec.get("missing")
    if is_missing(raw, codes):
        return missing
    if spec is None:
        return raw
    bins = spec.get("bins")
    labels = spec.get("labels")
    if bins:
        value = number(raw)
        if value is None:
            raise ValueError(f"'{raw}' is not a number (the demographic has bins)")
        index = bin_index(value, bins)
        if index is None:
            return missing
        return (list(labels) if labels else bin_labels(bins))[index]
    if isinstance(labels, Mapping):
        for key, label in labels.items():
            if same_value(key, raw):
                return label
    if spec.get("format") == INTEGER:
        value = number(raw)
        if value is None or not value.is_integer():
            raise ValueError(f"'{raw}' is not a whole number (format: integer)")
        return int(value)
    if spec.get("format") == TEXT or isinstance(labels, Mapping):
        return text(raw)
    return raw


def unreadable(raw: Any, spec: Mapping[str, Any] | None, codes: Sequence[str] = ()) -> str | None:
    """Why `derive` cannot read this cell, or why it falls outside the labels (None: it can)."""
    try:
        derive(raw, spec, codes)
    except ValueError as exc:
        return str(exc)
    labels = None if spec is None else spec.get("labels")
    if isinstance(labels, Mapping) and not spec.get("bins") and not is_missing(raw, codes) \
            and not any(same_value(key, raw) for key in labels):
        return f"value '{text(raw)}' has no label; labels are given for: " + ", ".join(labels)
    return None
