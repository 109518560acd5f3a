"""The participants' graph: built from the scenario's `network:` block and the run seed.

Node i is the i-th participant of the run (its `participant_id`, a string); every generator is
networkx's own, seeded from the run seed's network stream, so the same seed, scenario and
participants give the same graph. An edge list file keeps the edges between the run's
participants (a subset of twins keeps the edges among them). The graph is saved in the run
directory as GraphML (`NETWORK_FILE`), which analysis reads back.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from agents.population import STREAM_NETWORK, ParticipantSpec
from contracts.manifest import NetworkRecord
from contracts.run_format import NETWORK
from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario
from scenarios.network_schema import Network

NETWORK_FILE = NETWORK
MISSING_BLOCK = "(missing)"  # a stochastic block model's block for a participant without a value


def network_seed(seed: int) -> int:
    """The integer seed the generators get: the run seed's network stream."""
    return int(np.random.default_rng([seed, STREAM_NETWORK]).integers(2**32))


def build_network(loaded: LoadedScenario, specs: Sequence[ParticipantSpec],
                  seed: int) -> nx.Graph | None:
    """The run's graph over `specs` (None when the scenario has no network)."""
    net = loaded.scenario.network
    if net is None:
        return None
    ids = [spec.participant_id for spec in specs]
    if net.generator == "edge_list":
        return _edge_list(loaded, net, ids)
    if net.generator == "stochastic_block":
        return _blocks(net, specs, network_seed(seed), loaded)
    graph = _generated(net, len(ids), network_seed(seed), loaded)
    return nx.relabel_nodes(graph, dict(enumerate(ids)))


def _problem(loaded: LoadedScenario, field: str, message: str) -> InputError:
    return InputError([Problem(str(loaded.path), None, f"network.{field}", message)])


def _generated(net: Network, n: int, seed: int, loaded: LoadedScenario) -> nx.Graph:
    if net.generator == "erdos_renyi":
        p = net.p if net.p is not None else (net.mean_degree or 0) / max(n - 1, 1)
        if p > 1:
            raise _problem(loaded, "mean_degree", f"a mean degree of {net.mean_degree} needs more "
                           f"than {n} participants (at most {n - 1} neighbours each)")
        return nx.gnp_random_graph(n, p, seed=seed)
    if net.generator == "watts_strogatz":
        assert net.k is not None and net.p is not None
        if net.k >= n:
            raise _problem(loaded, "k", f"k = {net.k} ring neighbours need more than {net.k} "
                           f"participants; the run has {n}")
        return nx.watts_strogatz_graph(n, net.k, net.p, seed=seed)
    assert net.generator == "barabasi_albert" and net.m is not None
    if net.m >= n:
        raise _problem(loaded, "m", f"m = {net.m} edges per new participant need more than "
                       f"{net.m} participants; the run has {n}")
    return nx.barabasi_albert_graph(n, net.m, seed=seed)


def _blocks(net: Network, specs: Sequence[ParticipantSpec], seed: int,
            loaded: LoadedScenario) -> nx.Graph:
    """A stochastic block model: one block per value of `by` (sorted), in spec order within."""
    assert net.by is not None and net.p_in is not None and net.p_out is not None
    label = {spec.participant_id: _block_of(spec, net.by) for spec in specs}
    blocks = sorted(set(label.values()))
    members = [[pid for pid in label if label[pid] == block] for block in blocks]
    probs = [[net.p_in if i == j else net.p_out for j in range(len(blocks))]
             for i in range(len(blocks))]
    nodelist = [pid for group in members for pid in group]
    graph = nx.stochastic_block_model([len(group) for group in members], probs,
                                      nodelist=nodelist, seed=seed)
    out = nx.Graph()  # in spec order, the block as a plain attribute (GraphML keeps it)
    out.add_nodes_from((spec.participant_id, {"block": label[spec.participant_id]})
                       for spec in specs)
    out.add_edges_from(sorted(tuple(sorted(edge)) for edge in graph.edges()))
    return out


def _block_of(spec: ParticipantSpec, by: str) -> str:
    value = spec.demographics.get(by, spec.condition.get(by))
    return MISSING_BLOCK if value is None else str(value)


def read_edge_list(path: Path) -> pd.DataFrame:
    """An edge list file: CSV with text columns `source` and `target` (participant ids)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")


def _edge_list(loaded: LoadedScenario, net: Network, ids: list[str]) -> nx.Graph:
    assert net.edges is not None
    table = read_edge_list(loaded.resolve(net.edges))
    graph = nx.Graph()
    graph.add_nodes_from(ids)
    taking = set(ids)
    graph.add_edges_from((a, b) for a, b in zip(table["source"], table["target"], strict=True)
                         if a in taking and b in taking and a != b)
    return graph


def save_network(graph: nx.Graph, path: Path) -> None:
    """Write the graph as GraphML, whole or not at all (a kill leaves the previous file)."""
    partial = path.with_name(path.name + ".partial")
    nx.write_graphml(graph, partial)
    os.replace(partial, path)


def network_record(graph: nx.Graph, loaded: LoadedScenario, run_dir: Path) -> NetworkRecord:
    """Save the graph in the run directory; what the manifest records of it."""
    path = run_dir / NETWORK_FILE
    save_network(graph, path)
    assert loaded.scenario.network is not None
    return {"file": NETWORK_FILE, "generator": loaded.scenario.network.generator,
            "nodes": graph.number_of_nodes(), "edges": graph.number_of_edges(),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "networkx": nx.__version__}


def read_network(path: Path) -> nx.Graph:
    """A saved graph, node ids as the participant ids (strings)."""
    return nx.read_graphml(path, node_type=str)
