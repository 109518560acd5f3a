"""A scenario file checked as a run needs it: the file itself (scenarios.loader) and its backend.

The scenario format knows no backend (scenarios import nothing of the engine), so `backend:` and
`backend_options:` are checked here, against engine.backends.REGISTRY, and reported as the loader
reports its own problems (file, line of the YAML key, field, message), in the same one InputError
and in the same place among the others as when the schema listed the backends itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError, create_model

from engine.backends import REGISTRY, backend_names, option_problems
from scenarios.errors import InputError, Problem
from scenarios.human_data import utf8_text

# The loader's own pieces, so that every problem reads exactly as the loader writes it.
from scenarios.loader import (
    FILE_LIMIT,
    LimitedLoader,
    LoadedScenario,
    TooLarge,
    YamlLocator,
    _node_problems,
    _pydantic_problem,
    field_name,
    load_scenario,
)
from scenarios.schema import Scenario


def load_checked(path: str | Path) -> LoadedScenario:
    """Read and validate a scenario file and its backend's name and options; raise one
    InputError listing every problem found."""
    path = Path(path)
    try:
        loaded = load_scenario(path)
    except InputError as exc:
        raise InputError(_with_backend(path, exc.problems)) from None
    s = loaded.scenario
    if s.backend in REGISTRY:
        found = option_problems(s.backend, s.backend_options)
        if not found:
            return loaded
        raise InputError(_located(path, _parse(path), found))
    raise InputError(_name_problems(path, _parse(path)))


@dataclass(frozen=True)
class _Parsed:
    """The file's YAML as the loader composes it: nodes (for lines) and data."""

    root: yaml.Node | None
    data: Any


def _parse(path: Path) -> _Parsed | None:
    """The file composed again (it passed or failed the loader a moment ago), or None when it
    cannot be: then the loader's own problems are all there is to say."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(FILE_LIMIT + 1)
        if len(raw) > FILE_LIMIT:
            return None
        loader = LimitedLoader(utf8_text(raw, str(path)))
        try:
            root = loader.get_single_node()
            return _Parsed(root, loader.construct_document(root) if root is not None else None)
        finally:
            loader.dispose()
    except (OSError, InputError, yaml.YAMLError, TooLarge):
        return None


def _with_backend(path: Path, raised: list[Problem]) -> list[Problem]:
    """The loader's problems with the backend's among them, where the schema put them."""
    parsed = _parse(path)
    if parsed is None or not isinstance(parsed.data, dict):
        return raised
    name = parsed.data.get("backend", "transformers")
    if not (isinstance(name, str) and name in REGISTRY):
        return _name_problems(path, parsed)
    if not _checked_whole_file(path, parsed):
        return raised  # structural problems first: options are checked once the file is whole
    found = option_problems(name, parsed.data.get("backend_options") or {})
    return _inserted(path, raised, _located(path, parsed, found))


def _name_problems(path: Path, parsed: _Parsed | None) -> list[Problem]:
    """An unknown backend is a structural problem, reported with the file's other ones."""
    if parsed is None or not isinstance(parsed.data, dict):
        return [Problem(str(path), None, "backend", _unknown_name_message())]
    locator = YamlLocator(parsed.root)
    try:
        _named_schema(backend_names()).model_validate(parsed.data)
    except ValidationError as exc:
        errors = exc.errors()
    else:
        errors = []
    return _node_problems(path, parsed.root) + [_pydantic_problem(path, locator, e) for e in errors]


def _unknown_name_message() -> str:
    names = [repr(n) for n in backend_names()]
    return "Input should be " + (" or ".join([", ".join(names[:-1]), names[-1]])
                                 if len(names) > 1 else names[0])


@lru_cache(maxsize=4)
def _named_schema(names: tuple[str, ...]) -> type[Scenario]:
    """The scenario schema with `backend` one of the registered names (pydantic then words and
    places an unknown name as it does every other structural problem)."""
    return create_model("Scenario", __base__=Scenario, backend=(Literal[names], "transformers"))


def _checked_whole_file(path: Path, parsed: _Parsed) -> bool:
    """Whether the loader got as far as its whole-file checks (no duplicate keys, no over-long
    text, a structurally valid scenario): only then were the backend's options checked."""
    if _node_problems(path, parsed.root):
        return False
    try:
        Scenario.model_validate(parsed.data)
    except ValidationError:
        return False
    return True


def _located(path: Path, parsed: _Parsed | None,
             found: list[tuple[tuple[Any, ...], str]]) -> list[Problem]:
    """Option problems at the line of their key under `backend_options:`."""
    locator = YamlLocator(parsed.root if parsed is not None else None)
    return [Problem(str(path), locator.line(("backend_options", *loc)),
                    field_name(("backend_options", *loc)), message) for loc, message in found]


def _inserted(path: Path, raised: list[Problem], options: list[Problem]) -> list[Problem]:
    """The whole-file checks' problems with the options' after the scenario's own sections and
    before the data file's and the study's, the order the checks ran in."""
    later = next((i for i, p in enumerate(raised) if p.file != str(path)
                  or p.field.startswith(("population.data", "study"))), len(raised))
    return [*raised[:later], *options, *raised[later:]]
