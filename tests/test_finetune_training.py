"""Finetuning on a pilot: deterministic adapters, holdout twins, and a policy closer to the humans."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from agents.pilot import Sampling
from engine.backends.base import BackendWrapper
from engine.backends.transformers_backend import TransformersBackend
from engine.finetune import TrainingSettings, finetune
from engine.policies import resolve_policies, twins_from_record
from engine.runner import run_scenario
from engine.weights import weights_digest
from tests.conftest import FLAGSHIP, run_cli

HOLDOUT_TWINS = 150  # a seeded subset of the 836 holdout twins keeps the test quick


class PolicyCountingBackend(BackendWrapper):
    """The real backend, with the policies of every call it receives."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.calls = []

    def option_distributions(self, queries):
        self.calls.append(sorted({q.policy for q in queries}))
        return self.inner.option_distributions(queries)


@pytest.fixture(scope="module")
def ft10(flagship, tmp_path_factory):
    """A policy finetuned with the default settings on a random 10% pilot of the flagship."""
    return finetune(flagship, pilot=0.1, sampling=Sampling("random"),
                    out=tmp_path_factory.mktemp("adapters") / "ft10")


@pytest.fixture(scope="module")
def holdout_run(flagship, tiny_dir, ft10, tmp_path_factory):
    """base and ft10 over a seeded subset of the holdout twins, in one run."""
    policies = resolve_policies(flagship, f"base,ft10={ft10.adapter_dir}", weights_digest(tiny_dir))
    backend = PolicyCountingBackend(
        TransformersBackend(tiny_dir, adapters={p.name: p.adapter for p in policies}))
    twins = twins_from_record(flagship, f"holdout:{ft10.adapter_dir / 'training.json'}")
    out = tmp_path_factory.mktemp("runs") / "holdout"
    run_scenario(flagship, participants=HOLDOUT_TWINS, out=out, backend=backend,
                 policies=policies, twins=twins)
    return out, backend.calls


def test_the_training_record_says_what_the_adapter_learned_from(flagship, tiny_dir, ft10):
    record = json.loads((ft10.adapter_dir / "training.json").read_text())
    assert record["scenario"]["sha256"] == flagship.sha256
    assert record["base_model"]["weights_sha256"] == weights_digest(tiny_dir)
    assert record["base_model"]["builtin_not_pretrained"] is True
    assert len(record["pilot_ids"]) == 93 and len(record["holdout_ids"]) == 929 - 93
    assert record["sampling"] == "random" and record["no_demographics"] is False
    assert record["hyperparameters"]["rank"] == 8 and len(record["loss"]) > 10
    assert "SYNTHETIC STAND-IN" in record["data"]["note"]
    assert {"torch", "peft", "transformers"} <= set(record["packages"])
    assert (ft10.adapter_dir / "adapter_model.safetensors").is_file()
    assert np.mean(record["loss"][:5]) > ft10.final_loss  # it learned something


def test_pilot_participants_never_appear_among_the_evaluated_twins(ft10, holdout_run):
    run_dir, _ = holdout_run
    evaluated = set(pd.read_parquet(run_dir / "responses.parquet")["participant_id"])
    assert len(evaluated) == HOLDOUT_TWINS
    assert not evaluated & set(ft10.split.pilot)
    assert evaluated <= set(ft10.split.holdout)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["twins"]["source"] == "holdout"
    assert set(manifest["twins"]["ids"]) == evaluated


def test_one_run_holds_every_policy_with_one_backend_call_per_policy_and_stage(
        flagship, ft10, holdout_run):
    run_dir, calls = holdout_run
    s = flagship.scenario
    table = pd.read_parquet(run_dir / "responses.parquet")
    assert len(table) == HOLDOUT_TWINS * 2 * len(s.rounds) * len(s.questions)
    assert table.groupby("policy")["participant_id"].nunique().to_dict() == {
        "base": HOLDOUT_TWINS, "ft10": HOLDOUT_TWINS}
    assert calls == [["base"], ["ft10"]] * (len(s.rounds) * len(s.stages))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    ft = next(p for p in manifest["policies"] if p["name"] == "ft10")
    assert ft["adapter_sha256"] and ft["training"]["pilot"] == 93
    assert ft["training"]["base_model"]["weights_sha256"] == manifest["model"]["weights_sha256"]


def test_base_answers_are_unchanged_by_loading_an_adapter_beside_them(tiny_backend, tiny_dir, ft10):
    from engine.backends.base import ChoiceQuery
    from tests.test_backend_math import ask

    both = TransformersBackend(tiny_dir, adapters={"ft10": ft10.adapter_dir})
    queries = [ChoiceQuery(ask(text), ("A", "B", "C")) for text in ("Raid?", "Which beach?")]
    plain = tiny_backend.option_distributions(queries)
    as_base = both.option_distributions(queries)
    as_ft = both.option_distributions([ChoiceQuery(q.messages, q.labels, "ft10") for q in queries])
    for a, b, c in zip(plain, as_base, as_ft, strict=True):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)  # float noise of the peft path
        assert np.abs(a.probs - c.probs).max() > 1e-3


def answer_histogram(flagship, question, ids) -> np.ndarray:
    """The humans' answers to a question, pooled over rounds, as shares of each option."""
    human = flagship.human.table.set_index("participant_id")
    answers = pd.concat([human.loc[list(ids), question.column_for(r.id)]
                         for r in flagship.scenario.rounds])
    return answers.value_counts(normalize=True).reindex(question.option_ids, fill_value=0).to_numpy()


def belief_distances(flagship, run_dir, pilot: list[str]) -> dict[str, dict[str, float]]:
    """JS distance (base 2) per belief question, pooled over rounds: each policy's mean option
    probabilities against the evaluated twins' humans' answer histogram. 'pilot' is the pilot
    humans' own histogram: what a policy that learned the pilot perfectly would score."""
    table = pd.read_parquet(run_dir / "responses.parquet")
    twins = table["participant_id"].unique()
    found: dict[str, dict[str, float]] = {}
    belief = next(stage for stage in flagship.scenario.stages if stage.kind == "belief")
    for q in belief.questions:
        reference = answer_histogram(flagship, q, twins)
        found[q.id] = {"pilot": float(jensenshannon(answer_histogram(flagship, q, pilot),
                                                    reference, base=2))}
        for policy, rows in table[table["question_id"] == q.id].groupby("policy"):
            simulated = np.mean(np.stack(rows["probs"].to_numpy()), axis=0)
            found[q.id][policy] = float(jensenshannon(simulated, reference, base=2))
    return found


def test_the_finetuned_policy_is_closer_to_the_holdout_humans_than_base(flagship, ft10, holdout_run):
    distances = belief_distances(flagship, holdout_run[0], ft10.split.pilot)
    print(f"\nJS distance per belief question (holdout, {HOLDOUT_TWINS} twins): "
          + "; ".join(f"{q}: " + ", ".join(f"{k} {v:.3f}" for k, v in d.items())
                      for q, d in distances.items())
          + f"\ntraining {ft10.seconds:.1f} s, final loss {ft10.final_loss:.3f}")
    for question, by_policy in distances.items():
        assert by_policy["ft10"] < by_policy["base"], (question, by_policy)


def test_the_same_seed_trains_the_same_adapter(flagship, tmp_path):
    settings = TrainingSettings(epochs=1)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        finetune(flagship, pilot=12, sampling=Sampling("random"), seed=seed, out=tmp_path / name,
                 settings=settings)
    weights = {n: (tmp_path / n / "adapter_model.safetensors").read_bytes() for n in "abc"}
    assert weights["a"] == weights["b"]
    assert weights["a"] != weights["c"]
    records = [json.loads((tmp_path / n / "training.json").read_text()) for n in "ab"]
    assert records[0]["loss"] == records[1]["loss"]


def test_finetune_then_run_both_policies_over_the_holdout_from_the_command_line(tmp_path):
    adapter = tmp_path / "ftnd"
    trained = run_cli("finetune", str(FLAGSHIP), "--pilot", "10", "--sample",
                      "condition:disclosure=vague", "--no-demographics", "--epochs", "1",
                      "--out", str(adapter))
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.strip() == str(adapter)
    record = json.loads((adapter / "training.json").read_text())
    assert record["no_demographics"] is True and record["sampling"] == "condition:disclosure=vague"
    ran = run_cli("run", str(FLAGSHIP), "--policies", f"base,ftnd={adapter}", "--twins",
                  f"holdout:{adapter}/training.json", "--participants", "4", "--out",
                  str(tmp_path / "run"))
    assert ran.returncode == 0, ran.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [(p["name"], p["demographics"]) for p in manifest["policies"]] == [
        ("base", True), ("ftnd", False)]
    lines = [json.loads(x) for x in (tmp_path / "run" / "transcripts.jsonl").read_text().splitlines()]
    personas = {line["policy"]: line["parts"]["persona"] for line in lines if line["role"] == "system"}
    assert "years old" in personas["base"] and "years old" not in personas["ftnd"]
    assert not set(manifest["twins"]["ids"]) & set(record["pilot_ids"])
