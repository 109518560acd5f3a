"""Question types, one file each: importing this package imports every file in it, and each
`Question` subclass a file defines registers its `type` (a new type is one new file)."""

from __future__ import annotations

import importlib
import pkgutil

from scenarios.questions.base import (
    ANSWER_INSTRUCTION,
    QUESTION_TYPES,
    CodeText,
    Identifier,
    Option,
    OptionId,
    Question,
    Strict,
    column_template_problem,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

# The registry in the shapes the schema had before types were classes.
ORDERED_TYPES = frozenset(name for name, kind in QUESTION_TYPES.items() if kind.ORDERED)
DEFAULT_OPTIONS: dict[str, list[Option]] = {
    name: list(kind.DEFAULT_OPTIONS) for name, kind in QUESTION_TYPES.items() if kind.DEFAULT_OPTIONS}

__all__ = ["ANSWER_INSTRUCTION", "DEFAULT_OPTIONS", "ORDERED_TYPES", "QUESTION_TYPES", "CodeText",
           "Identifier", "Option", "OptionId", "Question", "Strict", "column_template_problem"]
