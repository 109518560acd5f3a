"""Remembered template renderings: the same template over the same values renders once.

A question's text is the same for every participant of a condition in a round, and the
instructions the same for everyone in a condition, yet each participant used to render them again
(and again when the answer was recorded). `scenarios.templates.render` asks this memo first.

The key is exact: the template source and every variable the template *mentions*, by type and
value. A template reaches a variable only through a `Name` node of its parse tree (the sandbox
has no loader, so no include or import), so a variable it never mentions cannot change its text;
mentioned names include any that shadow a global such as `range`. Values are keyed with their
type (`True`, `1` and `1.0` print differently) and floats by repr (`0.0` and `-0.0` too).
Renderings that can differ for the same values (the `random` filter) and values that are not
plain scalars are never remembered; neither is a failure, which raises again each time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np
from jinja2 import TemplateSyntaxError, nodes

MEMO_SIZE = 4096  # remembered renderings, least recently used dropped first: a few hundred KB

Key = tuple[Any, ...]


class Memo:
    """A bounded LRU of rendered texts, with counts of renderings done and reused."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        self.texts: OrderedDict[Key, str] = OrderedDict()
        self.lock = threading.Lock()  # renders may come from several threads
        self.enabled = True
        self.renders = 0  # renderings jinja did (templates.render counts them)
        self.reused = 0  # renderings answered from the memo

    def key(self, source: str, variables: Mapping[str, Any],
            parse: Callable[[str], nodes.Template]) -> Key | None:
        """The memo key of a rendering, or None when it must be rendered afresh."""
        if not self.enabled:
            return None
        found = _mentioned(source, parse)
        if found is None:
            return None
        seen: list[tuple[str, type, Any]] = []
        for name in sorted(found & variables.keys()):
            value = variables[name]
            if isinstance(value, float | np.generic):
                seen.append((name, type(value), repr(value)))
            elif value is None or isinstance(value, str | int):  # bool is an int
                seen.append((name, type(value), value))
            else:  # a container: no scenario variable is one, and its repr is no safe key
                return None
        return (source, *seen)

    def get(self, key: Key | None) -> str | None:
        """The remembered text, or None."""
        if key is None:
            return None
        with self.lock:
            text = self.texts.get(key)
            if text is not None:
                self.texts.move_to_end(key)
                self.reused += 1
            return text

    def put(self, key: Key | None, text: str) -> None:
        """Remember a rendering (nothing when key is None)."""
        if key is None:
            return
        with self.lock:
            self.texts[key] = text
            if len(self.texts) > self.size:
                self.texts.popitem(last=False)


@lru_cache(maxsize=256)
def _mentioned(source: str, parse: Callable[[str], nodes.Template]) -> frozenset[str] | None:
    """Every name the template mentions; None when its output is not a function of them."""
    try:
        tree = parse(source)
    except TemplateSyntaxError:
        return None  # rendering raises the syntax error itself
    if any(f.name == "random" for f in tree.find_all(nodes.Filter)):
        return None
    return frozenset(n.name for n in tree.find_all(nodes.Name))


MEMO = Memo()


def render_stats() -> dict[str, int]:
    """Renderings done by jinja and renderings answered from the memo, since the process began."""
    return {"renders": MEMO.renders, "reused": MEMO.reused}


@contextmanager
def memo_disabled() -> Iterator[None]:
    """Render every template afresh inside the block (the reference the memo must equal)."""
    before, MEMO.enabled = MEMO.enabled, False
    try:
        yield
    finally:
        MEMO.enabled = before
