"""`run.py new NAME --from-csv FILE`: a commented scenario file proposed from a data file.

The columns are profiled and given roles in scenarios/scaffold_columns.py; this module writes
the YAML, section by section, with a comment above each entry saying what was inferred from
its column. Everything only the author knows (a title, the persona, each question's wording,
what each coded value means, which questions state beliefs and which are actions) is left as an
unfilled place, "FILL IN: ..." (scenarios/fill.py), which `validate` names until it is written.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

from scenarios.errors import InputError, Problem
from scenarios.fill import place
from scenarios.human_data import read_human_data
from scenarios.scaffold_columns import (
    MAX_LEVELS,
    MAX_WORDED_POINTS,
    AskedColumn,
    Column,
    Proposal,
    band_edges,
    band_labels,
    identifier,
    number_text,
    propose,
)

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CODE_LIMIT = 100  # numeric codes up to this size are labelled (1 = "yes"); larger ones are amounts
PERSONA_HINT = ("who the participant is, e.g. You are a survey respondent ({shown}). Answer every "
                "question with the letter of one option.")
RECALL_HINT = "how the participant recalls this answer later, e.g. You chose"
SHORT_CODE = 3  # text codes this short (F, PS, SA) are labelled; longer ones read as they are


def q(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is YAML's): never a boolean or number."""
    return json.dumps(text, ensure_ascii=False)


def flow(values: Iterable[str]) -> str:
    """A YAML flow list of quoted strings."""
    return "[" + ", ".join(q(v) for v in values) + "]"


@dataclass(frozen=True)
class Scaffold:
    """The written scenario text and what it proposes (for the command's summary)."""

    text: str
    proposal: Proposal
    places: int  # unfilled places written


def scaffold(name: str, csv: Path, out: Path) -> Scaffold:
    """The scenario `new` writes to `out` for the data file `csv` (nothing is written here)."""
    if not NAME_PATTERN.match(name):
        raise InputError([Problem("command line", None, "NAME", f"'{name}' is not a scenario "
                                  "name: letters, digits and _, not starting with a digit")])
    human = read_human_data(csv)
    if len(human.table) == 0:
        raise InputError([Problem(str(csv), human.header_line, "", "a header but no data rows: "
                                  "nothing to infer the columns from")])
    if len(human.table.columns) < 2:
        raise InputError([Problem(str(csv), human.header_line, "", "one column only: is this a "
                                  "CSV (comma-separated) file?")])
    proposal = propose(human.table)
    data = os.path.relpath(csv.resolve(), out.resolve().parent)
    lines = [*_head(name, csv, len(human.table), human.note),
             *_population(proposal, data, proposal.questions), *_conditions(proposal),
             *_persona(proposal), *_rounds(proposal), *_stages(proposal), *_analysis(proposal),
             *_unused(proposal)]
    text = "\n".join(lines) + "\n"
    return Scaffold(text, proposal, text.count('"FILL IN'))


def write_scaffold(name: str, csv: Path, out: Path) -> Scaffold:
    """Write the scaffold of `csv` to `out`, which must not exist (never overwritten)."""
    if out.exists():
        raise InputError([Problem(str(out), None, "--out", "already exists; `new` never "
                                  "overwrites a file: give another --out or remove it")])
    if not out.parent.is_dir():
        raise InputError([Problem(str(out), None, "--out", f"no directory {out.parent} to write "
                                  "it in")])
    if not csv.exists():
        raise InputError([Problem(str(csv), None, "--from-csv", "data file not found")])
    written = scaffold(name, csv, out)
    try:
        with out.open("x", encoding="utf-8") as handle:
            handle.write(written.text)
    except OSError as exc:
        raise InputError([Problem(str(out), None, "--out", f"cannot write: {exc.strerror}")]) \
            from None
    return written


def _head(name: str, csv: Path, rows: int, note: str) -> list[str]:
    lines = [f"# {name}: a scenario written by `python run.py new` from {csv.name} ({rows} rows).",
             "# A text starting FILL IN is a place only you can fill; `python run.py validate`",
             "# names every one left. Above each entry is what was inferred from its column:",
             "# keep, move or delete entries (docs/scenario-format.md describes every field).",
             f"name: {name}", f"title: {q(place('a one-line title of the study'))}"]
    if note:
        lines.append(f"reference_note: {q(note)}  # the data file's own note")
    return [*lines, "# The model that plays the participants (builtin:tiny: random weights, for",
            "# checking the file; builtin:smollm2-135m: a small real model).",
            "model: builtin:tiny", "seed: 0", ""]


def _population(plan: Proposal, data: str, asked: list[AskedColumn]) -> list[str]:
    lines = ["# Who takes part: one twin of each data row, who sees its row's demographics.",
             "population:", "  source: twins", f"  data: {q(data)}"]
    if plan.id_column:
        lines.append(f"  id_column: {q(plan.id_column)}  # unique per row: names each twin")
    else:
        lines.append("  # no column is unique per row: the twins are named row1, row2, ...")
    codes = sorted({c for column in plan.columns for c in column.missing_codes})
    lines.append(f"  missing_codes: {flow(codes)}  # values that mean no answer" if codes else
                 "  # missing_codes: [\"DK\", \"refused\"]  # values that mean no answer, if any")
    empty = [c.name for c in plan.demographics if c.missing]
    if empty:
        lines.append(f"  # exclude_missing: {flow(empty)}  # drop the rows missing these")
    if not plan.demographics:
        return [*lines, "  demographics: {}  # no column looked like a demographic", ""]
    lines.append("  demographics:  # name: column, or {column, labels, bins, format, missing}")
    taken = {a.question_id for a in asked}
    for column in plan.demographics:
        lines += _demographic(column, taken)
    return [*lines, ""]


def _demographic(column: Column, taken: set[str]) -> list[str]:
    name = identifier(column.name, taken)
    lines = [f"    # {column.name}: {column.describe()}"]
    col = q(column.name)
    if column.kind == "numeric":
        fmt = ", format: integer" if column.whole else ""
        lines.append(f"    {name}: {{column: {col}{fmt}}}" if fmt else f"    {name}: {col}")
        edges = band_edges(column)
        if len(edges) >= 2:
            band = identifier(f"{name}_band", taken)
            lines += [f"    # {band}: {name} in bands (for subgroups; edit the edges freely)",
                      f"    {band}: {{column: {col}, bins: [{', '.join(map(number_text, edges))}]"
                      f", labels: {flow(band_labels(edges, column.whole))}}}"]
        return lines
    if _labelled(column):
        labels = ", ".join(f"{q(v)}: {q(place(f'what {column.name} {v} means'))}"
                           for v in column.values)
        return [*lines, f"    {name}: {{column: {col}, labels: {{{labels}}}}}"]
    if column.is_number and column.whole:
        return [*lines, f"    {name}: {{column: {col}, format: integer}}"]
    return [*lines, f"    {name}: {col}"]


def _labelled(column: Column) -> bool:
    """Coded values (1/0, F/M, P/S/PS) read better as words in a persona."""
    if column.kind not in ("categorical", "ordinal") or not column.values:
        return False
    if column.is_number:
        return column.whole and max(abs(float(v)) for v in column.values) <= CODE_LIMIT
    return max(len(v) for v in column.values) <= SHORT_CODE


def _conditions(plan: Proposal) -> list[str]:
    lines = ["# Between-subject conditions: a factor each participant was assigned to (its level",
             "# is in the column; templates see it by name)."]
    if plan.conditions:
        lines.append("conditions:")
        for column in plan.conditions:
            lines += [f"  # {column.name}: {column.describe()}",
                      f"  {column.name}: {{levels: {flow(column.values)}, column: {q(column.name)}}}"]
    if plan.condition_candidates:
        lines.append("# Columns of a few values that may be assigned treatments: uncomment those")
        lines.append("# that are (and delete their question below).")
        if not plan.conditions:
            lines.append("# conditions:")
        for column in plan.condition_candidates:
            lines.append(f"#   {column.name}: {{levels: {flow(column.values)}, "
                         f"column: {q(column.name)}}}")
    return [*lines, ""]


def _persona(plan: Proposal) -> list[str]:
    names = [identifier(c.name, set()) for c in plan.demographics]
    shown = ", ".join(f"{{{{ {n} }}}}" for n in names[:4]) or "(no demographics)"
    return ["# Who the model plays, in the second person; {{ name }} shows a demographic or a",
            "# condition. Without demographics (finetune --no-demographics) the persona is",
            "# persona_without_demographics, if you add one.",
            f"persona: {q(place(PERSONA_HINT.format(shown=shown)))}",
            "# instructions: text every participant reads after the persona (optional)", ""]


def _rounds(plan: Proposal) -> list[str]:
    if not plan.rounds:
        return ["# One round and no stimulus: a one-shot survey (add `stimulus:` and `rounds:`",
                "# for a repeated game).", ""]
    return ["# What each round shows ({{ round }}, {{ n_rounds }}, conditions and a round's",
            "# variables may appear in it).",
            f"stimulus: {q(place('what the participant is told each round'))}",
            "rounds:", *(f"  - id: {r}" for r in plan.rounds), ""]


def _stages(plan: Proposal) -> list[str]:
    asked = plan.questions
    if not asked:
        raise InputError([Problem("data file", None, "", "no column can be asked as a question "
                                  "(each needs a few distinct values, or a narrow whole-number "
                                  "range); add an answer column")])
    groups = [asked] if len(asked) == 1 else [asked[:-1], asked[-1:]]
    lines = ["# A stage is one page: its questions are answered in parallel, each from the same",
             "# context; a later stage sees the earlier stages' answers. `kind` says whether a",
             "# stage states beliefs or takes actions (coherence rules link the two).",
             "stages:"]
    for number, group in enumerate(groups, start=1):
        kinds = ", ".join(a.question_id for a in group)
        lines += [f"  - id: page_{number}",
                  f"    kind: {q(place(f'belief or action ({kinds}: a stated belief or an action taken?)'))}",
                  "    questions:"]
        for item in group:
            lines += _question(item, repeated=bool(plan.rounds))
    return [*lines, ""]


def _question(item: AskedColumn, repeated: bool) -> list[str]:
    column = item.column
    lines = [f"      # {item.human_column}: {column.describe()}", f"      - id: {item.question_id}"]
    scale = column.kind in ("ordinal", "numeric")
    numeric = column.kind == "numeric" or (scale and column.distinct > MAX_WORDED_POINTS)
    kind = "numeric" if numeric else ("likert" if scale else "single_choice")
    lines += [f"        type: {kind}",
              f"        text: {q(place(f'the question as asked (column {item.human_column})'))}"]
    if numeric:
        assert column.low is not None and column.high is not None
        lines += [f"        min: {number_text(column.low)}", f"        max: {number_text(column.high)}"]
        step = _step(column)
        if step != 1:
            lines.append(f"        step: {step}")
    else:
        lines.append("        options:")
        for value in column.values:
            option_id = value if column.option_ids_ok else re.sub(r"\s+", "_", value)[:64]
            lines.append(f"          - {{id: {q(option_id)}, text: "
                         f"{q(place(f'the answer recorded as {value}'))}}}")
    if column.option_ids_ok or numeric:
        lines.append(f"        human_column: {q(item.human_column)}")
    else:
        lines += ["        # Its values hold spaces, which option ids cannot: recode the column",
                  "        # (e.g. 'very happy' -> very_happy, as the ids above), then add",
                  f"        # human_column: {q(item.human_column)}"]
    if repeated:
        lines.append(f"        recall: {q(place(RECALL_HINT))}")
    return lines


def _step(column: Column) -> int:
    """The whole-number step of a scale's values (1 when they are not all known)."""
    if not column.values or column.kind == "numeric":
        return 1
    numbers = sorted(int(float(v)) for v in column.values)
    gaps = [b - a for a, b in itertools.pairwise(numbers)]
    step = reduce(math.gcd, gaps) if gaps else 1
    return step if (numbers[-1] - numbers[0]) % step == 0 else 1


def _analysis(plan: Proposal) -> list[str]:
    ids = [a.question_id for a in plan.questions]
    lines = ["# Answers that contradict each other (a belief and an action), for example:",
             "# coherence:",
             "#   - name: says_one_does_other",
             f"#     when: \"{ids[0]} == 'x' and {ids[-1]} == 'y'\"", ""]
    taken = set(ids)
    groups = []
    for column in plan.demographics:
        name = identifier(column.name, taken)
        if column.kind in ("categorical", "ordinal") and column.distinct <= MAX_LEVELS:
            groups.append(name)
        elif column.kind == "numeric" and len(band_edges(column)) >= 2:
            groups.append(identifier(f"{name}_band", taken))
    groups += [c.name for c in plan.conditions]
    lines += ["# What is scored: heterogeneity within these subgroups; regressions of the study,",
              "# re-estimated on the humans and the twins, for example:",
              f"#   regressions: [{{name: main, family: ols, formula: \"{ids[0]} ~ ...\"}}]",
              "analysis:", f"  subgroups: [{', '.join(groups)}]" if groups else "  subgroups: []"]
    return lines


def _unused(plan: Proposal) -> list[str]:
    if not plan.unused:
        return []
    lines = ["", "# Columns not used:"]
    return lines + [f"#   {column.name}: {why} ({column.describe()})" for column, why in plan.unused]
