"""`run.py study`: one holdout for every policy, resumable to an identical study.json, clear errors.

Trained on builtin:tiny (random weights, NOT a pretrained model): these tests check the machinery
(splits, resuming, determinism, the table's provenance), not the method's figures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import FLAGSHIP, ROOT, run_cli

DATA = FLAGSHIP.parent / "data" / "security_disclosure_synthetic_standin.csv"
# Small and fast: one round, 6 evaluation twins, two variants on the same 4-twin pilot (one
# without demographics: the paper's ablation), one epoch.
SMALL_STUDY = {"holdout": 6, "bootstrap": 50, "training": {"epochs": 1, "batch_size": 8},
               "variants": [{"name": "ft", "pilot": 4},
                            {"name": "nodemo", "pilot": 4, "demographics": False}]}


def write_scenario(path: Path, study: dict | None = None, **changes) -> Path:
    """The flagship cut to one round, with a study block (its data path made absolute)."""
    scenario = yaml.safe_load(FLAGSHIP.read_text(encoding="utf-8"))
    scenario["rounds"] = scenario["rounds"][:1]
    scenario["population"]["data"] = str(DATA)
    scenario["study"] = study or SMALL_STUDY
    scenario |= changes
    path.write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    """1-based line of the first line of `path` containing `text`."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    return write_scenario(tmp_path_factory.mktemp("scenario") / "small_study.yaml")


@pytest.fixture(scope="module")
def reference(scenario, tmp_path_factory) -> Path:
    """A whole study, uninterrupted, through the real command line."""
    out = tmp_path_factory.mktemp("reference") / "study"
    result = run_cli("study", str(scenario), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "nodemo" in result.stdout and str(out / "study.json") in result.stdout
    return out


# --- the plan: one holdout, every pilot outside it (no model loads) ---------------------------

def test_the_papers_grid_scores_every_policy_on_one_holdout_that_no_pilot_touches(flagship):
    from engine.study import plan_study

    plan = plan_study(flagship, grid=None, seed=None, model=None, participants=None, backend=None)
    rows = len(flagship.human.table)
    assert len(plan.holdout) == round(0.5 * rows)
    table = flagship.human.table.set_index("participant_id")
    pilots = {v.name: v.split.pilot for v in plan.variants}
    for variant in plan.variants:
        assert variant.split.holdout == plan.holdout
        assert not set(variant.split.pilot) & set(plan.holdout), variant.name
    # A fraction is of all rows (a condition pilot's, of all rows of that group).
    assert len(pilots["ft10"]) == round(0.1 * rows) and len(pilots["ft25"]) == round(0.25 * rows)
    vague = int((table["disclosure"] == "vague").sum())
    assert len(pilots["vague25"]) == round(0.25 * vague)
    assert set(table.loc[pilots["vague25"], "disclosure"]) == {"vague"}
    counts = table.loc[pilots["ft10_balanced"], "ethnicity"].value_counts()
    assert counts.max() - counts.min() <= 1 and len(counts) == table["ethnicity"].nunique()
    # The ablation trains on the very rows its counterpart does; other pilots differ.
    assert pilots["ft10_nodemo"] == pilots["ft10"] and pilots["ft10_balanced"] != pilots["ft10"]
    assert [v.demographics for v in plan.variants] == [True, True, False, True, True]


def test_a_named_grid_replaces_what_it_sets_and_keeps_the_rest(flagship):
    from engine.study import plan_study

    plan = plan_study(flagship, grid="small", seed=None, model="builtin:tiny", participants=None,
                      backend=None)
    grid = flagship.scenario.study.grids["small"]
    assert len(plan.holdout) == grid.holdout
    assert [v.name for v in plan.variants] == [v.name for v in grid.variants]
    assert [v.name for v in plan.variants] != [v.name for v in flagship.scenario.study.variants]
    assert plan.variants[0].settings.epochs == grid.training.epochs
    assert plan.study.backend_options == grid.backend_options  # the run's backend, e.g. a dtype
    assert plan.study.bootstrap == grid.bootstrap and plan.study.training.rank is None  # kept
    assert plan.loaded.scenario.model == "builtin:tiny"  # --model wins over the grid's


def test_the_study_is_drawn_from_its_seed(flagship):
    from engine.study import plan_study

    def draw(seed):
        plan = plan_study(flagship, grid=None, seed=seed, model=None, participants=None,
                          backend=None)
        return plan.holdout, [v.split.pilot for v in plan.variants]

    assert draw(5) == draw(5)
    assert draw(5)[0] != draw(6)[0]


# --- the whole study through the command line ------------------------------------------------

def test_the_study_writes_the_papers_table_from_its_report(reference):
    study, report = read_json(reference / "study.json"), read_json(reference / "run" / "report.json")
    assert study["table"]["policies"] == ["base", "ft", "nodemo"] == report["policies"]
    rows: dict[tuple, dict] = {}
    for table in report["tables"].values():  # the first row of each key (the gap of all rules)
        for r in table:
            if r["round"] is None:
                rows.setdefault((r["metric"], r["item"], r["subgroup"], r["group"]), r)
    for row in study["table"]["rows"]:  # every figure is the report's, not recomputed
        source = rows[(row["measure"], row["item"], row["subgroup"], row["group"])]
        assert row["human"] == (None if source["human"] is None else {
            k: source["human"][k] for k in row["human"]})
        assert row["policies"]["ft"]["value"] == source["policies"]["ft"]["value"]
        assert row["ceiling"] == (None if source["ceiling"] is None else {
            k: source["ceiling"][k] for k in row["ceiling"]})
    measures = {r["measure"] for r in study["table"]["rows"]}
    assert measures == {"unique_structures", "unique_structures_ratio", "js_distance_belief_mean",
                        "gap", "gap_difference", "sign_f1", "false_positive_rate"}
    scopes = {r["scope"] for r in study["table"]["rows"] if r["measure"] == "js_distance_belief_mean"}
    assert {f"ethnicity={g}" for g in report["subgroups"]["ethnicity"]} <= scopes
    markdown = (reference / "study.md").read_text()
    assert "| measure | scope | human | ceiling | base | ft | nodemo |" in markdown
    assert "SYNTHETIC STAND-IN" in markdown and "NOT a pretrained model" in markdown
    text = json.dumps(study)
    assert str(reference) not in text and "seconds" not in text and "created" not in text


def test_no_evaluated_twin_is_in_any_pilot(reference):
    manifest = read_json(reference / "run" / "manifest.json")
    evaluated = set(manifest["twins"]["ids"])
    assert len(evaluated) == SMALL_STUDY["holdout"]
    records = [read_json(reference / "adapters" / v["name"] / "training.json")
               for v in SMALL_STUDY["variants"]]
    for record in records:
        assert set(record["holdout_ids"]) == evaluated
        assert not set(record["pilot_ids"]) & evaluated
    assert records[0]["pilot_ids"] == records[1]["pilot_ids"]
    assert [r["no_demographics"] for r in records] == [False, True]
    assert [p["demographics"] for p in manifest["policies"]] == [True, True, False]


def wait_for(predicate, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, "the study ended before it could be killed"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def kill_when(args: list[str], predicate) -> None:
    """Start the study and kill -9 it as soon as `predicate()` holds."""
    process = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(predicate, process)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def running(run_dir: Path) -> bool:
    """The run is under way and has saved a stage's answers (its manifest counts them)."""
    try:
        manifest = read_json(run_dir / "manifest.json")
    except (OSError, ValueError):
        return False
    return manifest.get("status") == "running" and manifest.get("cache", {}).get("misses", 0) > 0


def test_a_study_killed_twice_resumes_to_the_same_study_json(scenario, reference, tmp_path):
    out = tmp_path / "study"
    args = ["study", str(scenario), "--out", str(out)]
    kill_when(args, lambda: (out / "adapters" / "ft" / "training.json").is_file())
    assert not (out / "study.json").exists()
    kill_when(args, lambda: running(out / "run"))
    assert not (out / "study.json").exists()
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert (out / "study.json").read_bytes() == (reference / "study.json").read_bytes()
    sessions = read_json(out / "study-manifest.json")["sessions"]
    assert len(sessions) == 3 and sessions[1]["steps"]["train ft"]["reused"] is True
    assert sessions[2]["steps"]["run"]["cache_hits"] > 0  # answers of the killed run reused
    assert read_json(out / "study-manifest.json")["status"] == "complete"


def test_a_complete_study_reruns_from_its_files_and_refuses_an_adapter_trained_otherwise(
        scenario, reference, tmp_path, capsys):
    import run  # in this process: the two commands share one import of torch and the model

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    assert run.main(["study", str(scenario), "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "study.json").read_bytes() == (reference / "study.json").read_bytes()
    last = read_json(out / "study-manifest.json")["sessions"][-1]["steps"]
    assert last["train ft"]["reused"] and last["train nodemo"]["reused"]
    assert last["run"]["already_complete"] is True
    capsys.readouterr()

    record_path = out / "adapters" / "nodemo" / "training.json"
    record = read_json(record_path)
    record["seed"] += 1
    record_path.write_text(json.dumps(record), encoding="utf-8")
    before = (out / "study.json").read_bytes()
    assert run.main(["study", str(scenario), "--out", str(out)]) == 2
    stderr = capsys.readouterr().err
    assert f"{record_path}: seed: the adapter was trained with {record['seed']}" in stderr, stderr
    assert "this adapter belongs to another study" in stderr
    assert (out / "study.json").read_bytes() == before and record_path.is_file()

    assert run.main(["study", str(scenario), "--out", str(out), "--seed", "3"]) == 2
    stderr = capsys.readouterr().err
    assert "plan.seed: this study directory holds" in stderr
    assert "continues only the same study" in stderr
    assert (out / "study.json").read_bytes() == before


# --- bad input: exit 2, file:line: field, nothing written ------------------------------------

def variant(**fields) -> dict:
    return {**SMALL_STUDY, "variants": [{"name": "ft", "pilot": 4, **fields}]}


@pytest.mark.parametrize(("study", "needle", "field", "expected"), [
    (variant(sample="balanced:nope"), "sample: balanced:nope", "study.variants[0].sample",
     "unknown demographic 'nope' for balanced:; demographics: ethnicity"),
    (variant(pilot=1.5), "pilot: 1.5", "study.variants[0].pilot",
     "1.5 is neither a fraction in (0, 1)"),
    (variant(pilot=0), "pilot: 0", "study.variants[0].pilot", "0 is neither a fraction in (0, 1)"),
    ({**SMALL_STUDY, "holdout": 1.0}, "holdout: 1.0", "study.holdout",
     "1.0 is neither a fraction in (0, 1)"),
    (variant(pilot=500, sample="condition:disclosure=specific"), "pilot: 500",
     "study.variants[0].pilot", "larger than the condition disclosure=specific, which has"),
    (variant(sample="condition:disclosure=loud"), "sample: condition:disclosure=loud",
     "study.variants[0].sample", "condition disclosure has no level 'loud'"),
    ({**SMALL_STUDY, "model": "builtin:nope"}, "model: builtin:nope", "study.model",
     "unknown built-in model 'builtin:nope'"),
    ({**SMALL_STUDY, "model": "no-such-model-dir"}, "model: no-such-model-dir", "study.model",
     "neither a built-in model nor a local Hugging Face model directory"),
    # Known only once the holdout is drawn: the group's rows left outside a 90% holdout.
    ({**SMALL_STUDY, "holdout": 0.9, "variants": [
        {"name": "ft", "pilot": 0.25, "sample": "condition:disclosure=specific"}]},
     "pilot: 0.25", "study.variants[0].pilot", "rows of disclosure=specific left outside the holdout"),
])
def test_bad_study_input_is_a_clear_error_naming_file_line_and_field(tmp_path, capsys, study, needle,
                                                                      field, expected):
    import run

    path = write_scenario(tmp_path / "bad.yaml", study)
    out = tmp_path / "study"
    assert run.main(["study", str(path), "--out", str(out)]) == 2  # the CLI's own entry point
    stderr = capsys.readouterr().err
    assert f"{path}:{line_of(path, needle)}: {field}: " in stderr, stderr
    assert expected in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_bad_study_input_exits_2_from_the_real_command_line(tmp_path):
    path = write_scenario(tmp_path / "bad.yaml", variant(sample="balanced:nope"))
    result = run_cli("study", str(path), "--out", str(tmp_path / "study"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}:{line_of(path, 'balanced:nope')}: study.variants[0].sample: unknown " \
           "demographic 'nope'" in result.stderr
    assert not (tmp_path / "study").exists()


def test_a_missing_study_block_or_grid_is_a_clear_error(tmp_path, scenario, capsys):
    import run

    plain = yaml.safe_load(scenario.read_text())
    del plain["study"]
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(plain, sort_keys=False))
    assert run.main(["study", str(path), "--out", str(tmp_path / "a")]) == 2
    assert "has no study: block" in capsys.readouterr().err
    assert run.main(["study", str(scenario), "--grid", "huge", "--out", str(tmp_path / "b")]) == 2
    stderr = capsys.readouterr().err
    assert "--grid: unknown grid 'huge'; the study defines: default" in stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
