"""Contracts every room may import: what two rooms must agree on, stated once.

Not a room: nothing here imports engine, agents, scenarios or analysis. `run_format` and
`manifest` name what the engine writes into a run directory and `analysis` reads (standard
library only); `formula` is the regression formula grammar that a scenario's `validate` and the
scorer both enforce (it uses formulaic's tokenizer).
"""
