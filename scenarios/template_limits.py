"""How much one rendering of a scenario template may do (scenarios/templates.py renders).

Every rendering has a `Budget`: loop iterations, calls and filters count as work, every value
built counts its characters, and a deadline is checked at each of those points. Operations whose
result can outgrow their inputs (`*`, `**`, `%`, `~`, `.format`, `replace`, `join`, padding
filters, ...) are estimated here and refused *before* they run when the result would exceed
`VALUE_LIMIT`; every other result is measured after it is made (`measured`).
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from jinja2 import Environment
from jinja2.exceptions import TemplateRuntimeError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Undefined
from jinja2.utils import Namespace

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


BUDGET: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


def spend(work: int = 0, characters: int = 0) -> None:
    """Count work and characters against the current rendering's budget."""
    budget = BUDGET.get()
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


def measured(result: Any) -> Any:
    """A value a template made: measured, counted against the budget, refused when too large."""
    size = measure(result)
    if size > VALUE_LIMIT:
        raise too_large(size)
    spend(characters=size)
    return result


def too_large(size: int) -> TemplateLimitError:
    """The error for a value of `size` characters, past VALUE_LIMIT."""
    about = f"about {size:,}" if size <= 10 * VALUE_LIMIT else f"more than {10 * VALUE_LIMIT:,}"
    return TemplateLimitError(f"template builds a value of {about} characters; a value may be "
                              f"at most {VALUE_LIMIT:,} characters (the limit per value)")


def refuse_over(size: int) -> None:
    """Raise before a value of `size` characters past VALUE_LIMIT is made."""
    if size > VALUE_LIMIT:
        raise too_large(size)


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


def precheck_binop(op: str, left: Any, right: Any) -> None:
    """Refuse `*`, `**` and `%` whose result would be too large, before computing it."""
    if op == "*":
        count, seq = (_int(right), left) if _int(right) is not None else (_int(left), right)
        if count is not None and isinstance(seq, str | bytes | list | tuple):
            refuse_over(measure(seq) * max(count, 0))
        elif _int(left) is not None and _int(right) is not None:
            _refuse_bits(left.bit_length() + right.bit_length())
    elif op == "**":
        base, exponent = _int(left), _int(right)
        if base is not None and exponent is not None and abs(base) > 1 and exponent > 0:
            _refuse_bits(exponent * (abs(base).bit_length() - 1))
    elif op == "%" and isinstance(left, str):
        args = right if isinstance(right, tuple) else (right,)
        refuse_over(_format_size(left, args, {}, percent=True))


def _refuse_bits(bits: int) -> None:
    if bits > INT_BITS_LIMIT:
        raise TemplateLimitError(f"template computes a number of about {bits * 3 // 10:,} digits; "
                                 f"at most {INT_BITS_LIMIT * 3 // 10:,} (the limit per value)")


def method_size(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int | None:
    """How large the result of a str method that can outgrow its string can get (None: not one)."""
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


def values_of(args: tuple[Any, ...]) -> list[Any]:
    """Arguments but the context jinja2 passes to some filters."""
    return [a for a in args if not isinstance(a, Context | EvalContext | Environment)]


def filter_size(name: str, args: list[Any], kwargs: Mapping[str, Any]) -> int | None:
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


