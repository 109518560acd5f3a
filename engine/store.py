"""The run directory: manifest.json, responses.parquet and transcripts.jsonl.

Every finished step is on disk before the next one starts (a parquet part and fsynced transcript
lines), so a crash or kill loses no completed answer; `finish` joins the parts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

MANIFEST = "manifest.json"
RESPONSES = "responses.parquet"
TRANSCRIPTS = "transcripts.jsonl"
PARTS = "parts"


class RunStore:
    """Writes one run's files; appends are durable step by step."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.parts = run_dir / PARTS

    def start(self, manifest: dict[str, Any]) -> None:
        """Create the run directory and write the manifest (status 'running')."""
        self.parts.mkdir(parents=True, exist_ok=True)
        (self.run_dir / TRANSCRIPTS).touch()
        self.write_manifest({**manifest, "status": "running"})

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
        tmp.replace(self.run_dir / RESPONSES)
        for part in parts:
            part.unlink()
        self.parts.rmdir()
        self.write_manifest({**manifest, "status": "complete"})
        return self.run_dir


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's manifest (None when there is none); a damaged one is an input error."""
    from scenarios.errors import InputError, Problem

    path = run_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError([Problem(str(path), None, "", f"not valid JSON ({exc})")]) from None
    if not isinstance(manifest, dict):
        raise InputError([Problem(str(path), None, "", "expected a JSON object")])
    return manifest


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    _fsync_file(tmp)
    tmp.replace(path)
