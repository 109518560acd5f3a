"""The participants' graph and the `social` stimulus source (scenario `network:` block).

The graph comes from the run seed alone; the neighbour summaries the engine shows equal those
networkx computes from the saved graph and the stored answers; only the participants of the
social condition are shown them; pilot training examples carry the same summaries, built by
the same schedule, from the pilot humans' recorded answers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest
import yaml

from agents.network import NETWORK_FILE, build_network, read_network
from agents.population import build_population
from engine.pilot_schedule import pilot_examples
from engine.runner import run_scenario
from engine.store import TRANSCRIPTS
from scenarios.errors import InputError
from scenarios.loader import load_scenario
from tests.conftest import FLAGSHIP

DATA = FLAGSHIP.parent / "data" / "security_disclosure_synthetic_standin.csv"
# Exact values, so the test compares the engine's numbers, not rounded percentages.
SHOWN = ("{% if neighbours %} [[{{ neighbours.round }}|{{ neighbours.count }}|"
         "{{ neighbours.degree }}|{{ neighbours.share.attack.north }}|"
         "{{ neighbours.share.belief_location.both }}|{{ neighbours.majority.attack }}]]{% endif %}")
MARK = re.compile(r"\[\[(\d+)\|(\d+)\|(\d+)\|([0-9.e-]+)\|([0-9.e-]+)\|(\w+)\]\]")


def social_scenario(tmp_path: Path, network: dict | None = None, rounds: int = 2) -> Path:
    """The flagship with a randomly assigned social condition and a small-world network."""
    scenario = yaml.safe_load(FLAGSHIP.read_text(encoding="utf-8"))
    scenario["rounds"] = scenario["rounds"][:rounds]
    scenario["population"]["data"] = str(DATA)
    scenario["conditions"]["social"] = {"levels": ["shown", "hidden"], "assign": "random"}
    scenario["network"] = network or {"generator": "watts_strogatz", "k": 4, "p": 0.2,
                                      "show": {"factor": "social", "level": "shown"}}
    scenario["stimulus"] = scenario["stimulus"].rstrip("\n") + SHOWN
    scenario.pop("study", None)
    path = tmp_path / "social.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")
    return path


def test_the_same_seed_gives_the_same_graph_and_another_seed_another(tmp_path):
    loaded = load_scenario(social_scenario(tmp_path))
    specs = build_population(loaded, 60, seed=3)
    first, again = build_network(loaded, specs, 3), build_network(loaded, specs, 3)
    other = build_network(loaded, specs, 4)
    assert first is not None and again is not None and other is not None
    assert sorted(first.edges()) == sorted(again.edges())
    assert sorted(first.edges()) != sorted(other.edges())
    assert list(first.nodes()) == [s.participant_id for s in specs]
    assert all(degree >= 2 for _, degree in first.degree())  # a ring of k = 4, rewired


def test_the_social_condition_is_drawn_balanced_from_the_seed(tmp_path):
    loaded = load_scenario(social_scenario(tmp_path))
    specs = build_population(loaded, 61, seed=3)
    counts = Counter(s.condition["social"] for s in specs)
    assert abs(counts["shown"] - counts["hidden"]) <= 1
    assert [s.condition for s in specs] == [s.condition for s in build_population(loaded, 61, 3)]
    assert {"disclosure", "values", "valuations"} <= set(specs[0].condition)  # recorded kept


def _expected(graph: nx.Graph, answers: pd.DataFrame, pid: str, round_id: int) -> tuple:
    """(count, degree, share attacking north, share believing both, majority attack) from
    networkx and the stored answers of the previous round."""
    previous = answers[(answers["round"] == round_id - 1) & answers["invalid"].isna()]
    chosen = {(r.participant_id, r.question_id): r.answer for r in previous.itertuples()}
    near = list(nx.neighbors(graph, pid))
    attack = [chosen[(n, "attack")] for n in near if (n, "attack") in chosen]
    belief = [chosen[(n, "belief_location")] for n in near
              if (n, "belief_location") in chosen]
    answered = {n for n in near if (n, "attack") in chosen or (n, "belief_location") in chosen}
    top = Counter(attack).most_common(2)
    majority = "None" if len(top) > 1 and top[0][1] == top[1][1] else top[0][0]
    return (len(answered), len(near), attack.count("north") / len(attack),
            belief.count("both") / len(belief), majority)


def test_neighbour_summaries_equal_networkx_on_the_saved_graph_and_stored_answers(
        tmp_path, tiny_backend):
    loaded = load_scenario(social_scenario(tmp_path, rounds=3))
    result = run_scenario(loaded, participants=24, seed=5, out=tmp_path / "run",
                          backend=tiny_backend)
    graph = read_network(result.run_dir / NETWORK_FILE)
    answers = pd.read_parquet(result.run_dir / "responses.parquet")
    condition = answers.groupby("participant_id")["social"].first().to_dict()
    seen = 0
    for line in (result.run_dir / TRANSCRIPTS).read_text().splitlines():
        entry = json.loads(line)
        if entry["role"] != "system":
            continue
        # the last: a later round's memory holds the earlier rounds' stimuli (and summaries)
        found = [None, *MARK.finditer(entry["content"])][-1]
        pid, round_id = entry["participant_id"], entry["round"]
        if condition[pid] == "hidden" or round_id == 1:
            assert found is None, entry
            continue
        assert found is not None, entry
        got = (int(found[2]), int(found[3]), float(found[4]), float(found[5]), found[6])
        assert int(found[1]) == round_id - 1
        assert got == _expected(graph, answers, pid, round_id)
        seen += 1
    assert seen == sum(v == "shown" for v in condition.values()) * 2  # rounds 2 and 3
    assert result.backend_calls == 3 * 2  # still one backend call per (round, stage)


def test_the_graph_is_rebuilt_identically_on_resume(tmp_path, tiny_backend):
    loaded = load_scenario(social_scenario(tmp_path))
    out = tmp_path / "run"
    run_scenario(loaded, participants=12, seed=5, out=out, backend=tiny_backend)
    saved = (out / NETWORK_FILE).read_bytes()
    again = run_scenario(loaded, participants=12, seed=5, out=tmp_path / "again",
                         backend=tiny_backend)
    assert (again.run_dir / NETWORK_FILE).read_bytes() == saved
    record = json.loads((out / "manifest.json").read_text())["network"]
    assert record["file"] == NETWORK_FILE and record["nodes"] == 12
    assert record["edges"] == read_network(out / NETWORK_FILE).number_of_edges() == 12 * 4 // 2
    assert record["sha256"] == hashlib.sha256(saved).hexdigest()


def test_a_network_too_small_for_its_generator_is_refused_before_the_run(tmp_path, tiny_backend):
    loaded = load_scenario(social_scenario(tmp_path))
    with pytest.raises(InputError, match="k = 4 ring neighbours need more than 4"):
        run_scenario(loaded, participants=4, seed=5, out=tmp_path / "run", backend=tiny_backend)
    assert not (tmp_path / "run").exists()


def test_pilot_examples_carry_the_pilot_graph_summaries_of_recorded_answers(tmp_path):
    loaded = load_scenario(social_scenario(tmp_path))
    specs = build_population(loaded, None, 7, [f"P{i:03d}" for i in range(1, 21)])
    examples = pilot_examples(loaded, specs, seed=7)
    graph = build_network(loaded, specs, 7)
    human = loaded.human.table.set_index("participant_id")
    shown = {s.participant_id for s in specs if s.condition["social"] == "shown"}
    checked = 0
    for example in examples:
        found = MARK.search(example.messages[0].content)
        if example.participant_id not in shown or example.round_id == 1:
            assert found is None
            continue
        near = list(graph.neighbors(example.participant_id))
        attack = [human.loc[n, "r1_attack"] for n in near]
        assert found is not None and int(found[2]) == len(near)
        assert float(found[4]) == attack.count("north") / len(attack)
        checked += 1
    assert checked > 0


@pytest.mark.parametrize(("network", "field", "expected"), [
    ({"generator": "watts_strogatz", "k": 4}, "network", "needs p"),
    ({"generator": "watts_strogatz", "k": 3, "p": 0.1}, "network", "even k"),
    ({"generator": "erdos_renyi", "p": 0.1, "m": 2}, "network", "remove m"),
    ({"generator": "erdos_renyi", "p": 0.1, "show": {"factor": "socal", "level": "shown"}},
     "network.show.factor", "did you mean 'social'"),
    ({"generator": "erdos_renyi", "p": 0.1, "show": {"factor": "social", "level": "on"}},
     "network.show.level", "shown, hidden"),
    ({"generator": "erdos_renyi", "p": 0.1, "summarise": ["atack"]}, "network.summarise[0]",
     "did you mean 'attack'"),
    ({"generator": "stochastic_block", "by": "gendr", "p_in": 0.2, "p_out": 0.01},
     "network.by", "did you mean 'gender'"),
    ({"generator": "edge_list", "edges": "missing.csv"}, "network.edges", "no edge list file"),
])
def test_a_bad_network_block_is_named_at_its_field(tmp_path, network, field, expected):
    with pytest.raises(InputError) as caught:
        load_scenario(social_scenario(tmp_path, network))
    assert any(p.field == field and expected in p.message for p in caught.value.problems), \
        [(p.field, p.message) for p in caught.value.problems]


def test_an_edge_list_with_an_unknown_participant_names_its_line(tmp_path):
    (tmp_path / "edges.csv").write_text("source,target\nP001,P002\nP003,Q999\n")
    with pytest.raises(InputError) as caught:
        load_scenario(social_scenario(tmp_path, {"generator": "edge_list",
                                                 "edges": str(tmp_path / "edges.csv")}))
    assert any("line 3, column target: 'Q999'" in p.message for p in caught.value.problems)


def test_an_edge_list_keeps_the_edges_among_the_run_participants(tmp_path):
    (tmp_path / "edges.csv").write_text("source,target\nP001,P002\nP002,P003\nP003,P900\n")
    loaded = load_scenario(social_scenario(tmp_path, {"generator": "edge_list",
                                                      "edges": "edges.csv"}))
    specs = build_population(loaded, None, 1, ["P001", "P002", "P003"])
    graph = build_network(loaded, specs, 1)
    assert graph is not None and sorted(graph.edges()) == [("P001", "P002"), ("P002", "P003")]


def test_a_stimulus_that_needs_a_summary_in_round_one_is_refused(tmp_path):
    path = social_scenario(tmp_path)
    scenario = yaml.safe_load(path.read_text())
    scenario["stimulus"] += " {{ neighbours.share.attack.north }}"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    assert any("neighbours is None" in p.message for p in caught.value.problems)


@pytest.mark.parametrize(("social", "expected"), [
    ({"levels": ["shown", "hidden"], "assign": "random", "column": "disclosure"}, "remove 'column'"),
    ({"levels": ["shown", "hidden"]}, "`assign: random` for a condition the human study"),
])
def test_a_twin_condition_is_either_recorded_or_drawn(tmp_path, social, expected):
    path = social_scenario(tmp_path)
    scenario = yaml.safe_load(path.read_text())
    scenario["conditions"]["social"] = social
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    assert any(expected in p.message and p.field.startswith("conditions.social")
               for p in caught.value.problems), [p.message for p in caught.value.problems]


def test_finetuning_trains_on_the_social_condition_examples(tmp_path):
    from agents.pilot import Sampling
    from engine.finetune import finetune
    from engine.finetune_settings import TrainingSettings

    loaded = load_scenario(social_scenario(tmp_path))
    result = finetune(loaded, pilot=12, sampling=Sampling("random"), seed=3, out=tmp_path / "ft",
                      settings=TrainingSettings(epochs=1))
    assert result.examples == 12 * 2 * 3  # every pilot human, round and question
    assert (tmp_path / "ft" / "adapter_model.safetensors").is_file()
    specs = build_population(loaded, None, 3, list(result.split.pilot))
    shown = [e for e in pilot_examples(loaded, specs, seed=3)
             if MARK.search(e.messages[0].content)]
    assert shown  # the training set the adapter saw includes neighbour summaries


def test_a_preview_summarises_the_neighbours_recorded_answers(tmp_path):
    from engine.preview import build_preview

    loaded = load_scenario(social_scenario(tmp_path))
    specs = build_population(loaded, 40, seed=2)
    pid = next(s.participant_id for s in specs if s.condition["social"] == "shown")
    preview = build_preview(loaded, participant=pid, round_id=2, participants=40, seed=2)
    graph = build_network(loaded, specs, 2)
    human = loaded.human.table.set_index("participant_id")
    attack = [human.loc[n, "r1_attack"] for n in graph.neighbors(pid)]
    found = MARK.findall(preview.queries[0].messages[0].content)[-1]
    assert float(found[3]) == attack.count("north") / len(attack)
    assert "recorded human answers of its neighbours" in preview.neighbours
