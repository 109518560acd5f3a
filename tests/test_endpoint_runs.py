"""A whole run through a misbehaving OpenAI-compatible endpoint: it completes, counts every retry,
records unreadable answers as invalid with their reason, and a rerun asks for those again."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("aiohttp")

from rich.console import Console

from agents.conversation import persona_text
from agents.population import build_population
from analysis.report import score_run
from engine.runner import run_scenario
from engine.store import MANIFEST, RESPONSES
from engine.transcript_view import render_transcript
from tests.conftest import FLAGSHIP, run_cli
from tests.scripted_server import CLIENT_TIMEOUT, ScriptedServer

PARTICIPANTS, SEED = 4, 9
QUICK = {"max_in_flight": 1, "max_retries": 5, "backoff_base": 0.01, "backoff_max": 0.05,
         "timeout": CLIENT_TIMEOUT, "max_invalid": 3}


def test_a_run_through_a_faulty_endpoint_completes_and_counts_retries_and_invalid_answers(
        flagship, tiny_dir, tmp_path):
    from transformers import AutoTokenizer

    specs = build_population(flagship, PARTICIPANTS, SEED)
    personas = [persona_text(flagship.scenario, s.demographics, s.condition) for s in specs]
    victim = personas[1]
    assert personas.count(victim) == 1
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    tokenizer.decode(list(range(600)))  # warm: a slow first decode must not look like a hang

    def poison(request):  # every answer of one participant is unreadable
        return victim in tokenizer.decode(request["prompt"])

    run_dir = tmp_path / "run"
    with ScriptedServer(["500", "429", "hang", "drop"], poison=poison) as server:
        result = run_scenario(flagship, participants=PARTICIPANTS, seed=SEED, out=run_dir,
                              backend_kind="openai",
                              backend_options={"base_url": server.base_url, **QUICK})
        poisoned = sum(poison(r) for r in server.requests)
        server.poison = None  # the endpoint recovers
        rerun = run_scenario(flagship, participants=PARTICIPANTS, seed=SEED, out=run_dir,
                             backend_kind="openai",
                             backend_options={"base_url": server.base_url, **QUICK})

    questions = len(flagship.scenario.questions) * len(flagship.scenario.rounds)
    assert result.invalid_answers == questions  # the victim's every answer, none dropped
    first = json.loads((run_dir / MANIFEST).read_text())["sessions"][0]
    assert first["invalid_answers"] == questions
    assert first["endpoint"]["retries"] == 4
    assert first["endpoint"]["invalid"] == poisoned == 3 * questions
    assert first["endpoint"]["failed"] == questions
    assert "not a completions JSON body" in " ".join(first["endpoint"]["reasons"])
    assert first["cache"]["invalid_not_stored"] == questions

    # The rerun continued the run: the others' answers came from the cache, the victim's were asked.
    assert rerun.resumed and not rerun.already_complete and rerun.invalid_answers == 0
    assert rerun.cache_hits == (PARTICIPANTS - 1) * questions
    assert rerun.cache_misses == questions
    table = pd.read_parquet(run_dir / RESPONSES)
    assert table["invalid"].isna().all() and len(table) == PARTICIPANTS * questions


def test_invalid_answers_are_rows_with_a_reason_that_scoring_and_show_handle(flagship, tiny_dir,
                                                                            tmp_path):
    from transformers import AutoTokenizer

    specs = build_population(flagship, PARTICIPANTS, SEED)
    victim = persona_text(flagship.scenario, specs[0].demographics, specs[0].condition)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    run_dir = tmp_path / "run"
    with ScriptedServer(poison=lambda r: victim in tokenizer.decode(r["prompt"])) as server:
        run_scenario(flagship, participants=PARTICIPANTS, seed=SEED, out=run_dir,
                     backend_kind="openai", backend_options={"base_url": server.base_url, **QUICK})
    table = pd.read_parquet(run_dir / RESPONSES)
    bad = table[table["participant_id"] == specs[0].participant_id]
    assert bad["invalid"].str.contains("unreadable after 3 attempts").all()
    assert bad["answer"].isna().all() and (bad["answer_index"] == -1).all()
    assert all(np.isnan(p).all() for p in bad["probs"])
    good = table[table["participant_id"] != specs[0].participant_id]
    assert good["invalid"].isna().all() and good["answer"].notna().all()

    report = score_run(run_dir, bootstrap=20)
    assert report["samples"]["policies"]["base"]["participants"] == PARTICIPANTS
    assert sum(report["samples"]["policies"]["base"]["missing_answers"].values()) == len(bad)

    def strict(constant):
        raise AssertionError(f"{constant} is not JSON")

    lines = [json.loads(x, parse_constant=strict)
             for x in (run_dir / "transcripts.jsonl").read_text().splitlines()]
    unread = [x for x in lines if x.get("invalid")]
    assert len(unread) == len(bad) and all(x["probs"] is None for x in unread)

    console = Console(record=True, width=120)
    render_transcript(run_dir, specs[0].participant_id, console)
    shown = console.export_text()
    assert "INVALID" in shown and "could not be read" in shown


def test_backend_options_come_from_the_command_line_and_bad_ones_are_named(tmp_path):
    with ScriptedServer() as server:
        result = run_cli("run", str(FLAGSHIP), "--participants", "2", "--out", str(tmp_path / "r"),
                         "--backend", "openai", "--backend-option", f"base_url={server.base_url}",
                         "--backend-option", "max_in_flight=4")
    assert result.returncode == 0, result.stderr
    recorded = json.loads((tmp_path / "r" / MANIFEST).read_text())
    assert recorded["backend"] == {"kind": "openai", "options": {"base_url": server.base_url,
                                                                  "max_in_flight": 4}}
    assert len(server.requests) == 2 * 12

    missing = run_cli("run", str(FLAGSHIP), "--participants", "2", "--out", str(tmp_path / "x"),
                      "--backend", "openai", "--backend-option", "max_in_flight=zero")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "--backend-option base_url: Field required" in missing.stderr
    assert "--backend-option max_in_flight" in missing.stderr
    assert not (tmp_path / "x").exists()


def test_an_endpoint_that_stays_down_stops_the_run_keeping_what_arrived(flagship, tmp_path):
    from scenarios.errors import InputError

    run_dir = tmp_path / "run"
    strict = {**QUICK, "max_retries": 0}
    with ScriptedServer(["ok"] * 5 + ["500"]) as server:
        options = {"base_url": server.base_url, **strict}
        with pytest.raises(InputError) as caught:
            run_scenario(flagship, participants=PARTICIPANTS, seed=SEED, out=run_dir,
                         backend_kind="openai", backend_options=options)
        text = "\n".join(map(str, caught.value.problems))
        assert "HTTP 500, after 1 attempts" in text
        assert "5 answers of the stage in progress are saved" in text
        assert f"--resume {run_dir}" in text
        assert json.loads((run_dir / MANIFEST).read_text())["status"] == "running"
        resumed = run_scenario(flagship, participants=PARTICIPANTS, seed=SEED, out=run_dir,
                               backend_kind="openai", backend_options=options)
    assert resumed.resumed and resumed.cache_hits == 5


def test_an_unreachable_endpoint_is_an_exit_2_message_with_the_resume_command(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli("run", str(FLAGSHIP), "--participants", "2", "--out", str(tmp_path / "r"),
                     "--backend", "openai", "--backend-option", f"base_url=http://127.0.0.1:{port}/v1",
                     "--backend-option", "max_retries=1", "--backend-option", "backoff_base=0.01")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "connection failed" in result.stderr and "--resume" in result.stderr


def test_credentials_in_the_url_are_refused(tmp_path):
    result = run_cli("run", str(FLAGSHIP), "--participants", "2", "--out", str(tmp_path / "r"),
                     "--backend", "openai", "--backend-option",
                     "base_url=http://me:sk-secret@127.0.0.1:9/v1")
    assert result.returncode == 2 and "holds credentials" in result.stderr
    assert not (tmp_path / "r").exists()
