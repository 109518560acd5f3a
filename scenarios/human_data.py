"""Reading a human (or stand-in reference) data file: a CSV whose leading '#' lines are a note."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scenarios.errors import InputError, Problem


@dataclass(frozen=True)
class HumanData:
    """A data table and where its rows sit in the file (for error messages)."""

    path: Path
    table: pd.DataFrame
    note: str
    header_line: int

    def file_line(self, row_position: int) -> int:
        """The 1-based line of the file holding the row at this position."""
        return self.header_line + 1 + row_position


def read_human_data(path: Path) -> HumanData:
    """Read a CSV; leading lines starting with '#' are kept as the file's note."""
    try:
        with path.open(encoding="utf-8") as handle:
            note_lines: list[str] = []
            for line in handle:
                if not line.startswith("#"):
                    break
                note_lines.append(line[1:].strip())
        table = pd.read_csv(path, skiprows=len(note_lines), keep_default_na=True)
    except FileNotFoundError:
        raise InputError([Problem(str(path), None, "", "data file not found")]) from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError([Problem(str(path), None, "", f"not a readable CSV: {exc}")]) from None
    return HumanData(path, table, "\n".join(note_lines), header_line=len(note_lines) + 1)
