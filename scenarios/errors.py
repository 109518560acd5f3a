"""Errors a user can act on: which file, which line, which field, what was expected."""

from __future__ import annotations

import re
from dataclasses import dataclass

# C0 controls but tab and newline, DEL, C1 controls (ESC starts ANSI/OSC sequences that retitle
# or clear a terminal; CR overwrites a line) and the Unicode bidirectional overrides (which reorder
# what a reader sees). Everything else, any script included, is shown as it is.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
CELL_LIMIT = 60


def printable(text: str) -> str:
    """`text` safe for a terminal: each control character (but newline and tab) as a visible
    escape, e.g. ESC as `\\x1b`, so a file's content can never drive the terminal."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                       else f"\\u{ord(m.group()):04x}", text)


def shown(value: object, limit: int = CELL_LIMIT) -> str:
    """One value from a user's file as an error message shows it: on one line, printable, and cut
    to `limit` characters (a message quotes the offending cell, never more of the file)."""
    text = printable(str(value)).replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return printable(text)


class InputError(Exception):
    """Bad input: carries every problem found, so the user fixes them in one pass."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
