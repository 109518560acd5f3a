"""One sample of participants (the human reference or one simulated policy) as dense arrays.

Every metric reads `Sample.answers`, an int array participant x round x question holding the
option index of the answer (-1 where the answer is missing), and `Sample.attributes`, one row per
participant with its condition factors and demographics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis.errors import AnalysisInputError
from analysis.experiment import Experiment, Question
from contracts.run_format import ROW_ID_PREFIX

MISSING = -1


@dataclass(frozen=True)
class Sample:
    """Answers of one sample: `answers[participant, round, question]` is an option index or -1."""

    name: str
    participant_ids: np.ndarray
    attributes: pd.DataFrame
    answers: np.ndarray

    @property
    def n(self) -> int:
        """Number of participants."""
        return len(self.participant_ids)

    def labels(self, column: str) -> np.ndarray:
        """Group labels of an attribute column as strings (None where missing)."""
        values = self.attributes[column]
        return np.array([_label(v) for v in values], dtype=object)


def _label(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def option_indices(values: pd.Series, question: Question, where: str) -> np.ndarray:
    """Map option ids to their index (-1 for missing); unknown ids are an input error.

    On a numeric scale a cell may also name an option by its value: 7, "7" and "7.0" are the
    option whose value is 7."""
    lookup = {option: i for i, option in enumerate(question.options)}
    present = values.notna()
    text = values[present].astype(str).str.strip()
    mapped = text.map(lookup)
    if question.values is not None:
        by_value = {value: i for i, value in enumerate(question.values)}
        mapped = mapped.fillna(pd.to_numeric(text, errors="coerce").map(by_value))
    unknown = sorted(set(values[present][mapped.isna()].astype(str)))
    if unknown:
        raise AnalysisInputError(
            f"{where}: answers {unknown[:5]} to question '{question.id}' are not option ids "
            f"(expected one of {list(question.options)})")
    out = np.full(len(values), MISSING, dtype=np.int16)
    out[present.to_numpy()] = mapped.to_numpy(dtype=np.int16)
    return out


def sample_from_responses(frame: pd.DataFrame, experiment: Experiment, name: str,
                          where: str) -> Sample:
    """Build a sample from the long responses rows of one policy."""
    rounds = {r: i for i, r in enumerate(experiment.rounds)}
    frame = frame[frame["round"].isin(list(rounds))
                  & frame["question_id"].isin([q.id for q in experiment.questions])]
    keys = ["participant_id", "round", "question_id"]
    duplicated = frame.duplicated(keys)
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise AnalysisInputError(
            f"{where}: policy '{name}' has several answers for participant "
            f"'{row['participant_id']}', round {row['round']}, question '{row['question_id']}'")
    codes, ids = pd.factorize(frame["participant_id"].astype(str))
    answers = np.full((len(ids), len(rounds), len(experiment.questions)), MISSING, np.int16)
    round_pos = frame["round"].map(rounds).to_numpy(dtype=np.int64)
    for q, question in enumerate(experiment.questions):
        mask = (frame["question_id"] == question.id).to_numpy()
        answers[codes[mask], round_pos[mask], q] = option_indices(
            frame.loc[mask, "answer"], question, f"{where}: column 'answer'")
    present = [c for c in experiment.attributes if c in frame.columns]
    attributes = frame[present].groupby(codes, sort=True).first().reset_index(drop=True)
    return Sample(name, np.asarray(ids, dtype=object), attributes, answers)


def sample_from_human(table: pd.DataFrame, experiment: Experiment, where: str) -> Sample:
    """Build the reference sample from the wide human table (columns already checked)."""
    if experiment.id_column and experiment.id_column in table.columns:
        ids = table[experiment.id_column].astype(str).to_numpy(dtype=object)
    else:  # row1, row2, ... as the twins are named; a chosen subset keeps its rows' numbers
        numbers = (table.index + 1 if pd.api.types.is_integer_dtype(table.index)
                   else range(1, len(table) + 1))
        ids = np.array([f"{ROW_ID_PREFIX}{i}" for i in numbers], dtype=object)
    answers = np.full((len(table), len(experiment.rounds), len(experiment.questions)),
                      MISSING, np.int16)
    for q, question in enumerate(experiment.questions):
        for r, round_id in enumerate(experiment.rounds):
            column = question.column_for(round_id)
            if column is not None:
                answers[:, r, q] = option_indices(table[column], question,
                                                  f"{where}: column '{column}'")
    renames = {f.column: f.name for f in experiment.factors}
    renames |= {human: name for name, human in experiment.demographics.items()}
    attributes = table.rename(columns=renames)
    present = [c for c in experiment.attributes if c in attributes.columns]
    return Sample("human", ids, attributes[present].reset_index(drop=True), answers)


def align_attributes(samples: list[Sample]) -> list[Sample]:
    """Give every attribute one type across samples: numeric when every value parses as one."""
    columns = sorted({c for s in samples for c in s.attributes.columns})
    aligned = [s.attributes.copy() for s in samples]
    for column in columns:
        pooled = pd.concat([s.attributes[column].astype("string") for s in samples
                            if column in s.attributes.columns], ignore_index=True)
        numeric = pd.to_numeric(pooled, errors="coerce")
        is_numeric = pooled.notna().any() and numeric.notna().sum() == pooled.notna().sum()
        for frame in aligned:
            if column in frame.columns:
                text = frame[column].astype("string")
                frame[column] = (pd.to_numeric(text) if is_numeric
                                 else text.astype(object).where(text.notna(), None))
    return [replace(s, attributes=a) for s, a in zip(samples, aligned, strict=True)]


def participant_rounds(sample: Sample, experiment: Experiment) -> pd.DataFrame:
    """One row per participant x round: answers (categorical), indicators (0/1), attributes."""
    n, n_rounds = sample.n, len(experiment.rounds)
    table: dict[str, object] = {
        "participant_id": np.repeat(sample.participant_ids, n_rounds),
        "round": np.tile(np.asarray(experiment.rounds), n),
    }
    for q, question in enumerate(experiment.questions):
        codes = sample.answers[:, :, q].ravel()
        table[question.id] = pd.Categorical.from_codes(codes, categories=list(question.options))
    for indicator in experiment.indicators:
        question = experiment.questions[experiment.question_index(indicator.question)]
        codes = sample.answers[:, :, experiment.question_index(indicator.question)].ravel()
        hits = [question.options.index(o) for o in indicator.options]
        table[indicator.name] = np.where(codes < 0, np.nan, np.isin(codes, hits).astype(float))
    clashes = [c for c in sample.attributes.columns if c in table]
    if clashes:
        raise AnalysisInputError(
            f"scenario: names {clashes} are used both as attributes and as question, indicator "
            "or 'round' names; regression variables must be unique")
    frame = pd.DataFrame(table)
    for column in sample.attributes.columns:
        frame[column] = np.repeat(sample.attributes[column].to_numpy(), n_rounds)
    return frame
