"""The flagship on the in-process vLLM backend, base and LoRA policies in one run, as a user runs it."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
pytest.importorskip("vllm")

from engine.runner import run_scenario
from engine.store import MANIFEST
from tests.backend_queries import compare_runs
from tests.conftest import FLAGSHIP_RUN_PARTICIPANTS

pytestmark = pytest.mark.vllm
CPU_ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024,
              "gpu_memory_utilization": 0.3}


def test_the_flagship_on_vllm_with_a_lora_policy_matches_transformers(
        flagship, flagship_policies, flagship_reference_run, tmp_path):
    run_dir = tmp_path / "vllm"
    result = run_scenario(flagship, participants=FLAGSHIP_RUN_PARTICIPANTS, out=run_dir,
                          policies=flagship_policies, backend_kind="vllm",
                          backend_options=CPU_ENGINE)
    s = flagship.scenario
    assert result.backend_calls == len(s.rounds) * len(s.stages) * len(flagship_policies)
    worst, diverged, twins = compare_runs(run_dir, flagship_reference_run)
    assert twins == FLAGSHIP_RUN_PARTICIPANTS * len(flagship_policies)
    assert worst <= 1e-3
    assert diverged <= 2  # a draw within ~1e-6 of an option boundary may fall the other way

    manifest = json.loads((run_dir / MANIFEST).read_text())
    assert manifest["model"]["backend"] == "vllm"
    assert manifest["model"]["adapters"] == {"tuned": str(flagship_policies[1].adapter)}
    assert manifest["backend"] == {"kind": "vllm", "options": CPU_ENGINE}

    # Rerunning the finished run's directory changes nothing (no backend is even built).
    again = run_scenario(flagship, participants=FLAGSHIP_RUN_PARTICIPANTS, out=run_dir,
                         policies=flagship_policies, backend_kind="vllm",
                         backend_options=CPU_ENGINE)
    assert again.already_complete


def test_a_fully_cached_vllm_run_never_starts_the_engine(flagship, tiny_dir, tmp_path):
    from engine.backends.vllm_backend import VllmBackend

    run_dir = tmp_path / "run"
    backend = VllmBackend(tiny_dir, **CPU_ENGINE)
    try:
        run_scenario(flagship, participants=6, out=run_dir, backend=backend)
        assert backend.started
    finally:
        backend.close()
    replay = VllmBackend(tiny_dir, **CPU_ENGINE)
    result = run_scenario(flagship, participants=6, out=run_dir, backend=replay, fresh=False)
    assert result.already_complete
    (run_dir / "responses.parquet").unlink()  # as if killed while joining the parts
    manifest = json.loads((run_dir / MANIFEST).read_text())
    (run_dir / MANIFEST).write_text(json.dumps({**manifest, "status": "running"}))
    result = run_scenario(flagship, participants=6, out=run_dir, backend=replay)
    assert result.cache_misses == 0 and result.cache_hits == 6 * 12
    assert not replay.started


def test_an_engine_argument_vllm_does_not_know_is_named_before_anything_starts(tiny_dir):
    from engine.backends import create_backend
    from scenarios.errors import InputError

    with pytest.raises(InputError, match="max_num_batched_tokenz: not an argument"):
        create_backend("vllm", tiny_dir, options={"engine_args": {"max_num_batched_tokenz": 9}})
