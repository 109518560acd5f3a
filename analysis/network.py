"""Network measures: how alike neighbours answer, and whether being shown them moves answers.

Pure functions of a graph (node ids: participant ids) and a long answer table (one row per
participant, round and question: `participant_id`, `round`, `question_id`, `answer`, optionally
`probs`/`options` and condition columns), so they score simulated runs and human data with a
network alike. All within one policy; `analysis/network_report.py` reads a run and applies them.

- assortativity: networkx's attribute assortativity of the chosen option over the edges between
  participants who answered, per question and round (None where it is undefined: one option).
- switching to the majority: among participants whose previous answer differs from the strict
  majority of their neighbours' previous answers, the share who now give that majority answer,
  per condition level (Wilson intervals; shown vs the other levels by a two-proportion z test).
- conformity slope: how far a participant's probability of an option rises with the share of
  its neighbours who chose that option last round (OLS with a fixed effect per option and round,
  which absorbs how popular each option is in each round, so what is left is how a
  participant's own neighbours differ from everyone; standard errors clustered by participant);
  in the condition not shown its neighbours the slope is the placebo (homophily and a
  participant's own persistence alone), so the shown-minus-hidden slope is the influence.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

ALPHA = 0.05


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def chosen_table(answers: pd.DataFrame, question: str) -> pd.DataFrame:
    """participant x round: the option chosen (NaN where unanswered or unreadable)."""
    rows = answers[(answers["question_id"] == question) & answers["answer"].notna()]
    return rows.pivot_table(index="participant_id", columns="round", values="answer",
                            aggfunc="first")


def assortativity(graph: nx.Graph, chosen: dict[str, str]) -> float | None:
    """Attribute assortativity of the chosen option over the participants who answered."""
    nodes = [n for n in graph if n in chosen]
    sub = nx.Graph(graph.subgraph(nodes))
    if sub.number_of_edges() == 0 or len({chosen[n] for n in nodes}) < 2:
        return None
    nx.set_node_attributes(sub, {n: chosen[n] for n in nodes}, "chosen")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return _finite(nx.attribute_assortativity_coefficient(sub, "chosen"))


def majority(options: list[str]) -> str | None:
    """The strictly most common option (None: no answers, or a tie)."""
    top = Counter(options).most_common(2)
    if not top or (len(top) > 1 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def neighbour_answers(graph: nx.Graph, chosen: dict[str, str], pid: str) -> list[str]:
    """The answers of `pid`'s neighbours who answered."""
    return [chosen[n] for n in graph.neighbors(pid) if n in chosen] if pid in graph else []


def switches(graph: nx.Graph, before: dict[str, str], after: dict[str, str],
             members: list[str]) -> tuple[int, int]:
    """(switched to the neighbours' majority, at odds with it) among `members`."""
    switched = at_odds = 0
    for pid in members:
        top = majority(neighbour_answers(graph, before, pid))
        if top is None or pid not in before or pid not in after or before[pid] == top:
            continue
        at_odds += 1
        switched += after[pid] == top
    return switched, at_odds


def share_entry(k: int, n: int) -> dict[str, Any]:
    """A share with its Wilson interval (None when n = 0)."""
    if n == 0:
        return {"k": 0, "n": 0, "share": None, "ci": None}
    low, high = proportion_confint(k, n, alpha=ALPHA, method="wilson")
    return {"k": k, "n": n, "share": k / n, "ci": [float(low), float(high)]}


def compare_shares(shown: tuple[int, int], other: tuple[int, int]) -> dict[str, Any]:
    """Shown minus the other condition, with a two-proportion z test (None when undefined)."""
    (k1, n1), (k2, n2) = shown, other
    if n1 == 0 or n2 == 0:
        return {"difference": None, "z": None, "p": None}
    difference = k1 / n1 - k2 / n2
    if k1 + k2 in (0, n1 + n2):  # both all-or-nothing: no variance to test against
        return {"difference": difference, "z": None, "p": None}
    z, p = proportions_ztest([k1, k2], [n1, n2])
    return {"difference": difference, "z": _finite(z), "p": _finite(p)}


def _levels(answers: pd.DataFrame, factor: str | None) -> dict[str, list[str]]:
    """Participants by the show factor's level ('all' without a factor)."""
    people = answers.drop_duplicates("participant_id")
    if factor is None or factor not in people.columns:
        return {"all": people["participant_id"].tolist()}
    return {str(level): group["participant_id"].tolist()
            for level, group in people.groupby(factor, sort=True)}


def by_round(graph: nx.Graph, answers: pd.DataFrame, question: str,
             factor: str | None) -> Iterator[dict[str, Any]]:
    """One row per round: assortativity, and each level's switching to the majority."""
    table = chosen_table(answers, question)
    levels = _levels(answers, factor)
    rounds = sorted(table.columns)
    for i, r in enumerate(rounds):
        now = table[r].dropna().to_dict()
        row: dict[str, Any] = {"question": question, "round": int(r),
                               "assortativity": assortativity(graph, now), "switching": {}}
        if i:
            before = table[rounds[i - 1]].dropna().to_dict()
            row["switching"] = {level: share_entry(*switches(graph, before, now, members))
                                for level, members in levels.items()}
        yield row


def pooled_switching(rows: list[dict[str, Any]], shown: str | None) -> dict[str, Any]:
    """Each level's switching over every round, and shown vs the other levels."""
    totals: dict[str, list[int]] = {}
    for row in rows:
        for level, entry in row["switching"].items():
            k, n = totals.setdefault(level, [0, 0])
            totals[level] = [k + entry["k"], n + entry["n"]]
    out: dict[str, Any] = {"levels": {level: share_entry(k, n)
                                      for level, (k, n) in sorted(totals.items())}}
    if shown is not None and shown in totals:
        other = [sum(v[0] for lv, v in totals.items() if lv != shown),
                 sum(v[1] for lv, v in totals.items() if lv != shown)]
        out["shown_vs_other"] = compare_shares((totals[shown][0], totals[shown][1]),
                                               (other[0], other[1]))
    return out


def switch_tallies(graph: nx.Graph, answers: pd.DataFrame, question: str) -> dict[str, list[int]]:
    """Each participant's [switched to the majority, at odds with it], over every round after
    the first (summed by level, the pooled switching)."""
    table = chosen_table(answers, question)
    rounds = sorted(table.columns)
    tallies: dict[str, list[int]] = {str(pid): [0, 0] for pid in table.index}
    for earlier, later in pairwise(rounds):
        before, now = table[earlier].dropna().to_dict(), table[later].dropna().to_dict()
        for pid in tallies:
            k, n = switches(graph, before, now, [pid])
            tallies[pid][0] += k
            tallies[pid][1] += n
    return tallies


def switching_permutation_p(tallies: dict[str, list[int]], shown: set[str], observed: float,
                            draws: int, seed: int) -> float | None:
    """Randomisation p-value of shown minus the others' switching share: who was shown
    permuted among the participants `draws` times (valid under the sharp null that being shown
    changes no answer, whatever the graph's dependence between participants)."""
    people = sorted(tallies)
    k = np.array([tallies[p][0] for p in people], dtype=float)
    n = np.array([tallies[p][1] for p in people], dtype=float)
    labels = np.array([p in shown for p in people])
    rng = np.random.default_rng(seed)
    beyond = used = 0
    for _ in range(draws):
        mask = rng.permutation(labels)
        if n[mask].sum() == 0 or n[~mask].sum() == 0:
            continue
        used += 1
        diff = k[mask].sum() / n[mask].sum() - k[~mask].sum() / n[~mask].sum()
        beyond += abs(diff) >= abs(observed) - 1e-12
    return (1 + beyond) / (1 + used) if used else None


def conformity_frame(graph: nx.Graph, answers: pd.DataFrame, question: str,
                     factor: str | None, shown: str | None) -> pd.DataFrame:
    """One row per (participant, round after the first, option): own probability (or choice)
    of the option, the share of neighbours who chose it last round, and whether shown."""
    rows = answers[(answers["question_id"] == question) & answers["answer"].notna()]
    table = chosen_table(answers, question)
    rounds = sorted(table.columns)
    previous = dict(zip(rounds[1:], rounds, strict=False))
    out = []
    for row in rows.itertuples(index=False):
        before = previous.get(row.round)
        if before is None:
            continue
        near = neighbour_answers(graph, table[before].dropna().to_dict(), row.participant_id)
        if not near:
            continue
        options = list(row.options) if hasattr(row, "options") else sorted(set(near))
        probs = list(row.probs) if hasattr(row, "probs") else None
        is_shown = 1 if factor is None else int(getattr(row, factor, None) == shown)
        for j, option in enumerate(options):
            own = float(probs[j]) if probs is not None else float(row.answer == option)
            out.append({"participant_id": row.participant_id, "round": row.round,
                        "option": option, "own": own, "share": near.count(option) / len(near),
                        "shown": is_shown})
    return pd.DataFrame(out)


def permutation_p(frame: pd.DataFrame, observed: float, draws: int, seed: int) -> float:
    """Randomisation p-value of the influence (the share:shown slope): the shown label permuted
    among the participants `draws` times, the same OLS refitted each time. Valid under the
    sharp null that being shown the neighbours changes no answer, whatever the dependence the
    graph makes between participants (which the clustered standard error ignores)."""
    fixed = pd.get_dummies(frame["option"].astype(str) + "|" + frame["round"].astype(str),
                           dtype=float).to_numpy()  # one column per option and round
    share, own = frame["share"].to_numpy(float), frame["own"].to_numpy(float)
    people, row_person = np.unique(frame["participant_id"].to_numpy(), return_inverse=True)
    labels = frame.groupby("participant_id")["shown"].first().reindex(people).to_numpy(float)
    rng = np.random.default_rng(seed)
    beyond = 0
    for _ in range(draws):
        shown = rng.permutation(labels)[row_person]
        design = np.column_stack([fixed, share, shown, share * shown])
        coef = np.linalg.lstsq(design, own, rcond=None)[0]
        beyond += abs(coef[-1]) >= abs(observed) - 1e-12
    return (1 + beyond) / (1 + draws)


def conformity(frame: pd.DataFrame, compare: bool, draws: int = 0,
               seed: int = 0) -> dict[str, Any] | None:
    """The slope of own probability on the neighbours' share (per condition, and shown minus
    not shown, with a randomisation p-value over `draws` permutations of who was shown); None
    when there is too little to fit."""
    if frame.empty or frame["participant_id"].nunique() < 4:
        return None
    terms = "share * shown" if compare and frame["shown"].nunique() == 2 else "share"
    formula = f"own ~ {terms} + C(option):C(round)"
    groups = pd.factorize(frame["participant_id"])[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = smf.ols(formula, frame).fit(cov_type="cluster", cov_kwds={"groups": groups})
    except (ValueError, np.linalg.LinAlgError):
        return None

    def term(name: str) -> dict[str, Any] | None:
        if name not in fit.params.index:
            return None
        low, high = fit.conf_int(ALPHA).loc[name]
        return {"estimate": _finite(fit.params[name]), "se": _finite(fit.bse[name]),
                "p": _finite(fit.pvalues[name]), "ci": [_finite(low), _finite(high)]}

    result = {"formula": formula, "rows": len(frame),
              "participants": int(frame["participant_id"].nunique()),
              "slope": term("share")}
    if "share:shown" in fit.params.index:
        result["slope_not_shown"] = result.pop("slope")
        result["influence"] = term("share:shown")  # shown minus not shown
        estimate = result["influence"]["estimate"] if result["influence"] else None
        if draws and estimate is not None:
            result["influence"]["permutation_p"] = permutation_p(frame, estimate, draws, seed)
            result["influence"]["permutations"] = draws
    return result
