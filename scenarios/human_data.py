"""Reading a human (or stand-in reference) data file: a CSV whose leading '#' lines are a note."""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from scenarios.errors import InputError, Problem

# The file is read whole (bytes, text, then the table: about 5x its size in memory), so it is
# capped; 200 MiB holds millions of rows. One cell is a value a persona may show: 64 KiB at most,
# as for any value of a scenario file.
DATA_FILE_LIMIT = 200 * 1024 * 1024
DATA_CELL_LIMIT = 64 * 1024


@dataclass(frozen=True)
class HumanData:
    """A data table and where its rows sit in the file (for error messages)."""

    path: Path
    table: pd.DataFrame
    note: str
    header_line: int
    # Cells of each column that held a missing-value code (made empty by `with_missing_codes`).
    coded: dict[str, int] = field(default_factory=dict)

    def file_line(self, row_position: int) -> int:
        """The 1-based line of the file holding the row at this position."""
        return self.header_line + 1 + row_position


def read_human_data(path: Path, text_columns: Collection[str] = ()) -> HumanData:
    """Read a CSV; leading lines starting with '#' are kept as the file's note.

    `text_columns` (ids, conditions, answers) are read as text, byte-exact: an id `001` stays
    `001`. Other columns (demographics) keep pandas' type inference, so an age is a number."""
    where = str(path)
    if not path.exists():
        raise InputError([Problem(where, None, "", "data file not found")])
    if path.is_dir():
        raise InputError([Problem(where, None, "", "is a directory; expected a CSV file")])
    if not path.is_file():  # a FIFO or device (/dev/zero) would block or never end
        raise InputError([Problem(where, None, "", "not a regular file; expected a CSV file")])
    if path.stat().st_size > DATA_FILE_LIMIT:
        raise InputError([Problem(where, None, "", f"the file is {path.stat().st_size:,} bytes; a "
                                  f"data file may be at most {DATA_FILE_LIMIT:,} bytes (200 MiB)")])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError([Problem(where, None, "", f"cannot read file: {exc.strerror}")]) from None
    text = utf8_text(raw, where)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError([Problem(where, line, "", "holds NUL bytes: a binary file, not a CSV")])
    note_lines: list[str] = []
    for line in io.StringIO(text):
        if not line.startswith("#"):
            break
        note_lines.append(line[1:].strip())
    try:
        table = pd.read_csv(io.StringIO(text), skiprows=len(note_lines), keep_default_na=True,
                            dtype=dict.fromkeys(text_columns, str))
    except pd.errors.EmptyDataError:
        raise InputError([Problem(where, None, "", "no header line: the file holds no CSV table")]) \
            from None
    except pd.errors.ParserError as exc:  # pandas' message names a line, never the content
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if fields:
            expected, line, saw = map(int, fields.groups())
            raise InputError([Problem(where, line, "", f"not a readable CSV: {saw} fields where the "
                                      f"header has {expected}")]) from None
        raise InputError([Problem(where, None, "", f"not a readable CSV: {str(exc).strip()}")]) \
            from None
    _refuse_long_cells(table, where, header_line=len(note_lines) + 1)
    return HumanData(path, table, "\n".join(note_lines), header_line=len(note_lines) + 1)


def with_missing_codes(human: HumanData, codes: Mapping[str, Sequence[str]],
                       text_columns: Collection[str] = ()) -> HumanData:
    """The data with each column's missing-value codes (population.missing_codes, a question's
    own) made empty cells, as if the cell were blank; a code matches equal text or an equal
    number ("-99" matches -99.0). A column other than `text_columns` whose remaining values
    are all numbers becomes numeric again, as pandas would have read it without the codes."""
    from contracts.demographics import is_blank, same_value

    table, coded = human.table, {}
    for column, column_codes in codes.items():
        if not column_codes or column not in table.columns:
            continue
        values = table[column]
        hit = values.map(lambda v, cc=column_codes: not is_blank(v) and any(same_value(v, c) for c in cc))
        hit = hit.astype(bool)
        if not hit.any():
            continue
        if table is human.table:
            table = table.copy()
        kept = values.where(~hit)
        if column not in text_columns and not pd.api.types.is_numeric_dtype(kept):
            numbers = pd.to_numeric(kept, errors="coerce")
            if numbers.notna().sum() == kept.notna().sum():
                kept = numbers
        table[column] = kept
        coded[column] = int(hit.sum())
    return replace(human, table=table, coded=coded) if coded else human


def _refuse_long_cells(table: pd.DataFrame, where: str, header_line: int) -> None:
    """A cell longer than DATA_CELL_LIMIT characters is refused, naming its line and column."""
    for column in table.columns:
        if pd.api.types.is_numeric_dtype(table[column]):
            continue  # numbers and booleans are short
        lengths = table[column].map(lambda v: len(v) if isinstance(v, str) else 0)
        if len(lengths) and lengths.max() > DATA_CELL_LIMIT:
            line = header_line + 1 + int(lengths.to_numpy().argmax())
            raise InputError([Problem(where, line, str(column), f"a cell of "
                                      f"{int(lengths.max()):,} characters; a cell may be at most "
                                      f"{DATA_CELL_LIMIT:,} (64 KiB)")])


def utf8_text(raw: bytes, file: str) -> str:
    """A file's bytes as UTF-8 text (a leading byte-order mark dropped); anything else is an error
    naming the line and byte offset, since a silently replaced byte would change the data."""
    body = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + len(raw) - len(body)
        line = raw.count(b"\n", 0, offset) + 1
        column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
        raise InputError([Problem(file, line, "", f"not UTF-8: byte 0x{raw[offset]:02x} at byte offset "
                                  f"{offset} (byte {column} of line {line}); re-save the file as "
                                  "UTF-8")]) from None
