"""`run.py infer`: prediction-powered estimates from a run directory (schema: docs/report-schema.md).

The rectification sample: the run's twins whose human rows exist are split, seeded, into
*labelled* (their humans are used, beside their twins) and *unlabelled* (their humans are hidden;
only the simulation is used), or the labelled ids are read from a file. A labelled human who is in
the finetuning pilot of a run's policy would make the rectifier see its own training data: that is
refused. Simulated answers enter the means as each participant's expected answer under its option
distribution (the `probs` column), which carries more information than one draw; regressions use
the drawn answers, since a regressor such as `believes_north` is an answer, not a probability.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import AnalysisInputError
from analysis.experiment import Experiment
from analysis.inference import (
    DEFAULT_ALPHA,
    Estimate,
    classical_mean,
    difference,
    naive_mean,
    power_row,
    ppi_mean,
)
from analysis.inference_tables import regression_tables
from analysis.run_dir import RunInputs, read_run
from analysis.samples import Sample
from contracts.manifest import Manifest
from contracts.run_format import INFERENCE, REPORT, RESPONSES, TRAINING_RECORD

SCHEMA_VERSION = 1
DEFAULT_LABELLED = 0.2
DEFAULT_WIDTH = 0.1


def parse_estimands(items: list[str] | None, experiment: Experiment) -> dict[str, set[str]]:
    """`mean:QUESTION`, `effect:FACTOR`, `regression:NAME` (repeatable); none = everything."""
    known = {"mean": [q.id for q in experiment.questions],
             "effect": [f.name for f in experiment.factors],
             "regression": [r.name for r in experiment.regressions]}
    if not items:
        return {kind: set(names) for kind, names in known.items()}
    chosen: dict[str, set[str]] = {kind: set() for kind in known}
    for item in items:
        kind, sep, name = item.partition(":")
        if not sep or kind not in known:
            raise AnalysisInputError(f"--estimand {item!r}: expected mean:QUESTION, effect:FACTOR "
                                     "or regression:NAME")
        if name not in known[kind]:
            what = {"mean": "question", "effect": "condition factor", "regression": "regression"}
            raise AnalysisInputError(f"--estimand {item!r}: unknown {what[kind]} {name!r} "
                                     f"(expected one of {known[kind]})")
        chosen[kind].add(name)
    return chosen


def rectification_split(pool: list[str], labelled: str | None, ids_file: Path | None,
                        seed: int) -> tuple[list[str], list[str], str]:
    """Labelled and unlabelled twin ids, and how they were chosen.

    `labelled` is a fraction in (0, 1) or a count; `ids_file` lists ids, one a line ('#' lines
    and blanks ignored). The draw is seeded and does not depend on the pool's order."""
    pool = sorted(pool)
    if ids_file is not None:
        if labelled is not None:
            raise AnalysisInputError("give --labelled or --rectification, not both")
        try:
            lines = Path(ids_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise AnalysisInputError(f"{ids_file}: cannot read the rectification ids ({exc})") from None
        ids = list(dict.fromkeys(s.strip() for s in lines if s.strip() and not s.startswith("#")))
        unknown = [i for i in ids if i not in set(pool)]
        if unknown:
            raise AnalysisInputError(f"{ids_file}: id(s) {unknown[:5]} are not twins of this run "
                                     "with a human row")
        chosen, how = set(ids), f"listed in {ids_file}"
    else:
        text = str(DEFAULT_LABELLED if labelled is None else labelled)
        try:
            value = float(text)
        except ValueError:
            raise AnalysisInputError(f"--labelled {text!r}: expected a fraction in (0, 1) or a "
                                     "number of humans") from None
        count = round(value * len(pool)) if 0 < value < 1 else int(value)
        if value <= 0 or (value >= 1 and value != int(value)) or count > len(pool):
            raise AnalysisInputError(f"--labelled {text}: expected a fraction in (0, 1) or a "
                                     f"count of at most {len(pool)} (the twins with a human row)")
        rng = np.random.default_rng(seed)
        chosen = set(rng.choice(pool, size=count, replace=False).tolist()) if count else set()
        how = f"seeded draw of {text} (seed {seed})"
    labelled_ids = [i for i in pool if i in chosen]
    unlabelled_ids = [i for i in pool if i not in chosen]
    if len(labelled_ids) < 2 or len(unlabelled_ids) < 2:
        raise AnalysisInputError(f"rectification split: {len(labelled_ids)} labelled and "
                                 f"{len(unlabelled_ids)} unlabelled twins; each needs at least 2")
    return labelled_ids, unlabelled_ids, how


def check_leakage(manifest: Manifest, labelled: list[str]) -> list[dict[str, Any]]:
    """Refuse labelled humans in a policy's finetuning pilot (its adapter's training.json)."""
    checked = []
    for entry in manifest.get("policies") or []:
        if not isinstance(entry, dict) or not entry.get("adapter"):
            continue
        record = Path(str(entry["adapter"])) / TRAINING_RECORD
        try:
            pilot = json.loads(record.read_text(encoding="utf-8")).get("pilot_ids")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise AnalysisInputError(
                f"policy '{entry.get('name')}': cannot read its training record {record} "
                f"({type(exc).__name__}), so a rectification human's leak into the finetuning "
                "pilot cannot be ruled out") from None
        if not isinstance(pilot, list):
            raise AnalysisInputError(f"{record}: no pilot_ids list; leakage cannot be checked")
        leaked = sorted(set(labelled) & {str(p) for p in pilot})
        if leaked:
            raise AnalysisInputError(
                f"leakage: labelled human(s) {leaked[:5]} ({len(leaked)} in all) are in the "
                f"finetuning pilot of policy '{entry.get('name')}' ({record}); the rectification "
                "sample must be disjoint from the pilot (pass --rectification with other ids)")
        checked.append({"policy": entry.get("name"), "training_record": str(record),
                        "pilot": len(pilot), "overlap": 0})
    return checked


def subset(sample: Sample, ids: list[str]) -> Sample:
    """The participants `ids` of a sample, in that order."""
    position = {pid: i for i, pid in enumerate(sample.participant_ids.tolist())}
    rows = [position[i] for i in ids]
    return replace(sample, participant_ids=sample.participant_ids[rows],
                   attributes=sample.attributes.iloc[rows].reset_index(drop=True),
                   answers=sample.answers[rows],
                   weights=None if sample.weights is None else sample.weights[rows])


def expected_answers(run_dir: Path, experiment: Experiment, policy: str,
                     ids: list[str]) -> dict[str, np.ndarray]:
    """Per question, the option distribution of each of `ids` per round (ids x rounds x options);
    NaN where the answer is missing or invalid."""
    frame = pd.read_parquet(run_dir / RESPONSES,
                            columns=["participant_id", "policy", "round", "question_id", "probs"])
    frame = frame[frame["policy"].astype(str) == policy] if "policy" in frame else frame
    row = {pid: i for i, pid in enumerate(ids)}
    rounds = {r: i for i, r in enumerate(experiment.rounds)}
    out = {}
    for question in experiment.questions:
        values = np.full((len(ids), len(rounds), len(question.options)), np.nan)
        part = frame[frame["question_id"] == question.id]
        for pid, rnd, probs in zip(part["participant_id"].astype(str), part["round"],
                                   part["probs"], strict=True):
            if pid in row and rnd in rounds and probs is not None:
                p = np.asarray(probs, float)
                if p.shape == (len(question.options),) and np.all(np.isfinite(p)):
                    values[row[pid], rounds[rnd]] = p
        out[question.id] = values
    return out


def _targets(experiment: Experiment, chosen: set[str]) -> list[tuple[int, int | None]]:
    """(question index, option index) for proportions; option None: the ordered mean index."""
    out: list[tuple[int, int | None]] = []
    for q, question in enumerate(experiment.questions):
        if question.id in chosen:
            out += [(q, k) for k in range(len(question.options))]
            out += [(q, None)] if question.ordered else []
    return out


def human_values(answers: np.ndarray, q: int, k: int | None) -> np.ndarray:
    """Per participant, the mean over answered rounds of the answer's indicator (or index)."""
    codes = answers[:, :, q].astype(float)
    codes[codes < 0] = np.nan
    values = codes if k is None else np.where(np.isnan(codes), np.nan, (codes == k).astype(float))
    with np.errstate(all="ignore"):
        return np.nanmean(values, axis=1) if values.size else np.zeros(0)


def simulated_values(probs: np.ndarray, k: int | None) -> np.ndarray:
    """Per participant, the mean over rounds of the expected indicator (or expected index)."""
    per_round = probs[:, :, k] if k is not None else probs @ np.arange(probs.shape[2])
    with np.errstate(all="ignore"):
        return np.nanmean(per_round, axis=1) if per_round.size else np.zeros(0)


def _estimates(y: np.ndarray, yhat_l: np.ndarray, yhat_u: np.ndarray,
               alpha: float) -> tuple[Estimate, Estimate, Estimate]:
    both = ~np.isnan(y) & ~np.isnan(yhat_l)
    y_l, hat_l, hat_u = y[both], yhat_l[both], yhat_u[~np.isnan(yhat_u)]
    simulated = np.concatenate([yhat_l[~np.isnan(yhat_l)], hat_u])
    return (classical_mean(y[~np.isnan(y)], alpha), naive_mean(simulated, alpha),
            ppi_mean(y_l, hat_l, hat_u, alpha))


class _Data:
    """Per policy: the labelled humans, their twins and the unlabelled twins, answers and probs."""

    def __init__(self, inputs: RunInputs, policy: Sample, labelled: list[str],
                 unlabelled: list[str]) -> None:
        experiment = inputs.experiment
        self.human = subset(inputs.human, labelled)
        self.twin, self.unlabelled = subset(policy, labelled), subset(policy, unlabelled)
        both = expected_answers(inputs.run_dir, experiment, policy.name, labelled + unlabelled)
        n = len(labelled)  # one read of the responses table for both groups
        self.probs_l = {q: values[:n] for q, values in both.items()}
        self.probs_u = {q: values[n:] for q, values in both.items()}

    def values(self, experiment: Experiment, q: int, k: int | None,
               keep_l: np.ndarray, keep_u: np.ndarray) -> tuple[np.ndarray, ...]:
        qid = experiment.questions[q].id
        return (human_values(self.human.answers, q, k)[keep_l],
                simulated_values(self.probs_l[qid], k)[keep_l],
                simulated_values(self.probs_u[qid], k)[keep_u])


def _row(experiment: Experiment, q: int, k: int | None) -> dict[str, Any]:
    question = experiment.questions[q]
    return {"estimand": "proportion" if k is not None else "mean_index", "question": question.id,
            "option": None if k is None else question.options[k]}


def mean_tables(inputs: RunInputs, data: dict[str, _Data], chosen: dict[str, set[str]],
                alpha: float, width: float) -> tuple[list[dict[str, Any]], ...]:
    """Means/proportions overall and per subgroup, treatment effects and power rows."""
    experiment = inputs.experiment
    means, effects, power = [], [], []
    any_data = next(iter(data.values()))
    scopes: list[tuple[str | None, str | None, np.ndarray, np.ndarray]] = [
        (None, None, np.ones(any_data.twin.n, bool), np.ones(any_data.unlabelled.n, bool))]
    for column in experiment.subgroups:
        labels_l, labels_u = any_data.twin.labels(column), any_data.unlabelled.labels(column)
        for group in sorted({g for g in [*labels_l, *labels_u] if g is not None}):
            scopes.append((column, group, labels_l == group, labels_u == group))
    for q, k in _targets(experiment, chosen["mean"]):
        for subgroup, group, keep_l, keep_u in scopes:
            cells: dict[str, Any] = {}
            classical = None
            for name, d in data.items():
                classical, naive, ppi = _estimates(*d.values(experiment, q, k, keep_l, keep_u),
                                                   alpha)
                cells[name] = {"naive": naive.to_json(), "ppi": ppi.to_json()}
                if subgroup is None:
                    y, hat_l, _ = d.values(experiment, q, k, keep_l, keep_u)
                    both = ~np.isnan(y) & ~np.isnan(hat_l)
                    power.append({**_row(experiment, q, k), "policy": name, **power_row(
                        y[both], hat_l[both], width, alpha, int(keep_u.sum()))})
            means.append({**_row(experiment, q, k), "subgroup": subgroup, "group": group,
                          "classical": classical.to_json(), "policies": cells})
    for factor in experiment.factors:
        if factor.name not in chosen["effect"]:
            continue
        labels_l = any_data.twin.labels(factor.name)
        labels_u = any_data.unlabelled.labels(factor.name)
        reference = factor.levels[0]
        for level in factor.levels[1:]:
            for q, k in _targets(experiment, {question.id for question in experiment.questions}):
                cells, classical = {}, None
                for name, d in data.items():
                    a = _estimates(*d.values(experiment, q, k, labels_l == reference,
                                             labels_u == reference), alpha)
                    b = _estimates(*d.values(experiment, q, k, labels_l == level,
                                             labels_u == level), alpha)
                    classical = difference(a[0], b[0], alpha)
                    cells[name] = {"naive": difference(a[1], b[1], alpha).to_json(),
                                   "ppi": difference(a[2], b[2], alpha).to_json()}
                effects.append({**_row(experiment, q, k), "estimand": "effect",
                                "measure": _row(experiment, q, k)["estimand"],
                                "factor": factor.name, "level": level, "reference": reference,
                                "classical": classical.to_json(), "policies": cells})
    return means, effects, power


def infer_run(run_dir: Path, human: Path | None = None, labelled: str | None = None,
              rectification: Path | None = None, seed: int = 0, alpha: float = DEFAULT_ALPHA,
              estimands: list[str] | None = None, width: float = DEFAULT_WIDTH) -> dict[str, Any]:
    """Compute the inference section of a run; writes inference.json (and into report.json)."""
    if not 0 < alpha < 1 or not width > 0:
        raise AnalysisInputError(f"--alpha must be in (0, 1) and --target-width > 0 "
                                 f"(got {alpha}, {width})")
    run_dir = Path(run_dir)
    inputs = read_run(run_dir, human)
    population = inputs.manifest["scenario"]["resolved"].get("population") or {}
    if population.get("source") != "twins":
        raise AnalysisInputError(f"{run_dir}: a {population.get('source')!r} population has no "
                                 "twins of human rows, so there is no rectification sample; PPI "
                                 "needs humans with simulated twins (a twins run)")
    experiment = inputs.experiment
    chosen = parse_estimands(estimands, experiment)
    humans = set(inputs.human.participant_ids.tolist())
    pool = sorted(set.intersection(*(set(p.participant_ids.tolist()) for p in inputs.policies))
                  & humans)
    if len(pool) < 4:
        raise AnalysisInputError(f"{run_dir}: {len(pool)} twin(s) with a human row; a "
                                 "rectification sample needs at least 4 (2 labelled, 2 not)")
    labelled_ids, unlabelled_ids, how = rectification_split(pool, labelled, rectification, seed)
    leakage = check_leakage(inputs.manifest, labelled_ids)
    data = {p.name: _Data(inputs, p, labelled_ids, unlabelled_ids) for p in inputs.policies}
    with np.errstate(all="ignore"):
        means, effects, power = mean_tables(inputs, data, chosen, alpha, width)
        regressions = regression_tables(experiment, {n: (d.human, d.twin, d.unlabelled)
                                                     for n, d in data.items()},
                                        chosen["regression"], alpha)
    section = {
        "schema_version": SCHEMA_VERSION, "run_id": inputs.manifest.get("run_id"),
        "responses_sha256": responses_digest(run_dir),
        "alpha": alpha, "ci_level": 1 - alpha, "seed": seed, "policies": list(data),
        "labelled": {"how": how, "count": len(labelled_ids), "ids": labelled_ids},
        "unlabelled": {"count": len(unlabelled_ids), "pool": len(pool)},
        "simulated_answers": {"means": "expected answer under each participant's option "
                                       "distribution (probs), averaged over rounds",
                              "regressions": "drawn answers, one row per participant x round"},
        "leakage": {"checked": leakage, "refused_overlap": True},
        "synthetic_standin": inputs.synthetic_reference,
        "means": means, "effects": effects, "regressions": regressions, "power": power,
    }
    write_inference(section, run_dir)
    return section


def _atomic(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_inference(section: dict[str, Any], run_dir: Path) -> None:
    """inference.json, and the `inference` key of report.json when the run has been scored (score
    reads inference.json back into report.json, so either order leaves both in step)."""
    _atomic(run_dir / INFERENCE, section)
    report = run_dir / REPORT
    if report.is_file():
        try:
            document = json.loads(report.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return  # a damaged report is score's to rewrite; inference.json holds the section
        if isinstance(document, dict):
            _atomic(report, {**document, "inference": section})


def responses_digest(run_dir: Path) -> str:
    """SHA-256 of responses.parquet: ties an inference section to the answers it read."""
    return hashlib.sha256((Path(run_dir) / RESPONSES).read_bytes()).hexdigest()


def read_inference(run_dir: Path) -> dict[str, Any] | None:
    """The run's inference.json if `infer` wrote one from the run's present answers (score
    carries it into report.json); None when absent, unreadable or made from other answers."""
    path = Path(run_dir) / INFERENCE
    try:
        section = json.loads(path.read_text(encoding="utf-8"))
        current = responses_digest(run_dir)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(section, dict) or section.get("responses_sha256") != current:
        return None
    return section
