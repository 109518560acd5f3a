"""Hostile command lines, run directories and adapters: each is a clear exit-2 error naming the
flag or the file and field, nothing is written or lost, and every check that needs no model runs
before the model (or torch) loads. `--help` stays fast because nothing heavy is imported for it.

Found by the hostile test pass of issue 9 (items 4 and 5): each case here used to end in a
traceback, in a refusal after a 100-second model load, or (marginal populations) in a run that
could not be scored.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FLAGSHIP, ROOT, run_cli, without_study

DATA = FLAGSHIP.parent / "data" / "security_disclosure_synthetic_standin.csv"
HEAVY = ("torch", "transformers", "statsmodels", "vllm", "mesa", "peft")


def refused(result: subprocess.CompletedProcess[str], flag_or_field: str,
            file: str = "command line") -> str:
    """Assert a clean exit-2 refusal naming `file` and the flag or field; return stderr.

    Problems print as `error: FILE[:LINE]: FIELD: ...`; argparse's own checks of a flag's value
    print `...: error: argument FLAG: ...`: both name the flag.
    """
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out, out
    ours = rf"^error: {re.escape(file)}(:\d+)?: {re.escape(flag_or_field)}: "
    argparse_style = rf"error: argument {re.escape(flag_or_field)}: "
    assert re.search(ours, result.stderr, re.M) or (
        file == "command line" and re.search(argparse_style, result.stderr)), out
    return result.stderr


def in_process(*args: str) -> tuple[int, list[str], float]:
    """Run `run.py ARGS` in a fresh interpreter; its exit code, the heavy modules it imported
    and its wall time."""
    probe = (
        "import json, runpy, sys\n"
        f"sys.argv = ['run.py', *{list(args)!r}]\n"
        "code = 0\n"
        f"try:\n    runpy.run_path({str(ROOT / 'run.py')!r}, run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]))\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    seconds = time.perf_counter() - started
    code, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    return code, heavy, seconds


# --- speed: nothing heavy on the way to --help or to a refusal --------------------------------

def test_help_imports_no_heavy_library_and_takes_under_a_second():
    code, heavy, _ = in_process("--help")
    assert code == 0 and heavy == []
    times = []
    for _ in range(3):
        started = time.perf_counter()
        done = run_cli("--help")
        times.append(time.perf_counter() - started)
        assert done.returncode == 0 and "finetune" in done.stdout
    assert statistics.median(times) < 1.5, times  # about 0.1 s quiet; generous for a busy machine


def test_finetune_help_shows_the_defaults_without_importing_torch():
    code, heavy, _ = in_process("finetune", "--help")
    assert code == 0 and heavy == []


def test_a_refused_run_never_imports_torch_or_the_model(tmp_path):
    code, heavy, seconds = in_process("run", str(FLAGSHIP), "--participants", "100000",
                                      "--out", str(tmp_path / "run"))
    assert code == 2 and heavy == []
    assert seconds < 5
    assert not (tmp_path / "run").exists()


# --- numbers on the command line ---------------------------------------------------------------

@pytest.mark.parametrize("seed", ["-1", "4294967296", "abc"])
def test_a_seed_outside_numpys_range_is_refused(tmp_path, seed):
    refused(run_cli("run", str(FLAGSHIP), "--seed", seed, "--out", str(tmp_path / "r")), "--seed")
    refused(run_cli("finetune", str(FLAGSHIP), "--pilot", "0.1", "--seed", seed,
                    "--out", str(tmp_path / "ft")), "--seed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("count", ["0", "-5"])
def test_participants_below_one_are_refused(tmp_path, count):
    refused(run_cli("run", str(FLAGSHIP), "--participants", count, "--out", str(tmp_path / "r")),
            "--participants")
    assert not (tmp_path / "r").exists()


def test_more_twins_than_data_rows_blame_the_flag_not_the_data_file(tmp_path):
    err = refused(run_cli("run", str(FLAGSHIP), "--participants", "100000",
                          "--out", str(tmp_path / "r")), "--participants")
    assert "asked for 100000 twins; the data has 929 rows" in err
    assert not (tmp_path / "r").exists()


# --- output paths --------------------------------------------------------------------------------

def test_an_out_under_a_regular_file_is_refused_before_anything_loads(tmp_path):
    (tmp_path / "notes").write_text("keep me")
    err = refused(run_cli("run", str(FLAGSHIP), "--out", str(tmp_path / "notes" / "run")), "--out")
    assert "is a file, not a directory" in err
    assert (tmp_path / "notes").read_text() == "keep me"


def test_an_out_that_is_a_regular_file_is_refused(tmp_path):
    (tmp_path / "notes").write_text("keep me")
    refused(run_cli("run", str(FLAGSHIP), "--out", str(tmp_path / "notes")), "--out")
    assert (tmp_path / "notes").read_text() == "keep me"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_out_where_no_file_can_be_created_is_refused():
    err = refused(run_cli("run", str(FLAGSHIP), "--out", "/proc/survey-twins-run"), "--out")
    assert "/proc" in err
    assert not Path("/proc/survey-twins-run").exists()


def test_finetune_out_that_is_a_file_is_refused_before_the_scenario_loads(tmp_path):
    (tmp_path / "adapter").write_text("keep me")
    code, heavy, _ = in_process("finetune", str(FLAGSHIP), "--pilot", "0.1",
                                "--out", str(tmp_path / "adapter"))
    assert code == 2 and heavy == []
    refused(run_cli("finetune", str(FLAGSHIP), "--pilot", "0.1", "--out", str(tmp_path / "adapter")),
            "--out")
    assert (tmp_path / "adapter").read_text() == "keep me"


# --- devices -------------------------------------------------------------------------------------

def test_finetune_on_a_device_that_is_no_torch_device_is_refused_listing_the_available(tmp_path):
    err = refused(run_cli("finetune", str(FLAGSHIP), "--pilot", "0.1", "--device", "banana",
                          "--out", str(tmp_path / "ft")), "--device")
    assert "'banana' is not a torch device" in err and "cpu" in err
    assert not (tmp_path / "ft").exists()


def test_finetune_on_cuda_without_cuda_is_refused(tmp_path):
    import torch

    device = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    err = refused(run_cli("finetune", str(FLAGSHIP), "--pilot", "0.1", "--device", device,
                          "--out", str(tmp_path / "ft")), "--device")
    assert "available: cpu" in err
    assert not (tmp_path / "ft").exists()


# --- the model and the backend's URL -------------------------------------------------------------

def test_a_missing_model_directory_is_refused_before_torch_loads(tmp_path):
    text = FLAGSHIP.read_text(encoding="utf-8").replace("data/security_disclosure", f"{DATA.parent}/"
                                                        "security_disclosure")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(f"model: {tmp_path / 'no-model-here'}\n" + text.replace(
        "model: builtin:tiny\n", ""), encoding="utf-8")
    code, heavy, _ = in_process("run", str(scenario), "--participants", "2",
                                "--out", str(tmp_path / "run"))
    assert code == 2 and heavy == []
    err = refused(run_cli("run", str(scenario), "--participants", "2", "--out", str(tmp_path / "run")),
                  "model", file=str(scenario))
    assert "no config.json" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("query", ["api_key=SECRET123", "key=SECRET123", "token=SECRET123",
                                   "access_token=SECRET123", "x-api-key=SECRET123"])
def test_a_base_url_with_a_key_in_its_query_string_is_refused_and_never_echoed(tmp_path, query):
    result = run_cli("run", str(FLAGSHIP), "--participants", "2", "--out", str(tmp_path / "r"),
                     "--backend", "openai", "--backend-option",
                     f"base_url=http://127.0.0.1:9/v1?{query}")
    err = refused(result, "--backend-option base_url")
    assert "api_key_env" in err
    assert "SECRET123" not in result.stdout + result.stderr
    assert not (tmp_path / "r").exists()


def test_a_base_url_without_credentials_passes_the_check():
    from engine.backends.openai_backend import url_credentials

    assert url_credentials("http://127.0.0.1:8000/v1") is None
    assert url_credentials("https://example.org/v1?model=llama") is None
    assert url_credentials("https://user:pw@example.org/v1") == "user:password@"


# --- show on a damaged or hostile run directory -------------------------------------------------

@pytest.fixture(scope="module")
def small_run(flagship, tiny_backend, tmp_path_factory) -> Path:
    """A finished two-participant run of the flagship (copied before a test damages it)."""
    from engine.runner import run_scenario

    out = tmp_path_factory.mktemp("small") / "run"
    run_scenario(flagship, participants=2, out=out, backend=tiny_backend)
    return out


@pytest.fixture
def run_copy(small_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(small_run, copy)
    return copy


def first_id(run_dir: Path) -> str:
    return str(pd.read_parquet(run_dir / "responses.parquet")["participant_id"].iloc[0])


@pytest.mark.parametrize("content", ["{not json", "", "[1, 2]"])
def test_show_on_a_garbage_or_empty_manifest_names_the_manifest(run_copy, content):
    (run_copy / "manifest.json").write_text(content)
    result = run_cli("show", str(run_copy), "--participant", first_id(run_copy))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {run_copy / 'manifest.json'}: " in result.stderr


def test_show_on_a_manifest_without_the_model_names_the_field(run_copy):
    manifest = json.loads((run_copy / "manifest.json").read_text())
    del manifest["model"]
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    refused(run_cli("show", str(run_copy), "--participant", first_id(run_copy)), "model",
            file=str(run_copy / "manifest.json"))


@pytest.mark.parametrize("bad_line", ["[1, 2]", "42", '{"policy": "base"}'])
def test_show_on_a_transcript_line_that_is_no_record_names_the_file_and_line(run_copy, bad_line):
    path = run_copy / "transcripts.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(2, bad_line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = path.read_bytes()
    result = run_cli("show", str(run_copy), "--participant", first_id(run_copy))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {path}:3: " in result.stderr
    assert path.read_bytes() == before


def test_show_on_a_participants_line_missing_its_answer_names_the_field(run_copy):
    path = run_copy / "transcripts.jsonl"
    pid = first_id(run_copy)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    number = next(i for i, line in enumerate(lines, 1)
                  if line["participant_id"] == pid and line["role"] == "assistant")
    del lines[number - 1]["probs"]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    result = run_cli("show", str(run_copy), "--participant", pid)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {path}:{number}: " in result.stderr and "probs" in result.stderr


def test_show_prints_escape_sequences_in_the_data_as_visible_text(run_copy):
    path = run_copy / "transcripts.jsonl"
    pid = first_id(run_copy)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    system = next(line for line in lines if line["participant_id"] == pid and line["role"] == "system")
    system["parts"]["persona"] = "calm \x1b]0;owned\x07 \x1b[2J text"
    answer = next(line for line in lines if line["participant_id"] == pid
                  and line["role"] == "assistant")
    answer["options"][0] = "\x9b31mopt"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    result = run_cli("show", str(run_copy), "--participant", pid)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x9b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b]0;owned\\x07" in result.stdout and "\\x9b31mopt" in result.stdout


# --- --resume on an edited manifest -------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", -3, [1, 2], True])
def test_resume_with_a_damaged_request_names_the_manifest_and_field(run_copy, value):
    path = run_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["request"]["participants"] = value
    manifest["status"] = "running"
    path.write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in run_copy.iterdir() if p.is_file()}
    err = refused(run_cli("run", str(FLAGSHIP), "--resume", str(run_copy)), "request.participants",
                  file=str(path))
    assert "edited or damaged" in err
    assert {p.name: p.read_bytes() for p in run_copy.iterdir() if p.is_file()} == before


# --- adapters -------------------------------------------------------------------------------------

def adapter_copy(source: Path, target: Path, digest: str | None) -> Path:
    """A copy of a peft adapter directory, with a training record naming `digest` if given."""
    shutil.copytree(source, target)
    if digest is not None:
        (target / "training.json").write_text(json.dumps({
            "base_model": {"name": "builtin:tiny", "weights_sha256": digest},
            "pilot_ids": [], "holdout_ids": []}))
    return target


def test_a_truncated_adapter_is_refused_naming_its_weights_file(tiny_dir, tiny_lora_dir, tmp_path):
    from engine.weights import weights_digest

    adapter = adapter_copy(tiny_lora_dir, tmp_path / "ft", weights_digest(tiny_dir))
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    err = refused(run_cli("run", str(FLAGSHIP), "--participants", "2", "--policies",
                          f"base,ft={adapter}", "--out", str(tmp_path / "run")), "policy ft",
                  file=str(weights.resolve()))
    assert "not a whole safetensors file" in err
    assert not (tmp_path / "run").exists()


def test_an_adapter_without_a_training_record_is_refused_saying_what_is_missing(tiny_dir,
                                                                              tiny_lora_dir,
                                                                              tmp_path):
    from engine.weights import weights_digest

    adapter = adapter_copy(tiny_lora_dir, tmp_path / "ft", None)
    err = refused(run_cli("run", str(FLAGSHIP), "--participants", "2", "--policies",
                          f"base,ft={adapter}", "--out", str(tmp_path / "run")), "policy ft",
                  file=str(adapter.resolve()))
    assert "no training.json" in err and weights_digest(tiny_dir) in err  # says how to vouch
    assert not (tmp_path / "run").exists()


def test_an_adapter_vouched_for_by_a_record_of_this_models_weights_is_accepted(
        flagship, tiny_dir, tiny_lora_dir, tmp_path):
    from engine.policies import resolve_policies
    from engine.weights import weights_digest

    adapter = adapter_copy(tiny_lora_dir, tmp_path / "ft", weights_digest(tiny_dir))
    policies = resolve_policies(flagship, f"base,ft={adapter}", weights_digest(tiny_dir))
    assert [p.name for p in policies] == ["base", "ft"]


# --- marginal populations score against their reference data -----------------------------------

def marginal_scenario(tmp_path: Path) -> Path:
    """The flagship with participants drawn from marginals; the stand-in data is its reference."""
    text = without_study(FLAGSHIP.read_text(encoding="utf-8"))
    start, end = text.index("population:\n"), text.index("conditions:\n")
    path = tmp_path / "marginal.yaml"
    path.write_text(text[:start] + (
        f"population:\n  source: marginals\n  size: 4\n  data: {DATA}\n  marginals:\n"
        "    ethnicity: {White: 0.5, Black: 0.5}\n    age: {'30': 0.5, '60': 0.5}\n"
        "    gender: {Female: 0.5, Male: 0.5}\n    education: {Some college: 1.0}\n\n")
        + text[end:], encoding="utf-8")
    return path


def test_a_marginal_population_run_scores_with_subgroups(tiny_backend, tmp_path):
    from engine.runner import run_scenario
    from scenarios.loader import load_scenario

    scenario = marginal_scenario(tmp_path)
    assert run_cli("validate", str(scenario)).returncode == 0
    loaded = load_scenario(scenario)
    assert loaded.scenario.analysis.subgroups == ["ethnicity", "gender"]
    run_dir = tmp_path / "run"
    run_scenario(loaded, participants=4, out=run_dir, backend=tiny_backend)
    for extra in ([], ["--human", str(DATA)]):
        scored = run_cli("score", str(run_dir), "--bootstrap", "10", *extra)
        assert scored.returncode == 0, scored.stderr
        report = json.loads((run_dir / "report.json").read_text())
        assert report["subgroups"]["gender"] == ["Female", "Male", "Non-binary"]
        assert report["samples"]["human"]["participants"] == 929
        assert report["samples"]["policies"]["base"]["participants"] == 4
        groups = {row["group"] for table in report["tables"].values() for row in table
                  if row.get("subgroup") == "gender" and row.get("policies", {}).get("base")}
        assert groups >= {"Female", "Male"}  # the drawn genders, compared with the reference's
