"""`show --policy/--round`, the human twin's answer beside each simulated one, the memory block
the model reads, and option mass in words; on a real run (builtin:tiny: random weights, not a
pretrained model; the flagship's reference is a SYNTHETIC STAND-IN, not human data)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from engine.transcript_view import OPTION_MASS, render_transcript
from tests.conftest import ROOT, run_cli

STANDIN = ROOT / "scenarios" / "data" / "security_disclosure_synthetic_standin.csv"


def _shown(run_dir: Path, participant: str, **filters: object) -> str:
    out = io.StringIO()
    render_transcript(run_dir, participant, Console(file=out, width=500), **filters)
    return out.getvalue()


def _participant(run_dir: Path) -> str:
    return json.loads((run_dir / "transcripts.jsonl").open().readline())["participant_id"]


def _standin_row(participant: str) -> pd.Series:
    table = pd.read_csv(STANDIN, comment="#", dtype=str)
    return table.set_index("participant_id").loc[participant]


def test_one_policy_and_one_round_only(flagship_reference_run):
    pid = _participant(flagship_reference_run)
    text = _shown(flagship_reference_run, pid, policy="tuned", round_id=2)
    assert "policy tuned" in text and "policy base" not in text
    assert "round 2 · stimulus" in text
    for other in (1, 3, 4):
        assert f"round {other} · " not in text
    assert text.count("← answer") == 3  # belief_location, belief_truth, attack
    everything = _shown(flagship_reference_run, pid)
    assert everything.count("← answer") == 2 * 4 * 3


def test_the_twin_answer_beside_each_simulated_one_is_the_data_row(flagship_reference_run):
    pid = _participant(flagship_reference_run)
    text = _shown(flagship_reference_run, pid, policy="base")
    row = _standin_row(pid)
    for round_id in range(1, 5):
        for question in ("belief_location", "belief_truth", "attack"):
            assert f"stand-in twin answered: {row[f'r{round_id}_{question}']}" in text
    assert text.count("stand-in twin answered:") == 12
    assert "SYNTHETIC STAND-IN reference (not human data)" in text
    assert "human twin" not in text  # a stand-in row is never called human


def test_the_memory_block_is_shown_from_round_two(flagship_reference_run):
    pid = _participant(flagship_reference_run)
    text = _shown(flagship_reference_run, pid, policy="base")
    assert "round 1 · memory" not in text
    for round_id in (2, 3, 4):
        assert f"round {round_id} · memory the model reads" in text
    lines = [json.loads(line) for line in (flagship_reference_run / "transcripts.jsonl").open()]
    system = next(line for line in lines if line["participant_id"] == pid
                  and line["policy"] == "base" and line["role"] == "system" and line["round"] == 4)
    memory = system["content"][system["content"].index("What happened in earlier rounds:"):]
    memory = memory[:memory.index("\n\n")]
    assert memory.count("\n- ") == 3  # rounds 1-3, as the model read them
    for line in memory.splitlines():
        assert line in text


def test_option_mass_is_explained_in_words(flagship_reference_run):
    text = _shown(flagship_reference_run, _participant(flagship_reference_run), round_id=1)
    assert OPTION_MASS.split(";")[0] in " ".join(text.split())
    assert "of the next-token probability was on the option labels" in text


def test_unknown_policy_or_round_exits_2_naming_what_exists(flagship_reference_run):
    pid = _participant(flagship_reference_run)
    bad = run_cli("show", str(flagship_reference_run), "--participant", pid, "--policy", "ft")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--policy" in bad.stderr and "base, tuned" in bad.stderr
    bad = run_cli("show", str(flagship_reference_run), "--participant", pid, "--round", "7")
    assert bad.returncode == 2 and "--round" in bad.stderr and "1, 2, 3, 4" in bad.stderr
    bad = run_cli("show", str(flagship_reference_run), "--participant", pid, "--round", "two")
    assert bad.returncode == 2 and "--round" in bad.stderr


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_changed_or_missing_reference_still_shows_the_transcript(flagship_reference_run,
                                                                   tmp_path, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(flagship_reference_run, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    copy = tmp_path / "data.csv"
    if damage == "changed":
        copy.write_text(STANDIN.read_text() + "\n")
    manifest["human_data"]["path"] = str(copy)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    text = _shown(run_dir, _participant(run_dir), policy="base", round_id=1)
    assert "stand-in twin's answers not shown" in text
    assert ("changed since the run" if damage == "changed" else "cannot be read") in text
    assert text.count("← answer") == 3
