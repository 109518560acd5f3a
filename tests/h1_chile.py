"""Shared helpers of the issue-14 answer tests: the real Chile survey as a scenario, an
experiment and a human sample built from its CSV (no model, no run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.experiment import Experiment, experiment_from_resolved
from analysis.samples import Sample, option_indices
from scenarios.loader import load_scenario
from tests.chile_scenarios import CHILE_CSV, chile_table  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parent.parent
CHILE = ROOT / "scenarios" / "chile_plebiscite.yaml"


def chile_resolved() -> dict:
    return load_scenario(CHILE).scenario.model_dump(mode="json", by_alias=True)


def experiment(resolved: dict | None = None) -> Experiment:
    return experiment_from_resolved(resolved or chile_resolved(), "chile")


def human_sample(exp: Experiment, table: pd.DataFrame) -> Sample:
    """One round; answers read by analysis' reader; raw demographic columns as attributes."""
    answers = np.full((len(table), 1, len(exp.questions)), -1, np.int16)
    for q, question in enumerate(exp.questions):
        answers[:, 0, q] = option_indices(table[question.human_column], question, "chile")
    attributes = table[["sex", "age", "education", "income"]].reset_index(drop=True)
    ids = np.array([f"p{i}" for i in range(len(table))], dtype=object)
    return Sample("human", ids, attributes, answers)
