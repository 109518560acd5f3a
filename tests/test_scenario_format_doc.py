"""docs/scenario-format.md cannot drift from the schema: every pydantic model reachable from
`Scenario`, and every registered question type, has a section (a heading ending "· model `Name`")
whose table documents exactly its fields by their YAML names, each fixed-choice field's row names
every choice, the implicit options of a type are listed, and every template kind is in the
template variables table."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from engine.scenario_check import load_checked
from scenarios.checks import template_variables
from scenarios.questions import QUESTION_TYPES, Question
from scenarios.schema import Scenario
from tests.conftest import FLAGSHIP, ROOT

DOC = ROOT / "docs" / "scenario-format.md"
HEADING = re.compile(r"^#{2,4} .*· model `(\w+)`\s*$")
ROW = re.compile(r"^\| `([^`]+)` \|")


def sections(text: str) -> dict[str, list[str]]:
    """Each model's section: the lines from its heading to the next heading."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            match = HEADING.match(line)
            current = found.setdefault(match.group(1), []) if match else None
        elif current is not None:
            current.append(line)
    return found


def rows(section: list[str], header: str = "| field |") -> dict[str, str]:
    """The rows of a section's tables whose header starts with `header`: first cell -> row."""
    found: dict[str, str] = {}
    inside = False
    for line in section:
        inside = line.startswith(header) or (inside and line.startswith("|"))
        if inside and (m := ROW.match(line)):
            found[m.group(1)] = line
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def reachable_models() -> list[type[BaseModel]]:
    """Every model a scenario file can hold, the question types included."""
    found: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = [Scenario, *QUESTION_TYPES.values()]
    while pending:
        model = pending.pop()
        if model in found:
            continue
        found.append(model)
        for info in model.model_fields.values():
            pending += _models_in(info.annotation)
    return found


def yaml_fields(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by their YAML names; a question type's own (beyond `Question`'s)."""
    inherited = set(Question.model_fields) if model is not Question and issubclass(
        model, Question) else set()
    return {info.alias or name: info.annotation for name, info in model.model_fields.items()
            if name not in inherited}


def choices(annotation: Any) -> list[str]:
    """The values of every Literal inside an annotation."""
    if typing.get_origin(annotation) is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return [c for arg in typing.get_args(annotation) for c in choices(arg)]


DOCUMENTED = sections(DOC.read_text(encoding="utf-8"))


def test_every_reachable_model_has_a_section():
    missing = sorted(m.__name__ for m in reachable_models() if m.__name__ not in DOCUMENTED)
    assert not missing, f"docs/scenario-format.md has no section '· model `X`' for: {missing}"


def test_every_field_of_every_model_is_documented_and_nothing_else():
    problems = []
    for model in reachable_models():
        documented = set(rows(DOCUMENTED.get(model.__name__, [])))
        fields = set(yaml_fields(model))
        problems += [f"{model.__name__}.{f}: undocumented" for f in sorted(fields - documented)]
        problems += [f"{model.__name__}.{f}: documented but not a field"
                     for f in sorted(documented - fields)]
    assert not problems, "\n".join(problems)


def test_every_choice_of_a_fixed_choice_field_is_named_in_its_row():
    problems = []
    for model in reachable_models():
        table = rows(DOCUMENTED.get(model.__name__, []))
        for field, annotation in yaml_fields(model).items():
            if model is not Question and field == "type":
                continue  # a type's own name: its heading
            for choice in choices(annotation):
                if f"`{choice}`" not in table.get(field, ""):
                    problems.append(f"{model.__name__}.{field}: choice '{choice}' not named")
    assert not problems, "\n".join(problems)


def test_the_question_fields_type_row_names_every_registered_type():
    row = rows(DOCUMENTED["Question"])["type"]
    assert all(f"`{name}`" in row for name in QUESTION_TYPES), row
    for name, kind in QUESTION_TYPES.items():
        assert any(line.startswith(f"### `{name}` · model `{kind.__name__}`")
                   for line in DOC.read_text(encoding="utf-8").splitlines()), name


def test_implicit_options_are_listed_with_their_ids_texts_and_labels():
    for name, kind in QUESTION_TYPES.items():
        if not kind.DEFAULT_OPTIONS:
            continue
        table = rows(DOCUMENTED[kind.__name__], header="| id | text | label |")
        for letter, option in zip("ABCDEFGHIJ", kind.DEFAULT_OPTIONS, strict=False):
            assert table.get(option.id) == f"| `{option.id}` | {option.text} | {letter} |", (
                name, option.id, table)


def test_every_template_kind_and_its_variables_are_in_the_variables_table():
    table = DOC.read_text(encoding="utf-8").split("| template | variables |", 1)[1].split("\n\n")[0]
    kinds = set(template_variables(load_checked(FLAGSHIP).scenario))
    listed = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE))
    assert listed == kinds
    assert "`round`" in table and "`n_rounds`" in table


def test_every_yaml_example_in_the_doc_parses():
    blocks = re.findall(r"^ *```yaml\n(.*?)^ *```", DOC.read_text(encoding="utf-8"),
                        flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 4
    for block in blocks:
        assert isinstance(yaml.safe_load(_dedent(block)), dict), block


def test_the_worked_examples_exist_and_validate():
    for name in ("security_disclosure", "chile_plebiscite"):
        path = ROOT / "scenarios" / f"{name}.yaml"
        assert f"../scenarios/{name}.yaml" in DOC.read_text(encoding="utf-8")
        assert load_checked(path).scenario.name == name


def _dedent(block: str) -> str:
    lines = block.splitlines()
    indent = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
    return "\n".join(x[indent:] for x in lines)


def test_a_field_missing_from_the_doc_is_caught(tmp_path: Path):
    # The checker itself can fail: drop one documented row and the field is reported.
    text = DOC.read_text(encoding="utf-8")
    cut = sections("\n".join(line for line in text.splitlines()
                             if not line.startswith("| `recall` |")))
    assert "recall" in yaml_fields(Question) and "recall" not in rows(cut["Question"])
