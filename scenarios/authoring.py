"""Messages that help a person writing a scenario by hand: a YAML boolean where a text was meant,
"did you mean" for a misspelt field or value, and the unfilled places `run.py new` leaves.

The loader (scenarios/loader.py) calls these on the composed YAML nodes, so each hint names what
the file itself says (`yes`, not pydantic's `True`) at the line where it says it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

import yaml

from scenarios.errors import Problem, shown
from scenarios.fill import FILL_MARK, unfilled_hint

# What PyYAML's SafeLoader reads as a boolean when unquoted (YAML 1.1), in any of these cases.
BOOLEAN_WORDS = frozenset({"yes", "no", "true", "false", "on", "off"})
BOOLEAN_HINT = ("YAML reads unquoted yes, no, on, off, true and false as booleans; quote it "
                "(\"{text}\") to write it as text")


def close_match(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` most likely misspells (difflib; case ignored), or None."""
    listed = list(dict.fromkeys(candidates))
    lowered = {c.lower(): c for c in reversed(listed)}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found and lowered[found[0]] != word else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """"did you mean 'x'? " when `word` looks like a misspelling of a candidate, else ""."""
    match = close_match(word, candidates)
    return f"did you mean '{shown(match)}'? " if match is not None else ""


def _is_boolean_word(node: yaml.Node) -> bool:
    return (isinstance(node, yaml.ScalarNode) and node.style is None
            and node.tag == "tag:yaml.org,2002:bool" and node.value.lower() in BOOLEAN_WORDS)


def boolean_source(node: yaml.Node | None, rest: tuple[Any, ...], value: bool) -> yaml.Node | None:
    """The unquoted word the file wrote where pydantic got the boolean `value`: the node reached
    itself, or (when the boolean is a mapping's key: `rest` starts with it) that key's node."""
    if node is not None and _is_boolean_word(node) and not rest:
        return node
    if isinstance(node, yaml.MappingNode) and rest[1:2] == ("[key]",):  # pydantic's key loc
        return next((k for k, _ in node.value if _is_boolean_word(k)
                     and yaml.safe_load(k.value) is value), None)
    return None


def boolean_hint(message: str, word: str) -> str:
    """`message` with the hint to quote a YAML boolean written as `word` (unless it has one)."""
    if "quote it" in message:
        return message
    return f"{message}: {BOOLEAN_HINT.format(text=shown(word))}"


def literal_suggestion(err: dict[str, Any]) -> str:
    """For a text that is none of a fixed set of values (pydantic's literal_error), the value it
    likely misspells: "; did you mean 'x'?" (or "")."""
    given = err.get("input")
    expected = str((err.get("ctx") or {}).get("expected", ""))
    if err.get("type") != "literal_error" or not isinstance(given, str):
        return ""
    match = close_match(given, re.findall(r"'([^']*)'", expected))
    return f"; did you mean '{shown(match)}'?" if match is not None else ""


class Place:
    """One unfilled place: a YAML string scalar that starts with FILL_MARK."""

    def __init__(self, node: yaml.ScalarNode, loc: tuple[Any, ...]) -> None:
        self.node = node
        self.loc = loc
        self.line = node.start_mark.line + 1

    def problem(self, file: str, field: str) -> Problem:
        return Problem(file, self.line, field, f"unfilled place: {unfilled_hint(self.node.value)}")


def unfilled_places(root: yaml.Node | None) -> list[Place]:
    """Every unfilled place of a composed document (keys and values), in line order. Each node
    is visited once (an alias is its anchor's node: a place repeated by aliases is one place)."""
    found: list[Place] = []
    visited: set[int] = set()
    pending: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())] if root is not None else []
    while pending:
        node, loc = pending.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:str" and node.value.startswith(FILL_MARK):
                found.append(Place(node, loc))
        elif isinstance(node, yaml.SequenceNode):
            pending += [(item, (*loc, i)) for i, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                pending += [(key, loc), (value, (*loc, name))]
    return sorted(found, key=lambda p: (p.line, p.node.start_mark.column))


def tripped_by_place(problem: Problem, file: str, places: list[Place]) -> bool:
    """Whether a problem is one a placeholder trips (it is reported on a place's own line of the
    scenario file): reported as the unfilled place, not again as what the placeholder breaks."""
    return problem.file == file and problem.line in {p.line for p in places}
