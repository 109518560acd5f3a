"""Where computed prompt pieces are kept between calls: in memory within one byte budget, and
what does not fit there in files within another (engine/backends/segments.py computes them).

A piece's bits are a function of its key alone, so what is kept, spilled or evicted changes
speed only. Files are written and read back byte for byte (any dtype), under a temporary
directory made on the first spill and removed when the store is cleared or collected (a
process killed before that leaves it behind; the next one to spill there removes it).

Why files: a later stage reads every participant's pieces of the stage before, 46 KB per token
for SmolLM2-135M in float32, about 12 MB per flagship participant and stage; past about 40
participants the default memory budget cannot keep a stage's pieces, and recomputing a token
there costs about 1.7 ms against 0.04 ms to read its 46 KB back (measured on 2 CPU cores, an
ext4 disk: 2 GB written in 5.5 s with sync, read in 1.6 s).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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


def remove_orphans(root: Path) -> None:
    """Remove spill directories under `root` whose process is gone (killed before it could)."""
    for directory in root.glob(f"{PREFIX}*-*"):
        pid = directory.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class SpillFiles:
    """Pieces in files, one per piece, within a byte budget (at most half the free space of the
    temporary directory's disk when it is made)."""

    def __init__(self, budget: int, root: str | None = None) -> None:
        self.budget, self.nbytes, self.root = budget, 0, root
        self.files: dict[Key, tuple[Path, list[tuple[torch.dtype, tuple[int, ...]]], int]] = {}
        self.last_used: dict[Key, int] = {}
        self.directory: Path | None = None
        self.written = 0  # files written, ever (names)

    def __contains__(self, key: Key) -> bool:
        return key in self.files

    def add(self, new: dict[Key, Piece], position: Key, call: int) -> None:
        """Write `new` pieces if room can be made for them (all or the earliest)."""
        size = sum(piece.nbytes for piece in new.values())
        if not new or self._directory() is None:
            return
        if self.nbytes + size > self.budget:
            self._drop(evictable(self.last_used, call, position), size)
        for key in sorted(new):
            piece = new[key]
            if self.nbytes + piece.nbytes > self.budget:
                break
            tensors = piece.tensors()
            path = self._directory() / f"{self.written}.bin"
            self.written += 1
            np.concatenate([t.detach().reshape(-1).cpu().view(torch.uint8).numpy()
                            for t in tensors]).tofile(path)
            self.files[key] = (path, [(t.dtype, tuple(t.shape)) for t in tensors], piece.nbytes)
            self.last_used[key] = call
            self.nbytes += piece.nbytes

    def get(self, key: Key, call: int, device: str) -> Piece | None:
        found = self.files.get(key)
        if found is None:
            return None
        path, layout, _ = found
        raw = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
        tensors, at = [], 0
        for dtype, shape in layout:
            size = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
            tensors.append(raw[at:at + size].view(dtype).reshape(shape).to(device))
            at += size
        self.last_used[key] = call
        pairs = list(zip(tensors[:-1:2], tensors[1:-1:2], strict=True))
        return Piece(pairs, tensors[-1])

    def clear(self) -> None:
        self._drop(list(self.files), None)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def _drop(self, keys: Iterable[Key], until: int | None) -> None:
        """Delete these pieces' files, in order, until `until` more bytes fit (None: all)."""
        for key in keys:
            if until is not None and self.nbytes + until <= self.budget:
                return
            path, _, nbytes = self.files.pop(key)
            del self.last_used[key]
            path.unlink(missing_ok=True)
            self.nbytes -= nbytes

    def _directory(self) -> Path | None:
        """The directory files go to, made on first use (None: spilling is off)."""
        if self.directory is None and self.budget > 0:
            root = Path(self.root or tempfile.gettempdir())
            remove_orphans(root)
            self.directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root))
            self.budget = min(self.budget, shutil.disk_usage(self.directory).free // 2)
            weakref.finalize(self, shutil.rmtree, self.directory, True)
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
