"""Computed prompt pieces the memory budget cannot keep go to files and come back byte for byte:
a later call reads them instead of computing them, with the bits it would have computed; the
files stay within their budget and are removed with the store, or by the next process to spill
when the one that wrote them was killed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.conversation import Message
from engine.backends.base import ChoiceQuery
from engine.backends.piece_store import LOCK, PREFIX, Piece, SpillFiles

SYSTEM = Message("system", "You are a participant in an online decision-making study, a pirate "
                 "choosing which of two beaches to raid after the queen's statement. " * 3)
FIRST = ChoiceQuery((SYSTEM, Message("user", "Where is the new security? A) North B) South")),
                    ("A", "B"))
LATER = ChoiceQuery((*FIRST.messages, Message("assistant", "A"),
                     Message("user", "Which beach do you raid? A) North B) South")), ("A", "B"))


def piece(dtype: torch.dtype, tokens: int, seed: int) -> Piece:
    generator = torch.Generator().manual_seed(seed)
    kv = [(torch.randn(1, 3, tokens, 8, generator=generator).to(dtype),
           torch.randn(1, 3, tokens, 8, generator=generator).to(dtype)) for _ in range(2)]
    return Piece(kv, torch.randn(50, generator=generator).to(dtype))


def key(n: int) -> tuple:
    return ("base", tuple(range(n)), (n,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_a_piece_comes_back_from_its_file_byte_for_byte(tmp_path, dtype):
    files = SpillFiles(1 << 20, str(tmp_path))
    kept = piece(dtype, 5, seed=1)
    files.add({key(5): kept}, key(0), call=1)
    back = files.get(key(5), call=2, device="cpu")
    assert back is not None and back.nbytes == kept.nbytes
    assert all(torch.equal(a, b) and a.dtype == b.dtype and a.shape == b.shape
               for a, b in zip(back.tensors(), kept.tensors(), strict=True))
    assert files.get(key(6), call=2, device="cpu") is None
    directory = files.directory
    files.clear()
    assert directory is not None and not directory.exists()


def test_files_stay_within_their_budget_and_make_room_from_stale_pieces(tmp_path):
    size = piece(torch.float32, 40, seed=0).nbytes
    files = SpillFiles(3 * size, str(tmp_path))
    files.add({key(n): piece(torch.float32, 40, n) for n in range(1, 6)}, key(0), call=1)
    assert sorted(files.files) == [key(1), key(2), key(3)]  # the earliest that fit
    files.add({key(n): piece(torch.float32, 40, n) for n in range(6, 8)}, key(0), call=3)
    assert set(files.files) == {key(3), key(6), key(7)}  # call 1's pieces are stale by call 3
    assert files.nbytes <= files.budget
    assert len(list(files.directory.glob("*.bin"))) == 3


def test_a_killed_process_files_are_removed_by_the_next_to_spill(tmp_path):
    """A writer holds its directory's lock while it lives; a killed one's lock is free."""
    orphan, alive, old = (tmp_path / f"{PREFIX}{n}-abc" for n in (11, 12, 13))
    for directory in (orphan, alive, old):
        directory.mkdir()
        (directory / "0.bin").write_bytes(b"x")
    (orphan / LOCK).touch()  # its writer was killed: nobody holds the lock
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(alive / LOCK)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        files = SpillFiles(1 << 20, str(tmp_path))
        files.add({key(3): piece(torch.float32, 3, seed=2)}, key(0), call=1)
        assert not orphan.exists() and not old.exists()  # old: no lock file at all
        assert alive.exists() and (alive / "0.bin").exists()
        assert files.directory is not None and files.directory.name.startswith(PREFIX)
        assert (files.directory / LOCK).exists()
        again = SpillFiles(1 << 20, str(tmp_path))  # another store: ours is held too
        again.add({key(4): piece(torch.float32, 4, seed=2)}, key(0), call=1)
        assert files.directory.exists() and again.directory != files.directory
    finally:
        holder.kill()
        holder.wait()


HOLD = """
import fcntl, sys, time
lock = open(sys.argv[1], "w")
fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_later_call_reads_spilled_pieces_with_the_bits_it_would_compute(tiny_dir, tmp_path,
                                                                         monkeypatch):
    from engine.backends.transformers_backend import TransformersBackend

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # TMPDIR is read again
    spilling = TransformersBackend(tiny_dir, prefix_reuse=True, prefix_cache_mb=0,
                                   prefix_spill_mb=64)
    fresh = TransformersBackend(tiny_dir, prefix_reuse=True, prefix_cache_mb=0, prefix_spill_mb=0)
    a, b = spilling.prompt_ids(FIRST.messages), spilling.prompt_ids(LATER.messages)
    assert b[:len(a)] == a
    spilling.option_distributions([FIRST])
    store = spilling.prefix.store
    assert not store.kept and store.spill.files  # nothing in memory, all in files
    assert Path(store.spill.directory).parent == tmp_path
    before = spilling.prompt_tokens.prompt_computed
    got = spilling.option_distributions([LATER])
    assert spilling.prompt_tokens.prompt_computed - before == len(b) - len(a)
    expected = fresh.option_distributions([LATER])
    assert all(np.array_equal(x.probs, y.probs) for x, y in zip(got, expected, strict=True))
    directory = store.spill.directory
    spilling.prefix.forget()  # the weights are about to change: files go too
    assert not directory.exists() and not store.spill.files


def test_the_store_keeps_the_earliest_pieces_in_memory_and_the_rest_in_files(tmp_path):
    from engine.backends.piece_store import SegmentStore

    size = piece(torch.float32, 40, seed=0).nbytes
    store = SegmentStore(2 * size, 2 * size, str(tmp_path))
    store.call = 1
    new = {key(n): piece(torch.float32, 40, n) for n in range(1, 6)}
    store.add(new, key(0))
    assert sorted(store.kept) == [key(1), key(2)] and sorted(store.spill.files) == [key(3), key(4)]
    assert key(5) not in store and all(key(n) in store for n in range(1, 5))
    store.call = 2
    back = store.get(key(4))
    assert back is not None and all(torch.equal(a, b) for a, b in
                                    zip(back.tensors(), new[key(4)].tensors(), strict=True))
    assert store.nbytes <= store.budget and store.spill.nbytes <= store.spill.budget


def test_a_file_that_cannot_be_read_back_is_computed_again_not_an_error(tmp_path):
    files = SpillFiles(1 << 20, str(tmp_path))
    files.add({key(5): piece(torch.float32, 5, seed=1), key(6): piece(torch.float32, 6, seed=1)},
              key(0), call=1)
    path = files.files[key(5)][0]
    path.write_bytes(path.read_bytes()[:-4])  # cut short
    files.files[key(6)][0].unlink()  # removed by someone else
    assert files.get(key(5), call=2, device="cpu") is None
    assert files.get(key(6), call=2, device="cpu") is None
    assert not files.files and files.nbytes == 0


def test_spilling_is_switched_off_when_the_directory_cannot_be_written(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    files = SpillFiles(1 << 20, str(blocked))
    files.add({key(5): piece(torch.float32, 5, seed=1)}, key(0), call=1)
    assert not files.files and files.budget == 0


def test_no_files_on_a_filesystem_held_in_memory():
    from engine.backends.piece_store import in_memory

    shm = Path("/dev/shm")
    mounts = Path("/proc/mounts").read_text() if Path("/proc/mounts").exists() else ""
    if not any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in mounts.splitlines()):
        pytest.skip("no tmpfs at /dev/shm here")
    assert in_memory(shm) and not in_memory(Path(__file__).parent)
    files = SpillFiles(1 << 20, str(shm))
    files.add({key(5): piece(torch.float32, 5, seed=1)}, key(0), call=1)
    assert not files.files and files.budget == 0 and files.directory is None
