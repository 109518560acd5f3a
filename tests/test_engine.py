"""The engine: one backend call per stage, same seed same results, nothing lost on a crash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from engine.backends.base import BackendWrapper, ChoiceQuery, Distribution
from engine.runner import run_scenario
from engine.store import PARTS, RESPONSES, TRANSCRIPTS


class CountingBackend(BackendWrapper):
    """The real backend, with a record of every call it receives."""

    def __init__(self, inner, fail_on_call: int | None = None) -> None:
        super().__init__(inner)
        self.calls, self.fail_on_call = [], fail_on_call

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        self.calls.append(len(queries))
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("injected backend failure")
        return self.inner.option_distributions(queries)


def test_backend_receives_one_call_per_stage_not_per_participant(flagship, tiny_backend, tmp_path):
    backend = CountingBackend(tiny_backend)
    result = run_scenario(flagship, participants=30, out=tmp_path / "run", backend=backend)
    s = flagship.scenario
    assert len(backend.calls) == len(s.rounds) * len(s.stages) == result.backend_calls
    per_stage = [30 * len(stage.questions) for _ in s.rounds for stage in s.stages]
    assert backend.calls == per_stage


def test_one_row_per_participant_round_question_and_probabilities_sum_to_one(
        flagship, tiny_backend, tmp_path):
    run_scenario(flagship, participants=25, out=tmp_path / "run", backend=tiny_backend)
    table = pd.read_parquet(tmp_path / "run" / RESPONSES)
    s = flagship.scenario
    assert len(table) == 25 * len(s.rounds) * len(s.questions)
    assert not table.duplicated(["participant_id", "round", "question_id"]).any()
    sums = table["probs"].map(np.sum).to_numpy()
    assert np.abs(sums - 1).max() <= 1e-6
    assert (table["answer"] == [o[i] for o, i in zip(table["options"], table["answer_index"],
                                                      strict=True)]).all()
    expected = {"participant_id", "policy", "disclosure", "values", "valuations", "ethnicity", "age",
                "gender", "education", "round", "stage", "question_id", "kind", "type", "options",
                "probs", "answer", "answer_index", "option_mass"}
    assert expected <= set(table.columns)


def test_two_runs_with_one_seed_give_identical_parquet(flagship, tiny_backend, tmp_path):
    for name in ("a", "b"):
        run_scenario(flagship, participants=20, seed=11, out=tmp_path / name, backend=tiny_backend)
    a, b = (pd.read_parquet(tmp_path / n / RESPONSES) for n in "ab")
    pd.testing.assert_frame_equal(a, b)
    digest = [hashlib.sha256((tmp_path / n / RESPONSES).read_bytes()).hexdigest() for n in "ab"]
    assert digest[0] == digest[1]
    assert (tmp_path / "a" / TRANSCRIPTS).read_bytes() == (tmp_path / "b" / TRANSCRIPTS).read_bytes()


def test_another_seed_draws_other_participants_and_answers(flagship, tiny_backend, tmp_path):
    run_scenario(flagship, participants=20, seed=11, out=tmp_path / "a", backend=tiny_backend)
    run_scenario(flagship, participants=20, seed=12, out=tmp_path / "b", backend=tiny_backend)
    a, b = (pd.read_parquet(tmp_path / n / RESPONSES) for n in "ab")
    assert set(a.participant_id) != set(b.participant_id)


def test_twins_keep_their_human_row_condition_and_demographics(flagship, tiny_backend, tmp_path):
    run_scenario(flagship, participants=15, out=tmp_path / "run", backend=tiny_backend)
    sim = pd.read_parquet(tmp_path / "run" / RESPONSES).drop_duplicates("participant_id")
    human = flagship.human.table.set_index("participant_id").loc[sim.participant_id]
    assert list(sim["values"]) == list(human["value_structure"])
    assert list(sim["valuations"]) == list(human["valuation_known"])
    assert list(sim["ethnicity"]) == list(human["ethnicity"])
    assert list(sim["age"]) == list(human["age"])


def test_a_crash_mid_run_keeps_every_finished_stage_on_disk(flagship, tiny_backend, tmp_path):
    backend = CountingBackend(tiny_backend, fail_on_call=3)
    with pytest.raises(RuntimeError, match="injected"):
        run_scenario(flagship, participants=10, out=tmp_path / "run", backend=backend)
    run_dir = tmp_path / "run"
    parts = sorted((run_dir / PARTS).glob("step-*.parquet"))
    assert len(parts) == 2
    done = pd.concat([pd.read_parquet(p) for p in parts])
    assert len(done) == 10 * 3  # round 1: two belief questions, then the attack
    lines = [json.loads(x) for x in (run_dir / TRANSCRIPTS).read_text().splitlines()]
    assert sum(line["role"] == "assistant" for line in lines) == len(done)
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"


def test_manifest_records_seed_scenario_hash_model_and_versions(flagship, tiny_backend, tmp_path):
    run_scenario(flagship, participants=5, seed=3, out=tmp_path / "run", backend=tiny_backend)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["status"] == "complete"
    assert manifest["scenario"]["sha256"] == flagship.sha256
    assert manifest["model"]["builtin_not_pretrained"] is True
    assert len(manifest["model"]["weights_sha256"]) == 64
    assert {"torch", "transformers", "mesa", "peft"} <= set(manifest["packages"])
    assert "SYNTHETIC STAND-IN" in manifest["human_data"]["note"]
    assert manifest["prompts"]["persona"] == flagship.scenario.persona


def test_run_refuses_a_non_empty_output_directory(flagship, tiny_backend, tmp_path):
    from scenarios.errors import InputError

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        run_scenario(flagship, participants=5, out=tmp_path / "run", backend=tiny_backend)
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"
