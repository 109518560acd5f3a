"""Resource limits (issue 9, item 3): a hostile scenario or data file is refused quickly and clearly.

Every case goes through the real CLI and must exit 2, print no traceback, name the file, the line
and the field, finish in seconds (not hang or allocate gigabytes) and, for `run`, write nothing.
The time bound is measured against a plain `validate` of the flagship on the same (shared, often
busy) machine, so it tells a refusal from a hang without failing on a slow interpreter start.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.context_check import context_limit
from scenarios.human_data import DATA_CELL_LIMIT, DATA_FILE_LIMIT
from scenarios.loader import FILE_LIMIT, NODE_LIMIT
from scenarios.templates import OUTPUT_LIMIT, TemplateLimitError, render
from tests.conftest import FLAGSHIP, ROOT, run_cli

DATA = FLAGSHIP.parent / "data" / "security_disclosure_synthetic_standin.csv"
PERSONA = "persona: >\n"
MARGIN_S = 5.0  # a refusal may take this much longer than validating the flagship


def flagship_text(data: Path = DATA) -> str:
    return FLAGSHIP.read_text(encoding="utf-8").replace(
        "data/security_disclosure_synthetic_standin.csv", str(data))


def with_persona(template: str) -> str:
    """The flagship with `template` put first in its persona."""
    return flagship_text().replace(PERSONA, PERSONA + "  " + template + "\n", 1)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture(scope="module")
def baseline_s() -> float:
    """Seconds a plain `validate` of the flagship takes here, now."""
    started = time.perf_counter()
    result = run_cli("validate", str(FLAGSHIP))
    assert result.returncode == 0, result.stderr
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def run_baseline_s(baseline_s) -> float:
    """Seconds `run` needs here before it can check prompts: validation plus importing the
    runner and the tokenizer's libraries (torch, transformers), which every run imports."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import engine.runner, engine.backends.chat_template, "
                    "engine.tiny_model"], cwd=ROOT, check=True, timeout=600)
    return baseline_s + time.perf_counter() - started


def refused(*args: str) -> tuple[str, float]:
    """Run the CLI; assert exit 2 without a traceback; return stderr and the seconds taken."""
    started = time.perf_counter()
    result = run_cli(*args)
    seconds = time.perf_counter() - started
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr, seconds


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# -- templates ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "range() of 100,000 numbers; at most 10,000"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
     "too much work: more than 20,000 loop iterations"),
    ("{{ 'x' * 10**10 }}", "builds a value of more than"),
    ("{{ 10**1000000 }}", "a number of about"),
    ("{% for i in range(3000) %}forty characters of text in every loop{% endfor %}",
     f"renders more than {OUTPUT_LIMIT:,} characters"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
     "too much work"),
    ("{% set a = ['x' * 1000] * 10 %}{% set b = [a, a, a, a, a, a, a, a, a, a] %}"
     "{% set c = [b, b, b, b, b, b, b, b, b, b] %}{{ c }}", "builds a value of about"),
    ("{{ 'x' | center(999999999) }}", "builds a value of more than"),
    ("{{ '{:>999999999}'.format(1) }}", "builds a value of more than"),
    ("{% set a = 'x' * 60000 %}{{ a.replace('x', a) }}", "builds a value of more than"),
    ("{% set ns = namespace(s='x' * 60000) %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s }}", "builds a value of about"),
])
def test_persona_template_past_a_rendering_limit_is_refused_quickly(tmp_path, baseline_s, template,
                                                                     expected):
    text = with_persona(template)
    path = write(tmp_path, text)
    stderr, seconds = refused("validate", str(path))
    assert f"error: {path}:{line_of(text, 'persona: >')}: persona: template " in stderr, stderr
    assert expected in stderr, stderr
    assert seconds < baseline_s + MARGIN_S, (seconds, baseline_s)


def test_recursive_loop_in_a_template_is_refused(tmp_path):
    path = write(tmp_path, with_persona("{% for x in 'ab' recursive %}{{ loop(x) }}{% endfor %}"))
    stderr, _ = refused("validate", str(path))
    assert "persona: template uses a recursive loop" in stderr, stderr


def test_ordinary_template_features_still_render():
    template = ("{% for w in ['North', 'South'] %}{{ w | lower }}{{ ', ' if not loop.last else '' }}"
                "{% endfor %}; {{ '%d coins' % 150 }}; {{ '{:,}'.format(1000000) }}; "
                "{{ ('ab' * 3) ~ '!' }}; {{ range(3) | join('-') }}")
    assert render(template, {}) == "north, south; 150 coins; 1,000,000; ababab!; 0-1-2"


def test_limits_apply_on_each_rendering_not_only_in_validation():
    with pytest.raises(TemplateLimitError, match="renders more than"):
        render("{{ text }}{{ text }}", {"text": "y" * (OUTPUT_LIMIT // 2 + 1)})


def test_template_past_a_limit_at_run_is_refused_before_anything_is_written(tmp_path,
                                                                           run_baseline_s):
    # The sample values of `validate` take the short branch; a real participant takes the long one.
    bomb = ("{% if age is number and age > 0 %}{% for i in range(9000) %}{% for j in range(9) %}"
            "{% endfor %}{% endfor %}{% endif %}")
    path = write(tmp_path, with_persona(bomb))
    out = tmp_path / "run"
    stderr, seconds = refused("run", str(path), "--participants", "2", "--out", str(out))
    assert f"error: {path}: participant " in stderr and "too much work" in stderr, stderr
    assert not out.exists()
    assert seconds < run_baseline_s + MARGIN_S, (seconds, run_baseline_s)


# -- YAML -----------------------------------------------------------------------------------------

def alias_bomb(levels: int = 8) -> str:
    """'Billion laughs': each level an anchored list of ten aliases of the level below."""
    lines = ["extra:", '  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_quickly_with_its_line(tmp_path, baseline_s):
    text = flagship_text() + alias_bomb()
    assert len(alias_bomb().encode()) < 1_000  # under 1 KB of YAML standing for 10^8 nodes
    path = write(tmp_path, text)
    stderr, seconds = refused("validate", str(path))
    assert f"error: {path}:{line_of(text, '  a4: &a4')}: extra.a4[" in stderr, stderr
    assert f"more than {NODE_LIMIT:,} nodes once its aliases (*name) are expanded" in stderr
    assert seconds < baseline_s + MARGIN_S, (seconds, baseline_s)


def test_small_yaml_anchors_and_aliases_still_validate(tmp_path):
    text = flagship_text().replace("  - id: 2\n    variables: {announced: South}",
                                   "  - id: 2\n    variables: &south {announced: South}")
    text = text.replace("  - id: 4\n    variables: {announced: South}",
                        "  - id: 4\n    variables: *south")
    assert "*south" in text
    result = run_cli("validate", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stderr


def test_recursive_yaml_alias_is_refused(tmp_path):
    text = flagship_text() + "extra: &loop [1, *loop]\n"
    path = write(tmp_path, text)
    stderr, _ = refused("validate", str(path))
    assert f"{path}:{line_of(text, 'extra: &loop')}: extra[1]: alias *loop refers to a node" in stderr


def test_yaml_nested_too_deeply_is_refused(tmp_path):
    path = write(tmp_path, flagship_text() + "extra: " + "[" * 3000 + "]" * 3000 + "\n")
    stderr, _ = refused("validate", str(path))
    assert "nested more than 64 levels deep" in stderr, stderr


def test_scenario_file_over_the_size_limit_is_refused_unread(tmp_path, baseline_s):
    path = write(tmp_path, flagship_text() + "# " + "x" * FILE_LIMIT + "\n")
    stderr, seconds = refused("validate", str(path))
    assert f"error: {path}: the file is larger than {FILE_LIMIT:,} bytes (1 MiB)" in stderr, stderr
    assert seconds < baseline_s + MARGIN_S, (seconds, baseline_s)


def test_string_over_the_value_limit_names_its_line_and_field(tmp_path, baseline_s):
    text = flagship_text().replace("stimulus: |\n", "stimulus: |\n  " + "y" * 70_000 + "\n", 1)
    path = write(tmp_path, text)
    stderr, seconds = refused("validate", str(path))
    assert (f"error: {path}:{line_of(text, 'stimulus: |')}: stimulus: text of 70,"
            in stderr), stderr
    assert "at most 65,536 (64 KiB)" in stderr
    assert seconds < baseline_s + MARGIN_S, (seconds, baseline_s)


# -- data file ------------------------------------------------------------------------------------

def test_data_file_over_the_size_limit_is_refused_unread(tmp_path, baseline_s):
    big = tmp_path / "big.csv"
    with big.open("wb") as handle:  # sparse: the size without writing 200 MB
        handle.truncate(DATA_FILE_LIMIT + 1)
    text = flagship_text(big)
    path = write(tmp_path, text)
    stderr, seconds = refused("validate", str(path))
    assert f"{path}:{line_of(text, 'data: ')}: population.data: the file is" in stderr, stderr
    assert f"at most {DATA_FILE_LIMIT:,} bytes (200 MiB)" in stderr and str(big) in stderr
    assert seconds < baseline_s + MARGIN_S, (seconds, baseline_s)


def test_data_cell_over_the_limit_names_its_line_and_column(tmp_path):
    rows = DATA.read_text(encoding="utf-8").splitlines()
    header = next(i for i, r in enumerate(rows) if r.startswith("participant_id"))
    columns = rows[header].split(",")
    cells = rows[header + 2].split(",")
    cells[columns.index("ethnicity")] = "z" * (DATA_CELL_LIMIT + 1)
    rows[header + 2] = ",".join(cells)
    data = tmp_path / "long_cell.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    stderr, _ = refused("validate", str(write(tmp_path, flagship_text(data))))
    line = header + 3  # 1-based line of the third row after the header
    assert f"error: {data}:{line}: ethnicity: a cell of 65,537 characters; a cell may be at most " \
        "65,536 (64 KiB)" in stderr, stderr


# -- prompt length against the model's context ----------------------------------------------------

def test_prompt_longer_than_the_model_context_is_refused_before_the_first_batch(tmp_path,
                                                                                 run_baseline_s):
    # builtin:tiny reads 4,096 tokens (max_position_embeddings); each 'zqx ' is about 4 tokens.
    text = with_persona("zqx " * 1500)
    path = write(tmp_path, text)
    out = tmp_path / "run"
    stderr, seconds = refused("run", str(path), "--participants", "2", "--out", str(out))
    assert f"error: {path}: participant " in stderr, stderr
    assert "the longest prompt (round 4, stage action, question attack, policy base) is " in stderr
    assert "tokens; the model reads at most 4,096 (max_position_embeddings in" in stderr, stderr
    assert "nothing was run" in stderr
    assert not out.exists()
    assert seconds < run_baseline_s + MARGIN_S, (seconds, run_baseline_s)


def test_prompt_check_uses_the_backends_max_model_len_and_runs_before_the_backend_loads(
        tmp_path, run_baseline_s):
    out = tmp_path / "run"
    stderr, seconds = refused("run", str(FLAGSHIP), "--backend", "vllm", "--backend-option",
                              "max_model_len=64", "--participants", "2", "--out", str(out))
    assert f"error: {FLAGSHIP.relative_to(ROOT)}: participant " in stderr or \
        f"error: {FLAGSHIP}: participant " in stderr, stderr
    assert "tokens; the model reads at most 64 (the backend option max_model_len)" in stderr, stderr
    assert not out.exists()
    assert seconds < run_baseline_s + MARGIN_S, (seconds, run_baseline_s)


def test_context_limit_reads_the_model_config_unless_the_backend_sets_one(tiny_dir):
    assert context_limit(tiny_dir, {}) == (4096, f"max_position_embeddings in {tiny_dir / 'config.json'}")
    assert context_limit(tiny_dir, {"engine_args": {"max_model_len": 300}}) == (
        300, "the backend option max_model_len")
