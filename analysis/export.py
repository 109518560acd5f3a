"""A run's answers as one flat CSV, for R, Stata or a spreadsheet (`run.py export RUN_DIR --csv`).

One row per policy x participant x round x question, in the order the run asked them. Every
scalar column of responses.parquet is kept (participant, policy, condition, demographics,
round, stage, question, answer, answer_index, option_mass, invalid); the option list becomes
`options` (ids joined by `|`) and the probability list one `p_<option>` column per option id
(renormalised over that question's options, as in the run; empty where the option is not one of
the row's question's). Column names are made safe for R and Stata: letters, digits and `_`, at
most 32 characters, never starting with a digit, unique.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pandas as pd

from analysis.errors import AnalysisInputError
from contracts.run_format import RESPONSES

LISTS = ("options", "probs")
STATA_NAME_LIMIT = 32


def safe_name(name: str, taken: set[str]) -> str:
    """A column name R and Stata accept, not already in `taken` (which it joins)."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", name)[:STATA_NAME_LIMIT] or "_"
    if base[0].isdigit():
        base = ("_" + base)[:STATA_NAME_LIMIT]
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        suffix = f"_{n}"
        candidate = base[:STATA_NAME_LIMIT - len(suffix)] + suffix
    taken.add(candidate)
    return candidate


def read_answers(run_dir: Path) -> pd.DataFrame:
    """responses.parquet, checked to hold the option and probability lists."""
    path = Path(run_dir) / RESPONSES
    if not path.is_file():
        raise AnalysisInputError(f"{run_dir}: not a run directory (no {RESPONSES}); give the "
                                 "folder `run` printed")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise AnalysisInputError(f"{path}: not a readable parquet table ({exc})") from None
    missing = [c for c in ("participant_id", "policy", "round", "question_id", *LISTS)
               if c not in table.columns]
    if missing:
        raise AnalysisInputError(f"{path}: no column {', '.join(missing)}")
    return table


def flat_answers(table: pd.DataFrame) -> pd.DataFrame:
    """One row per answer with `p_<option>` columns in place of the option and probability lists."""
    order = pd.DataFrame({
        "policy": pd.Categorical(table["policy"], categories=table["policy"].unique()),
        "participant": pd.Categorical(table["participant_id"],
                                      categories=table["participant_id"].unique()),
        "round": table["round"]})
    rows = table.loc[order.sort_values(["policy", "participant", "round"], kind="stable").index]
    taken: set[str] = set()
    columns = {c: safe_name(str(c), taken) for c in rows.columns if c not in LISTS}
    flat = rows[list(columns)].rename(columns=columns).reset_index(drop=True)
    flat.insert(flat.columns.get_loc(columns["question_id"]) + 1, safe_name("options", taken),
                [None if o is None else "|".join(map(str, o)) for o in rows["options"]])
    option_ids = list(dict.fromkeys(str(o) for options in rows["options"] if options is not None
                                    for o in options))
    names = {o: safe_name(f"p_{o}", taken) for o in option_ids}
    probabilities: dict[str, list[float | None]] = {names[o]: [] for o in option_ids}
    for options, probs in zip(rows["options"], rows["probs"], strict=True):
        given = ({} if options is None or probs is None
                 else {str(o): float(p) for o, p in zip(options, probs, strict=True)})
        for option in option_ids:
            probabilities[names[option]].append(given.get(option))
    return pd.concat([flat, pd.DataFrame(probabilities)], axis=1)


def export_csv(run_dir: Path, out: Path | None = None) -> Path | None:
    """Write the flat answers as CSV to `out` (default RUN_DIR/responses.csv; `-`: stdout).
    Returns the file written (None for stdout)."""
    flat = flat_answers(read_answers(Path(run_dir)))
    if out is not None and str(out) == "-":
        flat.to_csv(sys.stdout, index=False)
        return None
    target = Path(out) if out is not None else Path(run_dir) / "responses.csv"
    if target.is_dir():
        raise AnalysisInputError(f"--out {target}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise AnalysisInputError(f"--out {target}: folder {target.parent} does not exist")
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        flat.to_csv(tmp, index=False)
        os.replace(tmp, target)
    except OSError as exc:
        raise AnalysisInputError(f"--out {target}: cannot write ({exc.strerror})") from None
    return target
