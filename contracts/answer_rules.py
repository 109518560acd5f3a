"""Coherence rules over several answers: a small expression, parsed and evaluated safely.

    when: "vote == 'Y' and statusquo in ('-2', '-1')"
    when: "vote == 'A' and abs(value(self_lr) - value(a_lr)) > abs(value(self_lr) - value(b_lr))"

A rule is data, never code: Python's `ast` parses it, a whitelist checks every node and an own
tree-walking evaluator computes it over numpy arrays (one cell per participant-round); nothing
is ever passed to eval or exec. Names are question ids and stand for the answer's option id;
`value(q)` is the number of that answer's option. Literals: strings, numbers and tuples or
lists of them. Operators: == != < <= > >= in, not in, and, or, not, + - * / and unary minus;
calls abs(), min(), max() and value() only. Anything else is refused with a `RuleError` naming
the construct. A string or number compared with a question names one of its options by the rule
of contracts.option_ids ("1.0" is the option "1"). Imports nothing of the project.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts.option_ids import option_index

ALLOWED = ("rules may use question ids, strings, numbers, == != < <= > >= in, not in, and, or, "
           "not, + - * /, abs() min() max() and value(question)")
MAX_LENGTH = 2000
FUNCTIONS = ("abs", "min", "max", "value")
_ARITHMETIC = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_ORDER = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal}


class RuleError(ValueError):
    """A rule outside the grammar, or naming a question or answer that does not exist."""


@dataclass(frozen=True)
class CheckedRule:
    """A rule that passed `check_rule`: its text, parsed tree, and the questions it names."""

    text: str
    tree: ast.Expression
    names: frozenset[str]
    valued: frozenset[str]  # questions read through value()


@dataclass(frozen=True)
class Answers:
    """What a rule is evaluated over: per question, each cell's option id (None: missing), its
    options, and each cell's value (NaN: missing or no value)."""

    ids: Mapping[str, np.ndarray]
    options: Mapping[str, Sequence[str]]
    values: Mapping[str, np.ndarray]


def literal(node: ast.AST) -> Any:
    """The value of a string or number literal, a negative number included (None: not one)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = literal(node.operand)
        if isinstance(inner, int | float):
            return -inner if isinstance(node.op, ast.USub) else inner
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float) \
            and not isinstance(node.value, bool):
        return node.value
    return None


def _refuse(what: str) -> RuleError:
    return RuleError(f"rule: {what} is not allowed; {ALLOWED}")


def _shown(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: str, known: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for a close match among `known`, else ''."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Checker:
    """Infers each node's kind (answer, number, text, list, bool) and refuses the rest."""

    def __init__(self, options: Mapping[str, Sequence[str]] | None,
                 valued: set[str] | None) -> None:
        self.options, self.has_values = options, valued
        self.names: set[str] = set()
        self.valued: set[str] = set()

    def kind(self, node: ast.AST) -> str:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise _refuse(_describe(node))
        return method(node)

    def _Name(self, node: ast.Name) -> str:
        if node.id.startswith("__"):
            raise _refuse(f"the dunder name '{node.id}'")
        if node.id in FUNCTIONS:
            raise _refuse(f"'{node.id}' without a call")
        if self.options is not None and node.id not in self.options:
            raise RuleError(f"rule names unknown question '{node.id}'"
                            f"{did_you_mean(node.id, list(self.options))}; known: "
                            + ", ".join(self.options))
        self.names.add(node.id)
        return "answer"

    def _Constant(self, node: ast.Constant) -> str:
        if isinstance(node.value, str):
            return "text"
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            if isinstance(node.value, int) and abs(node.value) > 10**15:
                raise _refuse(f"the number {_shown(node)} (at most 15 digits)")
            return "number"
        raise _refuse(f"the literal {_shown(node)}")

    def _literals(self, node: ast.Tuple | ast.List) -> str:
        for element in node.elts:
            if literal(element) is None or self.kind(element) not in ("text", "number"):
                raise _refuse(f"'{_shown(element)}' in a list (only strings and numbers)")
        return "list"

    _Tuple = _List = _literals

    def _Call(self, node: ast.Call) -> str:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            raise _refuse(f"a call to '{name or _shown(node.func)}'")
        if node.keywords:
            raise _refuse(f"keyword arguments in '{_shown(node)}'")
        if name == "value":
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
                raise _refuse(f"'{_shown(node)}' (value() takes one question id)")
            question = node.args[0].id
            self._Name(node.args[0])
            if self.has_values is not None and question not in self.has_values:
                raise RuleError(f"rule reads value({question}), but the options of "
                                f"'{question}' have no 'value' (give each option one)")
            self.valued.add(question)
            return "number"
        count = (1,) if name == "abs" else range(2, 11)
        if len(node.args) not in count:
            raise _refuse(f"'{_shown(node)}' ({name}() takes "
                          + ("one number)" if name == "abs" else "2 to 10 numbers)"))
        self._expect(node.args, "number")
        return "number"

    def _BinOp(self, node: ast.BinOp) -> str:
        if type(node.op) not in _ARITHMETIC:
            raise _refuse(f"the operator in '{_shown(node)}'")
        self._expect([node.left, node.right], "number")
        return "number"

    def _UnaryOp(self, node: ast.UnaryOp) -> str:
        if isinstance(node.op, ast.Not):
            self._expect([node.operand], "bool")
            return "bool"
        if isinstance(node.op, ast.USub | ast.UAdd):
            self._expect([node.operand], "number")
            return "number"
        raise _refuse(f"the operator in '{_shown(node)}'")

    def _BoolOp(self, node: ast.BoolOp) -> str:
        self._expect(node.values, "bool")
        return "bool"

    def _Compare(self, node: ast.Compare) -> str:
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            kinds = (self.kind(left), self.kind(right))
            if isinstance(op, ast.In | ast.NotIn):
                if kinds[1] != "list" or kinds[0] not in ("answer", "number"):
                    raise _refuse(f"'{_shown(node)}' (write: question in ('a', 'b'))")
                if kinds[0] == "answer":
                    for element in right.elts:  # type: ignore[attr-defined]
                        self._answer_literal(left, element)
            elif isinstance(op, ast.Eq | ast.NotEq):
                if "answer" in kinds:
                    other = kinds[1] if kinds[0] == "answer" else kinds[0]
                    if other not in ("answer", "text", "number"):
                        raise _refuse(f"'{_shown(node)}' (compare a question with an answer)")
                    if other != "answer":
                        name, literal = (left, right) if kinds[0] == "answer" else (right, left)
                        self._answer_literal(name, literal)
                elif kinds != ("number", "number"):
                    raise _refuse(f"'{_shown(node)}' (== compares a question with an answer, "
                                  "or two numbers)")
            elif type(op) in _ORDER:
                if kinds != ("number", "number"):
                    raise _refuse(f"'{_shown(node)}' (< <= > >= compare numbers; use value(q) "
                                  "for an answer's number)")
            else:
                raise _refuse(f"the comparison in '{_shown(node)}'")
        return "bool"

    def _answer_literal(self, name: ast.AST, node: ast.AST) -> None:
        if self.options is None or not isinstance(name, ast.Name):
            return
        ids = list(self.options[name.id])
        value = literal(node)
        if option_index(value, ids) is None:
            raise RuleError(f"rule compares '{name.id}' with {value!r}, which is not one of its "
                            f"option ids{did_you_mean(str(value), ids)}: " + ", ".join(ids))

    def _expect(self, nodes: Sequence[ast.AST], wanted: str) -> None:
        for node in nodes:
            found = self.kind(node)
            if found != wanted:
                hint = " (use value(q) for an answer's number)" if found == "answer" else ""
                raise _refuse(f"'{_shown(node)}' where a {wanted} is expected{hint}")


def _describe(node: ast.AST) -> str:
    names = {ast.Attribute: f"attribute access ('{_shown(node)}')", ast.Lambda: "a lambda",
             ast.Subscript: f"a subscript ('{_shown(node)}')", ast.IfExp: "a conditional",
             ast.NamedExpr: "an assignment expression (':=')", ast.JoinedStr: "an f-string",
             ast.Starred: "unpacking ('*')", ast.Dict: "a dict", ast.Set: "a set"}
    for kind, text in names.items():
        if isinstance(node, kind):
            return text
    if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
        return "a comprehension"
    return f"'{_shown(node)}'"


def check_rule(text: object, options: Mapping[str, Sequence[str]] | None = None,
               valued: set[str] | None = None) -> CheckedRule:
    """Check a rule against the grammar; with `options` (question id -> option ids) its names
    and answers too, with `valued` (questions whose options have values) its value() calls."""
    if not isinstance(text, str):
        raise RuleError(f"rule: expected a string such as \"vote == 'yes'\", got "
                        f"{type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise RuleError(f"rule: {len(text)} characters is longer than the limit of {MAX_LENGTH}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        detail = getattr(exc, "msg", None) or type(exc).__name__
        raise RuleError(f"rule does not parse ({detail})") from None
    checker = _Checker(options, valued)
    try:
        kind = checker.kind(tree.body)
    except RecursionError:
        raise RuleError("rule: nested too deeply") from None
    if kind != "bool":
        raise RuleError(f"rule: '{_shown(tree.body)}' is not a condition (a comparison such as "
                        "vote == 'yes', joined by and/or)")
    return CheckedRule(text, tree, frozenset(checker.names), frozenset(checker.valued))


def evaluate(rule: CheckedRule, answers: Answers) -> np.ndarray:
    """The rule's truth in every cell (False where an answer it reads is missing)."""
    with np.errstate(all="ignore"):
        result = np.asarray(_value(rule.tree.body, answers), dtype=bool)
    present = np.ones(np.shape(result), dtype=bool)
    for name in rule.names:
        present &= np.asarray([i is not None for i in answers.ids[name].ravel()],
                              dtype=bool).reshape(answers.ids[name].shape)
    return result & present


def _value(node: ast.AST, a: Answers) -> Any:
    if isinstance(node, ast.Constant):
        return float(node.value) if not isinstance(node.value, str) else node.value
    if isinstance(node, ast.Name):
        return a.ids[node.id]
    if isinstance(node, ast.Tuple | ast.List):
        return [_value(e, a) for e in node.elts]
    if isinstance(node, ast.Call):
        name = node.func.id  # type: ignore[attr-defined]
        if name == "value":
            return a.values[node.args[0].id]  # type: ignore[attr-defined]
        args = [np.asarray(_value(x, a), float) for x in node.args]
        if name == "abs":
            return np.abs(args[0])
        reduce = np.minimum if name == "min" else np.maximum
        out = args[0]
        for arg in args[1:]:
            out = reduce(out, arg)
        return out
    if isinstance(node, ast.BinOp):
        return _ARITHMETIC[type(node.op)](np.asarray(_value(node.left, a), float),
                                          np.asarray(_value(node.right, a), float))
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, a)
        if isinstance(node.op, ast.Not):
            return np.logical_not(operand)
        return -np.asarray(operand, float) if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = np.asarray(_value(node.values[0], a), bool)
        for value in node.values[1:]:
            out = combine(out, np.asarray(_value(value, a), bool))
        return out
    if isinstance(node, ast.Compare):
        return _compare(node, a)
    raise _refuse(_describe(node))  # unreachable for a checked rule


def _compare(node: ast.Compare, a: Answers) -> Any:
    operands = [node.left, *node.comparators]
    out: Any = True
    for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
        if isinstance(op, ast.In | ast.NotIn):
            hit = _among(left, right.elts, a)  # type: ignore[attr-defined]
            part = np.logical_not(hit) if isinstance(op, ast.NotIn) else hit
        elif type(op) in _ORDER:
            part = _ORDER[type(op)](np.asarray(_value(left, a), float),
                                    np.asarray(_value(right, a), float))
        else:
            equal = _equal(left, right, a)
            part = np.logical_not(equal) if isinstance(op, ast.NotEq) else equal
        out = np.logical_and(out, part)
    return out


def _canonical(question: str, literal: Any, a: Answers) -> str | None:
    """The option id a literal compared with `question` names (None: no option)."""
    index = option_index(literal, list(a.options[question]))
    return None if index is None else a.options[question][index]


def _among(left: ast.AST, elements: list[ast.AST], a: Answers) -> Any:
    if isinstance(left, ast.Name):
        wanted = [_canonical(left.id, literal(e), a) for e in elements]
        return np.isin(a.ids[left.id], [w for w in wanted if w is not None])
    values = np.asarray(_value(left, a), float)
    return np.isin(values, [float(literal(e)) for e in elements
                            if not isinstance(literal(e), str)])


def _equal(left: ast.AST, right: ast.AST, a: Answers) -> Any:
    if isinstance(left, ast.Name) and isinstance(right, ast.Name):
        return np.asarray(a.ids[left.id] == a.ids[right.id], bool)
    if isinstance(right, ast.Name):
        left, right = right, left
    if isinstance(left, ast.Name):
        wanted = _canonical(left.id, literal(right), a)
        return np.asarray(a.ids[left.id] == wanted, bool) if wanted is not None \
            else np.zeros(np.shape(a.ids[left.id]), bool)
    return np.equal(np.asarray(_value(left, a), float), np.asarray(_value(right, a), float))
