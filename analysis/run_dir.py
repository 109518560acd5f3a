"""Read what scoring needs: the run directory (manifest.json, responses.parquet) and the human CSV.

Every problem is an `AnalysisInputError` naming the file, the column and what was expected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from analysis.errors import AnalysisInputError
from analysis.experiment import Experiment, experiment_from_resolved
from analysis.regression import check_formulas
from analysis.samples import Sample, align_attributes, sample_from_human, sample_from_responses
from contracts.manifest import Manifest
from contracts.run_format import (
    DATA_ROW_MEANING,
    MANIFEST,
    RESPONSES,
    SCORED_COLUMNS,
    ManifestNotJSON,
    ManifestNotObject,
    leading_note,
    row_of_id,
)
from contracts.run_format import read_manifest as read_manifest_file

RESPONSE_COLUMNS = SCORED_COLUMNS  # the name this module has always exported
SYNTHETIC_MARK = "SYNTHETIC STAND-IN"


@dataclass(frozen=True)
class HumanTable:
    """The human data file: its rows (all text) and its leading '#' note."""

    path: Path
    table: pd.DataFrame
    note: str


@dataclass(frozen=True)
class RunInputs:
    """A run ready to score: the scenario, one sample per policy and the human reference."""

    run_dir: Path
    manifest: Manifest
    experiment: Experiment
    policies: list[Sample]
    human: Sample
    human_path: Path
    human_note: str
    human_scope: str = "all rows of the human data"
    # Set when twins are tied to their human rows by row position (the data have no id column):
    # which data rows the reference holds (report.json `reference.human_rows`).
    human_rows: dict[str, Any] | None = None

    @property
    def synthetic_reference(self) -> bool:
        """Whether the reference is a synthetic stand-in rather than human data."""
        notes = (self.experiment.reference_note, self.human_note,
                 str(_human_data(self.manifest).get("note") or ""))
        return any(SYNTHETIC_MARK in note.upper() for note in notes)


def _human_data(manifest: Manifest) -> dict[str, Any]:
    """The manifest's `human_data` record; {} for a marginal population's run (null there)."""
    record = manifest.get("human_data")
    return record if isinstance(record, dict) else {}


def read_manifest(run_dir: Path) -> Manifest:
    """The run's manifest.json (contracts.manifest), with the resolved scenario in it."""
    if not run_dir.is_dir():
        raise AnalysisInputError(f"{run_dir}: not a run directory (expected a folder)")
    path = run_dir / MANIFEST
    try:
        manifest = read_manifest_file(run_dir)
    except ManifestNotJSON as exc:
        raise AnalysisInputError(f"{path}: {exc}") from None
    except ManifestNotObject:
        manifest = {}  # worded below, as for an object without the resolved scenario
    if manifest is None:
        raise AnalysisInputError(f"{path}: missing (every run directory has a manifest)")
    if "resolved" not in (manifest.get("scenario") or {}):
        raise AnalysisInputError(f"{path}: expected a 'scenario' object with 'resolved' in it")
    return manifest


def read_responses(run_dir: Path, experiment: Experiment) -> pd.DataFrame:
    """The engine's responses table: the columns scoring reads, checked."""
    path = run_dir / RESPONSES
    if not path.is_file():
        raise AnalysisInputError(
            f"{path}: missing; a run directory to score needs the engine's responses table "
            "(was the run interrupted before it finished?)")
    try:
        names = set(pq.read_schema(path).names)
    except Exception as exc:
        raise AnalysisInputError(f"{path}: not a readable parquet file ({exc})") from None
    missing = [c for c in RESPONSE_COLUMNS if c not in names]
    if missing:
        raise AnalysisInputError(f"{path}: missing column(s) {missing}; expected "
                                 f"{list(RESPONSE_COLUMNS)} (+ policy, factors, demographics)")
    wanted = [*RESPONSE_COLUMNS, "policy", *experiment.attributes]
    return pd.read_parquet(path, columns=[c for c in wanted if c in names])


def read_human_table(path: Path) -> HumanTable:
    """A human data CSV; leading '#' lines are its note; every cell is read as text."""
    try:
        with path.open(encoding="utf-8") as handle:
            note = leading_note(handle)
        table = pd.read_csv(path, skiprows=len(note), dtype=str, keep_default_na=True)
    except FileNotFoundError:
        raise AnalysisInputError(f"{path}: human data file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AnalysisInputError(f"{path}: not a readable CSV ({exc})") from None
    return HumanTable(path, table, "\n".join(note))


def human_path(run_dir: Path, manifest: Manifest, experiment: Experiment,
               override: Path | None) -> Path:
    """The human data file: `override`, else the manifest's, else the scenario's population."""
    if override is not None:
        return Path(override)
    recorded = _human_data(manifest).get("path")
    scenario_file = Path(str(manifest["scenario"].get("path") or run_dir))
    candidates = [Path(recorded)] if recorded else []
    if recorded and not Path(recorded).is_absolute():
        candidates += [run_dir / recorded, scenario_file.parent / recorded]
    if experiment.data:
        candidates.append(scenario_file.parent / experiment.data)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise AnalysisInputError(
        f"{run_dir / MANIFEST}: no human data file found (human_data.path is "
        f"{recorded!r}; tried {[str(c) for c in candidates]}); pass --human FILE")


def required_human_columns(experiment: Experiment, needed: set[str]) -> list[str]:
    """Human columns scoring reads: the id, every question x round, the attributes in use."""
    columns = [experiment.id_column] if experiment.id_column else []
    columns += [c for q in experiment.questions for r in experiment.rounds
                if (c := q.column_for(r)) is not None]
    columns += [f.column for f in experiment.factors if f.name in needed]
    columns += [human for name, human in experiment.demographics.items() if name in needed]
    return columns


def check_columns(present: set[str], required: list[str], where: str, what: str) -> None:
    """Raise naming every required column that a table lacks."""
    missing = [c for c in required if c not in present]
    if missing:
        raise AnalysisInputError(f"{where}: missing required column(s) {missing} ({what})")


def policy_names(manifest: Manifest) -> list[str]:
    """Policy names in the manifest's order; entries are names or {"name": ...} records."""
    entries = manifest.get("policies") or []
    return [str(e["name"]) if isinstance(e, dict) else str(e) for e in entries]


def read_run(run_dir: Path, human: Path | None) -> RunInputs:
    """Read and check a run directory and its human data before any scoring starts."""
    manifest = read_manifest(run_dir)
    where = f"{run_dir / MANIFEST}: scenario.resolved"
    experiment = experiment_from_resolved(manifest["scenario"]["resolved"], where)
    needed = set(experiment.subgroups) | check_formulas(experiment, where)
    responses = read_responses(run_dir, experiment)
    check_columns(set(responses.columns), [a for a in experiment.attributes if a in needed],
                  str(run_dir / RESPONSES), "subgroup or regression variables")
    path = human_path(run_dir, manifest, experiment, human)
    reference = read_human_table(path)
    check_columns(set(reference.table.columns), required_human_columns(experiment, needed),
                  str(path), "named by the scenario's population, conditions and questions")
    if "policy" not in responses.columns:
        responses = responses.assign(policy=(policy_names(manifest) or ["default"])[0])
    present = set(responses["policy"].astype(str))
    if "human" in present:
        raise AnalysisInputError(f"{run_dir / RESPONSES}: a policy is named 'human', which is "
                                 "reserved for the reference sample; rename the policy")
    order = [p for p in policy_names(manifest) if p in present]
    order += sorted(present - set(order))
    policy_column = responses["policy"].astype(str)
    samples = [sample_from_responses(responses[policy_column == p], experiment, p,
                                     str(run_dir / RESPONSES)) for p in order]
    if not samples:
        raise AnalysisInputError(f"{run_dir / RESPONSES}: has no rows to score")
    table, scope, rows = twin_counterparts(reference.table, responses, manifest, experiment, path)
    reference_sample = sample_from_human(table, experiment, str(path))
    human_sample, *policy_samples = align_attributes([reference_sample, *samples])
    return RunInputs(run_dir, manifest, experiment, policy_samples, human_sample, path,
                     reference.note, scope, rows)


def twin_counterparts(table: pd.DataFrame, responses: pd.DataFrame, manifest: Manifest,
                      experiment: Experiment, path: Path
                      ) -> tuple[pd.DataFrame, str, dict[str, Any] | None]:
    """For a twins run, the human rows whose twins were simulated (a holdout, never a pilot):
    matched by the id column, else by the data row each twin records (`manifest.twin_rows`).
    Returns the rows, the report's wording of them and, when matched by row, which rows."""
    population = manifest["scenario"]["resolved"].get("population") or {}
    if population.get("source") != "twins":
        return table, "all rows of the human data", None  # marginals: no one is a row's twin
    if not experiment.id_column:
        return _by_row_position(table, responses, manifest, path)
    simulated = set(responses["participant_id"].astype(str))
    keep = table[experiment.id_column].astype(str).isin(simulated)
    if not keep.any():
        raise AnalysisInputError(f"{path}: none of the run's participant ids appear in column "
                                 f"'{experiment.id_column}'; is this the run's human data?")
    return table[keep], f"the {int(keep.sum())} human rows whose twins were simulated", None


def _by_row_position(table: pd.DataFrame, responses: pd.DataFrame, manifest: Manifest,
                     path: Path) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """Twins of data without an id column, matched to the data rows they record.

    A row number means something only in the file the run read, so the file must be that one,
    byte for byte (the manifest's human_data.sha256): in another file (re-sorted, filtered, or
    another wave) row 12 is someone else, and scoring against it would be silently wrong."""
    where = str(path)
    recorded = str(_human_data(manifest).get("sha256") or "")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != recorded:
        run_digest = f"{recorded[:12]}..." if recorded else "not recorded"
        raise AnalysisInputError(
            f"{where}: the run's data have no id column (population.id_column), so its twins are "
            f"tied to their human rows by row position, and this is not the file the run read "
            f"(sha256 {actual[:12]}..., the run's data {run_digest}); the twins cannot be tied to "
            "this file's rows. Score with the run's own data file, or give the data an id "
            "column and run again")
    simulated = list(dict.fromkeys(responses["participant_id"].astype(str)))
    rows_of = _recorded_rows(manifest, simulated)
    unknown = [pid for pid in simulated if pid not in rows_of]
    if unknown:
        raise AnalysisInputError(f"{where}: the run's participant(s) {unknown[:5]} name no data row "
                                 "(manifest twin_rows, or ids row1, row2, ... for data without an "
                                 "id column); is this a run of this scenario?")
    numbers = sorted({rows_of[pid] for pid in simulated})
    total = len(table)
    counted = _human_data(manifest).get("rows")
    outside = [n for n in numbers if not 1 <= n <= total]
    if outside or (isinstance(counted, int) and counted != total):  # the engine read it otherwise
        read = f"the run read {counted}" if isinstance(counted, int) else "the run's count unknown"
        raise AnalysisInputError(f"{where}: read as {total} data rows ({read}); the run's twins "
                                 f"name data row(s) {outside[:5] or numbers[-1:]}")
    if len(numbers) == total:
        scope = f"all {total} rows of the human data: every row's twin was simulated"
    else:
        scope = (f"the {len(numbers)} human rows these participants are twins of (data rows "
                 f"{_ranges(numbers)} of {total})")
    scope += "; matched by data row, as the data have no id column"
    chosen = table.iloc[[n - 1 for n in numbers]]
    return chosen, scope, {"matched_by": "data row", "data_row": DATA_ROW_MEANING,
                           "count": len(numbers), "of": total, "rows": numbers}


def _recorded_rows(manifest: Manifest, simulated: list[str]) -> dict[str, int]:
    """Participant id -> data row: the manifest's `twin_rows`, else (a run written before twins
    recorded their rows) the ids themselves, row1, row2, ..., which name the row."""
    record = manifest.get("twin_rows")
    if record is None:
        return {pid: row for pid in simulated if (row := row_of_id(pid)) is not None}
    rows = record.get("rows") if isinstance(record, dict) else None
    if not isinstance(rows, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in rows.values()):
        raise AnalysisInputError(f"{MANIFEST}: twin_rows.rows should map each participant id to "
                                 "its data row number")
    return {str(k): v for k, v in rows.items()}


def _ranges(numbers: list[int], limit: int = 12) -> str:
    """Sorted row numbers as '3-5, 9, 12-20'; past `limit` ranges, the rest is counted."""
    spans: list[tuple[int, int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], n)
        else:
            spans.append((n, n))
    shown = [f"{a}-{b}" if b > a else f"{a}" for a, b in spans[:limit]]
    if len(spans) > limit:
        rest = sum(b - a + 1 for a, b in spans[limit:])
        shown.append(f"and {rest} more (all listed in reference.human_rows)")
    return ", ".join(shown)
