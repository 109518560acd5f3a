"""Jinja2 templates of a scenario, always rendered in a sandbox with strict undefined names.

A template is user code from a shared file, so rendering is bounded as well as sandboxed: each
rendering spends a budget (scenarios/template_limits.py) and any operation that could build a
value past `VALUE_LIMIT` is refused before it runs. To put a counter on every loop and every list
literal, the parsed template is rewritten before it is compiled (jinja2 accepts a
`nodes.Template` in `from_string`): each loop's iterable goes through `_loop`, each `~` through
`_concat`, each list/tuple/dict literal through `_literal`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache, wraps
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from scenarios.template_limits import (
    BUDGET,
    CHARACTER_LIMIT,
    INT_BITS_LIMIT,
    OUTPUT_LIMIT,
    RANGE_LIMIT,
    TIME_LIMIT,
    VALUE_LIMIT,
    WORK_LIMIT,
    Budget,
    TemplateLimitError,
    filter_size,
    measure,
    measured,
    method_size,
    precheck_binop,
    refuse_over,
    spend,
    values_of,
)
from scenarios.template_memo import MEMO

__all__ = ["CHARACTER_LIMIT", "INT_BITS_LIMIT", "OUTPUT_LIMIT", "RANGE_LIMIT", "TIME_LIMIT", "VALUE_LIMIT",
           "WORK_LIMIT", "TemplateLimitError", "problems", "render", "variables"]


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(func)  # keeps jinja2's pass_context/pass_eval_context marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        values = values_of(args)
        refuse_over(max((measure(v) for v in (*values, *kwargs.values())), default=0))
        predicted = filter_size(name, values, kwargs)
        if predicted is not None:
            refuse_over(predicted)
        spend(work=1)
        return measured(func(*args, **kwargs))

    return bounded


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > RANGE_LIMIT:
        raise TemplateLimitError(f"template asks for range() of {len(numbers):,} numbers; at most "
                                 f"{RANGE_LIMIT:,} (the limit per range)")
    return numbers


def _loop(iterable: Any, weight: int) -> Iterator[Any]:
    """A loop's items, each counted as work plus the characters of the loop body's text."""
    for item in iterable:
        spend(work=1, characters=weight)
        yield item


def _concat(parts: list[Any]) -> str:
    """`a ~ b ~ c`, refused before joining when the result would be too large."""
    refuse_over(sum(measure(p) for p in parts))
    return measured("".join(str(p) for p in parts))


def _literal(value: Any) -> Any:
    """A list, tuple or dict written in the template, measured like any value it builds."""
    return measured(value)


_GUARDS = frozenset({_loop, _concat, _literal})


class _Bounded(NodeTransformer):
    """Route every loop, `~` and container literal of a parsed template through a guard."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        if node.recursive:
            raise TemplateLimitError("template uses a recursive loop; scenario templates may not")
        self.generic_visit(node)
        weight = sum(len(d.data) for d in nodes.Template(node.body).find_all(nodes.TemplateData))
        node.iter = _guard("_loop", [node.iter, nodes.Const(weight)], node.iter.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _guard("_concat", [nodes.List(node.nodes)], node.lineno)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _guard("_literal", [node], node.lineno)

    visit_Dict = visit_List

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return node if node.ctx != "load" else _guard("_literal", [node], node.lineno)


def _guard(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    call = nodes.Call(nodes.ImportedName(f"{__name__}.{name}"), args, [], None, None)
    call.set_lineno(lineno)
    return call


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with every operation that can grow a value bounded."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options, finalize=self._output)
        self.globals["range"] = _range
        self.globals.pop("lipsum", None)  # lipsum(n) writes n paragraphs; no scenario needs it
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    @staticmethod
    def _output(value: Any) -> str:
        """Each `{{ }}` output, in a template, a macro or a `{% set %}` block: counted."""
        refuse_over(measure(value))
        text = str(value)
        spend(characters=len(text))
        return text

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """`*`, `**`, `%` and `+`, refused before they run when the result would be too large."""
        precheck_binop(operator, left, right)
        return measured(self.binop_table[operator](left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call (functions, methods, macros) counts as work; its result is measured."""
        spend(work=1)
        if any(__obj is guard for guard in _GUARDS):
            return super().call(__context, __obj, *args, **kwargs)
        refuse_over(max((measure(v) for v in (*args, *kwargs.values())), default=0))
        predicted = method_size(__obj, args, kwargs)
        if predicted is not None:
            refuse_over(predicted)
        return measured(super().call(__context, __obj, *args, **kwargs))


_ENV = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    tree = _Bounded().visit(_ENV.parse(source))
    tree.set_environment(_ENV)
    return _ENV.from_string(tree)


def render(source: str, variables: Mapping[str, Any]) -> str:
    """Render a scenario template in the bounded sandbox; unknown names and unsafe access raise,
    and so does going past a limit (TemplateLimitError, whose message names the limit).

    A rendering is remembered (scenarios/template_memo.py): the same template over the values it
    can see gives the same text, so a question shared by a whole condition renders once, not once per
    participant. Failures are never remembered: they raise again each time."""
    key = MEMO.key(source, variables, _ENV.parse)
    text = MEMO.get(key)
    if text is None:
        text = _render(source, variables)
        MEMO.put(key, text)
    return text


def _render(source: str, variables: Mapping[str, Any]) -> str:
    template = _compiled(source)
    MEMO.renders += 1
    token = BUDGET.set(Budget())
    try:
        chunks, size = [], 0
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > OUTPUT_LIMIT:
                raise TemplateLimitError(f"template renders more than {OUTPUT_LIMIT:,} characters "
                                         "(the limit per template)")
            chunks.append(chunk)
    finally:
        BUDGET.reset(token)
    return "".join(chunks).strip()


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
        except TemplateLimitError as exc:
            found.append(str(exc))
        except SecurityError as exc:
            found.append(f"template tries unsafe access: {exc}")
        except UndefinedError as exc:
            found.append(f"template fails on sample values: {exc}")
        except Exception as exc:  # a template is user code: report, never crash validation
            found.append(f"template fails on sample values: {type(exc).__name__}: {exc}")
    return found
