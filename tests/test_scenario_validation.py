"""`validate` rejects bad scenario files with file, line, field and expectation; exit code 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.scenario_check import load_checked
from scenarios.errors import InputError
from tests.conftest import FLAGSHIP, run_cli

DATA = FLAGSHIP.parent / "data" / "security_disclosure_synthetic_standin.csv"


def flagship_text() -> str:
    return FLAGSHIP.read_text(encoding="utf-8").replace(
        "data/security_disclosure_synthetic_standin.csv", str(DATA))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InputError) as caught:
        load_checked(path)
    return [str(p) for p in caught.value.problems]


def line_of(text: str, needle: str) -> int:
    return text.splitlines().index(next(ln for ln in text.splitlines() if needle in ln)) + 1


def test_flagship_validates_with_one_line_summary_and_exit_0():
    result = run_cli("validate", str(FLAGSHIP))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    assert "4 rounds" in result.stdout and "929 reference rows" in result.stdout


def test_bad_yaml_names_the_line(tmp_path):
    text = flagship_text().replace("title: Information", "title: [Information", 1)
    found = problems_of(write(tmp_path, text))
    assert len(found) == 1 and "not valid YAML" in found[0]
    assert re.search(r"scenario\.yaml:\d+", found[0])


def test_unknown_field_lists_the_expected_fields(tmp_path):
    raided = "        recall: You raided"
    text = flagship_text().replace(raided, raided + "\n        colour: red")
    path = write(tmp_path, text)
    found = problems_of(path)
    assert any("colour" in f and "unknown field" in f and "human_column" in f for f in found), found
    assert any(f":{line_of(text, 'colour: red')}:" in f for f in found), found


def test_missing_field_is_named(tmp_path):
    text = flagship_text().replace("        text: Which beach do you raid this round?\n", "")
    found = problems_of(write(tmp_path, text))
    assert any("stages[1].questions[0].text" in f and "required field is missing" in f for f in found)


def test_wrong_type_says_what_was_expected(tmp_path):
    text = flagship_text().replace("seed: 20251126", "seed: many")
    found = problems_of(write(tmp_path, text))
    assert any(f":{line_of(text, 'seed: many')}: seed:" in f and "integer" in f for f in found), found


def test_unknown_data_column_lists_the_files_columns(tmp_path):
    text = flagship_text().replace("human_column: \"r{round}_attack\"", "human_column: \"r{round}_raid\"")
    found = problems_of(write(tmp_path, text))
    assert any("unknown column 'r1_raid'" in f and "r1_attack" in f for f in found), found


def test_empty_option_list_is_rejected(tmp_path):
    text = flagship_text()
    start = text.index("        options:\n          - {id: north, text: North Beach}")
    end = text.index("        human_column: \"r{round}_attack\"")
    text = text[:start] + "        options: []\n" + text[end:]
    found = problems_of(write(tmp_path, text))
    assert any("stages[1].questions[0]" in f and "options" in f and "empty" in f for f in found), found


def test_duplicate_question_id_is_rejected(tmp_path):
    text = flagship_text().replace("      - id: attack", "      - id: belief_truth")
    found = problems_of(write(tmp_path, text))
    assert any("duplicate question id 'belief_truth'" in f for f in found), found


def test_coherence_rule_naming_an_unknown_answer(tmp_path):
    text = flagship_text().replace("{belief: south, action: south}", "{belief: south, action: east}")
    found = problems_of(write(tmp_path, text))
    assert any("coherence[0].contradicts[1].action" in f and "'east' is not an answer of 'attack'" in f
               for f in found), found


def test_template_referencing_an_unknown_variable(tmp_path):
    text = flagship_text().replace("You are {{ age }} years old", "You are {{ agee }} years old")
    found = problems_of(write(tmp_path, text))
    assert any("persona" in f and "unknown variable(s) agee" in f and "age" in f for f in found), found


@pytest.mark.parametrize("attack", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ age.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ ethnicity['__class__'] }}",
])
def test_template_trying_to_reach_python_internals(tmp_path, attack):
    text = flagship_text().replace("Answer every question as yourself", attack + " Answer")
    found = problems_of(write(tmp_path, text))
    assert any("persona" in f and ("internals" in f or "unknown variable" in f) for f in found), found


def test_duplicate_yaml_key_is_rejected(tmp_path):
    text = flagship_text().replace("seed: 20251126", "seed: 20251126\nseed: 7")
    found = problems_of(write(tmp_path, text))
    assert any("seed" in f and "twice" in f for f in found), found


def test_data_value_outside_the_options_names_the_csv_line(tmp_path):
    rows = DATA.read_text(encoding="utf-8").splitlines()
    header = next(i for i, r in enumerate(rows) if r.startswith("participant_id"))
    rows[header + 3] = rows[header + 3].replace(",north,", ",east,", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(rows) + "\n", encoding="utf-8")
    text = flagship_text().replace(str(DATA), str(bad))
    found = problems_of(write(tmp_path, text))
    assert any(f"bad.csv:{header + 4}:" in f and "'east'" in f for f in found), found


def test_formula_naming_an_unknown_variable(tmp_path):
    text = flagship_text().replace("+ C(valuations)\n", "+ C(valuation)\n", 1)
    found = problems_of(write(tmp_path, text))
    assert any("regressions[0].formula" in f and "'valuation'" in f for f in found), found


def test_every_problem_is_reported_at_once(tmp_path):
    text = (flagship_text().replace("{{ age }}", "{{ agee }}")
            .replace("      - id: attack", "      - id: belief_truth")
            .replace("action: south}", "action: east}"))
    assert len(problems_of(write(tmp_path, text))) >= 3


def test_cli_prints_errors_without_traceback_and_exits_2(tmp_path):
    text = flagship_text().replace("seed: 20251126", "seed: many").replace("title: Info", "titel: Info")
    result = run_cli("validate", str(write(tmp_path, text)))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.count("error:") == 3  # seed, unknown 'titel', missing 'title'
    assert all(line.startswith("error: ") for line in result.stderr.splitlines())


def test_missing_scenario_file_exits_2(tmp_path):
    result = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot read file" in result.stderr


def test_backend_options_are_checked_against_the_chosen_backend(tmp_path):
    text = flagship_text().replace(
        "backend: transformers",
        "backend: vllm\nbackend_options:\n  tensor_parallel_size: 0\n  gpu_memory: 0.5\n"
        "  enforce_eager: true", 1)
    path = write(tmp_path, text)
    found = problems_of(path)
    assert len(found) == 2
    size = next(p for p in found if "tensor_parallel_size" in p)
    assert f"scenario.yaml:{line_of(text, 'tensor_parallel_size')}:" in size
    assert "greater than or equal to 1" in size
    unknown = next(p for p in found if "gpu_memory" in p)
    assert f"scenario.yaml:{line_of(text, 'gpu_memory:')}:" in unknown
    assert "unknown option for backend 'vllm'" in unknown and "gpu_memory_utilization" in unknown


def test_an_openai_backend_needs_a_base_url_and_an_unknown_backend_is_named(tmp_path):
    text = flagship_text().replace("backend: transformers", "backend: openai", 1)
    found = problems_of(write(tmp_path, text))
    assert len(found) == 1 and "backend_options.base_url" in found[0] and "required" in found[0]
    text = flagship_text().replace("backend: transformers", "backend: llamacpp", 1)
    found = problems_of(write(tmp_path, text))
    assert len(found) == 1 and "'transformers', 'vllm' or 'openai'" in found[0]


def test_a_backend_whose_package_is_missing_says_what_to_install(tmp_path, monkeypatch):
    import sys

    from engine.backends import create_backend
    from engine.tiny_model import ensure_builtin

    monkeypatch.setitem(sys.modules, "vllm", None)  # as on a machine without vLLM
    monkeypatch.delitem(sys.modules, "engine.backends.vllm_backend", raising=False)
    with pytest.raises(InputError) as caught:
        create_backend("vllm", ensure_builtin("builtin:tiny"))
    message = str(caught.value.problems[0])
    assert "the vllm backend needs vLLM" in message and "pip install '.[vllm]'" in message


def test_vllm_engine_args_may_not_repeat_an_option_or_set_the_model_or_seed(tmp_path):
    text = flagship_text().replace(
        "backend: transformers",
        "backend: vllm\nbackend_options:\n  engine_args: {seed: 3, dtype: half, max_num_seqs: 8}", 1)
    found = problems_of(write(tmp_path, text))
    assert len(found) == 1 and f"scenario.yaml:{line_of(text, 'engine_args')}:" in found[0]
    assert "engine_args may not set dtype, max_num_seqs, seed" in found[0]
