"""One writer per directory: an exclusive kernel lock (`fcntl.flock`) on DIRECTORY/.lock.

A run directory, a finetune's adapter directory and a scored run's report are each written by one
process at a time. The lock is the kernel's, so a holder that is killed (even with -9) releases it
at once: there is never a stale lock to clear by hand. The lock file records who holds it (PID,
start time, command), so a second writer is told whom it is waiting for.

Hand-written over fcntl rather than taken from the `filelock` package (installed with torch):
filelock's kernel lock records nothing about its holder, and the holder's PID is what a refused
writer needs to see.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from scenarios.errors import InputError, Problem, shown

LOCK_FILE = ".lock"
# Lock fds this process holds. A forked child (a backend's worker process) would share each one
# and keep the lock after this process is killed; the child closes its copies instead.
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a directory's lock, as its lock file records it."""

    pid: int | None
    started: str | None
    purpose: str | None
    command: str | None


def read_holder(directory: Path) -> Holder | None:
    """The holder recorded in DIRECTORY/.lock (None when there is no readable record).

    The record may be stale (its holder gone); only the kernel lock says whether it is held."""
    try:
        data = json.loads((directory / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return Holder(pid if isinstance(pid, int) else None, _text(data.get("started")),
                  _text(data.get("purpose")), _text(data.get("command")))


@contextmanager
def hold_directory(directory: Path, *, purpose: str, field: str, advice: str,
                   create: bool = True) -> Iterator[bool]:
    """Hold DIRECTORY's lock for the body, or refuse at once with an InputError naming the holder.

    `create` makes the directory (and its parents) when missing; a directory this call created
    and left empty (the body failed before writing anything) is removed again. Without `create` a
    missing directory is not locked (the body reports it); yields whether the lock is held.
    `field` and `advice` shape the refusal, e.g. '--out' and 'wait for it or choose another --out'.
    """
    directory = Path(directory)
    if not create and not directory.is_dir():
        yield False
        return
    if directory.exists() and not directory.is_dir():
        raise InputError([Problem(str(directory), None, field, "is a file, not a directory")])
    created = not directory.exists()
    fd = _acquire(directory, field=field, advice=advice, create=create)
    _HELD.add(fd)
    try:
        record = {"pid": os.getpid(), "started": datetime.now(UTC).isoformat(timespec="seconds"),
                  "purpose": purpose, "command": _command()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        yield True
    finally:
        # Unlinked while still held: a writer that opened the old file sees, once it gets the
        # lock, that the path no longer names that file, and starts over (see _acquire).
        (directory / LOCK_FILE).unlink(missing_ok=True)
        if created:
            try:
                directory.rmdir()  # only when empty: the body wrote nothing
            except OSError:
                pass
        _HELD.discard(fd)
        os.close(fd)


def _acquire(directory: Path, *, field: str, advice: str, create: bool) -> int:
    """An fd of DIRECTORY/.lock holding its exclusive lock; an InputError when someone else does."""
    path = directory / LOCK_FILE
    while True:
        try:
            if create:
                directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            if create:
                continue  # the previous holder removed the directory it had created: make it again
            raise InputError([Problem(str(directory), None, field, "the directory disappeared")]) from None
        except OSError as exc:
            raise InputError([Problem(str(directory), None, field, f"cannot write here "
                                      f"({exc.strerror or exc})")]) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError([Problem(str(directory), None, field,
                                      f"{_describe(_holder_soon(directory))} is writing this "
                                      f"directory; {advice}")]) from None
        except OSError as exc:  # e.g. a file system without flock
            os.close(fd)
            raise InputError([Problem(str(directory), None, field, f"cannot lock "
                                      f"{path} ({exc.strerror or exc})")]) from None
        try:
            mine = os.fstat(fd)
            now = os.stat(path)
            if (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a file its holder had just unlinked: try the path again


def _holder_soon(directory: Path, wait: float = 0.5) -> Holder | None:
    """The holder's record; a holder that has just taken the lock writes it a moment later."""
    deadline = time.monotonic() + wait
    while True:
        holder = read_holder(directory)
        if (holder is not None and holder.pid is not None) or time.monotonic() > deadline:
            return holder
        time.sleep(0.02)


def _describe(holder: Holder | None) -> str:
    if holder is None or holder.pid is None:
        return "another process (PID unknown)"
    started = f", started {shown(holder.started)}" if holder.started else ""
    return f"another {shown(holder.purpose or 'process')} (PID {holder.pid}{started})"


def _command() -> str:
    """This process's command line, backend option values left out (they may name a secret)."""
    words, hide = [], False
    for word in sys.argv:
        if hide:
            word = word.partition("=")[0] + "=..."
        elif word.startswith("--backend-option="):
            word = "--backend-option=" + word.partition("=")[2].partition("=")[0] + "=..."
        hide = word == "--backend-option"
        words.append(word)
    return " ".join(words)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
