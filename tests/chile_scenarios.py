"""Small scenarios on the real FLACSO/Chile 1988 survey data, for the demographics, missing-value
and one-shot tests: each writes a scenario file beside a copy of the data in a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from tests.conftest import ROOT

CHILE_CSV = ROOT / "scenarios" / "data" / "chile_plebiscite_1988.csv"

POPULATION = """\
population:
  source: twins
  data: chile.csv
{extra}  demographics:
    region: region
    sex: {{column: sex, labels: {{F: a woman, M: a man}}}}
    age: {{column: age, format: integer}}
    age_band: {{column: age, bins: [18, 30, 45, 65], labels: ["18-29", "30-44", "45-64", "65+"]}}
    education: {{column: education, labels: {{P: primary, S: secondary, PS: post-secondary}},
                missing: not stated}}
    income: {{column: income, format: integer}}
"""

REST = """\
persona: "You are {{{{ sex }}}}, {{{{ age }}}} years old; education: {{{{ education }}}}."
stages:
  - id: action
    kind: action
    questions:
      - id: vote
        type: single_choice
        text: If the plebiscite were held today, how would you vote?
        options:
          - {{id: "Y", text: "Yes"}}
          - {{id: "N", text: "No"}}
          - {{id: "U", text: Undecided}}
          - {{id: "A", text: Abstain}}
        human_column: vote
{question_extra}analysis:
  subgroups: [{subgroups}]
"""


def chile_table() -> pd.DataFrame:
    """The Chile data as pandas reads it (age 36.0, income 35000.0, empty cells NaN)."""
    return pd.read_csv(CHILE_CSV)


def write_chile(folder: Path, *, extra: str = "  exclude_missing: [age]\n", question_extra: str = "",
                subgroups: str = "age_band, sex", head: str = "",
                table: pd.DataFrame | None = None) -> Path:
    """A one-shot Chile scenario (no stimulus, no rounds) in `folder`; `extra`: population
    lines (indented two spaces), `question_extra`: lines after the question, `head`: lines
    before the population; `table`: data to write instead of the real file's bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    if table is None:
        shutil.copyfile(CHILE_CSV, folder / "chile.csv")
    else:
        table.to_csv(folder / "chile.csv", index=False)
    text = ("name: chile_test\ntitle: Chile 1988 (test)\n" + head
            + POPULATION.format(extra=extra)
            + REST.format(question_extra=question_extra, subgroups=subgroups))
    path = folder / "chile.yaml"
    path.write_text(text, encoding="utf-8")
    return path
