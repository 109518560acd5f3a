"""How well a run matched humans: pure functions on the run directory's tables and the human data.

This package imports nothing from `engine`, `agents` or `scenarios`; it reads files only, through
the run format contract (`contracts.run_format`, `contracts.manifest`). Its metrics are
registered once, one module per report table, in `analysis.metrics`.
Entry points: `analysis.report.score_run` and `analysis.render.print_report`.
"""
