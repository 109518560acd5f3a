"""The run contract's request side: what a resumed run takes from its record, and the one parser
of --policies / --twins syntax (engine/policies.py)."""

from __future__ import annotations

from pathlib import Path

from engine.policies import policies_record, policy_items, twins_record
from engine.run_request import RecordedRequest, RunRequest


def test_a_resumed_request_takes_what_the_command_line_leaves_out(tmp_path):
    recorded = RecordedRequest.model_validate({
        "participants": 8, "seed": 3, "policies": "base", "twins": None, "model": None,
        "backend": "transformers", "backend_options": {"dtype": "float32"}})
    asked = RunRequest(scenario=Path("s.yaml"), resume=tmp_path, seed=5,
                       backend_options={"device": "cpu"})
    merged = asked.resumed(recorded)
    assert (merged.participants, merged.seed, merged.out) == (8, 5, tmp_path)
    assert merged.backend_options == {"dtype": "float32", "device": "cpu"}


def test_a_resumed_request_on_another_backend_drops_the_recorded_options(tmp_path):
    recorded = RecordedRequest.model_validate({"backend": "transformers",
                                               "backend_options": {"dtype": "float32"}})
    merged = RunRequest(scenario=Path("s.yaml"), resume=tmp_path, backend="vllm").resumed(recorded)
    assert merged.backend == "vllm" and merged.backend_options == {}


def test_the_request_records_adapter_and_training_record_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert policies_record("base, ft=adapters/ft") == f"base,ft={tmp_path / 'adapters' / 'ft'}"
    assert twins_record("holdout:ft/training.json") == f"holdout:{tmp_path / 'ft' / 'training.json'}"
    assert twins_record("holdout") == "holdout" and policies_record(None) is None
    items = policy_items("base,,x=")
    assert [(i.text, i.name, i.directory, i.has_equals) for i in items] == [
        ("base", "base", None, False), ("", "", None, False), ("x=", "x", None, True)]
