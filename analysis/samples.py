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
from analysis.human_rules import (
    derived_column,
    prepared_human,
    prompt_only_missing,
    survey_weights,
)
from contracts.option_ids import option_index
from contracts.run_format import ROW_ID_PREFIX

MISSING = -1


@dataclass(frozen=True)
class Sample:
    """Answers of one sample: `answers[participant, round, question]` is an option index or -1."""

    name: str
    participant_ids: np.ndarray
    attributes: pd.DataFrame
    answers: np.ndarray
    # Survey weights of the human rows, scaled to average 1 (None: every row counts once).
    weights: np.ndarray | None = None

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
    """Map recorded values to their option's index (-1 for missing); unknown ones are an input
    error. The rule is contracts.option_ids' (validation's): the same text or the same number,
    so "7.0" is the option "7"."""
    present = values.notna()
    text = values[present].astype(str)
    lookup = {v: option_index(v, question.options) for v in text.unique()}
    mapped = text.map(lookup).astype(float)
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
    attributes = prompt_only_missing(attributes, experiment.human.specs)
    return Sample(name, np.asarray(ids, dtype=object), attributes, answers)


def sample_from_human(table: pd.DataFrame, experiment: Experiment, where: str) -> Sample:
    """Build the reference sample from the wide human table (columns already checked): missing
    codes made empty, `exclude_missing`'s rows dropped, demographics derived, weights read."""
    table = prepared_human(table, _codes_by_column(experiment), experiment.human,
                           experiment.demographics)
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
    columns = {f.name: table[f.column] for f in experiment.factors if f.column in table.columns}
    columns |= {name: derived_column(table[human], experiment.human.specs.get(name))
                for name, human in experiment.demographics.items() if human in table.columns}
    attributes = pd.DataFrame(columns, index=table.index)
    present = [c for c in experiment.attributes if c in attributes.columns]
    return Sample("human", ids, attributes[present].reset_index(drop=True), answers,
                  survey_weights(table, experiment.human, where))


def _codes_by_column(experiment: Experiment) -> dict[str, tuple[str, ...]]:
    """Each human column read and its missing-value codes (a question's own added to its
    columns')."""
    rules, base = experiment.human, experiment.human.missing_codes
    columns = {c: base for c in [*experiment.demographics.values(),
                                 *(f.column for f in experiment.factors)]}
    for question in experiment.questions:
        own = rules.question_codes.get(question.id, ())
        for round_id in experiment.rounds:
            if (column := question.column_for(round_id)) is not None:
                columns[column] = tuple(dict.fromkeys([*columns.get(column, base), *own]))
    return columns


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


def answer_column(codes: np.ndarray, question: Question) -> object:
    """A question's answers as a formula reads them: categorical in option order, or with
    `coding: linear` each answer's option value (NaN where missing), never a rank."""
    if question.coding == "linear" and question.values is not None:
        values = np.asarray(question.values, dtype=float)
        return np.where(codes < 0, np.nan, values[codes.clip(0)])
    return pd.Categorical.from_codes(codes, categories=list(question.options))


def indicator_column(codes: np.ndarray, question: Question, hits: tuple[str, ...],
                     versus: tuple[str, ...] | None) -> np.ndarray:
    """1 where the answer is one of `hits`; 0 where it is one of `versus` (all others without
    it); NaN where missing or, with `versus`, where it is neither."""
    def indices(ids: tuple[str, ...]) -> list[int]:
        return [i for i in (option_index(o, question.options) for o in ids) if i is not None]

    ones = np.isin(codes, indices(hits))
    zeros = (codes >= 0) & ~ones if versus is None else np.isin(codes, indices(versus))
    return np.where(ones, 1.0, np.where(zeros, 0.0, np.nan))


def participant_rounds(sample: Sample, experiment: Experiment) -> pd.DataFrame:
    """One row per participant x round: answers (categorical), indicators (0/1), attributes."""
    n, n_rounds = sample.n, len(experiment.rounds)
    table: dict[str, object] = {
        "participant_id": np.repeat(sample.participant_ids, n_rounds),
        "round": np.tile(np.asarray(experiment.rounds), n),
    }
    for q, question in enumerate(experiment.questions):
        table[question.id] = answer_column(sample.answers[:, :, q].ravel(), question)
    for indicator in experiment.indicators:
        question = experiment.questions[experiment.question_index(indicator.question)]
        codes = sample.answers[:, :, experiment.question_index(indicator.question)].ravel()
        table[indicator.name] = indicator_column(codes, question, indicator.options,
                                                 indicator.versus)
    clashes = [c for c in sample.attributes.columns if c in table]
    if clashes:
        raise AnalysisInputError(
            f"scenario: names {clashes} are used both as attributes and as question, indicator "
            "or 'round' names; regression variables must be unique")
    frame = pd.DataFrame(table)
    for column in sample.attributes.columns:
        frame[column] = np.repeat(sample.attributes[column].to_numpy(), n_rounds)
    return frame
