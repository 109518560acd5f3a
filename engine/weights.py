"""Which weights answer: digests of model and adapter directories (standard library only).

A run manifest pins the exact weights, and a cached answer is keyed by the weights that gave it,
so both need a digest that costs nothing heavy to import (no torch, no transformers).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


def weights_digest(model_dir: Path) -> str:
    """SHA-256 over the model's weight files, so a manifest pins the exact weights."""
    files = sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin"))
    # Hashing a 16 GB model takes a while: remember it while the files are unchanged.
    stamp = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _digest(stamp)


@lru_cache(maxsize=16)
def _digest(stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in stamp:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def adapter_identity(path: str | Path | None) -> dict[str, str] | None:
    """A local adapter directory by path and weights hash; anything else by its name alone."""
    if path is None:
        return None
    directory = Path(path)
    if not directory.is_dir():
        return {"name": str(path)}
    return {"path": str(directory), "sha256": weights_digest(directory)}
