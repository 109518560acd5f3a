"""Policies: which ones a run may name, how adapters are checked, and what a run records of them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from engine.backends.transformers_backend import TransformersBackend
from engine.policies import resolve_policies, twins_from_record
from engine.runner import run_scenario
from engine.weights import weights_digest
from scenarios.errors import InputError
from scenarios.loader import load_scenario
from tests.conftest import FLAGSHIP, run_cli
from tests.test_scenario_validation import flagship_text, problems_of, write


def make_adapter(base, directory: Path, weights_sha256: str | None = None) -> Path:
    """An untrained LoRA adapter saved like `finetune` saves one (with training.json if a hash)."""
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(directory)
    if weights_sha256 is not None:
        (directory / "training.json").write_text(json.dumps({
            "base_model": {"name": "builtin:tiny", "weights_sha256": weights_sha256},
            "no_demographics": True, "pilot_ids": [], "holdout_ids": ["P001"]}))
    return directory


@pytest.fixture(scope="module")
def adapter(tiny_dir, tmp_path_factory) -> Path:
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    return make_adapter(base, tmp_path_factory.mktemp("ft") / "ft", weights_digest(tiny_dir))


def test_policies_come_from_the_scenario_block_base_or_the_command_line(flagship, tiny_dir, adapter):
    policies = resolve_policies(flagship, f"base,base_no_demographics,ft={adapter}",
                                weights_digest(tiny_dir))
    assert [p.name for p in policies] == ["base", "base_no_demographics", "ft"]
    assert [p.demographics for p in policies] == [True, False, False]  # ft: as it was trained
    assert policies[0].adapter is None and policies[2].adapter == adapter.resolve()
    assert len(policies[2].adapter_sha256 or "") == 64


@pytest.mark.parametrize(("names", "expected"), [
    ("base,colour", "unknown policy 'colour'; the scenario defines: base, base_no_demographics"),
    ("base,base", "named twice"),
    ("base=somewhere", "'base' is the scenario's model"),
    ("ft-10=somewhere", "is not NAME or NAME=ADAPTER_DIR"),
])
def test_bad_policy_names_are_clear_errors(flagship, names, expected):
    with pytest.raises(InputError, match=expected):
        resolve_policies(flagship, names, "0" * 64)


def test_a_directory_that_is_not_a_peft_adapter_is_refused(flagship, tmp_path):
    (tmp_path / "notes.txt").write_text("not an adapter")
    with pytest.raises(InputError, match="not a peft adapter directory") as caught:
        resolve_policies(flagship, f"ft={tmp_path}", "0" * 64)
    assert caught.value.problems[0].file == str(tmp_path.resolve())


def test_an_adapter_trained_on_other_base_weights_is_refused(flagship, adapter, tmp_path):
    with pytest.raises(InputError, match="trained on other base weights"):
        resolve_policies(flagship, f"ft={adapter}", "f" * 64)


def test_an_adapter_without_a_record_that_does_not_fit_the_base_model_is_refused(tiny_dir, tmp_path):
    other = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, head_dim=32))
    foreign = make_adapter(other, tmp_path / "foreign")
    with pytest.raises(InputError, match="does not load onto"):
        TransformersBackend(tiny_dir, adapters={"foreign": foreign})


def test_the_backend_refuses_a_policy_it_was_not_given(tiny_backend):
    from engine.backends.base import ChoiceQuery
    from tests.test_backend_math import ask

    with pytest.raises(ValueError, match="not registered"):
        tiny_backend.option_distributions([ChoiceQuery(ask("Raid?"), ("A", "B"), "ft")])


def test_adding_a_policy_does_not_change_the_base_policys_draws(flagship, tiny_dir, tmp_path):
    backend = TransformersBackend(tiny_dir, adapters={"base_no_demographics": None})
    two = resolve_policies(flagship, "base,base_no_demographics", weights_digest(tiny_dir))
    run_scenario(flagship, participants=8, out=tmp_path / "one", backend=backend)
    run_scenario(flagship, participants=8, out=tmp_path / "two", backend=backend, policies=two)
    one = pd.read_parquet(tmp_path / "one" / "responses.parquet")
    both = pd.read_parquet(tmp_path / "two" / "responses.parquet")
    assert len(both) == 2 * len(one)
    pd.testing.assert_frame_equal(both[both.policy == "base"].reset_index(drop=True), one)
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert [p["name"] for p in manifest["policies"]] == ["base", "base_no_demographics"]
    assert [p["demographics"] for p in manifest["policies"]] == [True, False]


def test_show_prints_each_policys_transcript_of_a_twin(flagship, tiny_dir, tmp_path):
    backend = TransformersBackend(tiny_dir, adapters={"base_no_demographics": None})
    two = resolve_policies(flagship, "base,base_no_demographics", weights_digest(tiny_dir))
    run_scenario(flagship, participants=3, seed=5, out=tmp_path / "run", backend=backend,
                 policies=two)
    pid = pd.read_parquet(tmp_path / "run" / "responses.parquet")["participant_id"].iloc[0]
    shown = run_cli("show", str(tmp_path / "run"), "--participant", pid)
    assert shown.returncode == 0, shown.stderr
    assert "policy base" in shown.stdout and "policy base_no_demographics" in shown.stdout
    assert "persona (without demographics)" in shown.stdout
    assert shown.stdout.count("← answer") == 2 * 12


def test_twins_from_a_record_of_another_data_file_are_refused(flagship, tmp_path):
    (tmp_path / "training.json").write_text(json.dumps(
        {"data": {"sha256": "0" * 64}, "pilot_ids": ["P001"], "holdout_ids": ["P002"]}))
    with pytest.raises(InputError, match="another data file"):
        twins_from_record(flagship, f"holdout:{tmp_path / 'training.json'}")
    with pytest.raises(InputError, match=r"holdout:ADAPTER_DIR/training\.json"):
        twins_from_record(flagship, "everyone")


def scenario_with(tmp_path: Path, old: str, new: str) -> Path:
    text = flagship_text()
    assert old in text
    return write(tmp_path, text.replace(old, new))


def test_persona_without_demographics_may_use_conditions_only(tmp_path):
    path = scenario_with(tmp_path, "  You are a participant in an online decision-making study. Answer",
                         "  You are a {{ ethnicity }} participant in an online study. Answer")
    found = problems_of(path)
    assert any("persona_without_demographics" in f and "unknown variable(s) ethnicity" in f
               for f in found), found


def test_a_policy_without_demographics_needs_a_persona_without_them(tmp_path):
    text = flagship_text()
    start = text.index("persona_without_demographics:")
    end = text.index("instructions:")
    path = write(tmp_path, text[:start] + text[end:])
    found = problems_of(path)
    assert any("policies.base_no_demographics.demographics" in f and "persona_without_demographics"
               in f for f in found), found


def test_base_cannot_carry_an_adapter(tmp_path):
    path = scenario_with(tmp_path, "  base_no_demographics: {demographics: false}",
                         "  base: {adapter: ../runs/ft10}")
    assert any("policies.base.adapter" in f for f in problems_of(path))


def test_the_flagship_defines_a_persona_without_demographics():
    s = load_scenario(FLAGSHIP).scenario
    assert s.persona_without_demographics and "{{" not in s.persona_without_demographics
