"""Progress: advanced after every backend call with an ETA on a terminal, plain log lines when
stderr is not one, and never a change to what a run writes (builtin:tiny: random weights, not a
pretrained model)."""

from __future__ import annotations

import io
import json

import pandas as pd
from rich.console import Console

from engine.progress import LogLines, eta_text, progress_bar
from tests.conftest import FLAGSHIP, run_cli


def test_eta_is_the_pace_so_far():
    assert eta_text(10, 100, 60.0) == "about 9m 00s left"
    assert eta_text(50, 100, 20.0) == "about 20s left"
    assert eta_text(1, 1000, 30.0) == "about 8h 19m left"
    assert eta_text(0, 100, 5.0) == "" and eta_text(100, 100, 5.0) == ""


def _log(clock: list[float]) -> tuple[LogLines, io.StringIO]:
    out = io.StringIO()
    return LogLines(Console(file=out, width=200), clock=lambda: clock[0]), out


def test_log_lines_come_at_each_tenth_and_every_30_seconds_not_every_call():
    clock = [0.0]
    lines, out = _log(clock)
    for done in range(0, 201):
        clock[0] += 0.1
        lines(done, 200, "round 1 · belief")
    printed = out.getvalue().splitlines()
    assert len(printed) == 11  # 0%, 10%, ..., 100%
    assert printed[5] == "progress: round 1 · belief: 100/200 (50%), 10 s, about 10s left"
    clock[0] += 31
    lines(200, 200, "round 1 · belief")  # nothing new: not repeated
    lines.beat()  # 31 s of silence: one 'still working' line
    lines.beat()
    assert out.getvalue().splitlines()[11:] == ["progress: round 1 · belief: still working, 51 s"]
    lines(201, 1000, "round 2 · belief")  # new work: said at once
    lines(202, 1000, "round 2 · belief")  # same tenth, no 30 s yet: quiet
    clock[0] += 31
    lines(203, 1000, "round 2 · belief")  # 30 s later, even within one tenth
    assert [line.split(",")[0] for line in out.getvalue().splitlines()[12:]] == [
        "progress: round 2 · belief: 201/1000 (20%)", "progress: round 2 · belief: 203/1000 (20%)"]


def test_progress_bar_logs_plain_lines_when_stderr_is_not_a_terminal():
    out = io.StringIO()
    with progress_bar("loading model", Console(file=out, width=200)) as update:
        update(3, 6, "round 1 · belief")
    assert out.getvalue().splitlines() == ["progress: loading model, 0 s",
                                           "progress: round 1 · belief: 3/6 (50%), 0 s, "
                                           "about 0s left"]


def test_a_run_reports_after_every_backend_call_and_writes_the_same_files(
        flagship, tiny_dir, tiny_lora_dir, flagship_policies, tmp_path):
    from engine.backends.transformers_backend import TransformersBackend
    from engine.runner import run_scenario

    backend = TransformersBackend(tiny_dir, adapters={"tuned": tiny_lora_dir})
    seen: list[tuple[int, int, str]] = []
    for name, progress in (("quiet", None), ("told", lambda *a: seen.append(a))):
        run_scenario(flagship, participants=5, out=tmp_path / name, backend=backend,
                     policies=flagship_policies, progress=progress)
    total = 5 * 2 * 4 * 3  # participants x policies x rounds x questions
    assert seen[-1] == (total, total, "done")
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and all(t == total for _, t, _ in seen)
    # each stage is two calls (base, tuned): progress moves inside a stage, not once per stage
    assert 10 in done and 20 in done  # round 1 · belief: 10 after base's call, 20 after tuned's
    assert len(set(done)) == 2 * 4 * 2 + 1
    quiet, told = tmp_path / "quiet", tmp_path / "told"
    pd.testing.assert_frame_equal(pd.read_parquet(quiet / "responses.parquet"),
                                  pd.read_parquet(told / "responses.parquet"))
    assert (quiet / "transcripts.jsonl").read_bytes() == (told / "transcripts.jsonl").read_bytes()


def test_the_command_line_logs_progress_and_says_what_to_do_next(tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", str(FLAGSHIP), "--participants", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    log = [line for line in result.stderr.splitlines() if line.startswith("progress: ")]
    assert log[0] == "progress: loading model, 0 s" or log[0].startswith("progress: loading")
    assert any("/36 (" in line for line in log) and "progress: done: 36/36 (100%)" in \
        " ".join(log)
    first = json.loads((out / "transcripts.jsonl").open().readline())["participant_id"]
    for command in (f"python run.py show {out} --participant {first}",
                    f"python run.py score {out}", f"python run.py report {out}",
                    f"python run.py export {out} --csv"):
        assert command in result.stderr
