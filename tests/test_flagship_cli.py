"""The README's run command: the whole flagship on builtin:tiny, then `show` on one participant."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.tiny_model import build_tiny
from tests.conftest import FLAGSHIP, run_cli


@pytest.mark.slow
def test_whole_flagship_runs_from_the_command_line_and_show_prints_a_transcript(tmp_path):
    result = run_cli("run", str(FLAGSHIP), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    assert result.stdout.strip().endswith(str(run_dir))
    table = pd.read_parquet(run_dir / "responses.parquet")
    assert table["participant_id"].nunique() == 929
    assert len(table) == 929 * 4 * 3
    assert np.abs(table["probs"].map(np.sum) - 1).max() <= 1e-6
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["timing"]["backend_calls"] == 8

    shown = run_cli("show", str(run_dir), "--participant", "P007")
    assert shown.returncode == 0, shown.stderr
    assert "persona" in shown.stdout and "not a pretrained language model" in shown.stdout
    for round_id in range(1, 5):
        assert f"round {round_id} · stimulus" in shown.stdout
        for question in ("belief_location", "belief_truth", "attack"):
            assert f"round {round_id} · " in shown.stdout and question in shown.stdout
    assert shown.stdout.count("← answer") == 12


def test_show_names_unknown_participants_and_exits_2(tmp_path):
    (tmp_path / "transcripts.jsonl").write_text(
        json.dumps({"participant_id": "P1", "policy": "base", "seq": 0, "role": "system"}) + "\n")
    result = run_cli("show", str(tmp_path), "--participant", "P999")
    assert result.returncode == 2 and "no participant 'P999'" in result.stderr
    assert "P1" in result.stderr and "Traceback" not in result.stderr


def test_show_on_a_folder_that_is_not_a_run_exits_2(tmp_path):
    result = run_cli("show", str(tmp_path), "--participant", "P1")
    assert result.returncode == 2 and "not a run directory" in result.stderr


def test_builtin_tiny_is_built_byte_identically_and_says_it_is_not_pretrained(tmp_path):
    a, b = build_tiny(tmp_path / "a"), build_tiny(tmp_path / "b")
    for path in sorted(a.iterdir()):
        assert path.read_bytes() == (b / path.name).read_bytes(), path.name
    config = json.loads((a / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] >= 32
    assert "NOT a pretrained language model" in (a / "README.md").read_text()
