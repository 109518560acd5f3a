"""`run.py export RUN_DIR --csv`: the answers as one flat CSV for R or Stata, on a real run
(builtin:tiny: random weights, not a pretrained model)."""

from __future__ import annotations

import io
import math
import re

import pandas as pd
import pytest

from analysis.export import safe_name
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def exported(flagship_reference_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "answers.csv"
    result = run_cli("export", str(flagship_reference_run), "--csv", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return pd.read_csv(out, dtype={"participant_id": str}), pd.read_parquet(
        flagship_reference_run / "responses.parquet")


def test_one_row_per_policy_participant_round_and_question(exported):
    flat, responses = exported
    assert len(flat) == len(responses) == responses["participant_id"].nunique() * 2 * 4 * 3
    keys = ["policy", "participant_id", "round", "question_id"]
    assert not flat.duplicated(keys).any()
    assert set(map(tuple, flat[keys].to_numpy())) == set(map(tuple, responses[keys].to_numpy()))
    assert list(flat["policy"].unique()) == ["base", "tuned"]  # grouped as the run made them


def test_probabilities_become_one_column_per_option(exported):
    flat, responses = exported
    merged = flat.merge(responses[["policy", "participant_id", "round", "question_id", "options",
                                   "probs", "answer"]], on=["policy", "participant_id", "round",
                                                            "question_id"], suffixes=("", "_run"))
    p_columns = [c for c in flat.columns if c.startswith("p_")]
    assert {"p_north", "p_south", "p_both", "p_neither", "p_p81_100"} <= set(p_columns)
    for row in merged.itertuples():
        assert row.options == "|".join(row.options_run)
        assert row.answer in row.options_run
        mine = {f"p_{o}" for o in row.options_run}
        for option, p in zip(row.options_run, row.probs, strict=True):
            assert getattr(row, f"p_{option}") == p  # exact: CSV keeps every digit
        assert all(math.isnan(getattr(row, c)) for c in p_columns if c not in mine)


def test_column_names_suit_r_and_stata(exported):
    flat, _ = exported
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", c) for c in flat.columns)
    taken: set[str] = set()
    assert safe_name("p_7", taken) == "p_7" and safe_name("p_7", taken) == "p_7_2"
    assert safe_name("7 days", taken) == "_7_days"
    assert len(safe_name("p_" + "x" * 40, taken)) == 32


def test_stdout_and_refusals(flagship_reference_run, tmp_path):
    result = run_cli("export", str(flagship_reference_run), "--csv", "--out", "-")
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(io.StringIO(result.stdout))) == 50 * 2 * 4 * 3
    for args, says in ((["--out", str(tmp_path / "no" / "x.csv")], "does not exist"),
                       (["--out", str(tmp_path)], "is a directory")):
        bad = run_cli("export", str(flagship_reference_run), "--csv", *args)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("export", str(tmp_path), "--csv")
    assert bad.returncode == 2 and "not a run directory" in bad.stderr
