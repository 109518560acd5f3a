"""A warning for a line break that a template produces only because a tag stands on its own line.

Templates render with jinja2's defaults (scenarios/templates.py: no trim_blocks, no lstrip_blocks,
then the whole text stripped), so in a `|` block

    Hello.
    {% if x %}
    Shown.
    {% endif %}

the newline before and after each `{% %}` line both stay: the prompt gets an empty line there,
whichever branch is taken. `{%- ... %}` (or `{% ... -%}`) trims one side and removes it. Rendering
is never changed (prompts stay byte-identical); `validate` only warns (docs/scenario-format.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateSyntaxError

from scenarios.errors import Problem, shown
from scenarios.schema import Scenario
from scenarios.templates import _ENV

if TYPE_CHECKING:
    from scenarios.loader import YamlLocator

_TAG_BEGIN = {"block_begin", "comment_begin"}
_TAG_END = {"block_end", "comment_end"}
_ENDS_LINE = re.compile(r"\n[ \t]*\Z")
_STARTS_LINE = re.compile(r"\A[ \t]*\n")


def tag_lines(source: str) -> list[tuple[int, str]]:
    """(template line, the tags) of each line holding only `{% %}` / `{# #}` tags whose line
    breaks on both sides survive (jinja2's whitespace control applied, as the lexer does)."""
    try:
        tokens = list(_ENV.lexer.tokeniter(source, None))
    except TemplateSyntaxError:
        return []  # the template checks report it
    found: list[tuple[int, str]] = []
    before, run, run_line, inside = "", "", 0, False
    for lineno, kind, value in tokens:
        if kind in _TAG_BEGIN and not inside:
            inside, run_line = True, run_line or lineno
            run += value
        elif inside:
            run += value
            inside = kind not in _TAG_END
        elif kind == "data" and run and not value.strip(" \t"):
            run += value  # spaces between two tags of the same line
        else:
            text = value if kind == "data" else "x"  # `{{ }}` writes something
            if run and _ENDS_LINE.search(before) and _STARTS_LINE.search(text):
                found.append((run_line, run.strip()))
            before, run, run_line = text, "", 0
    return found


def _templates(s: Scenario) -> Iterator[tuple[tuple[Any, ...], str]]:
    yield ("persona",), s.persona
    if s.persona_without_demographics is not None:
        yield ("persona_without_demographics",), s.persona_without_demographics
    yield ("instructions",), s.instructions
    yield ("stimulus",), s.stimulus
    for si, stage in enumerate(s.stages):
        for qi, q in enumerate(stage.questions):
            yield ("stages", si, "questions", qi, "text"), q.text


def tag_line_warnings(s: Scenario, path: Path, locator: YamlLocator) -> list[Problem]:
    """A warning per tag-only line of every template, at its line of the scenario file."""
    from scenarios.loader import field_name

    warnings = []
    for loc, source in _templates(s):
        node, depth = locator.node(loc)
        if node is None or depth < len(loc):
            continue
        for template_line, tags in tag_lines(source):
            # A `|` block's text starts on the line after its indicator.
            line = node.start_mark.line + 1 + (template_line if node.style == "|" else 0)
            warnings.append(Problem(str(path), line, field_name(loc), (
                f"{shown(tags)} stands alone on its line, so the rendered text keeps the line "
                "breaks before and after it (an empty line in the prompt); write '{%-' or '-%}' "
                "to trim one, or put the tag on a line of text (docs/scenario-format.md, "
                "Templates)")))
    return warnings
