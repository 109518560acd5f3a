"""Response cache: every answer a backend gave, keyed by everything that determined it.

A key is the SHA-256 of what the backend says determines the asking policy's answers
(`answer_identity`: the model and its settings, sampling and seed, that policy's adapter), the
rendered prompt, and the option labels or the text length. The cache reads no backend's keys.
Answers live in SQLite (WAL, synchronous=FULL) in the run directory: each `put_many` is one
transaction, so a run killed at any instant keeps every batch it committed and loses none
half-written. A rerun over the same directory answers those from the cache and asks the
backend only for the rest, which is what makes a run resumable.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.base import (
    Backend,
    BackendError,
    BackendWrapper,
    ChoiceQuery,
    Distribution,
    TextQuery,
)
from engine.backends.chat_template import prompts_remembered
from scenarios.errors import InputError, Problem

CACHE_FILE = "responses.sqlite"
CACHE_FILES = frozenset({CACHE_FILE, f"{CACHE_FILE}-wal", f"{CACHE_FILE}-shm", f"{CACHE_FILE}-journal"})
KEY_VERSION = 1

Answer = Distribution | str


class ResponseCache:
    """Answers by content key in an SQLite file; safe to kill at any moment."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, "
                             "kind TEXT NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL)")
            self._db.execute("SELECT key, kind, answer, created FROM answers LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise InputError([Problem(str(self.path), None, "", f"not a readable response cache "
                                      f"({exc}); move it away to recompute its answers")]) from None

    @staticmethod
    def key(*, identity: Mapping[str, Any], adapter: Any, prompt: str,
            labels: Sequence[str] | None = None, max_tokens: int | None = None) -> str:
        """Content hash of everything that determines one answer: `identity` and `adapter` are
        the `model` and `adapter` parts of the backend's answer_identity(policy)."""
        content = {"v": KEY_VERSION, "model": dict(identity), "adapter": adapter, "prompt": prompt,
                   "labels": None if labels is None else list(labels), "max_tokens": max_tokens}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, keys: Iterable[str]) -> dict[str, Answer]:
        """The cached answers among keys (absent keys are simply missing from the result)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Answer] = {}
        for start in range(0, len(wanted), 500):  # SQLite caps bound parameters per statement
            chunk = wanted[start:start + 500]
            rows = self._db.execute(
                f"SELECT key, kind, answer FROM answers WHERE key IN ({','.join('?' * len(chunk))})",
                chunk)
            found.update((key, _decode(kind, answer)) for key, kind, answer in rows)
        return found

    def put_many(self, items: Iterable[tuple[str, Answer]]) -> None:
        """Store answers in one transaction; an invalid distribution is refused."""
        now = time.time()  # one commit, one time: `created` tells the batches apart
        rows = [(key, *_encode(answer), now) for key, answer in items]
        if not rows:
            return
        with self._db:  # BEGIN ... COMMIT, or ROLLBACK on error
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        """Close the database (its WAL is checkpointed into the main file)."""
        self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _encode(answer: Answer) -> tuple[str, str]:
    if isinstance(answer, str):
        return "text", json.dumps({"text": answer})
    if answer.invalid is not None:
        raise ValueError(f"an invalid answer is never cached ({answer.invalid})")
    # json writes floats with repr, so float64 probabilities come back bit for bit.
    return "choice", json.dumps({"probs": [float(p) for p in answer.probs],
                                 "option_mass": float(answer.option_mass)})


def _decode(kind: str, answer: str) -> Answer:
    data = json.loads(answer)
    if kind == "text":
        return str(data["text"])
    return Distribution(np.array(data["probs"], dtype=np.float64), float(data["option_mass"]))


class CachedBackend(BackendWrapper):
    """A backend that answers what it has seen from the cache and sends only misses on.

    Identical queries in one batch are sent once. Answers marked invalid are passed through but
    never stored, so a resumed run asks for them again. Every other member of the contract is
    the inner backend's (BackendWrapper).
    """

    def __init__(self, inner: Backend, cache: ResponseCache, *, read: bool = True,
                 chunk: int = 4096) -> None:
        super().__init__(inner)
        self.cache = cache
        self.read = read
        self.chunk = chunk
        self.hits = 0
        self.misses = 0
        self.inner_calls = 0
        self.invalid = 0

    def stats(self) -> dict[str, Any]:
        """Answers read back, answers asked of the backend, its calls, and answers left invalid."""
        return {"read": self.read, "hits": self.hits, "misses": self.misses,
                "inner_calls": self.inner_calls, "invalid_not_stored": self.invalid}

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        """Cached answers where the cache has them; one inner call for all the rest."""
        with prompts_remembered(self.inner):  # the key's prompt text is the backend's too
            keys = self._keys(queries, lambda q: {"labels": q.labels})
            return self._answer(queries, keys, self.inner.option_distributions)

    def generate(self, queries: Sequence[TextQuery]) -> list[str]:
        """Cached texts where the cache has them; one inner call for all the rest."""
        with prompts_remembered(self.inner):
            keys = self._keys(queries, lambda q: {"max_tokens": q.max_tokens})
            return self._answer(queries, keys, self.inner.generate)

    def _keys(self, queries: Sequence[Any], shape: Callable[[Any], dict[str, Any]]) -> list[str]:
        answerers = {policy: self.inner.answer_identity(policy) for policy in {q.policy for q in queries}}
        return [ResponseCache.key(identity=answerers[q.policy]["model"],
                                  adapter=answerers[q.policy]["adapter"],
                                  prompt=self.inner.prompt(q.messages), **shape(q)) for q in queries]

    def _answer(self, queries: Sequence[Any], keys: list[str], ask: Callable[[list[Any]], list[Any]],
                ) -> list[Any]:
        """Cached answers, and the misses asked in chunks of `chunk` queries, each chunk stored
        in one transaction before the next is asked: a kill loses at most one chunk's work."""
        found = self.cache.get_many(keys) if self.read else {}
        first_of: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in found:
                first_of.setdefault(key, i)
        self.hits += len(keys) - sum(1 for k in keys if k not in found)
        self.misses += len(first_of)
        missing = list(first_of.items())
        for start in range(0, len(missing), self.chunk):
            part = missing[start:start + self.chunk]
            self.inner_calls += 1
            try:
                fresh = ask([queries[i] for _, i in part])
            except BackendError as exc:  # keep what did arrive, then stop the run
                arrived = [(key, a) for (key, _), a in zip(part, exc.partial or [], strict=False)
                           if a is not None
                           and not (isinstance(a, Distribution) and a.invalid is not None)]
                self.cache.put_many(arrived)
                exc.saved = len(arrived)
                raise
            if len(fresh) != len(part):
                raise RuntimeError(f"backend {self.kind} returned {len(fresh)} answers "
                                   f"for {len(part)} queries")
            new = {key: answer for (key, _), answer in zip(part, fresh, strict=True)}
            unread = {k for k, a in new.items() if isinstance(a, Distribution) and a.invalid is not None}
            self.invalid += len(unread)
            self.cache.put_many((k, a) for k, a in new.items() if k not in unread)
            found = {**found, **new}
        return [found[key] for key in keys]
