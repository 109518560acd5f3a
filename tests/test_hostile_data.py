"""Hostile or damaged scenario and data files: each is a clear exit-2 error at `validate` (and at `run`,
before any model loads) naming the file, the line and the field or column, and nothing is written.

Found by the hostile test pass of issue 9: each case here used to end in a traceback or, worse, in a
run that silently simulated something else ("nan" conditions, "You are None years old", ids renamed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FLAGSHIP, run_cli

DATA = FLAGSHIP.parent / "data" / "security_disclosure_synthetic_standin.csv"
DATA_REF = "data/security_disclosure_synthetic_standin.csv"
ID, AGE, DISCLOSURE = 0, 2, 5  # cell positions in a row of the flagship's data


def flagship_text(data: Path | str = DATA) -> str:
    return FLAGSHIP.read_text(encoding="utf-8").replace(DATA_REF, str(data))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def data_lines() -> tuple[list[str], int]:
    """The flagship data's lines and the index of its header line."""
    lines = DATA.read_text(encoding="utf-8").splitlines()
    return lines, next(i for i, line in enumerate(lines) if line.startswith("participant_id"))


def edited_data(tmp_path: Path, row: int, position: int, value: str) -> tuple[Path, int]:
    """A copy of the flagship data with one cell of data row `row` (0-based) replaced; the file
    and the 1-based line of that row."""
    lines, header = data_lines()
    cells = lines[header + 1 + row].split(",")
    cells[position] = value
    lines[header + 1 + row] = ",".join(cells)
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, header + 2 + row


def refused(result, file: Path | str, line: int | None, field: str) -> str:
    """Assert a clean exit-2 refusal naming file, line and field; return stderr."""
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out, out
    where = f"{file}:{line}" if line else str(file)
    assert re.search(rf"^error: {re.escape(where)}: {re.escape(field)}: ", result.stderr, re.M), out
    return result.stderr


def validate(path: Path):
    return run_cli("validate", str(path))


def run_refused(tmp_path: Path, scenario: Path) -> str:
    """`run --participants 2` refuses the scenario and writes no run directory."""
    out = tmp_path / "run"
    result = run_cli("run", str(scenario), "--participants", "2", "--out", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert not out.exists(), "a refused run must write nothing"
    return result.stderr


# --- scenario fields -------------------------------------------------------------------------


def test_a_human_column_with_an_unknown_placeholder_is_refused(tmp_path):
    text = flagship_text().replace('human_column: "r{round}_attack"', 'human_column: "r{rnd}_attack"')
    path = write(tmp_path, text)
    err = refused(validate(path), path, line_of(text, "r{rnd}_attack"),
                  "stages[1].questions[0].human_column")
    assert "unknown placeholder(s) rnd" in err and "{round}" in err


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_a_seed_outside_0_to_2_32_is_refused_at_validate_and_run(tmp_path, seed):
    text = flagship_text().replace("seed: 20251126", f"seed: {seed}")
    path = write(tmp_path, text)
    err = refused(validate(path), path, line_of(text, f"seed: {seed}"), "seed")
    assert "greater than or equal to 0" in err or "less than 4294967296" in err
    assert "seed" in run_refused(tmp_path, path)


def test_an_unknown_builtin_model_is_refused_at_validate_and_run(tmp_path):
    text = flagship_text().replace("model: builtin:tiny", "model: builtin:huge")
    path = write(tmp_path, text)
    err = refused(validate(path), path, line_of(text, "builtin:huge"), "model")
    assert "unknown built-in model 'builtin:huge'" in err and "builtin:tiny" in err
    assert "builtin:huge" in run_refused(tmp_path, path)


def test_a_missing_model_directory_is_refused_at_validate(tmp_path):
    text = flagship_text().replace("model: builtin:tiny", "model: models/nowhere")
    path = write(tmp_path, text)
    err = refused(validate(path), path, line_of(text, "models/nowhere"), "model")
    assert f"no config.json in {tmp_path / 'models' / 'nowhere'}" in err


def test_a_policy_adapter_that_does_not_exist_is_refused_at_validate(tmp_path):
    text = flagship_text().replace("  base_no_demographics: {demographics: false}",
                                   "  base_no_demographics: {demographics: false}\n"
                                   "  ft10: {adapter: ../nowhere/ft10}")
    path = write(tmp_path, text)
    err = refused(validate(path), path, line_of(text, "../nowhere/ft10"), "policies.ft10.adapter")
    assert "does not exist" in err and "run.py finetune" in err


def test_a_policy_adapter_without_adapter_config_is_refused_at_validate(tmp_path):
    (tmp_path / "ft10").mkdir()
    (tmp_path / "ft10" / "adapter_model.safetensors").write_bytes(b"not weights")
    text = flagship_text().replace("  base_no_demographics: {demographics: false}",
                                   "  ft10: {adapter: ft10}")
    path = write(tmp_path, text)
    err = refused(validate(path), path, line_of(text, "adapter: ft10"), "policies.ft10.adapter")
    assert "not a peft adapter directory" in err and "adapter_config.json" in err


def test_a_scenario_that_is_not_utf8_names_the_line_and_byte_offset(tmp_path):
    text = flagship_text()
    raw = text.encode("utf-8").replace(b"title: Information", b"title: Informaci\xf3n", 1)
    path = tmp_path / "scenario.yaml"
    path.write_bytes(raw)
    result = validate(path)
    offset = raw.index(b"\xf3")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {path}:{line_of(text, 'title: Information')}: not UTF-8: byte 0xf3 at byte " \
           f"offset {offset}" in result.stderr
    assert "re-save the file as UTF-8" in result.stderr


def test_escape_sequences_in_a_scenario_never_reach_the_terminal(tmp_path):
    text = flagship_text().replace('human_column: "r{round}_attack"',
                                   'human_column: "r{round}_\\e]0;pwned\\a\\e[2J"')
    path = write(tmp_path, text)
    err = refused(validate(path), path, line_of(text, "pwned"), "stages[1].questions[0].human_column")
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in err


# --- the data file itself --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "missing", "binary"])
def test_a_data_path_that_is_no_csv_is_refused_at_the_scenarios_data_line(tmp_path, kind):
    data = tmp_path / "data.csv"
    if kind == "directory":
        data.mkdir()
    elif kind == "binary":
        data.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    text = flagship_text(data)
    path = write(tmp_path, text)
    result = validate(path)
    if kind == "binary":  # a byte that is not UTF-8 is named where it is in the data file
        err = refused(result, data, 1, "not UTF-8")
    else:
        err = refused(result, path, line_of(text, str(data)), "population.data")
        assert {"directory": "is a directory; expected a CSV file",
                "missing": "data file not found"}[kind] in err
    assert str(data) in err


def test_a_data_file_with_nul_bytes_is_refused_as_binary(tmp_path):
    data = tmp_path / "data.csv"
    data.write_bytes(b"participant_id,age\nP1,\x00\x00\n")
    path = write(tmp_path, flagship_text(data))
    err = refused(validate(path), data, 2, "holds NUL bytes")
    assert "binary file" in err


def leaked(output: str, source: Path) -> list[str]:
    """Pieces (8+ characters) of a file's lines that appear in the output."""
    lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
    return [piece for line in lines for piece in [line, *re.split("[,:]", line)]
            if len(piece) >= 8 and piece in output]


@pytest.mark.skipif(not Path("/etc/passwd").is_file(), reason="needs a system file to point at")
def test_a_data_path_to_a_system_file_never_prints_its_content(tmp_path):
    path = write(tmp_path, flagship_text("/etc/passwd"))
    result = validate(path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert re.search(r"^error: \S*(/etc/passwd|scenario\.yaml):\d+: ", result.stderr, re.M), result.stderr
    assert "/etc/passwd" in result.stderr
    assert not leaked(result.stdout + result.stderr, Path("/etc/passwd"))


def test_a_text_file_that_is_not_the_scenarios_data_is_refused_without_quoting_it(tmp_path):
    secret = tmp_path / "notes.txt"
    secret.write_text("alice:secret-token-123\nbob:another-secret-456\n", encoding="utf-8")
    text = flagship_text(secret)
    path = write(tmp_path, text)
    err = refused(validate(path), path, line_of(text, str(secret)), "population.data")
    assert "none of the columns this scenario reads" in err and "participant_id" in err
    assert not leaked(err, secret), err


def test_a_csv_row_with_too_many_cells_names_its_line_only(tmp_path):
    data, line = edited_data(tmp_path, row=3, position=1, value="White,extra-secret-cell")
    path = write(tmp_path, flagship_text(data))
    err = refused(validate(path), data, line, "not a readable CSV")
    assert "fields where the header has 20" in err and "extra-secret-cell" not in err


def test_a_data_file_that_is_not_utf8_names_the_csv_line_and_byte_offset(tmp_path):
    data, line = edited_data(tmp_path, row=4, position=1, value="LATIN1")
    raw = data.read_bytes()
    offset = raw.index(b"LATIN1") + len("Caf")
    data.write_bytes(raw.replace(b"LATIN1", "Café".encode("latin-1")))  # é is 0xe9 in Latin-1
    path = write(tmp_path, flagship_text(data))
    err = refused(validate(path), data, line, "not UTF-8")
    assert f"byte 0xe9 at byte offset {offset}" in err and "re-save the file as UTF-8" in err


def test_a_header_only_data_file_is_refused_at_validate_and_run(tmp_path):
    lines, header = data_lines()
    data = tmp_path / "data.csv"
    data.write_text("\n".join(lines[: header + 1]) + "\n", encoding="utf-8")
    text = flagship_text(data)
    path = write(tmp_path, text)
    err = refused(validate(path), path, line_of(text, str(data)), "population.data")
    assert "no data rows" in err
    assert "no data rows" in run_refused(tmp_path, path)


# --- cells -----------------------------------------------------------------------------------


def test_an_empty_condition_cell_is_refused_naming_the_csv_line_and_column(tmp_path):
    data, line = edited_data(tmp_path, row=2, position=DISCLOSURE, value="")
    path = write(tmp_path, flagship_text(data))
    err = refused(validate(path), data, line, "disclosure")
    assert "empty cell; expected condition 'disclosure' (one of specific, vague)" in err
    assert "disclosure" in run_refused(tmp_path, path)


def test_an_empty_participant_id_is_refused_naming_the_csv_line(tmp_path):
    data, line = edited_data(tmp_path, row=7, position=ID, value="")
    path = write(tmp_path, flagship_text(data))
    err = refused(validate(path), data, line, "participant_id")
    assert "empty cell; expected a participant id" in err


@pytest.mark.parametrize("position, column", [(AGE, "age"), (3, "gender")])
def test_an_empty_demographic_the_persona_shows_is_refused(tmp_path, position, column):
    data, line = edited_data(tmp_path, row=11, position=position, value="")
    path = write(tmp_path, flagship_text(data))
    err = refused(validate(path), data, line, column)
    assert f"empty cell; expected demographic '{column}', which the persona" in err


def test_a_duplicate_participant_id_names_its_csv_line(tmp_path):
    data, line = edited_data(tmp_path, row=5, position=ID, value="P001")
    path = write(tmp_path, flagship_text(data))
    err = refused(validate(path), data, line, "participant_id")
    assert "duplicate participant id 'P001'" in err


def test_escape_sequences_and_long_values_in_a_data_cell_are_shown_escaped_and_cut(tmp_path):
    hostile = "\x1b]0;pwned\x07\x1b[2J" + "x" * 200
    data, line = edited_data(tmp_path, row=0, position=DISCLOSURE, value=hostile)
    path = write(tmp_path, flagship_text(data))
    err = refused(validate(path), data, line, "disclosure")
    assert "\x1b" not in err and "\x07" not in err
    message = next(m for m in err.splitlines() if "is not one of" in m)
    quoted = message.split("value '", 1)[1].split("' is not one of", 1)[0]
    assert quoted.startswith("\\x1b]0;pwned\\x07\\x1b[2J") and quoted.endswith("...")
    assert len(quoted) <= 60


def test_zero_padded_ids_are_kept_byte_exact_through_run_and_score(tmp_path):
    lines, header = data_lines()
    lines[header + 1:] = [line.removeprefix("P") for line in lines[header + 1:]]  # P001 -> 001
    data = tmp_path / "data.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = write(tmp_path, flagship_text(data))
    run_dir = tmp_path / "run"
    result = run_cli("run", str(path), "--participants", "20", "--out", str(run_dir))
    assert result.returncode == 0, result.stderr
    ids = set(pd.read_parquet(run_dir / "responses.parquet")["participant_id"])
    assert len(ids) == 20 and all(re.fullmatch(r"\d{3}", i) for i in ids), sorted(ids)
    assert ids <= {line.split(",")[ID] for line in lines[header + 1:]}
    scored = run_cli("score", str(run_dir), "--bootstrap", "20")
    assert scored.returncode == 0, scored.stderr
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["samples"]["human"]["participants"] == 20  # every twin found its human row


# --- a run directory -------------------------------------------------------------------------


def test_a_manifest_whose_sessions_is_a_string_is_refused_not_exploded(tmp_path):
    run_dir = tmp_path / "run"
    first = run_cli("run", str(FLAGSHIP), "--participants", "2", "--out", str(run_dir))
    assert first.returncode == 0, first.stderr
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["sessions"] = "notalist"
    edited = json.dumps(manifest)
    manifest_path.write_text(edited, encoding="utf-8")
    again = run_cli("run", str(FLAGSHIP), "--participants", "2", "--out", str(run_dir))
    err = refused(again, manifest_path, None, "sessions")
    assert "expected a list of session records" in err
    assert manifest_path.read_text(encoding="utf-8") == edited  # nothing rewritten


def test_a_manifest_edited_to_an_unknown_column_placeholder_is_refused_by_score(tmp_path):
    run_dir = tmp_path / "run"
    first = run_cli("run", str(FLAGSHIP), "--participants", "2", "--out", str(run_dir))
    assert first.returncode == 0, first.stderr
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["scenario"]["resolved"]["stages"][1]["questions"][0]["human_column"] = "r{rnd}_attack"
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    scored = run_cli("score", str(run_dir), "--bootstrap", "5")
    assert scored.returncode == 2 and "Traceback" not in scored.stderr, scored.stderr
    assert "human_column 'r{rnd}_attack'" in scored.stderr and "{round}" in scored.stderr
    assert not (run_dir / "report.json").exists()
