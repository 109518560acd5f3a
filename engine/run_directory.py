"""A run directory: its lock, its manifest and sessions, and whether a run there starts, continues
or is already done. The files themselves are written by engine/store.py, step by step."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from contracts.manifest import CacheStats, Fingerprint, Manifest, Session, StartingManifest, Timing
from contracts.run_format import MANIFEST, PARTS, STARTING, TRANSCRIPTS
from engine.cache import CACHE_FILE, CACHE_FILES
from engine.lock import LOCK_FILE, hold_directory
from engine.store import RunStore, read_manifest, table_damage
from scenarios.errors import InputError, Problem

# What a directory may hold before its run's first manifest: the response cache, a lock file, an
# interrupted manifest write, and (from versions that made them first) empty tables.
BEFORE_MANIFEST = CACHE_FILES | {LOCK_FILE, PARTS, TRANSCRIPTS, f".{MANIFEST}.tmp"}


def brief(value: Any) -> str:
    """A recorded or asked value, as JSON of at most 90 characters (for problems)."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 90 else text[:87] + "..."


def holds_no_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds only what a run writes before its first manifest (no answer row,
    no transcript line): a new run may start there, keeping the answers its cache holds."""
    if not {p.name for p in run_dir.iterdir()} <= BEFORE_MANIFEST:
        return False
    parts, transcripts = run_dir / PARTS, run_dir / TRANSCRIPTS
    if parts.exists() and (not parts.is_dir() or any(parts.iterdir())):
        return False
    return not transcripts.exists() or (transcripts.is_file() and transcripts.stat().st_size == 0)


@dataclass(frozen=True)
class Resumption:
    """What a run finds in its directory: nothing (a new run), its own unfinished run, or its
    own complete run (with intact tables: nothing to do; damaged: replayed from the cache)."""

    previous: Manifest | None = None
    complete: bool = False
    damage: str | None = None  # why a complete run's tables are rebuilt


class RunDirectory:
    """One run's directory: held by one writer, recorded in its manifest, continued only by the
    same run (its fingerprint)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = RunStore(path)

    @contextmanager
    def held(self) -> Iterator[RunDirectory]:
        """One writer per run directory, from its first read to its finish (engine/lock.py)."""
        with hold_directory(self.path, purpose="run", field="--out",
                            advice="wait for it or choose another --out"):
            yield self

    def resumption(self, fingerprint: Fingerprint, fresh: bool) -> Resumption:
        """Whether this run starts, continues or is done; a run of another fingerprint is refused.
        A complete run with invalid answers continues: they are asked again."""
        previous = self.previous_run(fingerprint)
        if (previous is None or previous.get("status") != "complete" or fresh
                or previous.get("invalid_answers")):
            return Resumption(previous)
        damage = table_damage(self.path, cast(dict[str, Any], previous))
        return Resumption(previous, complete=damage is None, damage=damage)

    def previous_run(self, fingerprint: Fingerprint) -> Manifest | None:
        """The manifest of the run already here (None: a new run), checked to be this run."""
        run_dir = self.path
        if run_dir.exists() and not run_dir.is_dir():
            raise InputError([Problem(str(run_dir), None, "--out", "is a file, not a directory")])
        if not run_dir.exists() or holds_no_run(run_dir):
            return None  # new, or stopped before its manifest: its cache answers are still good
        manifest = read_manifest(run_dir)
        if manifest is None:
            raise InputError([Problem(str(run_dir), None, "--out", "the directory exists, is not "
                                      "empty and holds no run (no manifest.json); choose another")])
        if manifest.get("status") == STARTING:
            return None  # stopped while its backend started: nothing computed, its cache is good
        where = str(run_dir / MANIFEST)
        recorded = manifest.get("fingerprint")
        if not isinstance(recorded, dict):
            raise InputError([Problem(where, None, "fingerprint", "this run was made by an older "
                                      "version and cannot be continued; choose another --out")])
        problems = [Problem(where, None, key, f"this run has {brief(recorded.get(key))}; "
                            f"the command asks for {brief(value)}")
                    for key, value in fingerprint.items() if recorded.get(key) != value]
        if problems:
            problems.append(Problem(where, None, "--out", "a run directory continues only the same "
                                    "run (scenario file, model, seed, participants, policies); "
                                    "choose another"))
            raise InputError(problems)
        sessions = manifest.get("sessions", [])
        if not isinstance(sessions, list) or not all(isinstance(x, dict) for x in sessions):
            # list() of a string would explode it into characters, each kept as a "session"
            raise InputError([Problem(where, None, "sessions", "expected a list of session "
                                      f"records, got {brief(sessions)}; the manifest was edited "
                                      "or damaged")])
        return cast(Manifest, manifest)

    def begin(self, manifest: StartingManifest) -> None:
        """Record a new run before its model loads (--resume continues a kill there)."""
        self.store.begin(cast(dict[str, Any], manifest))

    def abandon(self) -> None:
        """Leave nothing behind of a run that failed to start."""
        self.store.abandon()

    def open_session(self, manifest: Manifest, previous: Manifest | None, cache_read: bool,
                     usage: dict[str, dict[str, Any]]) -> RunSession:
        """Write the manifest with this session added and the empty tables (an unfinished run's
        steps are replayed, so its tables are cleared); the session keeps the manifest since."""
        earlier = list(previous.get("sessions", [])) if previous is not None else []
        session: Session = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                            "resumed": previous is not None, "cache_read": cache_read}
        if previous is not None:
            manifest["run_id"], manifest["created"] = previous["run_id"], previous["created"]
            self.store.restart(cast(dict[str, Any], {**manifest, "sessions": [*earlier, session]}))
        else:
            self.store.start(cast(dict[str, Any], {**manifest, "sessions": [session]}))
        return RunSession(self.store, manifest, earlier, session, usage)


class RunSession:
    """This invocation's work on a run: each finished step is appended and its counters so far
    are in the manifest (a killed session keeps them)."""

    def __init__(self, store: RunStore, manifest: Manifest, earlier: list[Session],
                 session: Session, usage: dict[str, dict[str, Any]]) -> None:
        self.store, self.manifest, self.earlier, self.session = store, manifest, earlier, session
        self.started = time.perf_counter()
        # transformers: prompt tokens submitted vs computed (prefix reuse), this session's and all
        self.tokens_before = dict(usage.get("tokens", {}))
        self.tokens_earlier = [s["tokens"] for s in earlier if isinstance(s.get("tokens"), dict)]

    def step(self, position: int, rows: list[dict[str, Any]], lines: list[dict[str, Any]],
             counts: SessionCounts) -> None:
        """Persist one step's answers and transcript lines, then the counters."""
        self.store.append_step(position, rows, lines)
        self.account(counts)
        self.store.write_manifest(cast(dict[str, Any], {**self.manifest, "status": "running"}))

    def account(self, counts: SessionCounts) -> float:
        """This session's counters so far, in the manifest; returns its seconds."""
        seconds = time.perf_counter() - self.started
        endpoint = counts.usage.get("endpoint")  # openai: requests, retries (since it started)
        self.session.update({"seconds": round(seconds, 3), "backend_calls": counts.backend_calls,
                             "cache": counts.cache, "invalid_answers": counts.invalid_answers,
                             **({"endpoint": endpoint} if endpoint is not None else {})})
        self.manifest.update({"cache": {"file": CACHE_FILE, **counts.cache},
                              "invalid_answers": counts.invalid_answers,
                              "sessions": [*self.earlier, self.session]})
        if endpoint is not None:
            self.manifest["endpoint"] = endpoint
        if (tokens := counts.usage.get("tokens")) is not None:
            mine = {k: v - self.tokens_before.get(k, 0) for k, v in tokens.items()}
            self.session["tokens"] = mine
            self.manifest["backend"]["tokens"] = {
                k: v + sum(t.get(k, 0) for t in self.tokens_earlier) for k, v in mine.items()}
        return seconds

    def finish(self, counts: SessionCounts, participants: int) -> float:
        """Join the tables and mark the run complete; returns this session's seconds."""
        seconds = self.account(counts)
        timing: Timing = {"seconds": round(seconds, 3), "backend_calls": counts.backend_calls,
                          "participants_per_second": round(participants / seconds, 2)}
        self.manifest["timing"] = timing
        self.store.finish(cast(dict[str, Any], self.manifest))
        return seconds


@dataclass(frozen=True)
class SessionCounts:
    """The counters a session records after each step."""

    backend_calls: int
    cache: CacheStats
    invalid_answers: int
    usage: dict[str, dict[str, Any]]  # the backend's usage(): "endpoint", "tokens"
