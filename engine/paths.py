"""Output paths checked before anything loads: a run or adapter directory must be creatable.

`--out FILE/run`, `--out /proc/x` or a `--out` that is a regular file are refused here, in
milliseconds, instead of failing with an OSError after the model has loaded. The check creates
nothing that outlives it (no directory; the write probe is an unnamed temporary file).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from scenarios.errors import InputError, Problem


def check_output_path(path: Path, flag: str, *, must_exist: bool = False) -> None:
    """Refuse an output directory that cannot be created or written, naming `flag`.

    `path` may exist (then it must be a writable directory) or not (then its nearest existing
    ancestor must be a writable directory, so `mkdir(parents=True)` will succeed). With
    `must_exist` (e.g. `--resume RUN_DIR`) a missing directory is an error too.
    """
    path = Path(path).expanduser()
    where = str(path)
    if path.exists() and not path.is_dir():
        raise InputError([Problem("command line", None, flag, f"{where} is a file, not a directory; "
                                  "give a directory (new or one this command made)")])
    if must_exist and not path.is_dir():
        raise InputError([Problem("command line", None, flag, f"{where} does not exist")])
    ancestor = _nearest_existing(path.absolute())
    if not ancestor.is_dir():
        raise InputError([Problem("command line", None, flag, f"{where} cannot be created: {ancestor} "
                                  "is a file, not a directory")])
    reason = _unwritable(ancestor)
    if reason is not None:
        what = "is not writable" if ancestor == path.absolute() else f"cannot be created in {ancestor}"
        raise InputError([Problem("command line", None, flag, f"{where} {what}: a test file could "
                                  f"not be made there ({reason})")])


def _nearest_existing(path: Path) -> Path:
    """`path` itself or its closest ancestor that exists (the root always does)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor)


def _unwritable(directory: Path) -> str | None:
    """Why files cannot be created in `directory` (None: they can).

    `os.access` answers for ordinary permissions, but root passes it everywhere, and special
    filesystems (/proc, /sys) refuse new files whatever the mode bits say; so a real probe
    follows: an anonymous temporary file (O_TMPFILE where the filesystem supports it), removed
    when closed.
    """
    if not os.access(directory, os.W_OK | os.X_OK):
        return "permission denied"
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
    return None
