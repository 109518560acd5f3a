"""A regression formula is data, never code: hostile formulas in a scenario file or in a run's
manifest.json are refused (exit 2, file, line and field named) and run nothing.

Each payload would create a sentinel file if any of it were evaluated; the sentinel never
appears. `test_the_payload_runs_under_the_plain_formula_api` shows that it would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from analysis.errors import AnalysisInputError
from analysis.experiment import RegressionSpec, experiment_from_resolved
from analysis.regression import design, fit, prepare
from analysis.run_dir import read_human_table
from analysis.samples import align_attributes, participant_rounds, sample_from_human
from contracts.formula import ALLOWED, CheckedFormula, FormulaError, check_formula
from tests import analysis_fixtures as fx
from tests.conftest import FLAGSHIP, run_cli

DATA = FLAGSHIP.parent / "data" / "security_disclosure_synthetic_standin.csv"
FIRST_FORMULA = ("formula: attack_north ~ believes_north + believes_south + C(values) "
                 "+ C(valuations)")
FLAGSHIP_KNOWN = ["attack", "belief_location", "belief_truth", "attack_north", "believes_north",
                  "believes_south", "disclosure", "values", "valuations", "ethnicity", "gender",
                  "education", "age", "round"]
OS_PAYLOAD = ("attack_north ~ believes_south + I(believes_north.__class__.__init__.__globals__"
              "['__builtins__']['__import__']('os').system('touch {sentinel}') * 0 + believes_north)")
CTYPES_PAYLOAD = ("attack_north ~ believes_north + "
                  "I(np.ctypeslib.ctypes.CDLL(None).system(b'touch {sentinel}'))")
IMPORT_PAYLOAD = "attack_north ~ C(__import__('os').system('touch {sentinel}'))"

# Python shapes that reach code: attribute access, calls, subscripts, dunders, lambdas,
# comprehensions, strings and other expressions. Each is tried in four positions (below).
SHAPES = [
    "believes_north.__class__",
    "believes_north.__class__.__mro__[1].__subclasses__()",
    "believes_north.__init__.__globals__",
    "__import__('os').system('touch {sentinel}')",
    "__import__",
    "__builtins__",
    "__loader__",
    "np.ctypeslib.ctypes.CDLL(None).system(b'touch {sentinel}')",
    "np.__dict__",
    "np.log(believes_north)",
    "log(believes_north)",
    "exec('import os')",
    "eval('1')",
    "compile('1', '', 'eval')",
    "open('{sentinel}', 'w')",
    "getattr(believes_north, 'real')",
    "globals()",
    "vars()",
    "type(believes_north)",
    "print(1)",
    "breakpoint()",
    "(lambda: 1)()",
    "lambda x: x",
    "[x for x in (1, 2)]",
    "{{x: 1 for x in (1,)}}",
    "(x for x in (1,))",
    "{{x for x in (1,)}}",
    "believes_north[0]",
    "believes_north['a']",
    "'touch {sentinel}'",
    "b'x'",
    "f'{{believes_north}}'",
    "believes_north if believes_north else 1",
    "(y := 1)",
    "*believes_north",
    "believes_north.real",
    "(1).__class__",
    "C(believes_north).__class__",
    "not believes_north",
    "believes_north > 0",
    "[1, 2]",
    "{{'a': 1}}",
    "...",
    "(believes_north)(1)",
    "believes_north (1)",
    "believes_north ** 9 ** 9 ** 9",
]
POSITIONS = {
    "inside I()": "attack_north ~ believes_north + I({shape})",
    "inside C()": "attack_north ~ believes_north + C({shape})",
    "bare": "attack_north ~ believes_north + {shape}",
    "left of ~": "{shape} ~ believes_north",
}
# Every formula the repo's scenarios, stand-in and tests use, and other shapes of the grammar.
ALLOWED_FORMULAS = [
    ("logit", "attack_north ~ believes_north + believes_south + C(values) + C(valuations)"),
    ("mnlogit", "belief_location ~ C(disclosure) + C(values) + C(valuations)"),
    ("logit", "attack_north ~ believes_north + believes_south + C(values)"),
    ("logit", "attack_north ~ believes_north + C(values) * C(valuations) + round"),
    ("logit", "attack_north ~ 0 + believes_north + C(values)"),
    ("logit", "attack_north ~ (believes_north + round):C(values) - 1"),
    ("logit", "attack_north ~ I(believes_north - believes_south) + I(-round / 2 + round ** 2)"),
    ("ols", "belief_truth ~ C(disclosure) + believes_north * round"),
]
FIXTURE_FORMULAS = [
    ("logit", "attack_north ~ believes_north + C(values) + C(disclosure)"),
    ("logit", "attack_north ~ believes_north + C(values)"),
    ("mnlogit", "belief_location ~ C(disclosure) + round"),
    ("ols", "belief_truth ~ C(values)"),
]


def scenario_text(formulas: list[str] | list[tuple[str, str]]) -> str:
    """The flagship with its regressions replaced by `formulas` (as YAML strings): logits, or
    (family, formula) pairs."""
    text = FLAGSHIP.read_text(encoding="utf-8").replace(
        "data/security_disclosure_synthetic_standin.csv", str(DATA))
    start = text.index("  regressions:\n")
    pairs = [f if isinstance(f, tuple) else ("logit", f) for f in formulas]
    entries = "".join(f"    - name: r{i}\n      family: {family}\n      formula: {json.dumps(f)}\n"
                      for i, (family, f) in enumerate(pairs))
    return text[:start] + "  regressions:\n" + entries


def formula_lines(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if line.startswith("      formula: ")]


def write_scenario(tmp_path: Path,
                   formulas: list[str] | list[tuple[str, str]]) -> tuple[Path, list[int]]:
    path = tmp_path / "scenario.yaml"
    text = scenario_text(formulas)
    path.write_text(text, encoding="utf-8")
    return path, formula_lines(text)


def assert_refused_with_nothing_run(result, sentinel: Path) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert not sentinel.exists(), "the formula's code ran"


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    return tmp_path / "SENTINEL"


# The payloads of the report, at `validate` and `run`

@pytest.mark.parametrize("payload", [OS_PAYLOAD, CTYPES_PAYLOAD, IMPORT_PAYLOAD],
                         ids=["globals", "ctypes", "import"])
def test_payload_formula_is_refused_by_validate_naming_file_line_and_field(tmp_path, sentinel,
                                                                            payload):
    path, lines = write_scenario(tmp_path, [payload.format(sentinel=sentinel)])
    result = run_cli("validate", str(path))
    assert_refused_with_nothing_run(result, sentinel)
    assert f"{path}:{lines[0]}: analysis.regressions[0].formula: formula" in result.stderr
    assert "is not allowed" in result.stderr and ALLOWED in result.stderr


def test_formula_with_attribute_access_is_refused_with_the_attribute_named(tmp_path, sentinel):
    path, _ = write_scenario(tmp_path, [OS_PAYLOAD.format(sentinel=sentinel)])
    result = run_cli("validate", str(path))
    assert ("formula: attribute access ('.__class__') is not allowed; formulas may use "
            "variables, C(), I() of arithmetic, ':' and '*'") in result.stderr


def test_run_refuses_a_payload_formula_before_writing_anything(tmp_path, sentinel):
    path, lines = write_scenario(tmp_path, [OS_PAYLOAD.format(sentinel=sentinel)])
    out = tmp_path / "run"
    result = run_cli("run", str(path), "--participants", "3", "--out", str(out))
    assert_refused_with_nothing_run(result, sentinel)
    assert f"{path}:{lines[0]}: analysis.regressions[0].formula" in result.stderr
    assert not out.exists()


# A fuzz of shapes, each in four positions: in-process and through the CLI

@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_hostile_shape_is_refused_by_the_grammar(shape, position, sentinel):
    formula = POSITIONS[position].format(shape=shape.format(sentinel=sentinel))
    with pytest.raises(FormulaError, match="formula"):
        check_formula(formula, FLAGSHIP_KNOWN)
    assert not sentinel.exists()


@pytest.mark.parametrize("position", POSITIONS)
def test_every_hostile_shape_is_refused_by_validate_with_its_line(tmp_path, sentinel, position):
    formulas = [POSITIONS[position].format(shape=s.format(sentinel=sentinel)) for s in SHAPES]
    path, lines = write_scenario(tmp_path, formulas)
    result = run_cli("validate", str(path))
    assert_refused_with_nothing_run(result, sentinel)
    for i, line in enumerate(lines):
        assert f"{path}:{line}: analysis.regressions[{i}].formula: formula" in result.stderr, \
            (i, formulas[i], result.stderr[-3000:])


def test_a_huge_power_is_refused_before_anything_computes_it():
    with pytest.raises(FormulaError, match="exponent must be a number from -10 to 10"):
        check_formula("attack_north ~ I(believes_north ** 9 ** 9 ** 9)", FLAGSHIP_KNOWN)


def test_a_formula_longer_than_the_limit_is_refused():
    formula = "attack_north ~ " + " + ".join(["believes_north"] * 200)
    with pytest.raises(FormulaError, match="longer than the limit of 2000"):
        check_formula(formula, FLAGSHIP_KNOWN)


def test_deeply_nested_parentheses_are_refused_not_crashed():
    formula = "attack_north ~ I(" + "(" * 400 + "believes_north" + ")" * 400 + ")"
    with pytest.raises(FormulaError, match="formula"):
        check_formula(formula, FLAGSHIP_KNOWN)


def test_control_characters_quoted_from_a_formula_are_shown_escaped():
    with pytest.raises(FormulaError) as caught:
        check_formula("attack_north ~ `a.\x1b[2J`", FLAGSHIP_KNOWN)
    assert "\x1b" not in str(caught.value) and "\\x1b[2J" in str(caught.value)


def test_a_manifest_formula_that_is_not_a_string_is_an_input_error():
    resolved = fx.scenario(regressions=[{"name": "odd", "family": "logit",
                                         "formula": {"attack_north": "believes_north"}}])
    with pytest.raises(AnalysisInputError, match=r"manifest.*regression 'odd'.*expected a string"):
        experiment_from_resolved(resolved, "manifest.json: scenario.resolved")


# The same payloads planted in a finished run's manifest.json, then `score`

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A complete run of the flagship on builtin:tiny (3 participants), made once."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    result = run_cli("run", str(FLAGSHIP), "--participants", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def planted(finished_run: Path, tmp_path: Path, index: int, formula: str) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    manifest["scenario"]["resolved"]["analysis"]["regressions"][index]["formula"] = formula
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return run


@pytest.mark.parametrize(("index", "payload"), [(0, OS_PAYLOAD), (0, CTYPES_PAYLOAD),
                                                (1, IMPORT_PAYLOAD)],
                         ids=["globals", "ctypes", "import-in-mnlogit"])
def test_payload_planted_in_a_manifest_is_refused_by_score(finished_run, tmp_path, sentinel,
                                                           index, payload):
    run = planted(finished_run, tmp_path, index, payload.format(sentinel=sentinel))
    result = run_cli("score", str(run), "--bootstrap", "10")
    assert_refused_with_nothing_run(result, sentinel)
    name = ["attack_choice", "belief_location"][index]
    assert f"{run / 'manifest.json'}: scenario.resolved" in result.stderr
    assert f"regression '{name}' (analysis.regressions[{index}].formula): formula" in result.stderr
    assert not (run / "report.json").exists()


def test_the_untouched_run_still_scores(finished_run, tmp_path):
    run = planted(finished_run, tmp_path, 0, FIRST_FORMULA.removeprefix("formula: "))
    result = run_cli("score", str(run), "--bootstrap", "10")
    assert result.returncode == 0, result.stderr
    assert (run / "report.json").exists()


# Defence in depth: the fit checks again, and evaluates in a namespace without numpy or builtins

def _fixture_table() -> tuple[pd.DataFrame, object]:
    resolved = fx.scenario()
    experiment = experiment_from_resolved(resolved, "test")
    sample = align_attributes([sample_from_human(fx.participants(120, seed=4), experiment, "h")])
    return participant_rounds(sample[0], experiment), experiment


def test_fit_refuses_a_payload_that_skipped_every_earlier_check(sentinel):
    table, experiment = _fixture_table()
    spec = RegressionSpec("sneaked", "logit", OS_PAYLOAD.format(sentinel=sentinel)
                          .replace("believes_south", "believes_north"))
    with pytest.raises(AnalysisInputError, match=r"regression 'sneaked'.*attribute access"):
        fit(table, spec, experiment)
    assert not sentinel.exists()


@pytest.mark.parametrize(("expression", "refusal"), [
    ("np.zeros(1)", "name 'np' is not defined"),
    ("__import__('os').system('touch {s}')", "builtins are not available"),
    ("open('{s}', 'w')", "builtins are not available"),
    ("exec('open(\"{s}\", \"w\")')", "builtins are not available"),
])
def test_the_evaluation_namespace_holds_no_numpy_and_no_builtins(sentinel, expression, refusal):
    """Even a formula that skipped the grammar finds neither numpy nor a builtin by name."""
    table, _ = _fixture_table()
    unchecked = CheckedFormula(f"attack_north ~ I({expression.format(s=sentinel)})",
                               "attack_north", frozenset({"attack_north"}))
    with pytest.raises(Exception, match=refusal):
        design(unchecked, table.dropna())
    assert not sentinel.exists()


def test_the_payload_runs_under_the_plain_formula_api(sentinel):
    """The control: the sentinel mechanism works, so the tests above can fail."""
    table, _ = _fixture_table()
    frame = table.dropna().assign(believes_south=lambda t: t["believes_north"])
    frame["attack_north"] = frame["attack_north"].astype(int)
    smf.logit(OS_PAYLOAD.format(sentinel=sentinel), frame)
    assert sentinel.exists()


# Everything the grammar allows still validates and fits as the formula API fits it

def test_every_allowed_formula_validates(tmp_path):
    path, _ = write_scenario(tmp_path, ALLOWED_FORMULAS)
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr


def _assert_same_as_formula_api(table: pd.DataFrame, experiment, family: str, formula: str):
    spec = RegressionSpec("r", family, formula)
    ours = fit(table, spec, experiment)
    frame, _ = prepare(table, spec, experiment)
    groups = pd.factorize(frame["participant_id"])[0]
    api = getattr(smf, family)(formula, frame)
    options = {"cov_type": "cluster", "cov_kwds": {"groups": groups}}
    result = api.fit(**options) if family == "ols" else api.fit(disp=0, **options)
    assert ours.estimable, ours.not_estimable
    params = np.asarray(result.params).T.ravel()
    names = list(result.params.index)
    if family == "mnlogit":
        assert len(ours.coefficients) == len(params)
        assert [t.split("[belief_location=")[0] for t in ours.coefficients.index[:len(names)]] \
            == names
    else:
        assert list(ours.coefficients.index) == names
    assert np.allclose(ours.coefficients["estimate"], params, rtol=1e-7, atol=1e-10)
    assert np.allclose(ours.coefficients["se"], np.asarray(result.bse).T.ravel(), rtol=1e-6)


@pytest.mark.parametrize(("family", "formula"), ALLOWED_FORMULAS)
def test_allowed_formula_fits_the_stand_in_as_the_formula_api_does(family, formula,
                                                                   flagship_experiment):
    table, experiment = flagship_experiment
    _assert_same_as_formula_api(table, experiment, family, formula)


@pytest.mark.parametrize(("family", "formula"), FIXTURE_FORMULAS)
def test_test_fixture_formula_fits_as_the_formula_api_does(family, formula):
    table, experiment = _fixture_table()
    _assert_same_as_formula_api(table, experiment, family, formula)


@pytest.fixture(scope="module")
def flagship_experiment():
    """The flagship's experiment and the stand-in's 929 participants as a participant-round table."""
    from scenarios.loader import load_scenario

    resolved = load_scenario(FLAGSHIP).scenario.model_dump(mode="json", by_alias=True)
    experiment = experiment_from_resolved(resolved, "flagship")
    human = read_human_table(DATA)
    sample = align_attributes([sample_from_human(human.table, experiment, str(DATA))])[0]
    return participant_rounds(sample, experiment), experiment

