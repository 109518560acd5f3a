"""One writer per run directory: a second run, finetune or score is refused while one writes; a
kill never leaves a directory that cannot be continued; "already complete" is checked, not trusted."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import run as cli
from engine.cache import CACHE_FILE
from engine.lock import LOCK_FILE, hold_directory, read_holder
from engine.runner import run_scenario
from engine.store import MANIFEST, PARTS, RESPONSES, STARTING, TRANSCRIPTS
from scenarios.errors import InputError
from tests.conftest import FLAGSHIP, ROOT

PARTICIPANTS = 6
BUSY = "is writing this directory; wait for it or choose another --out"

# A process that holds a directory's lock as a run does, until it is killed.
HOLDER = """
import sys, time
from pathlib import Path
from engine.lock import hold_directory
with hold_directory(Path(sys.argv[1]), purpose="run", field="--out", advice="wait"):
    print("held", flush=True)
    time.sleep(600)
"""


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / MANIFEST).read_text())


def assert_same_tables(left: Path, right: Path) -> None:
    """Equal answer tables and transcripts (the tables hold no timing field to ignore)."""
    pd.testing.assert_frame_equal(pd.read_parquet(left / RESPONSES),
                                  pd.read_parquet(right / RESPONSES), check_exact=True)
    assert (left / TRANSCRIPTS).read_text() == (right / TRANSCRIPTS).read_text()


def uninterrupted(flagship, backend, out: Path, seed: int, participants: int = PARTICIPANTS) -> Path:
    run_scenario(flagship, participants=participants, seed=seed, out=out, backend=backend)
    return out


def start_run(out: Path, seed: int) -> subprocess.Popen[str]:
    command = [sys.executable, str(ROOT / "run.py"), "run", str(FLAGSHIP), "--participants",
               str(PARTICIPANTS), "--seed", str(seed), "--out", str(out)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def race(tmp_path: Path, seeds: tuple[int, int]) -> tuple[Path, list[tuple[int, int, str]]]:
    """Two runs started at the same instant into one --out: (out, [(pid, exit code, stderr)]).

    Each run holds the directory for seconds (model load and simulation) while the two start
    within a fraction of one; should a busy machine still let one finish before the other reaches
    the directory (the second then finds a finished run), the race is started again."""
    for attempt in range(3):
        out = tmp_path / f"race-{attempt}"
        processes = [start_run(out, seed) for seed in seeds]
        ended = []
        for process in processes:
            _, err = process.communicate(timeout=600)
            ended.append((process.pid, process.returncode, err))
        one_after_the_other = any("already complete" in err or "continues only the same run" in err
                                  for _, _, err in ended)
        if not one_after_the_other:
            return out, ended
    pytest.fail("the two runs never overlapped in three attempts")


def hold(directory: Path) -> subprocess.Popen[str]:
    """A live process holding `directory`'s lock (it creates the directory)."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def main(*args: str) -> int:
    return cli.main([str(a) for a in args])


def test_two_runs_into_one_out_at_once_one_runs_the_other_is_refused_with_its_pid(
        flagship, tiny_backend, tmp_path):
    out, ended = race(tmp_path, (4, 4))
    assert sorted(code for _, code, _ in ended) == [0, 2], ended
    (winner, _, _), (_, _, refused) = sorted(ended, key=lambda e: e[1])
    assert f"{out}: --out: another run (PID {winner}, started " in refused
    assert BUSY in refused and "Traceback" not in refused

    assert_same_tables(out, uninterrupted(flagship, tiny_backend, tmp_path / "whole", seed=4))
    assert len(manifest(out)["sessions"]) == 1 and manifest(out)["status"] == "complete"
    assert not (out / LOCK_FILE).exists()  # released and removed at the end


def test_two_runs_of_different_seeds_into_one_out_leave_one_seeds_run_only(flagship, tiny_backend,
                                                                           tmp_path):
    out, ended = race(tmp_path, (4, 5))
    assert sorted(code for _, code, _ in ended) == [0, 2], ended
    (winner, _, _), (_, _, refused) = sorted(ended, key=lambda e: e[1])
    assert f"another run (PID {winner}, started " in refused and BUSY in refused
    seed = manifest(out)["seed"]
    assert_same_tables(out, uninterrupted(flagship, tiny_backend, tmp_path / "whole", seed=seed))
    assert len(pd.read_parquet(out / RESPONSES)["participant_id"].unique()) == PARTICIPANTS


def test_a_live_lock_holder_refuses_run_finetune_and_score_and_nothing_is_written(tmp_path, capsys):
    run_dir, adapter = tmp_path / "run", tmp_path / "adapter"
    holders = [hold(run_dir), hold(adapter)]
    try:
        capsys.readouterr()
        assert main("run", FLAGSHIP, "--participants", 3, "--out", run_dir) == 2
        refused = capsys.readouterr().err
        assert f"{run_dir}: --out: another run (PID {holders[0].pid}, started " in refused
        assert BUSY in refused

        assert main("score", run_dir, "--bootstrap", 10) == 2
        refused = capsys.readouterr().err
        assert f"{run_dir}: report.json: another run (PID {holders[0].pid}, started " in refused
        assert "wait for it, then score again" in refused

        assert main("finetune", FLAGSHIP, "--pilot", 6, "--epochs", 1, "--out", adapter) == 2
        refused = capsys.readouterr().err
        assert f"{adapter}: --out: another run (PID {holders[1].pid}, started " in refused

        for directory, holder in zip((run_dir, adapter), holders, strict=True):
            assert [p.name for p in directory.iterdir()] == [LOCK_FILE]  # nothing written
            assert read_holder(directory).pid == holder.pid  # nor the holder's record touched
    finally:
        for holder in holders:
            kill(holder)


def test_a_lock_whose_holder_was_killed_refuses_nothing(tmp_path, capsys):
    run_dir, adapter = tmp_path / "run", tmp_path / "adapter"
    for directory in (run_dir, adapter):
        holder = hold(directory)
        kill(holder)
        assert read_holder(directory).pid == holder.pid  # its record stays; its lock does not

    assert main("run", FLAGSHIP, "--participants", 12, "--out", run_dir) == 0
    assert manifest(run_dir)["status"] == "complete" and not (run_dir / LOCK_FILE).exists()
    assert main("score", run_dir, "--bootstrap", 10) == 0
    assert (run_dir / "report.json").is_file()
    assert main("finetune", FLAGSHIP, "--pilot", 6, "--epochs", 1, "--out", adapter) == 0
    assert (adapter / "training.json").is_file() and not (adapter / LOCK_FILE).exists()


def test_a_worker_forked_by_the_holder_does_not_keep_the_lock_after_the_holder_is_killed(tmp_path):
    # The child says it is running (so the at-fork handlers have run in it) before the holder
    # reports: otherwise a loaded machine can kill the holder while the child still shares the fd.
    forking = HOLDER.replace('print("held"', 'ready, up = os.pipe()\n    child = os.fork()\n'
                             '    if child == 0:\n        os.write(up, b"x")\n        time.sleep(600)\n'
                             '    os.read(ready, 1)\n    print(child, "held"')
    forking = forking.replace("import sys, time", "import os, sys, time")
    holder = subprocess.Popen([sys.executable, "-c", forking, str(tmp_path / "run")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    child, word = holder.stdout.readline().split()
    try:
        assert word == "held"
        kill(holder)
        os.kill(int(child), 0)  # the forked worker lives on ...
        with hold_directory(tmp_path / "run", purpose="run", field="--out", advice="wait"):
            pass  # ... and holds nothing
    finally:
        os.kill(int(child), signal.SIGKILL)


def test_a_run_killed_while_it_starts_is_continued_by_resume_and_by_out(flagship, tiny_backend,
                                                                       tmp_path):
    killed = tmp_path / "killed"
    process = start_run(killed, seed=5)
    deadline = time.monotonic() + 300
    while not ((killed / MANIFEST).is_file() and manifest(killed)["status"] == STARTING):
        assert process.poll() is None and time.monotonic() < deadline, "never saw it start"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert manifest(killed)["status"] == STARTING and not (killed / RESPONSES).exists()
    shutil.copytree(killed, tmp_path / "copy")
    whole = uninterrupted(flagship, tiny_backend, tmp_path / "whole", seed=5)

    assert main("run", FLAGSHIP, "--resume", killed) == 0
    assert_same_tables(killed, whole)
    assert main("run", FLAGSHIP, "--participants", PARTICIPANTS, "--seed", 5,
                "--out", tmp_path / "copy") == 0
    assert_same_tables(tmp_path / "copy", whole)
    assert [s["resumed"] for s in manifest(killed)["sessions"]] == [False]  # a new run, begun


def test_a_directory_left_before_any_manifest_starts_a_run_that_keeps_its_cached_answers(
        flagship, tiny_backend, tmp_path, capsys):
    whole = uninterrupted(flagship, tiny_backend, tmp_path / "whole", seed=2, participants=5)
    early = tmp_path / "early"  # what a kill before the first manifest left (older versions too)
    (early / PARTS).mkdir(parents=True)
    (early / TRANSCRIPTS).touch()
    shutil.copy(whole / CACHE_FILE, early / CACHE_FILE)
    (early / LOCK_FILE).write_text(json.dumps({"pid": 999999, "started": "2025-01-01T00:00:00",
                                               "purpose": "run", "command": "run.py run X --out Y"}))

    assert main("run", FLAGSHIP, "--resume", early) == 2  # what it was asked is not recorded:
    refused = capsys.readouterr().err                     # say how to start it again
    assert "stopped before it recorded what it was asked" in refused
    assert "run.py run X --out Y" in refused and "Traceback" not in refused

    result = run_scenario(flagship, participants=5, seed=2, out=early, backend=tiny_backend)
    assert (result.cache_misses, result.resumed) == (0, False)
    assert_same_tables(early, whole)


def test_a_run_that_fails_to_start_leaves_no_directory(flagship, tmp_path):
    broken = dataclasses.replace(flagship, scenario=flagship.scenario.model_copy(
        update={"model": str(tmp_path / "no-such-model")}))
    with pytest.raises(InputError):
        run_scenario(broken, participants=3, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def truncate_responses(run_dir: Path) -> None:
    data = (run_dir / RESPONSES).read_bytes()
    (run_dir / RESPONSES).write_bytes(data[: len(data) // 2])


def delete_transcripts(run_dir: Path) -> None:
    (run_dir / TRANSCRIPTS).unlink()


def drop_last_transcript_line(run_dir: Path) -> None:
    lines = (run_dir / TRANSCRIPTS).read_text().splitlines(keepends=True)
    (run_dir / TRANSCRIPTS).write_text("".join(lines[:-1]))


@pytest.mark.parametrize(("damage", "reason"), [
    (truncate_responses, "responses.parquet is not readable"),
    (delete_transcripts, "transcripts.jsonl is missing"),
    (drop_last_transcript_line, "transcripts.jsonl has 139 lines, the run wrote 140"),
])
def test_a_complete_run_with_damaged_tables_is_rebuilt_from_its_cache(flagship, tiny_backend,
                                                                      tmp_path, damage, reason):
    run_dir = uninterrupted(flagship, tiny_backend, tmp_path / "run", seed=2, participants=5)
    shutil.copytree(run_dir, tmp_path / "original")
    damage(run_dir)
    again = run_scenario(flagship, participants=5, seed=2, out=run_dir, backend=tiny_backend)
    assert not again.already_complete and reason in (again.rebuilt or "")
    assert again.cache_misses == 0 and again.cache_hits == 5 * 4 * 3  # nothing recomputed
    assert_same_tables(run_dir, tmp_path / "original")
    assert run_scenario(flagship, participants=5, seed=2, out=run_dir,
                        backend=tiny_backend).already_complete


def test_the_cli_says_when_it_rebuilt_a_damaged_run(flagship, tiny_backend, tmp_path, capsys):
    run_dir = uninterrupted(flagship, tiny_backend, tmp_path / "run", seed=2, participants=5)
    truncate_responses(run_dir)
    capsys.readouterr()
    assert main("run", FLAGSHIP, "--participants", 5, "--seed", 2, "--out", run_dir) == 0
    said = capsys.readouterr().err
    assert "the run's tables were damaged (responses.parquet is not readable" in said
    assert "rebuilt from its response cache" in said and "already complete" not in said
