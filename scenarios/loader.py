"""Load a scenario file: YAML (safe_load) → pydantic → whole-file checks, every problem at once."""

from __future__ import annotations

import hashlib
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError, create_model

from scenarios.authoring import (
    Place,
    boolean_hint,
    boolean_source,
    did_you_mean,
    literal_suggestion,
    tripped_by_place,
    unfilled_places,
)
from scenarios.checks import check_scenario, scenario_warnings
from scenarios.errors import InputError, Problem
from scenarios.human_data import HumanData, utf8_text
from scenarios.questions import QUESTION_TYPES, Question
from scenarios.schema import Scenario
from scenarios.template_whitespace import tag_line_warnings

FILE_LIMIT = 1 << 20  # bytes of a scenario file (the flagship is 6 KB)
STRING_LIMIT = 64 * 1024  # characters of any one value (templates render at most this much too)
NODE_LIMIT = 50_000  # YAML nodes, aliases expanded (the flagship has 252)
DEPTH_LIMIT = 64  # levels of nesting (PyYAML composes recursively)


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario with its source file, content hash and human data (if any)."""

    scenario: Scenario
    path: Path
    sha256: str
    human: HumanData | None
    # What `validate` warns about without failing (scenarios.checks.scenario_warnings).
    warnings: tuple[Problem, ...] = ()

    def resolve(self, relative: str) -> Path:
        """A path written in the scenario, resolved against the scenario file's folder."""
        return (self.path.parent / relative).resolve()


# (location within the options, message) for each problem of one backend's options.
OptionProblems = Callable[[str, dict[str, Any]], list[tuple[tuple[Any, ...], str]]]


@dataclass(frozen=True)
class BackendRules:
    """What `backend:` and `backend_options:` may be. The scenario format knows no backend (the
    engine owns the registry), so the engine hands these in; without them both go unchecked."""

    names: tuple[str, ...]
    option_problems: OptionProblems


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


def load_scenario(path: str | Path, *, backends: BackendRules | None = None) -> LoadedScenario:
    """Read and validate a scenario file (and, given `backends`, its backend's name and options);
    raise InputError listing every problem found."""
    path = Path(path)
    try:
        with path.open("rb") as handle:  # one byte past the limit at most: never a huge read
            raw = handle.read(FILE_LIMIT + 1)
    except OSError as exc:
        raise InputError([Problem(str(path), None, "", f"cannot read file: {exc.strerror}")]) from None
    if len(raw) > FILE_LIMIT:
        raise InputError([Problem(str(path), None, "", f"the file is larger than {FILE_LIMIT:,} "
                                  "bytes (1 MiB), the limit for a scenario file")])
    text = utf8_text(raw, str(path))  # a replaced byte would silently change the text
    loader = LimitedLoader(text)
    try:  # composed once, checked, then constructed from the same nodes
        root = loader.get_single_node()
        places = unfilled_places(root)  # first: before any check a placeholder would trip
        problems = [p.problem(str(path), field_name(p.loc)) for p in places]
        problems += _node_problems(path, root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise InputError([Problem(str(path), line, "", f"not valid YAML: {reason}")]) from None
    except TooLarge as exc:
        raise InputError([Problem(str(path), exc.line, exc.field, str(exc))]) from None
    finally:
        loader.dispose()
    locator = YamlLocator(root)
    if not isinstance(data, dict):
        raise InputError([Problem(str(path), 1, "", "expected a mapping of sections at top level")])
    try:
        scenario = _schema(data, backends).model_validate(data)
    except ValidationError as exc:
        problems += [_pydantic_problem(path, locator, err) for err in exc.errors()
                     if not _under_place(tuple(err["loc"]), places)]
        raise InputError(problems) from None
    if len(problems) > len(places):  # only unfilled places: the other checks still run
        raise InputError(problems)
    loaded = LoadedScenario(scenario, path, hashlib.sha256(raw).hexdigest(), None)
    options = backends.option_problems if backends is not None else None
    human, checked_problems = check_scenario(loaded, locator, options)
    problems += [p for p in checked_problems if not tripped_by_place(p, str(path), places)]
    if problems:
        raise InputError(problems)
    checked = LoadedScenario(scenario, path, loaded.sha256, human)
    warnings = scenario_warnings(checked, locator) + tag_line_warnings(scenario, path, locator)
    return replace(checked, warnings=tuple(warnings))


def _under_place(loc: tuple[Any, ...], places: list[Place]) -> bool:
    """Whether a pydantic error is about an unfilled place's value (or inside it)."""
    return any(loc[: len(p.loc)] == p.loc for p in places if p.loc)


def _schema(data: dict[str, Any], backends: BackendRules | None) -> type[Scenario]:
    """The scenario schema; where the backend's name is not a registered one, the schema with
    `backend` one of those names, so pydantic words and places it as every structural problem."""
    if backends is None or data.get("backend", "transformers") in backends.names:
        return Scenario
    return _named_schema(backends.names)


@lru_cache(maxsize=4)
def _named_schema(names: tuple[str, ...]) -> type[Scenario]:
    return create_model("Scenario", __base__=Scenario, backend=(Literal[names], "transformers"))


def _node_problems(path: Path, root: yaml.Node | None) -> list[Problem]:
    """Keys that appear twice (safe_load keeps the last silently; a scenario must not) and text
    longer than STRING_LIMIT. Each node is visited once: an alias is the very node object of its
    anchor, so remembering visited ids never walks what an alias repeats."""
    found: list[Problem] = []
    visited: set[int] = set()
    pending: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())] if root is not None else []
    while pending:  # a stack, not recursion: LimitedLoader already bounds the depth
        node, loc = pending.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) and len(node.value) > STRING_LIMIT:
            found.append(Problem(str(path), line, field_name(loc), f"text of {len(node.value):,} "
                                 f"characters; a value may be at most {STRING_LIMIT:,} (64 KiB)"))
        elif isinstance(node, yaml.SequenceNode):
            pending += [(item, (*loc, i)) for i, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is not None and name in seen:
                    found.append(Problem(str(path), key.start_mark.line + 1, name,
                                         "key appears twice"))
                if name is not None:
                    seen.add(name)
                pending += [(key, loc), (value, (*loc, name if name is not None else "?"))]
    return sorted(found, key=lambda p: p.line or 0)


class TooLarge(Exception):
    """A YAML document past a composing limit, with the line where the limit was crossed."""

    def __init__(self, mark: yaml.Mark, loc: list[Any], message: str) -> None:
        super().__init__(message)
        self.line = mark.line + 1
        self.field = field_name(tuple(loc))


class LimitedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, counting nodes while it composes them, aliases expanded.

    PyYAML has no limit on aliases: eight levels of ten aliases ('billion laughs') are 10^8
    nodes to anything that walks the result, pydantic included. The composer returns the
    anchor's own node for each alias, so the loader records how many nodes each composed node
    stands for and adds that at each alias: an exact expanded count, in time linear in the file,
    and composing stops as soon as it passes NODE_LIMIT (or DEPTH_LIMIT levels of nesting).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.expanded = 0  # nodes so far, each alias counted as the nodes it repeats
        self.depth = 0
        self.sizes: dict[int, int] = {}  # id(node) → nodes it stands for, aliases expanded
        self.loc: list[Any] = []  # the field being composed, for messages

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose one node (PyYAML's own), counting it and what its aliases repeat."""
        event = self.peek_event()
        step = index.value if isinstance(index, yaml.ScalarNode) else index
        self.loc += [step] if step is not None else []
        try:
            return self._compose(event, parent, index)
        finally:
            del self.loc[len(self.loc) - (step is not None):]

    def _compose(self, event: yaml.Event, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if isinstance(event, yaml.AliasEvent):
            anchored = self.anchors.get(event.anchor)
            if anchored is not None:
                if id(anchored) not in self.sizes:
                    raise TooLarge(event.start_mark, self.loc, f"alias *{event.anchor} refers to a node "
                                   "that contains it; recursive aliases are not allowed")
                self._count(self.sizes[id(anchored)], event.start_mark)
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > DEPTH_LIMIT:
            raise TooLarge(event.start_mark, self.loc, f"nested more than {DEPTH_LIMIT} levels deep; a "
                           "scenario file may nest at most that deep")
        before = self.expanded
        node = super().compose_node(parent, index)
        self.depth -= 1
        self._count(1, event.start_mark)
        self.sizes[id(node)] = self.expanded - before
        return node

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self.expanded += nodes
        if self.expanded > NODE_LIMIT:
            raise TooLarge(mark, self.loc, f"the document has more than {NODE_LIMIT:,} nodes once its "
                           f"aliases (*name) are expanded; a scenario file may have at most "
                           f"{NODE_LIMIT:,}")


def _pydantic_problem(path: Path, locator: YamlLocator, err: Any) -> Problem:
    loc = tuple(err["loc"])
    _, depth = locator.node(loc)
    kind = err["type"]
    shown = loc if kind in ("missing", "extra_forbidden") else loc[: max(depth, 1)]
    line = locator.line(loc)
    if kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1], locator)
        message = "unknown field" + (f"; {did_you_mean(str(loc[-1]), allowed)}expected one of: "
                                     f"{', '.join(allowed)}" if allowed else "")
    else:
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got {err['input']!r})" + literal_suggestion(err)
        if isinstance(err.get("input"), bool):  # an unquoted yes/no/on/off/true/false
            node, _ = locator.node(loc[:depth])
            word = boolean_source(node, loc[depth:], err["input"])
            if word is not None:
                message, line = boolean_hint(message, word.value), word.start_mark.line + 1
    return Problem(str(path), line, field_name(shown), message)


def _allowed_fields(loc: tuple[Any, ...], locator: YamlLocator | None = None) -> list[str]:
    """The field names the schema accepts at loc (for 'unknown field' messages); a question's
    are those of the type its entry names (a numeric question's min, max, ...)."""
    current: Any = Scenario
    for depth, key in enumerate(loc):
        current = _entry_type(_unwrap(current), loc[:depth], locator)
        if _is_model(current) and isinstance(key, str):
            info = current.model_fields.get(key) or next(
                (f for f in current.model_fields.values() if f.alias == key), None
            )
            current = info.annotation if info else None
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _entry_type(_unwrap(current), loc, locator)
    if _is_model(current):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _entry_type(tp: Any, loc: tuple[Any, ...], locator: YamlLocator | None) -> Any:
    """The model an entry at loc validates as: a `Question` is the type its `type` names
    (as `Question` itself validates it); any other model is itself."""
    if tp is not Question or locator is None:
        return tp
    node, depth = locator.node((*loc, "type"))
    if depth == len(loc) + 1 and isinstance(node, yaml.ScalarNode):
        return QUESTION_TYPES.get(node.value, tp)
    return tp


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
