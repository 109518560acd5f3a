"""The shipped example, scenarios/security_disclosure_social.yaml: it validates, its stimulus tells
exactly the shown half (from round 2) its neighbours' percentages, and its `ci` study grid runs end
to end (a finetuned policy trained on examples with neighbour summaries) and scores the network
measures for both policies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest

from agents.network import NETWORK_FILE, read_network
from tests.conftest import ROOT, run_cli
from tests.scenario_scores import ci_study

SOCIAL = ROOT / "scenarios" / "security_disclosure_social.yaml"
SENTENCE = re.compile(r"You know (\d+) other pirates on the island\. Last round (\d+)% of them "
                      r"raided North Beach")


def test_the_example_validates_and_says_its_reference_is_a_stand_in():
    result = run_cli("validate", str(SOCIAL))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SYNTHETIC STAND-IN" in SOCIAL.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """The scenario's `ci` grid (builtin:tiny, 20 holdout twins, a 12-twin pilot)."""
    return ci_study(tmp_path_factory.mktemp("social"), SOCIAL)


def test_only_the_shown_half_is_told_its_neighbours_percentages(study):
    run = study / "run"
    graph = read_network(run / NETWORK_FILE)
    answers = pd.read_parquet(run / "responses.parquet")
    answers = answers[answers["invalid"].isna()]
    condition = answers.groupby("participant_id")["social"].first().to_dict()
    told = 0
    for line in (run / "transcripts.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["role"] != "system":
            continue
        found = list(SENTENCE.finditer(entry["content"]))
        pid, round_id, policy = entry["participant_id"], entry["round"], entry["policy"]
        if condition[pid] == "hidden" or round_id == 1:
            assert not found, entry
            continue
        # the last one: the memory of earlier rounds repeats earlier rounds' sentences
        count, north = int(found[-1][1]), int(found[-1][2])
        before = answers[(answers["round"] == round_id - 1) & (answers["policy"] == policy)]
        summarised = before[before["question_id"].isin(["belief_location", "attack"])]
        attack = before[before["question_id"] == "attack"].set_index("participant_id")["answer"]
        near = list(nx.neighbors(graph, pid))
        assert count == len(set(near) & set(summarised["participant_id"]))
        raided = [attack[n] for n in near if n in attack.index]
        assert north == round(raided.count("north") / len(raided) * 100)  # as jinja's round
        told += 1
    assert told > 0


def test_the_study_scores_the_network_for_base_and_the_finetuned_policy(study):
    result = run_cli("score", str(study / "run"), "--bootstrap", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Network: neighbours' answers and influence" in result.stdout
    report = json.loads((study / "run" / "report.json").read_text(encoding="utf-8"))
    section = report["network"]
    assert section["questions"] == ["belief_location", "attack"]
    assert set(section["policies"]) == set(report["policies"]) and len(report["policies"]) == 2
    assert section["graph"]["nodes"] == 20 and section["graph"]["generator"] == "watts_strogatz"
