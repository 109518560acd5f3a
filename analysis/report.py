"""Score a run against the human data and write `report.json` (schema: docs/report-schema.md)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from analysis.cells import Row, to_json
from analysis.comparison import MIN_GROUP, Comparison
from analysis.errors import AnalysisInputError
from analysis.inference_run import read_inference
from analysis.metrics import sections
from analysis.metrics.recovery import ALPHA
from analysis.network_report import network_section
from analysis.resampling import CI_LEVEL, Resampling
from analysis.run_dir import RunInputs, read_run
from analysis.samples import Sample
from contracts.run_format import REPORT

SCHEMA_VERSION = 1
DEFAULT_SPLITS = 20
CEILING_NOTE = (
    "ceiling.value: the metric between two random halves of the human sample (mean and 2.5-97.5% "
    "range over splits). ceiling.corrected: rescaled to the sizes of the real comparison (human n "
    "vs simulated n): distances, |differences| and log-ratios times "
    "sqrt((1/n_sim + 1/n_human) / (1/n_A + 1/n_B)); regression recovery with half-fit standard "
    "errors rescaled to n_human and n_sim. See docs/report-schema.md."
)


def _sample_summary(sample: Sample, experiment: Any) -> dict[str, Any]:
    answers = sample.answers
    return {
        "participants": sample.n,
        "answers": int((answers >= 0).sum()),
        "missing_answers": {q.id: int((answers[:, :, i] < 0).sum())
                            for i, q in enumerate(experiment.questions)},
    }


def _notes(inputs: RunInputs) -> list[str]:
    notes = [CEILING_NOTE, f"human reference: {inputs.human_scope}"]
    experiment = inputs.experiment
    for question in experiment.questions:
        if question.human_column is None:
            notes.append(f"question '{question.id}' has no human_column: not compared")
    sizes = sorted({sample.n for sample in inputs.policies})
    if len(sizes) > 1:
        notes.append(f"policies differ in size ({sizes} participants); corrected ceilings use "
                     "their mean size, so they are approximate for each policy")
    if inputs.synthetic_reference:
        notes.append("the reference is a SYNTHETIC STAND-IN, not human data")
    return notes


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _table(rows: list[Row]) -> list[dict[str, Any]]:
    return [to_json(row) for row in rows]


def build_report(inputs: RunInputs, bootstrap: int, seed: int, splits: int) -> dict[str, Any]:
    """Compute every metric for a run already read; returns the report dict."""
    experiment = inputs.experiment
    comparison = Comparison(experiment, inputs.human, inputs.policies,
                            Resampling(bootstrap, splits, seed))
    scored = {section.key: section.score(comparison) for section in sections()}
    scenario = inputs.manifest.get("scenario", {})
    network = network_section(inputs, seed)  # only a networked run has the key
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": inputs.manifest.get("run_id"),
        "run_dir": str(inputs.run_dir),
        "scenario": {"name": experiment.name, "path": scenario.get("path"),
                     "sha256": scenario.get("sha256")},
        "reference": {
            "path": str(inputs.human_path), "sha256": _file_sha256(inputs.human_path),
            "note": inputs.human_note, "reference_note": experiment.reference_note,
            "synthetic_standin": inputs.synthetic_reference,
            # only for twins tied to their rows by position (the data have no id column)
            **({"human_rows": inputs.human_rows} if inputs.human_rows is not None else {}),
        },
        "settings": {"bootstrap": bootstrap, "seed": seed, "splits": splits,
                     "ci_level": CI_LEVEL, "alpha": ALPHA, "min_group": MIN_GROUP},
        "policies": [p.name for p in inputs.policies],
        "samples": {"human": _sample_summary(inputs.human, experiment),
                    "policies": {p.name: _sample_summary(p, experiment)
                                 for p in inputs.policies}},
        "subgroups": {s: sorted({sc.group for sc in comparison.scopes if sc.subgroup == s})
                      for s in experiment.subgroups},
        "tables": {key: _table(result.rows) for key, result in scored.items()},
        **{name: to_json(entry) for result in scored.values()
           for name, entry in result.extra.items()},  # e.g. `regressions`, the coefficients
        **({"network": network} if network is not None else {}),
        "notes": _notes(inputs),
    }


def write_report(report: dict[str, Any], run_dir: Path) -> Path:
    """Write report.json atomically (a reader never sees half a file)."""
    path = run_dir / REPORT
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def score_run(run_dir: Path, human: Path | None = None, bootstrap: int = 1000, seed: int = 0,
              splits: int = DEFAULT_SPLITS) -> dict[str, Any]:
    """Score a run directory against the human data; writes run_dir/report.json, returns it."""
    if bootstrap < 0 or splits < 1:
        raise AnalysisInputError(f"bootstrap must be >= 0 and splits >= 1 "
                                 f"(got bootstrap={bootstrap}, splits={splits})")
    run_dir = Path(run_dir)
    inputs = read_run(run_dir, Path(human) if human is not None else None)
    with np.errstate(all="ignore"):
        report = build_report(inputs, bootstrap, seed, splits)
    inference = read_inference(run_dir)  # `run.py infer`'s section, if made from these answers
    if inference is not None:
        report["inference"] = inference
    write_report(report, run_dir)
    return report
