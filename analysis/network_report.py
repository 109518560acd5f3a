"""report.json's `network` section: the network measures of a networked run, policy by policy.

A run of a scenario with a `network:` block holds its graph (`network.graphml`) and the block
in its manifest's resolved scenario. Each policy's answers (responses.parquet, with the model's
probabilities) are measured on the graph (analysis/network.py); so is the human reference when
the network is the humans' own (`edge_list`): its recorded choices on the same graph. The
section is absent for a run without a network, so earlier reports are unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from analysis.errors import AnalysisInputError
from analysis.network import (
    by_round,
    conformity,
    conformity_frame,
    pooled_switching,
    switch_tallies,
    switching_permutation_p,
)
from analysis.run_dir import RunInputs
from analysis.samples import MISSING, Sample
from contracts.run_format import NETWORK, RESPONSES


def network_block(inputs: RunInputs) -> dict[str, Any] | None:
    """The resolved scenario's `network:` block (None: the run has no network)."""
    resolved = inputs.manifest.get("scenario", {}).get("resolved") or {}
    block = resolved.get("network")
    return block if isinstance(block, dict) else None


def read_graph(run_dir: Path) -> nx.Graph:
    """The run's saved graph; a missing or unreadable file is an input error naming it."""
    path = run_dir / NETWORK
    try:
        return nx.read_graphml(path, node_type=str)
    except FileNotFoundError:
        raise AnalysisInputError(f"{path}: missing; a run of a scenario with a network saves its "
                                 "graph there (rerun it, or --resume it)") from None
    except Exception as exc:  # networkx raises several types for a damaged file
        raise AnalysisInputError(f"{path}: not a readable GraphML graph ({exc})") from None


def _questions(block: dict[str, Any], inputs: RunInputs) -> list[str]:
    with_options = [q.id for q in inputs.experiment.questions if q.options]
    return [q for q in (block.get("summarise") or with_options) if q in with_options]


def sample_answers(sample: Sample, inputs: RunInputs) -> pd.DataFrame:
    """A sample's answers as the long table the measures read (choices only, no probabilities)."""
    experiment = inputs.experiment
    rows = []
    for qi, question in enumerate(experiment.questions):
        for ri, round_id in enumerate(experiment.rounds):
            chosen = sample.answers[:, ri, qi]
            for pi in np.flatnonzero(chosen != MISSING):
                rows.append({"participant_id": str(sample.participant_ids[pi]), "round": round_id,
                             "question_id": question.id,
                             "answer": question.options[int(chosen[pi])]})
    table = pd.DataFrame(rows, columns=["participant_id", "round", "question_id", "answer"])
    attributes = sample.attributes.assign(participant_id=[str(p) for p in sample.participant_ids])
    return table.merge(attributes, on="participant_id", how="left")


PERMUTATIONS = 999  # draws of the randomisation tests (influence, switching shown vs not)


def measures(graph: nx.Graph, answers: pd.DataFrame, questions: list[str],
             show: dict[str, Any] | None, seed: int = 0) -> dict[str, Any]:
    """Every measure of one sample's answers on the graph."""
    factor = show.get("factor") if show else None
    level = show.get("level") if show else None
    rounds = [row for q in questions for row in by_round(graph, answers, q, factor)]
    switching = {q: pooled_switching([r for r in rounds if r["question"] == q], level)
                 for q in questions}
    for q, pooled in switching.items():
        test = pooled.get("shown_vs_other")
        if test and test.get("difference") is not None and factor in answers.columns:
            people = answers.drop_duplicates("participant_id")
            shown = set(people.loc[people[factor] == level, "participant_id"].astype(str))
            test["permutation_p"] = switching_permutation_p(
                switch_tallies(graph, answers, q), shown, test["difference"], PERMUTATIONS, seed)
            test["permutations"] = PERMUTATIONS
    return {
        "rounds": rounds,
        "switching": switching,
        "conformity": {q: conformity(conformity_frame(graph, answers, q, factor, level),
                                     compare=show is not None, draws=PERMUTATIONS, seed=seed)
                       for q in questions},
    }


def graph_summary(graph: nx.Graph, block: dict[str, Any]) -> dict[str, Any]:
    """What the graph is: its generator, size, degree and clustering."""
    degrees = [d for _, d in graph.degree()]
    return {"file": NETWORK, "generator": block.get("generator"),
            "nodes": graph.number_of_nodes(), "edges": graph.number_of_edges(),
            "mean_degree": float(np.mean(degrees)) if degrees else 0.0,
            "clustering": float(nx.average_clustering(graph)) if degrees else 0.0,
            "components": nx.number_connected_components(graph) if degrees else 0}


def network_section(inputs: RunInputs, seed: int = 0) -> dict[str, Any] | None:
    """report.json's `network` (None for a run without a network)."""
    block = network_block(inputs)
    if block is None:
        return None
    graph = read_graph(inputs.run_dir)
    questions = _questions(block, inputs)
    show = block.get("show")
    responses = pd.read_parquet(inputs.run_dir / RESPONSES)
    policies = {}
    for sample in inputs.policies:
        mine = responses[(responses["policy"] == sample.name) & responses["invalid"].isna()]
        policies[sample.name] = measures(graph, mine, questions, show, seed)
    section: dict[str, Any] = {
        "graph": graph_summary(graph, block), "show": show, "questions": questions,
        "outcome": "the model's probability of each option (conformity); the drawn option "
                   "(assortativity, switching)",
        "policies": policies,
    }
    if block.get("generator") == "edge_list":  # the humans' own network: their choices on it
        human = sample_answers(inputs.human, inputs)
        section["human"] = measures(graph, human, questions, None)
    return section
