"""Every run is resumable: kill -9 in the middle, rerun, and the tables equal an uninterrupted run's."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from engine.cache import CACHE_FILE
from engine.runner import run_scenario
from engine.store import MANIFEST, PARTS, RESPONSES, TRANSCRIPTS
from scenarios.errors import InputError
from tests.conftest import FLAGSHIP, ROOT, run_cli

PARTICIPANTS = "120"  # about a second per stage on 2 cores: time to kill it in the middle


def manifest(run_dir):
    return json.loads((run_dir / MANIFEST).read_text())


def assert_same_run(left, right):
    a, b = pd.read_parquet(left / RESPONSES), pd.read_parquet(right / RESPONSES)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert (left / TRANSCRIPTS).read_text() == (right / TRANSCRIPTS).read_text()


def kill_in_the_middle(run_dir, after_steps: int, scenario=FLAGSHIP, extra=()) -> None:
    """Start a run as a user would and kill -9 it once `after_steps` stages are on disk."""
    command = [sys.executable, str(ROOT / "run.py"), "run", str(scenario), "--participants",
               PARTICIPANTS, "--seed", "4", "--out", str(run_dir), *extra]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    marker = run_dir / PARTS / f"step-{after_steps:04d}.parquet"
    while not marker.exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run finished before the kill landed"


def test_a_run_killed_mid_way_resumes_to_the_same_tables_as_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = run_cli("run", str(FLAGSHIP), "--participants", PARTICIPANTS, "--seed", "4",
                   "--out", str(whole))
    assert done.returncode == 0, done.stderr

    kill_in_the_middle(killed, after_steps=3)
    assert manifest(killed)["status"] == "running" and not (killed / RESPONSES).exists()
    with sqlite3.connect(killed / CACHE_FILE) as db:  # the WAL holds committed batches
        cached = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    assert cached >= 3 * 120  # at least the three finished stages' answers

    resumed = run_cli("run", str(FLAGSHIP), "--resume", str(killed))  # nothing else repeated
    assert resumed.returncode == 0, resumed.stderr
    assert "from the cache" in resumed.stderr

    assert_same_run(whole, killed)
    table = pd.read_parquet(killed / RESPONSES)
    assert not table.duplicated(["participant_id", "policy", "round", "question_id"]).any()
    sessions = manifest(killed)["sessions"]
    assert [s["resumed"] for s in sessions] == [False, True]
    hits, misses = sessions[1]["cache"]["hits"], sessions[1]["cache"]["misses"]
    assert hits >= cached and 0 < misses <= len(table) - cached  # only the unfinished part asked
    assert not (killed / PARTS).exists()


def test_a_run_killed_mid_way_with_kept_prompt_segments_resumes_to_the_same_bits(tmp_path):
    """Kept segments on (forced on builtin:tiny, with a store far smaller than the run and no
    files, so it evicts): the killed run kept segments the resumed one never sees, and still every
    probability is bit-equal to an uninterrupted run's (see engine/backends/segments.py)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    kept = ("--backend-option", "prefix_reuse=true", "--backend-option", "prefix_cache_mb=16",
            "--backend-option", "prefix_spill_mb=0")
    done = run_cli("run", str(FLAGSHIP), "--participants", PARTICIPANTS, "--seed", "4",
                   "--out", str(whole), *kept)
    assert done.returncode == 0, done.stderr
    tokens = manifest(whole)["backend"]["tokens"]
    assert tokens["prompt_computed"] < 0.8 * tokens["prompt_submitted"]  # segments were reused
    kill_in_the_middle(killed, after_steps=3, extra=kept)
    resumed = run_cli("run", str(FLAGSHIP), "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(whole, killed)


def test_a_networked_run_killed_mid_way_resumes_to_the_same_tables_and_graph(tmp_path):
    """Killed once round 2's beliefs are on disk: the resumed run's round 2 action prompts
    summarise round 1's neighbours from the cache, exactly as the uninterrupted run's did."""
    social = ROOT / "scenarios" / "security_disclosure_social.yaml"
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = run_cli("run", str(social), "--participants", PARTICIPANTS, "--seed", "4",
                   "--out", str(whole))
    assert done.returncode == 0, done.stderr
    kill_in_the_middle(killed, after_steps=3, scenario=social)
    resumed = run_cli("run", str(social), "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(whole, killed)
    assert (whole / "network.graphml").read_bytes() == (killed / "network.graphml").read_bytes()
    assert manifest(killed)["network"] == manifest(whole)["network"]
    assert "You know" in (killed / TRANSCRIPTS).read_text()  # neighbours were summarised


def test_rerunning_into_the_same_out_continues_and_a_finished_run_is_left_alone(flagship,
                                                                               tiny_backend,
                                                                               tmp_path):
    run_dir = tmp_path / "run"
    first = run_scenario(flagship, participants=12, seed=2, out=run_dir, backend=tiny_backend)
    assert (first.cache_hits, first.cache_misses) == (0, 12 * 4 * 3)
    before = (run_dir / RESPONSES).read_bytes()
    again = run_scenario(flagship, participants=12, seed=2, out=run_dir, backend=tiny_backend)
    assert again.already_complete and (run_dir / RESPONSES).read_bytes() == before

    fresh = run_scenario(flagship, participants=12, seed=2, out=run_dir, backend=tiny_backend,
                         fresh=True)
    assert (fresh.cache_hits, fresh.cache_misses) == (0, 12 * 4 * 3)
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / RESPONSES),
                                  pd.read_parquet(io.BytesIO(before)), check_exact=True)
    assert [s["cache_read"] for s in manifest(run_dir)["sessions"]] == [True, False]


def test_a_run_directory_is_continued_only_by_the_same_run(flagship, tiny_backend, tmp_path):
    run_dir = tmp_path / "run"
    run_scenario(flagship, participants=6, seed=2, out=run_dir, backend=tiny_backend)
    with pytest.raises(InputError) as caught:
        run_scenario(flagship, participants=7, seed=3, out=run_dir, backend=tiny_backend)
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "seed: this run has 2; the command asks for 3" in text
    assert "participants: this run has 6; the command asks for 7" in text
    assert "choose another" in text


def test_cli_resume_errors_are_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("run", str(FLAGSHIP), "--resume", str(tmp_path / "empty"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not a run directory" in result.stderr
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / MANIFEST).write_text("{not json")
    result = run_cli("run", str(FLAGSHIP), "--resume", str(tmp_path / "junk"))
    assert result.returncode == 2 and "manifest.json" in result.stderr and "JSON" in result.stderr


def test_a_complete_run_without_its_table_is_replayed_from_the_cache(flagship, tiny_backend,
                                                                     tmp_path):
    run_dir = tmp_path / "run"
    run_scenario(flagship, participants=5, seed=2, out=run_dir, backend=tiny_backend)
    before = pd.read_parquet(run_dir / RESPONSES)
    (run_dir / RESPONSES).unlink()  # e.g. killed while a --fresh rerun was clearing it
    again = run_scenario(flagship, participants=5, seed=2, out=run_dir, backend=tiny_backend)
    assert not again.already_complete and again.cache_misses == 0
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / RESPONSES), before, check_exact=True)


def test_a_directory_holding_only_a_cache_starts_a_run_that_uses_it(flagship, tiny_backend,
                                                                    tmp_path):
    import shutil

    run_scenario(flagship, participants=5, seed=2, out=tmp_path / "a", backend=tiny_backend)
    (tmp_path / "b").mkdir()  # as if stopped before its manifest was written
    shutil.copy(tmp_path / "a" / CACHE_FILE, tmp_path / "b" / CACHE_FILE)
    result = run_scenario(flagship, participants=5, seed=2, out=tmp_path / "b", backend=tiny_backend)
    assert result.cache_misses == 0 and not result.resumed
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_a_damaged_cache_or_an_out_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CACHE_FILE).write_bytes(b"this is not an SQLite database" * 100)
    result = run_cli("run", str(FLAGSHIP), "--participants", "2", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert CACHE_FILE in result.stderr and "not a readable response cache" in result.stderr
    (tmp_path / "file").write_text("mine")
    result = run_cli("run", str(FLAGSHIP), "--participants", "2", "--out", str(tmp_path / "file"))
    assert result.returncode == 2 and "is a file, not a directory" in result.stderr
    assert (tmp_path / "file").read_text() == "mine"
