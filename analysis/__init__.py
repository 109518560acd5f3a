"""How well a run matched humans: pure functions on the run directory's tables and the human data.

This package imports nothing from `engine`, `agents` or `scenarios`; it reads files only.
Entry points: `analysis.report.score_run` and `analysis.render.print_report`.
"""
