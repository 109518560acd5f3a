"""A one-shot survey: no stimulus and no rounds in the file; one round, and nothing added to the
system message, run end to end on builtin:tiny with the real Chile data."""

from __future__ import annotations

import json

from agents.conversation import Message, RoundMemory, memory_text, persona_parts, round_system_message
from scenarios.loader import load_scenario
from scenarios.schema import PERSONA_FIRST, SHARED_FIRST, Round
from tests.chile_scenarios import write_chile
from tests.conftest import run_cli


def test_a_survey_without_stimulus_and_rounds_has_one_round_and_no_stimulus(tmp_path) -> None:
    s = load_scenario(write_chile(tmp_path)).scenario
    assert s.rounds == [Round(id=1)] and s.stimulus == ""


def test_an_empty_stimulus_adds_nothing_to_the_system_message(tmp_path) -> None:
    s = load_scenario(write_chile(tmp_path, head="instructions: An interview in 1988.\n")).scenario
    persona, instructions = persona_parts(s, {"sex": "a woman", "age": 36, "education": "primary"},
                                          {})
    for layout in (PERSONA_FIRST, SHARED_FIRST):
        system = round_system_message(layout, persona, instructions, [], s.stimulus)
        expected = (f"{persona}\n\n{instructions}" if layout == PERSONA_FIRST
                    else f"{instructions}\n\n{persona}")
        assert system == Message("system", expected)
        assert not system.content.endswith("\n") and "\n\n\n" not in system.content
    remembered = memory_text([RoundMemory(1, "", (("You voted", "No"),))])
    assert remembered.splitlines()[1] == "- You voted: No."


def test_a_one_shot_survey_runs_scores_and_shows_end_to_end(tmp_path) -> None:
    path = write_chile(tmp_path / "s")
    out = tmp_path / "run"
    ran = run_cli("run", str(path), "--participants", "3", "--seed", "2", "--out", str(out))
    assert ran.returncode == 0, ran.stderr
    lines = [json.loads(x) for x in (out / "transcripts.jsonl").read_text().splitlines()]
    systems = [x for x in lines if x["role"] == "system"]
    assert len(systems) == 3 and all(x["round"] == 1 for x in systems)
    assert all(x["parts"]["stimulus"] == "" and not x["content"].endswith("\n") for x in systems)
    assert run_cli("score", str(out)).returncode == 0
    pid = systems[0]["participant_id"]
    shown = run_cli("show", str(out), "--participant", pid)
    assert shown.returncode == 0 and "persona" in shown.stdout and "stimulus" not in shown.stdout
