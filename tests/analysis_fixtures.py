"""Small hand-built run directories and human CSVs for the analysis tests.

A participant table is "wide" like the human data (one row per participant, columns
r{round}_{question}); `write_run` turns wide tables into the engine's long responses.parquet,
whose columns and their order come from the run format contract (contracts.run_format).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contracts.run_format import ResponseAnswer, ResponseWho, response_columns

LOCATION = ["north", "south", "both", "neither"]
TRUTH = ["p00_20", "p21_40", "p41_60", "p61_80", "p81_100"]
ATTACK = ["north", "south"]
QUESTIONS = {"belief_location": LOCATION, "belief_truth": TRUTH, "attack": ATTACK}
ROUNDS = (1, 2)


def _question(qid: str, qtype: str, options: list[str]) -> dict[str, Any]:
    return {"id": qid, "type": qtype, "text": f"{qid}?",
            "options": [{"id": o, "text": o, "label": chr(65 + i)} for i, o in enumerate(options)],
            "human_column": f"r{{round}}_{qid}"}


def numeric_question(qid: str, values: list[int]) -> dict[str, Any]:
    """A numeric question as the manifest resolves it: options "0", "5", ... with their values."""
    return {"id": qid, "type": "numeric", "text": f"{qid}?", "ordered": True,
            "options": [{"id": str(v), "text": str(v), "label": chr(65 + i), "value": float(v)}
                        for i, v in enumerate(values)],
            "human_column": f"r{{round}}_{qid}"}


def with_numeric(resolved: dict[str, Any], question: dict[str, Any]) -> dict[str, Any]:
    """The scenario with a numeric question added to its action stage."""
    stages = [dict(stage) for stage in resolved["stages"]]
    stages[-1]["questions"] = [*stages[-1]["questions"], question]
    return {**resolved, "stages": stages}


def scenario(regressions: list[dict[str, str]] | None = None,
             subgroups: list[str] | None = None) -> dict[str, Any]:
    """A resolved scenario like the flagship, with two rounds."""
    return {
        "name": "tiny_disclosure", "title": "test", "reference_note": "SYNTHETIC STAND-IN (test)",
        "population": {"source": "twins", "data": "human.csv", "id_column": "participant_id",
                       "demographics": {"ethnicity": "Ethnicity", "gender": "Gender"}},
        "conditions": {"disclosure": {"levels": ["specific", "vague"], "column": "disclosure"},
                       "values": {"levels": ["equal", "unequal"], "column": "value_structure"}},
        "rounds": [{"id": r, "variables": {}} for r in ROUNDS],
        "stages": [
            {"id": "belief", "kind": "belief", "questions": [
                _question("belief_location", "single_choice", LOCATION),
                _question("belief_truth", "probability_buckets", TRUTH)]},
            {"id": "action", "kind": "action", "questions": [
                _question("attack", "single_choice", ATTACK)]},
        ],
        "coherence": [{"belief": "belief_location", "action": "attack",
                       "contradicts": [{"belief": "north", "action": "north"},
                                       {"belief": "south", "action": "south"}]}],
        "analysis": {
            "subgroups": ["ethnicity"] if subgroups is None else subgroups,
            "indicators": {"attack_north": {"question": "attack", "in": ["north"]},
                           "believes_north": {"question": "belief_location",
                                              "in": ["north", "both"]}},
            "regressions": regressions if regressions is not None else [
                {"name": "attack_choice", "family": "logit",
                 "formula": "attack_north ~ believes_north + C(values)"}],
        },
    }


def participants(n: int, seed: int = 0, ethnicities: tuple[str, ...] = ("White", "Black"),
                 ) -> pd.DataFrame:
    """n participants with random conditions, demographics and answers (wide, human columns)."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "participant_id": [f"P{i:04d}" for i in range(n)],
        "Ethnicity": rng.choice(ethnicities, n),
        "Gender": rng.choice(["Female", "Male"], n),
        "disclosure": rng.choice(["specific", "vague"], n),
        "value_structure": rng.choice(["equal", "unequal"], n),
    })
    for r in ROUNDS:
        for qid, options in QUESTIONS.items():
            table[f"r{r}_{qid}"] = rng.choice(options, n)
    return table


def write_human(path: Path, table: pd.DataFrame, note: str = "SYNTHETIC STAND-IN (test)") -> Path:
    """Write a human CSV with a leading '#' note."""
    path.write_text(f"# {note}\n" + table.to_csv(index=False), encoding="utf-8")
    return path


def _attributes(resolved: dict[str, Any]) -> dict[str, str]:
    """Each participant attribute of the responses table -> its wide (human data) column."""
    columns = {name: spec.get("column") or name
               for name, spec in (resolved.get("conditions") or {}).items()}
    return columns | dict(resolved["population"].get("demographics") or {})


def long_responses(table: pd.DataFrame, policy: str,
                   resolved: dict[str, Any] | None = None) -> pd.DataFrame:
    """The engine's long rows (participant x round x question) for a wide table."""
    resolved = resolved or scenario()
    attributes = _attributes(resolved)
    rows = []
    for record in table.to_dict("records"):
        who = ResponseWho(participant_id=record["participant_id"], policy=policy)
        drawn = {name: record[column] for name, column in attributes.items()}
        for round_ in resolved["rounds"]:
            for stage in resolved["stages"]:
                for q in stage["questions"]:
                    answer = record[q["human_column"].format(round=round_["id"])]
                    if isinstance(answer, float):  # missing
                        continue
                    rows.append({**who, **drawn, **_answer(round_["id"], stage, q, answer)})
    return pd.DataFrame(rows, columns=response_columns(attributes))


def _answer(round_id: int, stage: dict[str, Any], question: dict[str, Any],
            answer: str) -> ResponseAnswer:
    options = [o["id"] for o in question["options"]]
    index = options.index(answer)
    return ResponseAnswer(
        round=round_id, stage=stage["id"], question_id=question["id"], kind=stage["kind"],
        type=question["type"], options=options,
        probs=[1.0 if i == index else 0.0 for i in range(len(options))],
        answer=answer, answer_index=index, option_mass=1.0, invalid=None)


def write_run(run_dir: Path, policies: dict[str, pd.DataFrame], human: Path | None,
              resolved: dict[str, Any] | None = None) -> Path:
    """A run directory: manifest.json and responses.parquet (one wide table per policy)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "run_id": "test-run", "seed": 1,
        "scenario": {"path": str(run_dir / "scenario.yaml"), "sha256": "0" * 64,
                     "resolved": resolved or scenario()},
        "human_data": {"path": str(human) if human else None, "sha256": "", "note": ""},
        "model": {}, "policies": list(policies), "packages": {},
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    frames = [long_responses(t, p, resolved) for p, t in policies.items()]
    pd.concat(frames, ignore_index=True).to_parquet(run_dir / "responses.parquet", index=False)
    return run_dir


def score(folder: Path, human: pd.DataFrame, policies: dict[str, pd.DataFrame],
          bootstrap: int = 100, splits: int = 5, resolved: dict[str, Any] | None = None,
          ) -> dict[str, Any]:
    """Write the human CSV and a run directory under folder, then score it."""
    from analysis.report import score_run

    folder.mkdir(parents=True, exist_ok=True)
    csv = write_human(folder / "human.csv", human)
    run = write_run(folder / "run", policies, csv, resolved)
    return score_run(run, bootstrap=bootstrap, seed=3, splits=splits)


def rows(report: dict[str, Any], section: str, metric: str, **where: Any) -> list[dict]:
    """Report rows of a section with this metric whose fields match `where`."""
    found = [r for r in report["tables"][section] if r["metric"] == metric]
    return [r for r in found if all(r.get(k) == v for k, v in where.items())]
