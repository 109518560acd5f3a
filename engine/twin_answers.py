"""What a simulated twin's human counterpart answered, for `show` to print beside each answer.

A twins run records, in its manifest, the human data file it read (`human_data.path`, its
SHA-256) and each participant's data row (`twin_rows.rows`, 1-based under the header; runs
written before it name twins `rowN`). Each question's `human_column` template (`r{round}_attack`)
names the cell of a round. Nothing here raises for a missing or changed file: `show` still shows
the transcript and says why the twin's answers are not beside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.demographics import is_missing
from contracts.option_ids import option_index
from contracts.run_format import row_of_id
from scenarios.errors import InputError


@dataclass(frozen=True)
class TwinAnswers:
    """The twin's recorded answers by (round, question id), or why there are none."""

    answers: dict[tuple[int, str], str] = field(default_factory=dict)
    row: int | None = None
    why_not: str | None = None

    def option(self, round_id: int | None, question_id: str | None) -> str | None:
        """The recorded cell of that round and question (None when absent or empty)."""
        if round_id is None or question_id is None:
            return None
        return self.answers.get((round_id, question_id))


def _questions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    resolved = (manifest.get("scenario") or {}).get("resolved") or {}
    return [q for stage in resolved.get("stages") or [] for q in stage.get("questions") or []
            if isinstance(q, dict)]


def _data_row(manifest: dict[str, Any], participant_id: str) -> int | None:
    rows = (manifest.get("twin_rows") or {}).get("rows")
    if isinstance(rows, dict):
        found = rows.get(participant_id)
        return found if isinstance(found, int) else None
    return row_of_id(participant_id)  # a run from before twin_rows: the id names the row


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def matching_option(cell: str, options: list[dict[str, Any]]) -> str:
    """The option id a recorded cell means: the same text or the same number ("1.0" is the
    option "1"), by the one rule validation and scoring read values with (contracts.option_ids);
    the cell itself when it names no option."""
    ids = [str(o.get("id")) for o in options]
    index = option_index(cell, ids)
    return cell if index is None else ids[index]


def twin_answers(manifest: dict[str, Any], participant_id: str, rounds: list[int]) -> TwinAnswers:
    """The participant's human twin's recorded answers for these rounds (see the module doc)."""
    human = manifest.get("human_data") or {}
    if not human.get("path") or (manifest.get("twins") or {}).get("source") == "marginals":
        return TwinAnswers(why_not="this run has no human twins (a marginal population)")
    row = _data_row(manifest, participant_id)
    if row is None:
        return TwinAnswers(why_not=f"the manifest records no data row for '{participant_id}'")
    path = Path(str(human["path"]))
    try:
        if human.get("sha256") and _sha256(path) != human["sha256"]:
            return TwinAnswers(row=row, why_not=f"{path} changed since the run (its SHA-256 is not "
                               "the manifest's human_data.sha256)")
        from scenarios.human_data import read_human_data

        questions = _questions(manifest)
        id_column = (manifest.get("twin_rows") or {}).get("id_column")
        columns = {(r, str(q["id"])): str(q["human_column"]).format(round=r)
                   for q in questions if q.get("human_column") for r in rounds}
        text = set(columns.values()) | ({str(id_column)} if id_column else set())
        table = read_human_data(path, text_columns=text).table
    except (OSError, InputError, KeyError, IndexError, ValueError) as exc:
        reason = exc.problems[0] if isinstance(exc, InputError) else exc
        return TwinAnswers(row=row, why_not=f"the human data cannot be read ({reason})")
    if not 1 <= row <= len(table):
        return TwinAnswers(row=row, why_not=f"{path} has no data row {row}")
    options = {str(q["id"]): q.get("options") or [] for q in questions}
    record = table.iloc[row - 1]
    if id_column and str(record.get(id_column)) != participant_id:
        return TwinAnswers(row=row, why_not=f"data row {row} of {path} is not '{participant_id}'")
    answers = {}
    population = ((manifest.get("scenario") or {}).get("resolved") or {}).get("population") or {}
    codes = {str(q["id"]): [*(population.get("missing_codes") or []),
                            *(q.get("missing_codes") or [])] for q in questions}
    for (round_id, question_id), column in columns.items():
        cell = record.get(column)
        # a missing-value code is no answer, as when the run read the data
        if isinstance(cell, str) and cell.strip() and not is_missing(cell, codes[question_id]):
            answers[(round_id, question_id)] = matching_option(cell.strip(), options[question_id])
    return TwinAnswers(answers, row)
