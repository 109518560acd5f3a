"""The network drawing: a sample of the graph, one panel per round and sample, each node coloured
by the option it chose for the section's last summarised question (the action, in a scenario that
asks beliefs first), outlined when it is in the condition shown its neighbours.

The sample is the first MAX_NODES participants reached breadth-first from a participant drawn
with the report's seed, so it is a connected piece of the graph, and the layout is networkx's
spring layout with the same seed: the same report draws the same picture.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from analysis.html_report.figures import STYLE, Plot, plain, svg_uri
from analysis.network_report import network_block, read_graph, sample_answers
from analysis.run_dir import RunInputs
from contracts.run_format import RESPONSES

MAX_NODES = 60
MAX_POLICIES = 3  # panels rows: the first policies (the table has them all)
UNANSWERED = "#d0d0d0"


def sample_nodes(graph: nx.Graph, seed: int, size: int = MAX_NODES) -> list[str]:
    """Up to `size` nodes, breadth-first from a seeded start (then from further starts when its
    component is smaller), in a deterministic order."""
    nodes = sorted(graph.nodes())
    rng = np.random.default_rng(seed)
    order = [nodes[i] for i in rng.permutation(len(nodes))]
    chosen: list[str] = []
    seen: set[str] = set()
    for start in order:
        if len(chosen) >= size:
            break
        if start in seen:
            continue
        for node in nx.bfs_tree(graph, start, sort_neighbors=sorted):
            if node not in seen and len(chosen) < size:
                seen.add(node)
                chosen.append(node)
    return chosen


def _panels(inputs: RunInputs, section: dict[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """(name, answers) of each drawn sample: the policies, then humans on their own network."""
    responses = pd.read_parquet(inputs.run_dir / RESPONSES)
    found = []
    for sample in inputs.policies[:MAX_POLICIES]:
        mine = responses[(responses["policy"] == sample.name) & responses["invalid"].isna()]
        found.append((sample.name, mine))
    if section.get("human") is not None:
        found.append(("human (own network)", sample_answers(inputs.human, inputs)))
    return found


def network_figure(inputs: RunInputs, report: dict[str, Any]) -> Plot | None:
    """The drawing of a networked run (None for a run without a network)."""
    section = report.get("network")
    block = network_block(inputs)
    if not section or block is None or not section.get("questions"):
        return None
    graph = read_graph(inputs.run_dir)
    seed = int((report.get("settings") or {}).get("seed") or 0)
    nodes = sample_nodes(graph, seed)
    if not nodes:
        return None
    sub = graph.subgraph(nodes)
    position = nx.spring_layout(sub, seed=seed)
    question = section["questions"][-1]
    options = next(q.options for q in inputs.experiment.questions if q.id == question)
    colour = {option: f"C{i}" for i, option in enumerate(options)}
    show = section.get("show") or {}
    rounds = list(inputs.experiment.rounds)
    panels = _panels(inputs, section)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(len(panels), len(rounds), squeeze=False,
                                    figsize=(2.4 * len(rounds), 2.4 * len(panels)),
                                    layout="constrained")
        for row, (name, answers) in enumerate(panels):
            mine = answers[answers["question_id"] == question]
            shown = _shown(answers, show)
            for col, round_id in enumerate(rounds):
                chosen = mine[mine["round"] == round_id].set_index("participant_id")["answer"]
                ax = axes[row][col]
                nx.draw_networkx_edges(sub, position, ax=ax, width=0.4, alpha=0.35)
                nx.draw_networkx_nodes(
                    sub, position, ax=ax, node_size=28, nodelist=nodes,
                    node_color=[colour.get(chosen.get(n), UNANSWERED) for n in nodes],
                    edgecolors=["black" if n in shown else "none" for n in nodes],
                    linewidths=1.0)
                ax.set_axis_off()
                ax.set_title(plain(f"{name}, round {round_id}"), fontsize=8)
        handles = [Patch(color=c, label=plain(o)) for o, c in colour.items()]
        handles.append(Patch(color=UNANSWERED, label="no readable answer"))
        figure.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                      fontsize=7, frameon=False)
        caption = (f"{len(nodes)} of {graph.number_of_nodes()} participants (a connected sample "
                   f"drawn with seed {seed}); colour: the option chosen for {question}")
        if show:
            caption += f"; outlined: {show['factor']}={show['level']} (shown their neighbours)"
        return Plot(f"The network, coloured by {question} per round", plain(caption),
                    svg_uri(figure))


def _shown(answers: pd.DataFrame, show: dict[str, Any]) -> set[str]:
    """The participants in the condition that is shown its neighbours."""
    factor, level = show.get("factor"), show.get("level")
    if not factor or factor not in answers.columns:
        return set()
    people = answers.drop_duplicates("participant_id")
    return set(people.loc[people[factor] == level, "participant_id"])
