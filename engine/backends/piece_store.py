"""Where computed prompt pieces are kept between calls: in memory within one byte budget, and
what does not fit there in files within another (engine/backends/segments.py computes them).

A piece's bits are a function of its key alone, so what is kept, spilled or evicted changes
speed only. Files are written and read back byte for byte (any dtype), under a temporary
directory made on the first spill and removed when the store is cleared or collected (a
process killed before that leaves it behind, unlocked; the next one to spill there removes it).
Spilling never stops a run: where files cannot be written it is switched off, and a piece whose
file cannot be read back is computed again.

Why files: a later stage reads every participant's pieces of the stage before, 46 KB per token
for SmolLM2-135M in float32, about 12 MB per flagship participant and stage; past about 40
participants the default memory budget cannot keep a stage's pieces, and recomputing a token
there costs about 1.7 ms against 0.04-0.13 ms to write or read its 46 KB (measured on 2 CPU
cores, an ext4 disk: 2 GB written in 5.5 s with sync, read in 1.6 s from the page cache).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

# (policy, the token prefix a piece ends, where the prompt's pieces up to it end)
Key = tuple[str, tuple[int, ...], tuple[int, ...]]
Past = list[tuple[torch.Tensor, torch.Tensor]]  # keys and values by layer, [1, heads, tokens, dim]


@dataclass
class Piece:
    """One computed piece of a prompt: its own tokens' KV by layer and its last position's logits."""

    kv: Past
    logits: torch.Tensor

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def tensors(self) -> list[torch.Tensor]:
        return [t for pair in self.kv for t in pair] + [self.logits]


def evictable(last_used: dict[Key, int], call: int, position: Key) -> list[Key]:
    """What to drop first to make room: pieces last used before the previous call, then the
    previous call's pieces that this call's sorted sweep has passed (it will not ask again)."""
    stale = [k for k, c in last_used.items() if c < call - 1]
    passed = sorted(k for k, c in last_used.items() if c == call - 1 and k < position)
    return [*stale, *passed]


PREFIX = "survey-twins-pieces-"  # then the writing process's id
LOCK = ".lock"  # held by the process writing the directory while it lives
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs"}  # files there are memory: no spilling
log = logging.getLogger(__name__)


def remove_orphans(root: Path) -> None:
    """Remove spill directories under `root` whose writer is gone (killed before it could):
    those whose lock nobody holds."""
    for directory in root.glob(f"{PREFIX}*"):
        try:
            with (directory / LOCK).open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held (its writer lives), or not ours to open
            continue
        shutil.rmtree(directory, ignore_errors=True)


def in_memory(path: Path) -> bool:
    """Whether `path` is on a filesystem held in memory (Linux /proc/mounts; False elsewhere)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return False
    resolved = str(path.resolve())
    matching = [(point, kind) for point, kind in mounts
                if resolved == point or resolved.startswith(point.rstrip("/") + "/")]
    return bool(matching) and max(matching, key=lambda m: len(m[0]))[1] in MEMORY_FILESYSTEMS


def _remove(directory: Path, owner: int) -> None:
    """Remove a spill directory, from the process that made it only (not a forked child)."""
    if os.getpid() == owner:
        shutil.rmtree(directory, ignore_errors=True)


class SpillFiles:
    """Pieces in files, one per piece, within a byte budget: at most half the free space of the
    disk, checked before each batch of writes; none on a filesystem held in memory. A file
    that cannot be written switches spilling off; one that cannot be read back is computed
    again. A forked child neither reads, writes nor removes its parent's files."""

    def __init__(self, budget: int, root: str | None = None) -> None:
        self.budget, self.nbytes, self.root = budget, 0, root
        self.files: dict[Key, tuple[Path, list[tuple[torch.dtype, tuple[int, ...]]], int]] = {}
        self.last_used: dict[Key, int] = {}
        self.directory: Path | None = None
        self.lock: IO[str] | None = None
        self.owner = os.getpid()
        self.written = 0  # files written, ever (names)

    def __contains__(self, key: Key) -> bool:
        return key in self.files and self._ours()

    def _ours(self) -> bool:
        """Whether this is the process that made the files (not a forked child)."""
        return os.getpid() == self.owner

    def add(self, new: dict[Key, Piece], position: Key, call: int) -> None:
        """Write `new` pieces if room can be made for them (all or the earliest)."""
        directory = self._directory() if new else None
        if directory is None:
            return
        try:
            limit = min(self.budget, self.nbytes + shutil.disk_usage(directory).free // 2)
            size = sum(piece.nbytes for piece in new.values())
            if self.nbytes + size > limit:
                self._drop(evictable(self.last_used, call, position), size, limit)
            for key in sorted(new):
                piece = new[key]
                if self.nbytes + piece.nbytes > limit:
                    break
                self._write(directory, key, piece, call)
        except OSError as exc:
            log.warning("prefix reuse: no more pieces go to files in %s (%s)", directory, exc)
            self.budget = 0

    def _write(self, directory: Path, key: Key, piece: Piece, call: int) -> None:
        tensors = piece.tensors()
        path = directory / f"{self.written}.bin"
        self.written += 1
        try:
            np.concatenate([t.detach().reshape(-1).cpu().view(torch.uint8).numpy()
                            for t in tensors]).tofile(path)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        self.files[key] = (path, [(t.dtype, tuple(t.shape)) for t in tensors], piece.nbytes)
        self.last_used[key] = call
        self.nbytes += piece.nbytes

    def get(self, key: Key, call: int, device: str) -> Piece | None:
        found = self.files.get(key) if self._ours() else None
        if found is None:
            return None
        path, layout, nbytes = found
        try:
            raw = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
        except OSError:
            raw = torch.empty(0, dtype=torch.uint8)
        if raw.numel() != nbytes:  # gone or cut short: computed again
            self._drop([key], None, self.budget)
            return None
        tensors, at = [], 0
        for dtype, shape in layout:
            size = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
            tensors.append(raw[at:at + size].view(dtype).reshape(shape).to(device))
            at += size
        self.last_used[key] = call
        pairs = list(zip(tensors[:-1:2], tensors[1:-1:2], strict=True))
        return Piece(pairs, tensors[-1])

    def clear(self) -> None:
        if not self._ours():  # a forked child: the files are its parent's
            self.files.clear()
            return
        self._drop(list(self.files), None, self.budget)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def _drop(self, keys: Iterable[Key], until: int | None, budget: int) -> None:
        """Delete these pieces' files, in order, until `until` more bytes fit in `budget` (None:
        all)."""
        for key in keys:
            if until is not None and self.nbytes + until <= budget:
                return
            path, _, nbytes = self.files.pop(key)
            del self.last_used[key]
            path.unlink(missing_ok=True)
            self.nbytes -= nbytes

    def _directory(self) -> Path | None:
        """The directory files go to, made on first use (None: spilling is off, or this is a
        forked child)."""
        if not self._ours():
            return None
        if self.directory is None and self.budget > 0:
            root = Path(self.root or tempfile.gettempdir())
            try:
                if in_memory(root):
                    log.info("prefix reuse: %s is held in memory; no pieces go to files", root)
                    self.budget = 0
                    return None
                remove_orphans(root)
                # locked before it is renamed to a name remove_orphans looks at
                hidden = Path(tempfile.mkdtemp(prefix=f".{PREFIX}{os.getpid()}-", dir=root))
                self.lock = (hidden / LOCK).open("w")
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                directory = hidden.with_name(hidden.name[1:])
                hidden.rename(directory)
            except OSError as exc:
                log.warning("prefix reuse: no pieces go to files in %s (%s)", root, exc)
                self.budget = 0
                return None
            self.directory = directory
            weakref.finalize(self, _remove, directory, os.getpid())
        return self.directory


class SegmentStore:
    """Kept pieces by (policy, token prefix, cuts): in memory within `budget` bytes, then in
    files within `spill_budget` bytes.

    Prompts are swept in sorted order, so a kept piece that sorts before the sweep's position
    will not be asked for again in this call, and the next call (the next stage, extending these
    prompts) sweeps in the same order from the start. When full, each tier makes room from
    pieces last used before the previous call, then from older calls' pieces the sweep has
    passed; what memory still cannot take (the later prompts) goes to files, and what neither
    can take is not kept (the earliest prompts are, which the next sweep reads first)."""

    def __init__(self, budget: int, spill_budget: int = 0, spill_root: str | None = None,
                 device: str = "cpu") -> None:
        self.budget, self.nbytes, self.call, self.device = budget, 0, 0, device
        self.kept: dict[Key, tuple[Piece, int]] = {}  # a piece and the last call that used it
        self.spill = SpillFiles(spill_budget, spill_root)

    def __contains__(self, key: Key) -> bool:
        return key in self.kept or key in self.spill

    def get(self, key: Key) -> Piece | None:
        found = self.kept.get(key)
        if found is None:
            return self.spill.get(key, self.call, self.device)
        self.kept[key] = (found[0], self.call)
        return found[0]

    def add(self, new: dict[Key, Piece], position: Key) -> None:
        """Keep `new` pieces in memory if room can be made (all or the earliest), the rest in
        files if room can be made there."""
        size = sum(piece.nbytes for piece in new.values())
        if self.nbytes + size > self.budget:
            last_used = {k: c for k, (_, c) in self.kept.items()}
            for key in evictable(last_used, self.call, position):
                if self.nbytes + size <= self.budget:
                    break
                piece, _ = self.kept.pop(key)
                self.nbytes -= piece.nbytes
        rest: dict[Key, Piece] = {}
        for key in sorted(new):
            piece = new[key]
            if rest or self.nbytes + piece.nbytes > self.budget:
                rest[key] = piece
                continue
            self.kept[key] = (piece, self.call)
            self.nbytes += piece.nbytes
        self.spill.add({k: p for k, p in rest.items() if k not in self.spill}, position,
                       self.call)

    def clear(self) -> None:
        self.kept.clear()
        self.nbytes = 0
        self.spill.clear()
