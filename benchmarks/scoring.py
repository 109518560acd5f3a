"""Benchmark: score a synthetic run of the flagship's size (929 participants x 4 rounds x 3
questions, 1,000 bootstrap resamples, 20 human split halves) and print the wall time.

    python benchmarks/scoring.py [--participants 929] [--bootstrap 1000] [--policies 1]

The run directory and the human CSV are synthesised in a temporary folder; target: under 30 s
on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.report import score_run

ROUNDS = (1, 2, 3, 4)
LOCATION = ["north", "south", "both", "neither"]
TRUTH = ["p00_20", "p21_40", "p41_60", "p61_80", "p81_100"]
ATTACK = ["north", "south"]
ETHNICITY = ["White", "Black", "Asian", "Mixed", "Other"]


def resolved_scenario() -> dict[str, Any]:
    """A resolved scenario shaped like security_disclosure.yaml."""
    def question(qid: str, qtype: str, options: list[str]) -> dict[str, Any]:
        return {"id": qid, "type": qtype, "text": qid, "human_column": f"r{{round}}_{qid}",
                "options": [{"id": o, "text": o, "label": chr(65 + i)}
                            for i, o in enumerate(options)]}

    return {
        "name": "benchmark_disclosure", "reference_note": "SYNTHETIC STAND-IN (benchmark)",
        "population": {"source": "twins", "data": "human.csv", "id_column": "participant_id",
                       "demographics": {"ethnicity": "ethnicity", "gender": "gender"}},
        "conditions": {"disclosure": {"levels": ["specific", "vague"], "column": "disclosure"},
                       "values": {"levels": ["equal", "unequal"], "column": "value_structure"},
                       "valuations": {"levels": ["known", "unknown"],
                                      "column": "valuation_known"}},
        "rounds": [{"id": r, "variables": {}} for r in ROUNDS],
        "stages": [{"id": "belief", "kind": "belief", "questions": [
                        question("belief_location", "single_choice", LOCATION),
                        question("belief_truth", "probability_buckets", TRUTH)]},
                   {"id": "action", "kind": "action", "questions": [
                        question("attack", "single_choice", ATTACK)]}],
        "coherence": [{"belief": "belief_location", "action": "attack",
                       "contradicts": [{"belief": "north", "action": "north"},
                                       {"belief": "south", "action": "south"}]}],
        "analysis": {
            "subgroups": ["ethnicity", "gender"],
            "indicators": {"attack_north": {"question": "attack", "in": ["north"]},
                           "believes_north": {"question": "belief_location",
                                              "in": ["north", "both"]},
                           "believes_south": {"question": "belief_location",
                                              "in": ["south", "both"]}},
            "regressions": [
                {"name": "attack_choice", "family": "logit", "formula":
                 "attack_north ~ believes_north + believes_south + C(values) + C(valuations)"},
                {"name": "belief_location", "family": "mnlogit",
                 "formula": "belief_location ~ C(disclosure) + C(values) + C(valuations)"}],
        },
    }


def participants(n: int, rng: np.random.Generator, trust: float) -> pd.DataFrame:
    """Wide table of n participants answering by a small behavioural model."""
    table = pd.DataFrame({
        "participant_id": [f"P{i:04d}" for i in range(n)],
        "ethnicity": rng.choice(ETHNICITY, n, p=[0.62, 0.13, 0.1, 0.08, 0.07]),
        "gender": rng.choice(["Female", "Male", "Non-binary"], n, p=[0.49, 0.48, 0.03]),
        "disclosure": rng.choice(["specific", "vague"], n),
        "value_structure": rng.choice(["equal", "unequal"], n),
        "valuation_known": rng.choice(["known", "unknown"], n),
    })
    unequal = (table["value_structure"] == "unequal").to_numpy()
    for r in ROUNDS:
        announced = 0 if r % 2 else 1
        believes = np.where(rng.random(n) < trust, announced, rng.integers(0, 4, n))
        table[f"r{r}_belief_location"] = np.array(LOCATION)[believes]
        table[f"r{r}_belief_truth"] = np.array(TRUTH)[rng.binomial(4, trust, n)]
        logit = 0.3 - 1.4 * np.isin(believes, [0, 2]) + 1.2 * np.isin(believes, [1, 2]) + unequal
        table[f"r{r}_attack"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), *ATTACK)
    return table


def long_responses(table: pd.DataFrame, policy: str) -> pd.DataFrame:
    """The engine's long layout (participant x round x question) for a wide table."""
    frames = []
    for r in ROUNDS:
        for qid in ("belief_location", "belief_truth", "attack"):
            frames.append(pd.DataFrame({
                "participant_id": table["participant_id"], "policy": policy,
                "disclosure": table["disclosure"], "values": table["value_structure"],
                "valuations": table["valuation_known"], "ethnicity": table["ethnicity"],
                "gender": table["gender"], "round": r, "question_id": qid,
                "kind": "action" if qid == "attack" else "belief",
                "answer": table[f"r{r}_{qid}"]}))
    return pd.concat(frames, ignore_index=True)


def build_run(folder: Path, n: int, policies: int, seed: int) -> Path:
    """Write human.csv and a run directory with `policies` simulated policies."""
    rng = np.random.default_rng(seed)
    human = participants(n, rng, trust=0.6)
    csv = folder / "human.csv"
    csv.write_text("# SYNTHETIC STAND-IN (benchmark)\n" + human.to_csv(index=False))
    run = folder / "run"
    run.mkdir()
    names = [f"policy{i + 1}" for i in range(policies)]
    simulated = []
    for name in names:
        twin = participants(n, rng, trust=0.75)
        twin[["participant_id", "ethnicity", "gender", "disclosure", "value_structure",
              "valuation_known"]] = human[["participant_id", "ethnicity", "gender",
                                           "disclosure", "value_structure", "valuation_known"]]
        simulated.append(long_responses(twin, name))
    pd.concat(simulated, ignore_index=True).to_parquet(run / "responses.parquet", index=False)
    manifest = {"run_id": "benchmark", "seed": seed, "policies": names,
                "scenario": {"path": str(folder / "scenario.yaml"), "sha256": "",
                             "resolved": resolved_scenario()},
                "human_data": {"path": str(csv), "sha256": "", "note": ""}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def main() -> None:
    """Time one scoring of a synthetic run of the requested size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=929)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=1)
    parser.add_argument("--splits", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(Path(tmp), args.participants, args.policies, seed=0)
        start = time.perf_counter()
        report = score_run(run, bootstrap=args.bootstrap, seed=0, splits=args.splits)
        elapsed = time.perf_counter() - start
    rows = sum(len(t) for t in report["tables"].values())
    print(f"scored {args.participants} participants x {len(ROUNDS)} rounds x 3 questions, "
          f"{args.policies} policy(ies), {args.bootstrap} bootstrap resamples, {args.splits} "
          f"split halves: {elapsed:.2f} s ({rows} report rows)")


if __name__ == "__main__":
    main()
