"""Make scenarios/data/chile_plebiscite_1988.csv from the carData `Chile` file, reproducibly.

    python scenarios/data/make_chile_plebiscite.py [SOURCE_CSV] [OUT_CSV]

(defaults: ../shared/data/chile_plebiscite_1988.csv and the file beside this script). Every
original column and every original cell is copied as text, unchanged (no float re-formatting);
two columns are added:

- `respondent` (first): the 1-based row number in the source file (1..2700), the scenario's id;
- `statusquo_bin` (last): `statusquo`, a standardised scale (mean 0, SD 1), cut into five bins at
  the edges in EDGES: -2 below -1, -1 in [-1, -0.5), 0 in [-0.5, 0.5), 1 in [0.5, 1), 2 from 1 up;
  empty where `statusquo` is empty. Why these edges: the scale is bimodal (modes near -1.3 and
  +1.3 SD, few respondents beyond +-1.6), so one-SD-wide bins centred on 0 would leave the outer
  bins almost empty (3 and 150 of 2,683 rows); the centre bin is "within half an SD of the
  mean", the outer edges split each side at one SD. Counts per bin: chile_plebiscite_1988.md.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1] / ".." / "shared" / "data" / "chile_plebiscite_1988.csv"
OUT = HERE / "chile_plebiscite_1988.csv"
# Bin i (value i - 2) holds [EDGES[i-1], EDGES[i]); the first bin is below EDGES[0], the last
# from EDGES[-1] up.
EDGES = (-1.0, -0.5, 0.5, 1.0)


def status_quo_bin(cell: str) -> str:
    """The bin value (-2..2) of one `statusquo` cell, as text; "" for an empty cell."""
    if not cell.strip():
        return ""
    value = float(cell)
    return str(sum(value >= edge for edge in EDGES) - 2)


def vendor(source: Path, out: Path) -> int:
    """Write `out` from `source`; returns the number of respondents written."""
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    if "statusquo" not in header or "respondent" in header:
        raise SystemExit(f"{source}: expected the carData Chile columns, got {header}")
    column = header.index("statusquo")
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["respondent", *header, "statusquo_bin"])
        for number, row in enumerate(body, start=1):
            writer.writerow([str(number), *row, status_quo_bin(row[column])])
    return len(body)


def main(argv: list[str]) -> None:
    source = Path(argv[0]) if argv else SOURCE
    out = Path(argv[1]) if len(argv) > 1 else OUT
    print(f"{out}: {vendor(source, out)} respondents")


if __name__ == "__main__":
    main(sys.argv[1:])
