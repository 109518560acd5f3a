"""Jinja2 templates of a scenario, always rendered in a sandbox with strict undefined names."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)


@lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    return _ENV.from_string(source)


def render(source: str, variables: Mapping[str, Any]) -> str:
    """Render a scenario template in the sandbox; unknown names and unsafe access raise."""
    return _compiled(source).render(**variables).strip()


def variables(source: str) -> set[str]:
    """The names a template reads (empty when it does not parse; `problems` reports that)."""
    try:
        return set(meta.find_undeclared_variables(_ENV.parse(source)))
    except TemplateSyntaxError:
        return set()


def problems(source: str, allowed: set[str], sample: Mapping[str, Any]) -> list[str]:
    """What is wrong with a template: syntax, unknown variables, reaching Python internals."""
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        return [f"template syntax error on template line {exc.lineno}: {exc.message}"]
    found: list[str] = []
    unknown = sorted(meta.find_undeclared_variables(tree) - allowed)
    if unknown:
        found.append(
            f"template uses unknown variable(s) {', '.join(unknown)}; "
            f"known here: {', '.join(sorted(allowed)) or 'none'}"
        )
    private = sorted(
        {n.attr for n in tree.find_all(nodes.Getattr) if n.attr.startswith("_")}
        | {
            str(n.arg.value)
            for n in tree.find_all(nodes.Getitem)
            if isinstance(n.arg, nodes.Const) and str(n.arg.value).startswith("_")
        }
    )
    if private:
        found.append(
            f"template reaches Python internals ({', '.join(private)}); "
            "templates may only use the scenario's variables"
        )
    if not found:
        try:
            render(source, sample)
        except SecurityError as exc:
            found.append(f"template tries unsafe access: {exc}")
        except UndefinedError as exc:
            found.append(f"template fails on sample values: {exc}")
        except Exception as exc:  # a template is user code: report, never crash validation
            found.append(f"template fails on sample values: {type(exc).__name__}: {exc}")
    return found
