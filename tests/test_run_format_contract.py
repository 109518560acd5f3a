"""The run format contract (contracts.run_format) agrees with the real writers: the scenario
schema for the resolved record, a real run for responses.parquet and transcripts.jsonl."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, NotRequired, get_args, get_origin, get_type_hints

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import run_format as rf
from tests.conftest import FLAGSHIP, run_cli

# Each record of the resolved scenario and the scenarios.schema model that writes it.
WRITERS = {
    "ResolvedOption": "Option", "ResolvedQuestion": "Question", "ResolvedStage": "Stage",
    "ResolvedRound": "Round", "ResolvedFactor": "Factor", "ResolvedPopulation": "Population",
    "ResolvedContradiction": "Contradiction", "ResolvedCoherenceRule": "CoherenceRule",
    "ResolvedIndicator": "Indicator", "ResolvedRegression": "Regression",
    "ResolvedAnalysis": "Analysis", "ResolvedScenario": "Scenario",
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """The flagship on builtin:tiny with three participants, as a user runs it."""
    out = tmp_path_factory.mktemp("contract") / "run"
    result = run_cli("run", str(FLAGSHIP), "--participants", "3", "--seed", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def _is_typeddict(hint: Any) -> bool:
    return isinstance(hint, type) and typing.is_typeddict(hint)


def _conforms(value: Any, hint: Any, where: str, every_key: bool) -> list[str]:
    """Where `value` does not have the type `hint` (TypedDicts: exactly their keys; with
    `every_key`, the not-required ones too)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is NotRequired:
        return _conforms(value, args[0], where, every_key)
    if origin in (typing.Union, types.UnionType):
        found = [_conforms(value, a, where, every_key) for a in args]
        return [] if any(not f for f in found) else found[0]
    if hint is Any:
        return []
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r} is not None"]
    if _is_typeddict(hint):
        return _record_problems(value, hint, where, every_key)
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, expected a list"]
        return [p for i, v in enumerate(value) for p in _conforms(v, args[0], f"{where}[{i}]",
                                                                   every_key)]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, expected an object"]
        return [p for k, v in value.items() for p in _conforms(v, args[1], f"{where}.{k}",
                                                               every_key)]
    expected = (int, float) if hint is float else hint
    ok = isinstance(value, expected) and not (hint is not bool and isinstance(value, bool))
    return [] if ok else [f"{where}: {value!r} is not {hint.__name__}"]


def _record_problems(value: Any, record: Any, where: str, every_key: bool) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {type(value).__name__}, expected an object"]
    hints = get_type_hints(record, include_extras=True)
    needed = set(hints) if every_key else {k for k, h in hints.items()
                                           if get_origin(h) is not NotRequired}
    problems = [f"{where}: missing '{k}'" for k in sorted(needed - set(value))]
    for key in hints.keys() & value.keys():
        problems += _conforms(value[key], hints[key], f"{where}.{key}", every_key)
    return problems


def test_every_resolved_field_the_contract_names_is_a_field_of_the_scenario_schema() -> None:
    import scenarios.schema as schema

    for record_name, model_name in WRITERS.items():
        model = getattr(schema, model_name)
        written = {field.alias or name for name, field in model.model_fields.items()}
        written |= set(model.model_computed_fields)
        named = set(get_type_hints(getattr(rf, record_name)))
        assert named <= written, f"{record_name}: {sorted(named - written)} not in {model_name}"


# What the flagship leaves at its defaults, set on the real Chile data: keys recorded only when set.
CHILE = FLAGSHIP.parent / "chile_plebiscite.yaml"
CHILE_EXTRAS = [
    ("  id_column: respondent\n",
     "  id_column: respondent\n  missing_codes: [\"DK\"]\n  weights: population\n"),
    ("        human_column: vote\n", "        human_column: vote\n        missing_codes: [\"9\"]\n"),
    ("I(income / 1000)\n", "I(income / 1000)\n      fit: {se: classical, maxiter: 50}\n"),
]


@pytest.fixture(scope="module")
def chile_run(tmp_path_factory) -> Path:
    """Chile with every field the flagship leaves unset, on builtin:tiny with three twins."""
    folder = tmp_path_factory.mktemp("contract_chile")
    text = CHILE.read_text(encoding="utf-8").replace(
        "data/chile_plebiscite_1988.csv", str(CHILE.parent / "data/chile_plebiscite_1988.csv"))
    for old, new in CHILE_EXTRAS:
        assert old in text, old
        text = text.replace(old, new)
    scenario = folder / "chile.yaml"
    scenario.write_text(text, encoding="utf-8")
    result = run_cli("run", str(scenario), "--participants", "3", "--out", str(folder / "run"))
    assert result.returncode == 0, result.stderr
    return folder / "run"


def _keys_absent(value: Any, hint: Any) -> set[str]:
    """'Record.key' for each contract key (not-required ones too) that no record of `value` holds."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is NotRequired:
        return _keys_absent(value, args[0])
    if origin in (typing.Union, types.UnionType):
        return set.intersection(*(_keys_absent(value, a) for a in args))
    if _is_typeddict(hint) and isinstance(value, dict):
        hints = get_type_hints(hint, include_extras=True)
        absent = {f"{hint.__name__}.{k}" for k in hints if k not in value}
        return absent.union(*(_keys_absent(value[k], hints[k]) for k in hints.keys() & value.keys()))
    if origin is list and isinstance(value, list) and value:
        return set.intersection(*(_keys_absent(v, args[0]) for v in value))
    if origin is dict and isinstance(value, dict) and value:
        return set.intersection(*(_keys_absent(v, args[1]) for v in value.values()))
    return set()


def test_real_manifests_hold_every_field_of_the_contract(real_run, chile_run) -> None:
    """Each real manifest conforms, and every key the contract names (those recorded only when
    set included) is written by the flagship's or by Chile's with its extras."""
    absent = None
    for run in (real_run, chile_run):
        resolved = json.loads((run / rf.MANIFEST).read_text(encoding="utf-8"))["scenario"]["resolved"]
        assert _record_problems(resolved, rf.ResolvedScenario, "resolved", every_key=False) == []
        found = _keys_absent(resolved, rf.ResolvedScenario)
        absent = found if absent is None else absent & found
    assert absent == set()


def _arrow_matches(arrow: pa.DataType, hint: Any) -> bool:
    if get_origin(hint) in (typing.Union, types.UnionType):
        return pa.types.is_null(arrow) or any(_arrow_matches(arrow, a) for a in get_args(hint)
                                              if a is not type(None))
    if get_origin(hint) is list:
        return pa.types.is_list(arrow) and _arrow_matches(arrow.value_type, get_args(hint)[0])
    checks = {str: lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
              int: pa.types.is_int64, float: pa.types.is_float64}
    return checks[hint](arrow)


def test_a_real_runs_responses_have_exactly_the_contracts_columns_and_types(real_run) -> None:
    manifest = json.loads((real_run / rf.MANIFEST).read_text(encoding="utf-8"))
    resolved = manifest["scenario"]["resolved"]
    attributes = [*resolved["conditions"], *resolved["population"]["demographics"]]
    schema = pq.read_schema(real_run / rf.RESPONSES)
    assert schema.names == rf.response_columns(attributes)
    for name, hint in rf.response_types().items():
        assert _arrow_matches(schema.field(name).type, hint), (name, schema.field(name).type)
    assert set(rf.SCORED_COLUMNS) <= set(schema.names)


def test_a_real_runs_transcript_lines_have_exactly_the_contracts_fields(real_run) -> None:
    lines = (real_run / rf.TRANSCRIPTS).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    fields = set(get_type_hints(rf.TranscriptLine))
    for i, record in enumerate(records):
        assert set(record) <= fields, sorted(set(record) - fields)
        assert _record_problems(record, rf.TranscriptLine, f"line {i + 1}", every_key=False) == []
    roles = {r["role"] for r in records}
    assert {"system", "assistant"} <= roles
    assert all("parts" in r for r in records if r["role"] == "system")
    answered = [r for r in records if "options" in r]
    assert answered and all({"probs", "answer", "option_mass"} <= set(r) for r in answered)


def test_old_manifests_are_ordered_by_the_legacy_types() -> None:
    likert = {"id": "q", "type": "likert", "text": "?", "options": [], "human_column": None}
    assert rf.question_ordered(likert) and not rf.question_ordered({**likert, "type": "yes_no"})
    assert rf.question_ordered({**likert, "type": "numeric", "ordered": True})
    assert not rf.question_ordered({**likert, "ordered": False})
