"""Network measures (analysis/network.py) on hand-built graphs whose answers are known, then on a
real networked run: `score` puts them in report.json (equal to networkx recomputed from the saved
graph and the stored answers), prints them and draws them in report.html; a run without a
network has no such section."""

from __future__ import annotations

import io
import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from agents.network import NETWORK_FILE, read_network
from analysis.html_report import write_html_report
from analysis.network import (
    assortativity,
    by_round,
    conformity,
    conformity_frame,
    majority,
    pooled_switching,
    switch_tallies,
    switching_permutation_p,
)
from analysis.render import print_report
from analysis.report import score_run
from engine.policies import TwinChoice
from engine.runner import run_scenario
from scenarios.loader import load_scenario
from tests.test_network_core import social_scenario


def long_table(chosen: dict[int, dict[str, str]], social: dict[str, str] | None = None,
               question: str = "attack") -> pd.DataFrame:
    """The long answer table the measures read: round -> {participant: option}."""
    rows = [{"participant_id": pid, "round": r, "question_id": question, "answer": option,
             **({"social": social[pid]} if social else {})}
            for r, answers in chosen.items() for pid, option in answers.items()]
    return pd.DataFrame(rows)


def two_cliques() -> tuple[nx.Graph, dict[str, str]]:
    graph = nx.disjoint_union(nx.complete_graph(4), nx.complete_graph(4))
    graph = nx.relabel_nodes(graph, {i: f"p{i}" for i in graph})
    return graph, {f"p{i}": "north" if i < 4 else "south" for i in range(8)}


def test_two_cliques_answering_apart_are_perfectly_assortative_as_networkx_says():
    graph, chosen = two_cliques()
    assert assortativity(graph, chosen) == pytest.approx(1.0)
    graph.add_edge("p0", "p4")  # one tie across: below 1, and exactly networkx's coefficient
    direct = graph.copy()
    nx.set_node_attributes(direct, chosen, "chosen")
    expected = nx.attribute_assortativity_coefficient(direct, "chosen")
    assert assortativity(graph, chosen) == pytest.approx(expected) and expected < 1.0
    # only participants who answered count: without p4..p7 one option is left, undefined
    assert assortativity(graph, {p: o for p, o in chosen.items() if o == "north"}) is None


def test_alternating_answers_on_a_ring_are_perfectly_disassortative():
    ring = nx.relabel_nodes(nx.cycle_graph(6), {i: f"p{i}" for i in range(6)})
    chosen = {f"p{i}": ("north", "south")[i % 2] for i in range(6)}
    assert assortativity(ring, chosen) == pytest.approx(-1.0)


def test_the_majority_is_strict():
    assert majority(["north", "south", "north"]) == "north"
    assert majority(["north", "south"]) is None and majority([]) is None


def star() -> nx.Graph:
    return nx.star_graph(["hub", "a", "b", "c", "d"])


def test_a_hub_that_switches_to_its_leaves_majority_is_counted_by_its_condition():
    answers = long_table({1: {"hub": "south", "a": "north", "b": "north", "c": "north",
                              "d": "north"},
                          2: {"hub": "north", "a": "north", "b": "north", "c": "north",
                              "d": "south"}},
                         social={"hub": "shown", "a": "hidden", "b": "hidden", "c": "hidden",
                                 "d": "hidden"})
    rows = list(by_round(star(), answers, "attack", "social"))
    assert [r["round"] for r in rows] == [1, 2] and rows[0]["switching"] == {}
    # round 1: the hub is at odds with its 4 leaves (north); each leaf with its one neighbour,
    # the hub (south). Round 2: the hub switched to north; leaf d switched to south.
    shown, hidden = rows[1]["switching"]["shown"], rows[1]["switching"]["hidden"]
    assert (shown["k"], shown["n"], hidden["k"], hidden["n"]) == (1, 1, 1, 4)
    pooled = pooled_switching(rows, "shown")
    assert pooled["shown_vs_other"]["difference"] == pytest.approx(1 - 1 / 4)
    assert pooled["levels"]["hidden"]["ci"][0] < 0.25 < pooled["levels"]["hidden"]["ci"][1]


def test_the_switching_permutation_test_sees_a_planted_difference_and_not_its_absence():
    tallies = {f"p{i}": [2 if i < 20 else 0, 2] for i in range(40)}  # the first 20 all switch
    first = {f"p{i}" for i in range(20)}
    assert switching_permutation_p(tallies, first, 1.0, 199, seed=1) == 1 / 200
    mixed = {f"p{i}" for i in range(0, 40, 2)}  # half of each kind shown: no difference
    assert switching_permutation_p(tallies, mixed, 0.0, 199, seed=1) == 1.0


def test_a_tie_among_neighbours_is_no_majority_to_switch_to():
    graph = nx.path_graph(["a", "x", "b"])  # x's neighbours a and b disagree
    answers = long_table({1: {"a": "north", "x": "north", "b": "south"},
                          2: {"a": "north", "x": "south", "b": "south"}})
    row = list(by_round(graph, answers, "attack", None))[1]
    # a's only neighbour x said north (a agrees); b's said north (b at odds, stayed south)
    assert (row["switching"]["all"]["k"], row["switching"]["all"]["n"]) == (0, 1)


def planted(influence: float) -> tuple[nx.Graph, pd.DataFrame]:
    """Two rounds on a random graph: round 1 at random; in round 2 the shown half's probability
    of an option is 0.5 + influence x (its neighbours' share of it - 0.5), the hidden half's
    0.5; with no influence the two halves answer alike."""
    rng = np.random.default_rng(7)
    graph = nx.relabel_nodes(nx.gnp_random_graph(120, 0.06, seed=7), str)
    social = {p: ("shown", "hidden")[i % 2] for i, p in enumerate(graph)}
    first = {p: str(rng.choice(["north", "south"])) for p in graph}
    rows = []
    for p in graph:
        near = [first[n] for n in graph.neighbors(p)]
        for r, chosen in ((1, first[p]), (2, None)):
            share = near.count("north") / len(near) if near else 0.5
            north = 0.5 + influence * (share - 0.5) if social[p] == "shown" and r == 2 else 0.5
            rows.append({"participant_id": p, "round": r, "question_id": "attack",
                         "answer": chosen or ("north" if north >= 0.5 else "south"),
                         "options": ["north", "south"], "probs": [north, 1 - north],
                         "social": social[p]})
    return graph, pd.DataFrame(rows)


def test_the_conformity_fit_recovers_a_planted_influence_and_a_zero_placebo():
    graph, answers = planted(0.6)
    frame = conformity_frame(graph, answers, "attack", "social", "shown")
    assert set(frame["round"]) == {2} and set(frame["shown"]) == {0, 1}
    fit = conformity(frame, compare=True)
    assert fit["influence"]["estimate"] == pytest.approx(0.6, abs=1e-9)
    assert fit["slope_not_shown"]["estimate"] == pytest.approx(0.0, abs=1e-9)
    none = conformity(conformity_frame(*planted(0.0), "attack", "social", "shown"), compare=True,
                      draws=99, seed=1)
    assert none["influence"]["estimate"] == pytest.approx(0.0, abs=1e-9)
    assert none["influence"]["permutation_p"] == 1.0  # every relabelling is as extreme as none
    # the permuted refits are the same OLS: no relabelling reaches the planted slope
    assert conformity(frame, compare=True, draws=99, seed=1)["influence"]["permutation_p"] == 0.01


def test_an_option_everyone_follows_is_no_conformity_to_neighbours():
    """Everyone's probability of north in a round is how popular north was in the round before
    (a common trend, the same for all): the fixed effect per option and round absorbs it, so
    neighbours explain nothing, shown or not."""
    rng = np.random.default_rng(3)
    graph = nx.relabel_nodes(nx.gnp_random_graph(150, 0.05, seed=3), str)
    social = {p: ("shown", "hidden")[i % 2] for i, p in enumerate(graph)}
    popular, rows = {1: 0.3, 2: 0.8, 3: 0.4}, []
    previous = None
    for r, north_share in popular.items():
        chosen = {p: ("north" if rng.random() < north_share else "south") for p in graph}
        north = 0.5 if previous is None else sum(v == "north" for v in previous.values()) / 150
        rows += [{"participant_id": p, "round": r, "question_id": "attack", "answer": chosen[p],
                  "options": ["north", "south"], "probs": [north, 1 - north],
                  "social": social[p]} for p in graph]
        previous = chosen
    fit = conformity(conformity_frame(graph, pd.DataFrame(rows), "attack", "social", "shown"),
                     compare=True)
    assert fit["slope_not_shown"]["estimate"] == pytest.approx(0.0, abs=1e-9)
    assert fit["influence"]["estimate"] == pytest.approx(0.0, abs=1e-9)


@pytest.fixture(scope="module")
def scored_social(tmp_path_factory, tiny_backend):
    folder = tmp_path_factory.mktemp("social-report")
    loaded = load_scenario(social_scenario(folder, rounds=3))
    result = run_scenario(loaded, participants=24, seed=5, out=folder / "run",
                          backend=tiny_backend)
    score_run(result.run_dir, bootstrap=5, seed=1)
    return result.run_dir


def test_the_report_network_section_equals_networkx_on_the_saved_graph(scored_social):
    report = json.loads((scored_social / "report.json").read_text())
    section = report["network"]
    graph = read_network(scored_social / NETWORK_FILE)
    assert section["graph"]["nodes"] == 24 and section["graph"]["edges"] == graph.number_of_edges()
    assert section["graph"]["clustering"] == pytest.approx(nx.average_clustering(graph))
    answers = pd.read_parquet(scored_social / "responses.parquet")
    answers = answers[answers["invalid"].isna() & (answers["question_id"] == "attack")]
    rounds = {r["round"]: r for r in section["policies"]["base"]["rounds"]
              if r["question"] == "attack"}
    for round_id in (2, 3):
        before = answers[answers["round"] == round_id - 1].set_index("participant_id")["answer"]
        after = answers[answers["round"] == round_id].set_index("participant_id")["answer"]
        for level in ("shown", "hidden"):
            members = set(answers.loc[answers["social"] == level, "participant_id"])
            k = n = 0
            for pid in members & set(before.index) & set(after.index):
                near = [before[x] for x in graph.neighbors(pid) if x in before.index]
                counts = pd.Series(near).value_counts()
                if counts.empty or (len(counts) > 1 and counts.iloc[0] == counts.iloc[1]):
                    continue
                top = counts.index[0]
                if before[pid] != top:
                    n += 1
                    k += after[pid] == top
            got = rounds[round_id]["switching"][level]
            assert (got["k"], got["n"]) == (k, n)
        now = graph.copy()
        nx.set_node_attributes(now, after.to_dict(), "chosen")
        now.remove_nodes_from([p for p in graph if p not in after.index])
        expected = nx.attribute_assortativity_coefficient(now, "chosen")
        got = rounds[round_id]["assortativity"]
        assert (got is None and not np.isfinite(expected)) or got == pytest.approx(expected)
    assert section["policies"]["base"]["conformity"]["attack"]["influence"] is not None
    # each participant's tallies sum, by condition, to the pooled switching
    tallies = switch_tallies(graph, answers, "attack")
    pooled = section["policies"]["base"]["switching"]["attack"]
    for level in ("shown", "hidden"):
        members = set(answers.loc[answers["social"] == level, "participant_id"])
        assert [sum(tallies[p][i] for p in members) for i in (0, 1)] == [
            pooled["levels"][level]["k"], pooled["levels"][level]["n"]]
    assert 0 < pooled["shown_vs_other"]["permutation_p"] <= 1


def test_score_prints_and_the_page_draws_the_network(scored_social):
    report = json.loads((scored_social / "report.json").read_text())
    out = io.StringIO()
    print_report(report, Console(file=out, width=80, color_system=None))
    text = out.getvalue()
    assert "Network: neighbours' answers and influence" in text
    assert "watts_strogatz graph (network.graphml): 24 participants" in text
    shown = report["network"]["policies"]["base"]["switching"]["attack"]["levels"]["shown"]
    assert f"{shown['k']}/{shown['n']} = {shown['share']:.2f}" in text
    assert "conformity slope:" in text and "belief_location" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    html = write_html_report(scored_social).read_text(encoding="utf-8")
    rows = html.count("<tr><td>base</td>")
    assert 'class="metrics network-table"' in html and rows == len(report["network"]["questions"]) == 3
    assert 'alt="The network, coloured by attack per round"' in html


def test_a_run_without_a_network_has_no_network_section(tmp_path, tiny_backend):
    from tests.conftest import FLAGSHIP

    result = run_scenario(load_scenario(FLAGSHIP), participants=8, seed=5, out=tmp_path / "run",
                          backend=tiny_backend)
    report = score_run(result.run_dir, bootstrap=0, seed=1)
    assert "network" not in report and not (result.run_dir / NETWORK_FILE).exists()
    html = write_html_report(result.run_dir).read_text(encoding="utf-8")
    assert "network-table" not in html and "The network, coloured" not in html


def test_humans_on_their_own_network_are_measured_from_their_recorded_answers(tmp_path,
                                                                                tiny_backend):
    from tests.test_network_core import DATA

    ids = [f"P{i:03d}" for i in range(1, 17)]
    ring = nx.cycle_graph(ids)
    (tmp_path / "edges.csv").write_text(
        "source,target\n" + "".join(f"{a},{b}\n" for a, b in ring.edges()), encoding="utf-8")
    path = social_scenario(tmp_path, {"generator": "edge_list", "edges": "edges.csv",
                                      "show": {"factor": "social", "level": "shown"}}, rounds=2)
    result = run_scenario(load_scenario(path), participants=None, seed=5, out=tmp_path / "run",
                          backend=tiny_backend, twins=TwinChoice(ids, {"source": "test"}))
    section = score_run(result.run_dir, bootstrap=0, seed=1)["network"]
    human = pd.read_csv(DATA, comment="#", dtype=str).set_index("participant_id").loc[ids]
    for round_id in (1, 2):
        chosen = human[f"r{round_id}_attack"].dropna().to_dict()
        got = next(r for r in section["human"]["rounds"]
                   if r["question"] == "attack" and r["round"] == round_id)
        assert got["assortativity"] == pytest.approx(assortativity(ring, chosen))
    before, after = human["r1_attack"].to_dict(), human["r2_attack"].to_dict()
    tops = {p: majority([before[x] for x in ring.neighbors(p)]) for p in ids}
    at_odds = [p for p in ids if tops[p] not in (None, before[p])]
    k, n = sum(after[p] == tops[p] for p in at_odds), len(at_odds)
    pooled = section["human"]["switching"]["attack"]["levels"]["all"]
    assert (pooled["k"], pooled["n"]) == (k, n) and n > 0
    assert "shown_vs_other" not in section["human"]["switching"]["attack"]  # humans: no condition
