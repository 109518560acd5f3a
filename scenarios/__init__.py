"""Experiments as data: scenario files, their schema, and the human/reference data they name."""

from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario, load_scenario
from scenarios.schema import Question, Scenario, Stage

__all__ = ["InputError", "LoadedScenario", "Problem", "Question", "Scenario", "Stage", "load_scenario"]
