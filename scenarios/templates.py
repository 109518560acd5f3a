"""Jinja2 templates of a scenario, always rendered in a sandbox with strict undefined names.

A template is user code from a shared file, so rendering is bounded as well as sandboxed. Every
rendering has a budget (`Budget`): loop iterations, calls and filters count as work, every value
built counts its characters, and a deadline is checked at each of those points. Operations whose
result can outgrow their inputs (`*`, `**`, `%`, `~`, `.format`, `replace`, `join`, padding
filters, ...) are refused *before* they run when the result would exceed `VALUE_LIMIT`, so no
single step can allocate more than that; every other result is measured after it is made. To put
a counter on every loop and every list literal, the parsed template is rewritten before it is
compiled (jinja2 accepts a `nodes.Template` in `from_string`): each loop's iterable goes through
`_loop`, each `~` through `_concat`, each list/tuple/dict literal through `_literal`.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from functools import lru_cache, wraps
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateRuntimeError, UndefinedError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from scenarios.template_memo import MEMO

OUTPUT_LIMIT = 64 * 1024  # characters one rendered template may have
VALUE_LIMIT = 64 * 1024  # characters any one value inside a template may expand to
RANGE_LIMIT = 10_000  # items of `range()` (jinja2's own sandbox allows 100,000)
INT_BITS_LIMIT = 16_384  # about 4,900 digits: Python prints at most 4,300 anyway
WORK_LIMIT = 20_000  # loop iterations, calls and filter applications per rendering
CHARACTER_LIMIT = 1 << 20  # characters built per rendering: output, buffers and values
TIME_LIMIT = 2.0  # CPU seconds per rendering: a backstop behind the counters above


class TemplateLimitError(TemplateRuntimeError):
    """A template went past one of the rendering limits; the message says which."""


class Budget:
    """What one rendering may still spend; checked at every loop step, call, filter and value."""

    def __init__(self) -> None:
        self.work = 0
        self.characters = 0
        self.deadline = time.thread_time() + TIME_LIMIT

    def spend(self, work: int = 0, characters: int = 0) -> None:
        """Count work and characters; raise TemplateLimitError past a limit or the deadline."""
        self.work += work
        self.characters += characters
        if self.work > WORK_LIMIT:
            raise TemplateLimitError(f"template does too much work: more than {WORK_LIMIT:,} loop "
                                     "iterations, calls and filters in one rendering (the limit "
                                     "per template)")
        if self.characters > CHARACTER_LIMIT:
            raise TemplateLimitError(f"template builds more than {CHARACTER_LIMIT:,} characters "
                                     "in one rendering (the limit per template)")
        if time.thread_time() > self.deadline:  # CPU time: a busy machine is no reason
            raise TemplateLimitError(f"template runs longer than {TIME_LIMIT:g} s of CPU time (the "
                                     "limit per template)")


_BUDGET: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


def _spend(work: int = 0, characters: int = 0) -> None:
    budget = _BUDGET.get()
    if budget is not None:  # None: jinja2 folding constants at compile time
        budget.spend(work, characters)


def measure(value: Any, limit: int = VALUE_LIMIT) -> int:
    """About how many characters `str(value)` writes, counting a nested value each time it is
    repeated (as str() does) but visiting each object once, so a list of a list of ... repeated
    (a 'billion laughs') is measured in linear time. Stops counting once past `limit`."""
    if isinstance(value, str):  # the common case, without the walk's set-up
        return len(value)
    seen: dict[int, int] = {}

    def size(v: Any) -> int:
        if isinstance(v, str | bytes):
            return len(v)
        if isinstance(v, bool) or v is None or isinstance(v, float):
            return 8
        if isinstance(v, int):
            return v.bit_length() * 3 // 10 + 2
        if isinstance(v, Undefined):  # its str() is empty or raises; never touch it here
            return 0
        if id(v) in seen:
            return seen[id(v)]
        seen[id(v)] = limit + 1  # a container inside itself: too large
        if isinstance(v, Namespace):
            v = object.__getattribute__(v, "_Namespace__attrs")
        total = 2
        if isinstance(v, Mapping):
            items: Iterable[Any] = (x for pair in v.items() for x in pair)
        elif isinstance(v, list | tuple | set | frozenset):
            items = v
        else:
            items = ()  # ranges, functions, cyclers, loop objects: short reprs
            total = 32
        for item in items:
            total += size(item) + 2
            if total > limit:
                break
        seen[id(v)] = total
        return total

    return size(value)


def _value(result: Any) -> Any:
    """A value a template made: measured, counted against the budget, refused when too large."""
    size = measure(result)
    if size > VALUE_LIMIT:
        raise _too_large(size)
    _spend(characters=size)
    return result


def _too_large(size: int) -> TemplateLimitError:
    about = f"about {size:,}" if size <= 10 * VALUE_LIMIT else f"more than {10 * VALUE_LIMIT:,}"
    return TemplateLimitError(f"template builds a value of {about} characters; a value may be "
                              f"at most {VALUE_LIMIT:,} characters (the limit per value)")


def _refuse_over(size: int) -> None:
    if size > VALUE_LIMIT:
        raise _too_large(size)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _format_size(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], percent: bool) -> int:
    """Upper estimate of the length of `fmt % args` or `fmt.format(*args, **kwargs)`."""
    values = (*args, *kwargs.values())
    largest = max((measure(v) for v in values), default=0)
    if percent:
        specs = re.findall(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?", fmt)
        widths = [w for spec in specs for w in spec]
        fields = len(specs)
    else:
        try:
            parsed = list(string.Formatter().parse(fmt))
        except ValueError:
            return len(fmt)  # the call itself will raise
        fields = sum(name is not None for _, name, _, _ in parsed)
        widths = [w for _, _, spec, _ in parsed for w in re.findall(r"\d+|\{", spec or "")]
    stars = any(w in ("*", "{") for w in widths)
    numbers = [abs(n) for n in map(_int, values) if n is not None] if stars else []
    width = sum(int(w) for w in widths if w.isdigit()) + (max(numbers, default=0) * len(widths))
    return len(fmt) + width + fields * largest


def _precheck_binop(op: str, left: Any, right: Any) -> None:
    """Refuse `*`, `**` and `%` whose result would be too large, before computing it."""
    if op == "*":
        count, seq = (_int(right), left) if _int(right) is not None else (_int(left), right)
        if count is not None and isinstance(seq, str | bytes | list | tuple):
            _refuse_over(measure(seq) * max(count, 0))
        elif _int(left) is not None and _int(right) is not None:
            _refuse_bits(left.bit_length() + right.bit_length())
    elif op == "**":
        base, exponent = _int(left), _int(right)
        if base is not None and exponent is not None and abs(base) > 1 and exponent > 0:
            _refuse_bits(exponent * (abs(base).bit_length() - 1))
    elif op == "%" and isinstance(left, str):
        args = right if isinstance(right, tuple) else (right,)
        _refuse_over(_format_size(left, args, {}, percent=True))


def _refuse_bits(bits: int) -> None:
    if bits > INT_BITS_LIMIT:
        raise TemplateLimitError(f"template computes a number of about {bits * 3 // 10:,} digits; "
                                 f"at most {INT_BITS_LIMIT * 3 // 10:,} (the limit per value)")


# str methods whose result can outgrow the string, and how large it can get.
def _method_size(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int | None:
    target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format in a function
    owner, name = getattr(target, "__self__", None), getattr(target, "__name__", "")
    if not isinstance(owner, str):
        return None
    first = args[0] if args else next(iter(kwargs.values()), None)
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(owner), _int(first) or 0)
    if name == "expandtabs":
        return len(owner) * max(_int(first) or 8, 1)
    if name == "replace" and len(args) >= 2:
        return _replace_size(owner, args[0], args[1])
    if name == "join" and args:
        return _join_size(owner, args[0])
    if name == "format":
        return _format_size(owner, args, kwargs, percent=False)
    if name == "format_map" and args and isinstance(args[0], Mapping):
        return _format_size(owner, (), args[0], percent=False)
    return None


def _replace_size(text: Any, old: Any, new: Any) -> int:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    hits = text.count(old) if old else len(text) + 1
    return len(text) + hits * len(new)


def _join_size(separator: Any, items: Any) -> int:
    if isinstance(items, str | list | tuple | set | frozenset | dict):
        return measure(items) + len(str(separator)) * len(items)
    return 0


def _values_of(args: tuple[Any, ...]) -> list[Any]:
    """Arguments but the context jinja2 passes to some filters."""
    return [a for a in args if not isinstance(a, Context | EvalContext | Environment)]


def _filter_size(name: str, args: list[Any], kwargs: Mapping[str, Any]) -> int | None:
    """How large a filter's result can get, for the filters that can outgrow their input."""
    value, rest = (args[0] if args else None), args[1:]
    arg = rest[0] if rest else None
    if name == "center":
        return max(measure(value), _int(arg if arg is not None else kwargs.get("width")) or 0)
    if name == "indent":
        width = arg if arg is not None else kwargs.get("width", 4)
        pad = len(width) if isinstance(width, str) else (_int(width) or 0)
        text = str(value) if isinstance(value, str) else ""
        return len(text) + (text.count("\n") + 1) * pad
    if name in ("batch", "slice"):
        return (_int(arg if arg is not None else kwargs.get("linecount", kwargs.get("slices"))) or 0
                ) + measure(value)
    if name == "wordwrap":
        wrap = kwargs.get("wrapstring") or (rest[2] if len(rest) > 2 else None) or "\n"
        return measure(value) * (1 + len(str(wrap)))
    if name == "replace" and len(rest) >= 2:
        return _replace_size(value, rest[0], rest[1])
    if name == "join":
        return _join_size(arg if arg is not None else kwargs.get("d", ""), value)
    if name == "format" and isinstance(value, str):
        return _format_size(value, tuple(rest), kwargs, percent=True)
    return None


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(func)  # keeps jinja2's pass_context/pass_eval_context marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        values = _values_of(args)
        _refuse_over(max((measure(v) for v in (*values, *kwargs.values())), default=0))
        predicted = _filter_size(name, values, kwargs)
        if predicted is not None:
            _refuse_over(predicted)
        _spend(work=1)
        return _value(func(*args, **kwargs))

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
        _spend(work=1, characters=weight)
        yield item


def _concat(parts: list[Any]) -> str:
    """`a ~ b ~ c`, refused before joining when the result would be too large."""
    _refuse_over(sum(measure(p) for p in parts))
    return _value("".join(str(p) for p in parts))


def _literal(value: Any) -> Any:
    """A list, tuple or dict written in the template, measured like any value it builds."""
    return _value(value)


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
        _refuse_over(measure(value))
        text = str(value)
        _spend(characters=len(text))
        return text

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """`*`, `**`, `%` and `+`, refused before they run when the result would be too large."""
        _precheck_binop(operator, left, right)
        return _value(self.binop_table[operator](left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call (functions, methods, macros) counts as work; its result is measured."""
        _spend(work=1)
        if any(__obj is guard for guard in _GUARDS):
            return super().call(__context, __obj, *args, **kwargs)
        _refuse_over(max((measure(v) for v in (*args, *kwargs.values())), default=0))
        predicted = _method_size(__obj, args, kwargs)
        if predicted is not None:
            _refuse_over(predicted)
        return _value(super().call(__context, __obj, *args, **kwargs))


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
    token = _BUDGET.set(Budget())
    try:
        chunks, size = [], 0
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > OUTPUT_LIMIT:
                raise TemplateLimitError(f"template renders more than {OUTPUT_LIMIT:,} characters "
                                         "(the limit per template)")
            chunks.append(chunk)
    finally:
        _BUDGET.reset(token)
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
