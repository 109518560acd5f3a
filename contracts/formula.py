"""The regression formula grammar: a formula is data (variables and terms), never code.

A scenario file or a run's manifest.json names its regressions as Wilkinson formulas. formulaic
and patsy evaluate the Python inside a formula (`I(...)`, `C(...)`, `{...}`, dotted names) with
`eval`, so a shared file could run anything. This module is the one owner of what a formula may
say; scenarios/checks.py (at `validate`), analysis/experiment.py (when a manifest is read) and
analysis/regression.py (right before a fit) all call `check_formula`.

Allowed: the dependent variable (one variable name) left of `~`; right of it variable names,
`C(var)`, `I(...)` of `+ - * / **` and unary minus on variables and numbers, `:` and `*`
interactions, `+`, `-`, the intercept terms `0`, `1` and `-1`, and parentheses. Everything else
(attribute access, subscripts, calls to any other name, lambdas, comprehensions, strings, dunder
names, keywords, names that are not known variables) is refused with a `FormulaError`.

formulaic's tokenizer splits the formula (no hand-written formula parser) and formulaic's parser
confirms it parses; Python's `ast` whitelists the Python inside `C()` and `I()`. Pure: imports
nothing of the project.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from formulaic import Formula
from formulaic.errors import FormulaicError
from formulaic.parser.algos.tokenize import tokenize
from formulaic.parser.types import Token

ALLOWED = "formulas may use variables, C(), I() of arithmetic, ':' and '*'"
# The only callables a formula may name; the evaluation namespace holds these and nothing else.
ALLOWED_CALLS = ("C", "I")
MAX_LENGTH = 2000  # far above any real formula; bounds parsing and `ast` recursion
MAX_EXPONENT = 10  # `I(x ** 9 ** 9 ** 9)` would compute a huge integer before numpy sees it
# Formula operators only; formulaic's tokenizer merges runs such as '~ -1' into one token '~-',
# and its parser then says whether the run makes sense.
_OPERATORS = re.compile(r"[~+\-:*]+")
_INTERCEPTS = ("0", "1")
_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


class FormulaError(ValueError):
    """A formula outside the allowed grammar; the message says what and what is allowed."""


@dataclass(frozen=True)
class CheckedFormula:
    """A formula that passed `check_formula`: its text, dependent variable and variables read."""

    text: str
    dependent: str
    variables: frozenset[str]


def _refuse(what: str) -> FormulaError:
    return FormulaError(f"formula: {what} is not allowed; {ALLOWED}")


def _dunder(name: str) -> bool:
    return name.startswith("__")


def _name_problem(name: str, known: set[str]) -> FormulaError | None:
    """Why a bare name is refused, or None when it is a known variable."""
    if "." in name:
        return _refuse(f"attribute access ('.{name.split('.', 1)[1]}')")
    if keyword.iskeyword(name):
        return _refuse(f"the keyword '{name}'")
    if _dunder(name):
        return _refuse(f"the dunder name '{name}'")
    if not name.isidentifier():
        return _refuse(f"the name {name!r}")
    if name not in known:
        return FormulaError(f"formula names unknown variable '{name}'; known variables: "
                            + ", ".join(sorted(known)))
    return None


def _node_text(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _in_order(tree: ast.AST) -> list[ast.AST]:
    """The expression's nodes in reading order, so a message names the first offence."""
    return sorted((n for n in ast.walk(tree) if hasattr(n, "lineno")),
                  key=lambda n: (n.lineno, n.end_col_offset or 0))


def _first_forbidden(tree: ast.AST) -> FormulaError | None:
    """The first construct that reaches code (attribute access, a subscript, a lambda...)."""
    nodes = _in_order(tree)
    checks = (
        (ast.Attribute, lambda n: f"attribute access ('.{n.attr}')"),
        (ast.Subscript, lambda n: f"a subscript ('{_node_text(n)}')"),
        ((ast.Lambda,), lambda n: "a lambda"),
        ((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), lambda n: "a comprehension"),
        (ast.NamedExpr, lambda n: "an assignment expression (':=')"),
        (ast.Starred, lambda n: "unpacking ('*')"),
        (ast.JoinedStr, lambda n: "an f-string"),
    )
    for kind, describe in checks:
        for node in nodes:
            if isinstance(node, kind):
                return _refuse(describe(node))
    return None


def _first_literal(tree: ast.AST) -> FormulaError | None:
    """A dunder name or a string anywhere in a Python expression."""
    nodes = _in_order(tree)
    for node in nodes:
        if isinstance(node, ast.Name) and _dunder(node.id):
            return _refuse(f"the dunder name '{node.id}'")
    for node in nodes:
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            return _refuse(f"a string ({node.value!r})")
    return None


def _check_arithmetic(node: ast.AST, known: set[str], variables: set[str]) -> None:
    """The inside of `I(...)`: + - * / ** and unary minus on known variables and numbers."""
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITHMETIC:
            raise _refuse(f"the operator in '{_node_text(node)}' inside I()")
        _check_arithmetic(node.left, known, variables)
        if isinstance(node.op, ast.Pow):
            exponent = node.right.operand if isinstance(node.right, ast.UnaryOp) else node.right
            if not (isinstance(node.right, ast.Constant | ast.UnaryOp) and _number(exponent)
                    and abs(exponent.value) <= MAX_EXPONENT):
                raise _refuse(f"the exponent in '{_node_text(node)}' (an exponent must be a "
                              f"number from -{MAX_EXPONENT} to {MAX_EXPONENT})")
        _check_arithmetic(node.right, known, variables)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _check_arithmetic(node.operand, known, variables)
    elif isinstance(node, ast.Call):
        called = node.func.id if isinstance(node.func, ast.Name) else _node_text(node.func)
        raise _refuse(f"a call to '{called}' inside I()")
    elif isinstance(node, ast.Name):
        problem = _name_problem(node.id, known)
        if problem is not None:
            raise problem
        variables.add(node.id)
    elif not _number(node):
        raise _refuse(f"'{_node_text(node)}' inside I() (only arithmetic on variables and numbers)")


def _number(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, int | float)
            and not isinstance(node.value, bool))


def _check_python(source: str, known: set[str], variables: set[str]) -> None:
    """A Python token of the formula: exactly `C(variable)` or `I(arithmetic)`."""
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        shown = source if len(source) <= 60 else source[:57] + "..."
        detail = getattr(exc, "msg", None) or type(exc).__name__
        raise FormulaError(f"formula: {shown!r} is not valid inside C() or I() ({detail})") from None
    problem = _first_forbidden(tree)
    if problem is not None:
        raise problem
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        raise _refuse(f"the expression '{_node_text(call)}' (wrap arithmetic in I())")
    name = call.func.id
    if name not in ALLOWED_CALLS:
        raise _refuse(f"a call to '{name}'")
    if call.keywords or len(call.args) != 1:
        raise _refuse(f"'{_node_text(call)}' ({name}() takes exactly one argument"
                      + (", a variable; the reference level is the first declared level)"
                         if name == "C" else ")"))
    problem = _first_literal(tree)
    if problem is not None:
        raise problem
    argument = call.args[0]
    if name == "C":
        if not isinstance(argument, ast.Name):
            raise _refuse(f"'{_node_text(call)}' (C() takes one variable name)")
        problem = _name_problem(argument.id, known)
        if problem is not None:
            raise problem
        variables.add(argument.id)
    else:
        _check_arithmetic(argument, known, variables)


def _check_token(token: Token, known: set[str], variables: set[str]) -> None:
    text, kind = token.token, token.kind
    if kind is Token.Kind.NAME:
        problem = _name_problem(text, known)
        if problem is not None:
            raise problem
        variables.add(text)
    elif kind is Token.Kind.PYTHON:
        _check_python(text, known, variables)
    elif kind is Token.Kind.OPERATOR:
        if not _OPERATORS.fullmatch(text):
            raise _refuse(f"the operator '{text}'")
    elif kind is Token.Kind.VALUE:
        if text[:1] in "'\"":
            raise _refuse(f"a string ({text})")
        if text not in _INTERCEPTS:
            raise _refuse(f"the term '{text}' (the only number terms are the intercepts 0, 1 and -1)")
    elif kind is Token.Kind.CONTEXT:
        if text not in "()":
            raise _refuse(f"'{text}' (brackets, subscripts and literals)")
    else:
        raise _refuse(f"the token {text!r}")


def _check_calls(tokens: list[Token]) -> None:
    """An opening parenthesis right after a term is a call: `(x)()`, `x (1)`."""
    for before, token in pairwise(tokens):
        if (token.kind is Token.Kind.CONTEXT and token.token == "("
                and before.kind is not Token.Kind.OPERATOR
                and not (before.kind is Token.Kind.CONTEXT and before.token == "(")):
            raise _refuse(f"a call ('{before.token}(')")


def check_formula(text: object, known: Iterable[str]) -> CheckedFormula:
    """Check a formula against the grammar and the known variable names; raise FormulaError.

    Nothing in the formula is evaluated here: tokens are inspected and formulaic parses the
    formula into terms (parsing runs no Python). The message starts with 'formula: ' when the
    grammar is broken and says what is allowed.
    """
    try:
        return _check(text, known)
    except FormulaError as exc:
        # The message quotes pieces of a shared file: never let them drive a terminal.
        raise FormulaError("".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(exc))
                           ) from None


def _check(text: object, known: Iterable[str]) -> CheckedFormula:
    if not isinstance(text, str):
        raise FormulaError(f"formula: expected a string such as 'y ~ x + C(group)', got "
                           f"{type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula: {len(text)} characters is longer than the limit of "
                           f"{MAX_LENGTH}")
    names = set(known)
    try:
        tokens = list(tokenize(text))
    except (FormulaicError, ValueError, RecursionError) as exc:
        raise FormulaError(f"formula does not parse: {str(exc).splitlines()[0]}") from None
    tildes = [i for i, t in enumerate(tokens) if t.kind is Token.Kind.OPERATOR and "~" in t.token]
    if sum(t.token.count("~") for t in tokens) != 1 or not tokens[tildes[0] + 1:]:
        raise FormulaError("formula: needs exactly one '~' with the dependent variable on its left "
                           "and the terms on its right, such as 'y ~ x + C(group)'")
    lhs = tokens[:tildes[0]]
    variables: set[str] = set()
    for token in tokens:
        _check_token(token, names, variables)
    _check_calls(tokens)
    if len(lhs) != 1 or lhs[0].kind is not Token.Kind.NAME:
        raise FormulaError("formula: exactly one dependent variable (a variable name) goes left "
                           "of '~'; transforms of it are not allowed")
    try:
        parsed = Formula(text)
    except (FormulaicError, ValueError, SyntaxError, TypeError, RecursionError) as exc:
        # formulaic's message goes on to draw the formula with terminal colour codes: keep line 1
        raise FormulaError(f"formula does not parse: {str(exc).splitlines()[0]}") from None
    _check_factors(parsed, names)
    return CheckedFormula(text, lhs[0].token, frozenset(variables))


def _check_factors(parsed: Formula, known: set[str]) -> None:
    """Defence in depth: every factor formulaic would evaluate is a variable, C() or I()."""
    for side in (parsed.lhs, parsed.rhs):
        for term in side:
            for factor in term.factors:
                method = factor.eval_method.value
                if method == "lookup":
                    problem = _name_problem(factor.expr, known)
                    if problem is not None:
                        raise problem
                elif method == "python":
                    _check_python(factor.expr, known, set())
                elif factor.expr not in _INTERCEPTS:
                    raise _refuse(f"the term '{factor.expr}'")
