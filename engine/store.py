"""The run directory: manifest.json, responses.parquet and transcripts.jsonl.

Every finished step is on disk before the next one starts (a parquet part and fsynced transcript
lines), so a crash or kill loses no completed answer; `finish` joins the parts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from contracts import run_format
from contracts.run_format import MANIFEST, PARTS, RESPONSES, STARTING, TRANSCRIPTS
from engine.lock import LOCK_FILE


class RunStore:
    """Writes one run's files; appends are durable step by step."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.parts = run_dir / PARTS

    def begin(self, manifest: dict[str, Any]) -> None:
        """Record a new run before its backend starts (status 'starting'): a run killed while its
        model loads leaves a directory that --resume can continue and --out accepts."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.write_manifest({**manifest, "status": STARTING})

    def abandon(self) -> None:
        """Remove the 'starting' manifest of a run that failed before it wrote anything else."""
        manifest = self.run_dir / MANIFEST
        try:
            status = json.loads(manifest.read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError, AttributeError):
            return
        if status == STARTING and {p.name for p in self.run_dir.iterdir()} <= {MANIFEST, LOCK_FILE}:
            manifest.unlink()

    def start(self, manifest: dict[str, Any]) -> None:
        """Write the manifest (status 'running'), then the empty tables."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.write_manifest({**manifest, "status": "running"})  # first: a directory with tables
        self.parts.mkdir(exist_ok=True)                          # always has a manifest
        with (self.run_dir / TRANSCRIPTS).open("w", encoding="utf-8") as handle:
            handle.flush()
            os.fsync(handle.fileno())

    def restart(self, manifest: dict[str, Any]) -> None:
        """Continue an unfinished run: its steps are replayed (answers come from the response
        cache), so earlier parts and transcript lines are cleared first."""
        self.write_manifest({**manifest, "status": "running"})  # first: never 'complete' without
        self.parts.mkdir(parents=True, exist_ok=True)            # the tables it names
        for part in self.parts.glob("*step-*.parquet*"):
            part.unlink()
        with (self.run_dir / TRANSCRIPTS).open("w", encoding="utf-8") as handle:
            handle.flush()
            os.fsync(handle.fileno())
        (self.run_dir / RESPONSES).unlink(missing_ok=True)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace manifest.json atomically."""
        _atomic_write(self.run_dir / MANIFEST,
                      json.dumps(manifest, indent=2, sort_keys=False, default=str).encode())

    def append_step(self, step: int, rows: list[dict[str, Any]],
                    lines: list[dict[str, Any]]) -> None:
        """Persist one step's answers and transcript lines before the run moves on."""
        table = pd.DataFrame(rows)
        tmp = self.parts / f".step-{step:04d}.parquet.tmp"
        table.to_parquet(tmp, index=False)
        _fsync_file(tmp)
        tmp.replace(self.parts / f"step-{step:04d}.parquet")
        with (self.run_dir / TRANSCRIPTS).open("a", encoding="utf-8") as handle:
            for line in lines:
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Join the step parts into responses.parquet and mark the manifest complete."""
        parts = sorted(self.parts.glob("step-*.parquet"))
        table = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        tmp = self.run_dir / f".{RESPONSES}.tmp"
        table.to_parquet(tmp, index=False)
        _fsync_file(tmp)
        tables = {RESPONSES: {"rows": len(table), "sha256": _sha256(tmp)},
                  TRANSCRIPTS: {"lines": _line_count(self.run_dir / TRANSCRIPTS),
                                "sha256": _sha256(self.run_dir / TRANSCRIPTS)}}
        tmp.replace(self.run_dir / RESPONSES)
        for part in parts:
            part.unlink()
        self.parts.rmdir()
        # What "complete" promises, so a rerun can check the tables before calling it complete.
        manifest["tables"] = tables
        self.write_manifest({**manifest, "status": "complete"})
        return self.run_dir


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's manifest (None when there is none); a damaged one is an input error."""
    from scenarios.errors import InputError, Problem

    try:
        return run_format.read_manifest(run_dir)
    except (run_format.ManifestNotJSON, run_format.ManifestNotObject) as exc:
        raise InputError([Problem(str(run_dir / MANIFEST), None, "", str(exc))]) from None


def table_damage(run_dir: Path, manifest: dict[str, Any]) -> str | None:
    """What is wrong with a complete run's tables (None: they are the ones its finish wrote).

    responses.parquet must be readable by pyarrow and transcripts.jsonl present; a run that
    recorded its tables at finish must still have their row count, line count and SHA-256."""
    import pyarrow.parquet as pq

    responses, transcripts = run_dir / RESPONSES, run_dir / TRANSCRIPTS
    recorded = manifest.get("tables") if isinstance(manifest.get("tables"), dict) else {}
    if not responses.is_file():
        return f"{RESPONSES} is missing"
    try:
        rows = pq.read_table(responses).num_rows
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        from scenarios.errors import shown

        return f"{RESPONSES} is not readable: {shown(exc, 120)}"
    if not transcripts.is_file():
        return f"{TRANSCRIPTS} is missing"
    want = recorded.get(RESPONSES) or {}
    if "rows" in want and rows != want["rows"]:
        return f"{RESPONSES} has {rows} rows, the run wrote {want['rows']}"
    if "sha256" in want and _sha256(responses) != want["sha256"]:
        return f"{RESPONSES} is not the file the run wrote (its SHA-256 differs)"
    want = recorded.get(TRANSCRIPTS) or {}
    if "lines" in want and (lines := _line_count(transcripts)) != want["lines"]:
        return f"{TRANSCRIPTS} has {lines} lines, the run wrote {want['lines']}"
    if "sha256" in want and _sha256(transcripts) != want["sha256"]:
        return f"{TRANSCRIPTS} is not the file the run wrote (its SHA-256 differs)"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _line_count(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    _fsync_file(tmp)
    tmp.replace(path)
