"""Load a scenario file: YAML (safe_load) → pydantic → whole-file checks, every problem at once."""

from __future__ import annotations

import hashlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from scenarios.checks import check_scenario
from scenarios.errors import InputError, Problem
from scenarios.human_data import HumanData
from scenarios.schema import Scenario


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario with its source file, content hash and human data (if any)."""

    scenario: Scenario
    path: Path
    sha256: str
    human: HumanData | None

    def resolve(self, relative: str) -> Path:
        """A path written in the scenario, resolved against the scenario file's folder."""
        return (self.path.parent / relative).resolve()


class YamlLocator:
    """Maps a field path such as ('stages', 0, 'questions') to its line in the YAML file."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def node(self, loc: tuple[Any, ...]) -> tuple[yaml.Node | None, int]:
        """The deepest node reached along loc, and how many loc items were followed."""
        node, depth = self.root, 0
        for key in loc:
            child = None
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if k.value == str(key)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                child = node.value[key] if 0 <= key < len(node.value) else None
            if child is None:
                break
            node, depth = child, depth + 1
        return node, depth

    def line(self, loc: tuple[Any, ...]) -> int | None:
        """1-based line of the deepest node along loc."""
        node, _ = self.node(loc)
        return node.start_mark.line + 1 if node is not None else None


def field_name(loc: tuple[Any, ...]) -> str:
    """('stages', 0, 'questions', 1, 'id') → 'stages[0].questions[1].id'."""
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read and validate a scenario file; raise InputError listing every problem found."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError([Problem(str(path), None, "", f"cannot read file: {exc.strerror}")]) from None
    text = raw.decode("utf-8", errors="replace")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise InputError([Problem(str(path), line, "", f"not valid YAML: {reason}")]) from None
    locator = YamlLocator(root)
    if not isinstance(data, dict):
        raise InputError([Problem(str(path), 1, "", "expected a mapping of sections at top level")])
    problems = _duplicate_keys(path, root)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems += [_pydantic_problem(path, locator, err) for err in exc.errors()]
        raise InputError(problems) from None
    if problems:
        raise InputError(problems)
    loaded = LoadedScenario(scenario, path, hashlib.sha256(raw).hexdigest(), None)
    human, problems = check_scenario(loaded, locator)
    if problems:
        raise InputError(problems)
    return LoadedScenario(scenario, path, loaded.sha256, human)


def _duplicate_keys(path: Path, node: yaml.Node | None) -> list[Problem]:
    """safe_load keeps the last of two equal keys silently; a scenario must not."""
    found: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                found.append(
                    Problem(str(path), key.start_mark.line + 1, key.value, "key appears twice")
                )
            seen.add(key.value)
            found += _duplicate_keys(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += _duplicate_keys(path, item)
    return found


def _pydantic_problem(path: Path, locator: YamlLocator, err: Any) -> Problem:
    loc = tuple(err["loc"])
    _, depth = locator.node(loc)
    kind = err["type"]
    shown = loc if kind in ("missing", "extra_forbidden") else loc[: max(depth, 1)]
    if kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1])
        message = "unknown field" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
    else:
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got {err['input']!r})"
    return Problem(str(path), locator.line(loc), field_name(shown), message)


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """The field names the schema accepts at loc (for 'unknown field' messages)."""
    current: Any = Scenario
    for key in loc:
        current = _unwrap(current)
        if _is_model(current) and isinstance(key, str):
            info = current.model_fields.get(key) or next(
                (f for f in current.model_fields.values() if f.alias == key), None
            )
            current = info.annotation if info else None
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if _is_model(current):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _unwrap(tp: Any) -> Any:
    """Strip Optional/Union/Annotated down to a model or a list/dict type."""
    while tp is not None and not _is_model(tp) and typing.get_origin(tp) not in (list, dict):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if not args:
            return tp
        tp = next((a for a in args if _is_model(a) or typing.get_origin(a) in (list, dict)), args[0])
    return tp
