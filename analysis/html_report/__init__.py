"""A self-contained browser report of a scored run: `report.html` beside `report.json`.

One file that works offline from file://: the fidelity tables, matplotlib figures inlined as SVG
data: URIs, and a transcript browser (vanilla JS) whose data are embedded as escaped JSON.
"""

from __future__ import annotations

import os
from pathlib import Path

from analysis.headline import headline_lines
from contracts.run_format import HTML_REPORT


def write_html_report(run_dir: Path, *, human: Path | None = None) -> Path:
    """Write run_dir/report.html from run_dir/report.json (already written by `score`), the run's
    responses, transcripts and manifest, and the human/reference data; return its path.
    Raise analysis.errors.AnalysisInputError (clear message) when report.json is missing or
    damaged."""
    from analysis.html_report.data import gather
    from analysis.html_report.page import render

    run_dir = Path(run_dir)
    gathered = gather(run_dir, Path(human) if human is not None else None)
    page = render(gathered, headline_lines(gathered.report))
    path = run_dir / HTML_REPORT
    tmp = path.with_name(f".{HTML_REPORT}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


__all__ = ["HTML_REPORT", "write_html_report"]
