"""Twins are tied to their own human rows, also when the data have no id column.

A holdout run (or a `--participants N` subset) is scored against the human rows its participants
are the twins of, and never against the pilot's rows. Data without an id column: the twins are
named row1, row2, ... after their data row, the manifest records each twin's row, and scoring
matches them by row position, only in the very file the run read (same SHA-256).
The reference rows are the SYNTHETIC STAND-IN (not human data); builtin:tiny is not a
pretrained model (random weights): these tests check bookkeeping, not answers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import score_run
from analysis.run_dir import read_run
from engine.policies import twins_from_record
from engine.runner import run_scenario
from scenarios.loader import load_scenario
from tests.conftest import FLAGSHIP, run_cli

STANDIN = FLAGSHIP.parent / "data" / "security_disclosure_synthetic_standin.csv"
ROWS = 16   # data rows of the fixture
PILOT = 5   # pilot participants; the holdout is the other 11 rows
QUICK = {"bootstrap": 0, "splits": 1}  # what is checked here is which rows, not the metrics


def _leading_notes(path: Path) -> list[str]:
    notes = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.startswith("#"):
            break
        notes.append(line)
    return notes


def _without_block(text: str, key: str) -> str:
    """A scenario's text less one top-level block (the flagship's study grid is sized for 929 rows)."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith(f"{key}:"):
            skipping = True
        elif skipping and line.strip() and not line[0].isspace():
            skipping = False
        if not skipping:
            kept.append(line)
    return "".join(kept)


@pytest.fixture(scope="module")
def no_id(tmp_path_factory) -> Path:
    """The flagship on its first 16 stand-in rows, with the id column dropped from data and scenario."""
    folder = tmp_path_factory.mktemp("no-id")
    notes = _leading_notes(STANDIN)
    table = pd.read_csv(STANDIN, skiprows=len(notes), dtype=str).head(ROWS)
    table = table.drop(columns="participant_id")
    (folder / "data.csv").write_text("".join(notes) + table.to_csv(index=False), encoding="utf-8")
    text = FLAGSHIP.read_text(encoding="utf-8")
    assert "  id_column: participant_id\n" in text and STANDIN.name in text
    text = text.replace("  id_column: participant_id\n", "")
    text = _without_block(text.replace(f"data/{STANDIN.name}", "data.csv"), "study")
    (folder / "scenario.yaml").write_text(text, encoding="utf-8")
    return folder / "scenario.yaml"


@pytest.fixture(scope="module")
def trained(no_id, tmp_path_factory) -> Path:
    """`finetune` on a 5-row pilot of the id-less data (builtin:tiny, 1 epoch): its training.json."""
    adapter = tmp_path_factory.mktemp("adapter") / "ft"
    result = run_cli("finetune", str(no_id), "--pilot", str(PILOT), "--epochs", "1",
                     "--out", str(adapter))
    assert result.returncode == 0, result.stderr
    return adapter / "training.json"


def _rows(ids: list[str]) -> list[int]:
    """Data row numbers of twins named row1, row2, ..."""
    assert all(i.startswith("row") for i in ids), ids[:3]
    return sorted(int(i[3:]) for i in ids)


def _assert_reference_is_rows(run_dir: Path, rows: list[int], data: Path) -> None:
    """The reference sample read for scoring holds exactly these data rows' answers, in row order,
    checked cell by cell against the CSV itself."""
    inputs = read_run(run_dir, None)
    assert list(inputs.human.participant_ids) == [f"row{n}" for n in rows]
    table = pd.read_csv(data, skiprows=len(_leading_notes(data)), dtype=str)
    for i, n in enumerate(rows):
        for q, question in enumerate(inputs.experiment.questions):
            for r, round_id in enumerate(inputs.experiment.rounds):
                column = question.column_for(round_id)
                chosen = question.options[inputs.human.answers[i, r, q]]
                assert chosen == table.iloc[n - 1][column], (n, column)


@pytest.fixture(scope="module")
def subset_run(no_id, tiny_backend, tmp_path_factory) -> Path:
    """`--participants 6` over the id-less data (no holdout): a seeded subset of its rows."""
    out = tmp_path_factory.mktemp("subset") / "run"
    return run_scenario(load_scenario(no_id), participants=6, seed=3, out=out,
                        backend=tiny_backend).run_dir


def test_twins_of_data_without_an_id_column_are_named_and_recorded_by_data_row(no_id, subset_run):
    manifest = json.loads((subset_run / "manifest.json").read_text(encoding="utf-8"))
    rows = manifest["twin_rows"]["rows"]
    assert manifest["twin_rows"]["id_column"] is None and len(rows) == 6
    assert rows == {f"row{n}": n for n in rows.values()}  # the id names the row it records
    simulated = set(pd.read_parquet(subset_run / "responses.parquet")["participant_id"])
    assert simulated == set(rows)
    report = score_run(subset_run, **QUICK)
    assert report["reference"]["human_rows"]["rows"] == sorted(rows.values())
    assert report["reference"]["human_rows"]["of"] == ROWS
    assert report["samples"]["human"]["participants"] == 6
    assert any("the 6 human rows these participants are twins of" in n for n in report["notes"])
    _assert_reference_is_rows(subset_run, sorted(rows.values()), no_id.parent / "data.csv")


def test_a_holdout_run_is_scored_against_the_holdout_rows_never_the_pilot(no_id, trained, tiny_backend,
                                                                         tmp_path):
    record = json.loads(trained.read_text(encoding="utf-8"))
    pilot, holdout = _rows(record["pilot_ids"]), _rows(record["holdout_ids"])
    assert len(pilot) == PILOT and sorted(pilot + holdout) == list(range(1, ROWS + 1))
    loaded = load_scenario(no_id)  # as `run --twins holdout:TRAINING_JSON` does, in-process
    run_dir = run_scenario(loaded, twins=twins_from_record(loaded, f"holdout:{trained}"),
                           out=tmp_path / "run", backend=tiny_backend).run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["twin_rows"]["rows"] == {f"row{n}": n for n in holdout}
    scored = run_cli("score", str(run_dir), "--bootstrap", "0")
    assert scored.returncode == 0, scored.stderr
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    scored_rows = report["reference"]["human_rows"]["rows"]
    assert scored_rows == holdout and not set(scored_rows) & set(pilot)
    assert report["samples"]["human"]["participants"] == len(holdout) == ROWS - PILOT
    assert any(f"the {len(holdout)} human rows these participants are twins of" in note
               for note in report["notes"])
    _assert_reference_is_rows(run_dir, holdout, no_id.parent / "data.csv")


def test_a_seeded_subset_of_the_holdout_is_scored_against_its_own_rows(no_id, trained, tiny_backend,
                                                                      tmp_path):
    loaded = load_scenario(no_id)
    record = json.loads(trained.read_text(encoding="utf-8"))
    twins = twins_from_record(loaded, f"holdout:{trained}")
    run = run_scenario(loaded, participants=5, twins=twins, out=tmp_path / "run",
                       backend=tiny_backend)
    chosen = _rows(list(json.loads((run.run_dir / "manifest.json").read_text())["twins"]["ids"]))
    assert len(chosen) == 5 and set(chosen) <= set(_rows(record["holdout_ids"]))
    report = score_run(run.run_dir, **QUICK)
    assert report["reference"]["human_rows"]["rows"] == chosen
    assert not set(chosen) & set(_rows(record["pilot_ids"]))
    _assert_reference_is_rows(run.run_dir, chosen, no_id.parent / "data.csv")
    # a run written before twins recorded their rows: the ids row1, row2, ... still name them
    manifest_path = run.run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    del manifest["twin_rows"]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert read_run(run.run_dir, None).human_rows["rows"] == chosen


def test_score_human_other_file_without_an_id_column_needs_the_runs_own_bytes(no_id, subset_run,
                                                                             tmp_path):
    data = no_id.parent / "data.csv"
    expected = read_run(subset_run, None).human_rows
    copy = shutil.copy(data, tmp_path / "copy.csv")  # the same bytes: row N is the same person
    assert read_run(subset_run, Path(copy)).human_rows == expected
    notes = _leading_notes(data)
    table = pd.read_csv(data, skiprows=len(notes), dtype=str)
    resorted = tmp_path / "resorted.csv"  # the same people in another order: row N is someone else
    resorted.write_text("".join(notes) + table.iloc[::-1].to_csv(index=False), encoding="utf-8")
    refused = run_cli("score", str(subset_run), "--human", str(resorted), "--bootstrap", "0")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    assert "cannot be tied to this file's rows" in message and "no id column" in message


def test_with_an_id_column_twins_record_their_rows_and_the_report_is_unchanged(flagship, tiny_backend,
                                                                              tmp_path):
    run = run_scenario(flagship, participants=5, out=tmp_path / "run", backend=tiny_backend)
    manifest = json.loads((run.run_dir / "manifest.json").read_text(encoding="utf-8"))
    ids = pd.read_csv(STANDIN, skiprows=len(_leading_notes(STANDIN)), dtype=str)["participant_id"]
    row_of = {pid: i + 1 for i, pid in enumerate(ids)}
    rows = manifest["twin_rows"]["rows"]
    assert manifest["twin_rows"]["id_column"] == "participant_id" and len(rows) == 5
    assert rows == {pid: row_of[pid] for pid in rows}
    report = score_run(run.run_dir, **QUICK)
    assert "human_rows" not in report["reference"]  # matched by id, as before
    assert any("the 5 human rows whose twins were simulated" in n for n in report["notes"])
