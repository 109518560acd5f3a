"""The peer frameworks' workload (scenarios/peers_survey.yaml, run by benchmarks/peers.py):
respondents of three traits drawn from marginals answer four multiple-choice questions once."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, run_cli

PEERS = ROOT / "scenarios" / "peers_survey.yaml"


@pytest.fixture(scope="module")
def peers_run(tiny_backend, tmp_path_factory) -> tuple[object, Path, int]:
    """Three respondents through the scenario on builtin:tiny: (scenario, run dir, backend calls)."""
    from engine.runner import run_scenario
    from scenarios.loader import load_scenario

    loaded = load_scenario(PEERS)
    out = tmp_path_factory.mktemp("peers") / "run"
    result = run_scenario(loaded, participants=3, out=out, backend=tiny_backend)
    assert result.participants == 3
    return loaded, out, result.backend_calls


def test_the_peers_scenario_validates_as_one_page_of_four_questions():
    result = run_cli("validate", str(PEERS))
    assert result.returncode == 0, result.stderr
    assert "1 rounds, 1 stages, 4 questions" in result.stdout


def test_three_respondents_answer_each_question_once_in_one_backend_call(peers_run):
    loaded, out, calls = peers_run
    assert calls == 1  # the page is one batch
    table = pd.read_parquet(out / "responses.parquet")
    questions = sorted(q.id for q in loaded.scenario.questions)
    assert len(questions) == 4 and len(table) == 3 * 4
    assert all(sorted(ids) == questions for _, ids in table.groupby("participant_id")["question_id"])
    assert all(abs(sum(p) - 1) < 1e-9 for p in table["probs"])
    assert all(a in opts for a, opts in zip(table["answer"], table["options"], strict=True))
    marginals = loaded.scenario.population.marginals
    assert len(marginals) == 3
    for trait, shares in marginals.items():
        assert set(table[trait]) <= set(shares)


def test_each_respondents_prompt_names_its_three_traits(peers_run):
    _, out, _ = peers_run
    table = pd.read_parquet(out / "responses.parquet").drop_duplicates("participant_id")
    lines = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    system = {line["participant_id"]: line["content"] for line in lines if line["role"] == "system"}
    assert set(system) == set(table["participant_id"])
    for row in table.itertuples():
        for trait in (row.age_group, row.gender.lower(), row.region):
            assert trait in system[row.participant_id]
