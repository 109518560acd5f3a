"""Errors a user can act on: which file, which column, what was expected."""

from __future__ import annotations


class AnalysisInputError(Exception):
    """Bad input to scoring (missing file, missing column, unknown formula variable).

    The command line turns it into exit code 2 and prints the message without a traceback.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
